//! Reaching an external MQTT broker, for subscriptions and for publishing rollups:
//! `mqtt://HOST:PORT` over TCP, `mqtts://HOST:PORT` over TLS verified against a CA file or the
//! system's CA certificates.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::tls::{self, Stream};

/// `HOST:PORT` of `broker`, and whether it speaks TLS; `None` when it is not
/// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
pub(crate) fn address(broker: &str) -> Option<(&str, bool)> {
    let (address, secure) = match broker.strip_prefix("mqtts://") {
        Some(address) => (address, true),
        None => (broker.strip_prefix("mqtt://").unwrap_or(broker), false),
    };
    let address = address.trim_end_matches('/');
    let host = address.rsplit_once(':').map(|(host, _)| host).unwrap_or_default();
    (!host.is_empty() && !address.contains("://")).then_some((address, secure))
}

/// Checks that `broker` can be reached as configured: its address, and for `mqtts://` the CA
/// certificates. `who` names the configuration entry in the error.
pub(crate) fn check(broker: &str, ca_path: Option<&Path>, who: &str) -> Result<()> {
    let Some((_, secure)) = address(broker) else {
        return Err(Error::Config(format!("{who}: broker {broker} is not mqtt://HOST:PORT or mqtts://HOST:PORT")));
    };
    if secure {
        tls::connector(ca_path).map_err(|e| Error::Config(format!("{who}: {e}")))?;
    } else if ca_path.is_some() {
        return Err(Error::Config(format!("{who}: ca_path is set but {broker} is not mqtts://")));
    }
    Ok(())
}

/// A connection to `broker`, over TLS for `mqtts://`.
pub(crate) async fn connect(broker: &str, ca_path: Option<&Path>) -> Result<Box<dyn Stream>> {
    let (address, secure) = address(broker).ok_or_else(|| Error::Config(format!("broker {broker} is not mqtt://HOST:PORT")))?;
    let socket = TcpStream::connect(address).await.map_err(|e| Error::Connection(e.to_string()))?;
    socket.set_nodelay(true).map_err(|e| Error::Connection(e.to_string()))?;
    if !secure {
        return Ok(Box::new(socket));
    }
    let host = address.rsplit_once(':').map(|(host, _)| host).unwrap_or(address);
    let socket = tls::connector(ca_path)?
        .connect(tls::server_name(host)?, socket)
        .await
        .map_err(|e| Error::Connection(format!("TLS with {broker}: {e}")))?;
    Ok(Box::new(socket))
}

/// The wait between attempts to reach a broker: from 250 ms, doubling up to 30 s, and from
/// the start again once a connection was accepted.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    pub(crate) fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// Waits before the next attempt; `connected` says whether the last one was accepted.
    pub(crate) async fn wait(&mut self, connected: bool) {
        if connected {
            self.next = Self::MIN;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }
}
