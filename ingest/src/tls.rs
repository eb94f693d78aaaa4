//! TLS for isobar's connections, from PEM files: the server side for its listeners (MQTT
//! here, Postgres in the server crate) and the client side for its subscriptions to external
//! brokers (`mqtts://`). Errors name the file at fault, so a bad path stops start-up with a
//! message an operator can act on.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// Where Debian and most Linux distributions keep the system's trusted CA certificates; a
/// subscription that names no `ca_path` trusts these.
pub const SYSTEM_CA_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A byte stream isobar speaks MQTT over: TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

fn config_error(message: String) -> Error {
    Error::Config(format!("TLS: {message}"))
}

fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path).map(BufReader::new).map_err(|e| config_error(format!("read {}: {e}", path.display())))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut open(path)?).collect::<Result<_, _>>().map_err(|e| config_error(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// The server side: the certificate chain in `cert_path` and the private key in `key_path`.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor> {
    let certs = certificates(cert_path)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open(key_path)?)
        .map_err(|e| config_error(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| config_error(format!("no private key in {}", key_path.display())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| config_error(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side: trusts the CA certificates in `ca_path`, or the system's when `None`.
pub fn connector(ca_path: Option<&Path>) -> Result<TlsConnector> {
    let path = ca_path.unwrap_or(Path::new(SYSTEM_CA_PATH));
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| config_error(format!("{}: {e}", path.display())))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name a server's certificate must carry when isobar connects to `host` (a DNS name or
/// an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| config_error(format!("{host} is not a host name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = acceptor(&missing, &missing).err().expect("no file").to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let err = connector(Some(&empty)).err().expect("no certificate").to_string();
        assert!(err.contains("no certificate in") && err.contains("empty.pem"), "{err}");
    }

    #[test]
    fn server_names_are_hosts_or_addresses() {
        assert!(server_name("broker.example.com").is_ok());
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("not a host").is_err());
    }
}
