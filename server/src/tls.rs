//! TLS for the Postgres and MQTT listeners: on when a listener's configuration names both a
//! PEM certificate chain and its private key. Postgres clients that do not ask for TLS
//! (`sslmode=disable`) stay in the clear; the MQTT listener then speaks only MQTT over TLS.

use std::path::PathBuf;

use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// The acceptor of `listener` (`postgres` or `mqtt`, for errors), if it has TLS.
pub(crate) fn acceptor(listener: &str, cert_path: Option<&PathBuf>, key_path: Option<&PathBuf>) -> Result<Option<TlsAcceptor>> {
    match (cert_path, key_path) {
        (Some(cert), Some(key)) => isobar_ingest::tls::acceptor(cert, key).map(Some).map_err(|e| Error::Config(format!("{listener}: {e}"))),
        (None, None) => Ok(None),
        _ => Err(Error::Config(format!("{listener}: set both tls_cert_path and tls_key_path, or neither"))),
    }
}
