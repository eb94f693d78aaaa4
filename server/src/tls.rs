//! TLS for the Postgres listener: a certificate chain and private key in PEM files, served
//! to clients that ask for it (`sslmode=require`); clients that do not ask stay in the clear.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The acceptor for `cert_path` and `key_path`; errors name the file at fault.
pub(crate) fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor> {
    let open = |path: &Path| File::open(path).map(BufReader::new).map_err(|e| Error::Config(format!("TLS: read {}: {e}", path.display())));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(cert_path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Config(format!("TLS: {}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("TLS: no certificate in {}", cert_path.display())));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open(key_path)?)
        .map_err(|e| Error::Config(format!("TLS: {}: {e}", key_path.display())))?
        .ok_or_else(|| Error::Config(format!("TLS: no private key in {}", key_path.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
