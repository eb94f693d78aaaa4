//! Subscribing to an external MQTT broker (mosquitto, EMQX, AWS IoT Core's broker, ...).
//!
//! isobar connects as a client with a fixed client id and a persistent session (clean session
//! off), subscribes at QoS 1, and acknowledges each delivery only after its rows (or its dead
//! letter) are durable: what the broker delivers while isobar is down waits in the session,
//! and what isobar received but had not acknowledged when it stopped is delivered again
//! (a reading delivered twice replaces itself). Shared subscriptions (`$share/<group>/<filter>`)
//! let several isobar nodes split one feed. When the connection drops, isobar reconnects with
//! exponential backoff. `mqtts://` brokers are reached over TLS, verified against the
//! subscription's `ca_path` or the system's CA certificates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::mqtt_codec::client::{self, BrokerPacket, ConnectOptions};
use crate::mqtt_codec::{self as codec, Publish};
use crate::mqtt_listener::MqttMetrics;
use crate::remote;
use crate::rule::Message;
use crate::store::Ingestor;

/// Largest packet accepted from a broker, in bytes.
const PACKET_BYTES_MAX: usize = 16 << 20;
/// Deliveries written to storage together at most.
const PUBLISHES_PER_WRITE_MAX: usize = 10_000;

/// One broker subscription, as configured (`[[subscriptions]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` for MQTT over TLS.
    pub broker: String,
    /// The session's client id; keep it fixed so the broker keeps the session across restarts.
    pub client_id: String,
    /// Topic filters, e.g. `weather/#` or `$share/isobar/weather/#`.
    pub topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM file of the CA certificates that may sign an `mqtts://` broker's certificate;
    /// unset: the system's (`/etc/ssl/certs/ca-certificates.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
    /// Seconds between keep-alive pings.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
}

fn default_keep_alive_s() -> u16 {
    30
}

impl SubscriptionSpec {
    /// Refuses a subscription that cannot work, naming what is wrong.
    pub fn check(&self) -> Result<()> {
        remote::check(&self.broker, self.ca_path.as_deref(), &format!("subscription {}", self.client_id))
            .map_err(|e| Error::Rule(e.to_string()))?;
        if self.client_id.is_empty() {
            return Err(Error::Rule(format!("subscription to {}: client_id is empty (the broker keeps the session by it)", self.broker)));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(Error::Rule(format!("subscription {}: topics must list non-empty topic filters", self.client_id)));
        }
        Ok(())
    }

    /// The `source` of its dead letters.
    fn source(&self) -> String {
        format!("mqtt:{}", self.client_id)
    }
}

/// Keeps `spec`'s subscription alive until the task is aborted: connects, stores what arrives,
/// and reconnects with backoff when the connection ends.
pub async fn run(spec: SubscriptionSpec, ingestor: Ingestor, metrics: Arc<MqttMetrics>) {
    let mut backoff = remote::Backoff::new();
    loop {
        let mut connected = false;
        match session(&spec, &ingestor, &metrics, &mut connected).await {
            Ok(()) => log::warn!("subscription {}: {} closed the connection", spec.client_id, spec.broker),
            Err(e) => log::warn!("subscription {}: {e}", spec.client_id),
        }
        backoff.wait(connected).await;
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Connection(e.to_string())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One connection: connect, subscribe, then store deliveries until it ends.
/// Sets `connected` once the broker accepted the connection.
async fn session(spec: &SubscriptionSpec, ingestor: &Ingestor, metrics: &MqttMetrics, connected: &mut bool) -> Result<()> {
    let mut socket = remote::connect(&spec.broker, spec.ca_path.as_deref()).await?;
    let mut out = BytesMut::new();
    let options = ConnectOptions {
        client_id: spec.client_id.clone(),
        clean_session: false,
        keep_alive_s: spec.keep_alive_s,
        username: spec.username.clone(),
        password: spec.password.clone(),
    };
    client::connect(&mut out, &options);
    client::subscribe(&mut out, 1, &spec.topics.iter().map(|t| (t.clone(), 1)).collect::<Vec<_>>());
    socket.write_all(&out).await.map_err(io_error)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let source = spec.source();
    let keep_alive = Duration::from_secs(u64::from(spec.keep_alive_s.max(1)));
    // Bytes of an oversize publish still to throw away.
    let mut discard = 0usize;
    loop {
        let mut publishes: Vec<Publish> = Vec::new();
        let mut oversize: Vec<(Publish, String)> = Vec::new();
        out.clear();
        while publishes.len() + oversize.len() < PUBLISHES_PER_WRITE_MAX {
            if codec::skip(&mut buf, &mut discard) {
                break;
            }
            match client::read(&mut buf, PACKET_BYTES_MAX).map_err(|e| Error::Connection(e.0))? {
                None => break,
                Some(BrokerPacket::ConnAck { code: 0, session_present }) => {
                    *connected = true;
                    metrics.connections.fetch_add(1, Ordering::Relaxed);
                    log::info!("subscription {}: connected to {} (session present: {session_present})", spec.client_id, spec.broker);
                }
                Some(BrokerPacket::ConnAck { code, .. }) => {
                    return Err(Error::Connection(format!("{} refused the connection (return code {code})", spec.broker)));
                }
                Some(BrokerPacket::SubAck { codes, .. }) => {
                    for (topic, code) in spec.topics.iter().zip(&codes) {
                        if *code == 0x80 {
                            log::warn!("subscription {}: {} refused the subscription to {topic}", spec.client_id, spec.broker);
                        }
                    }
                }
                Some(BrokerPacket::Publish(p)) => publishes.push(p),
                Some(BrokerPacket::Oversize { publish, body_bytes, skip_bytes }) => {
                    discard = skip_bytes;
                    oversize.push((publish, format!("a publish of {body_bytes} bytes exceeds the {PACKET_BYTES_MAX}-byte packet limit")));
                }
                Some(BrokerPacket::PubRel { pkid }) => codec::ack(&mut out, codec::PUBCOMP, pkid),
                Some(BrokerPacket::PingResp | BrokerPacket::PubAck { .. } | BrokerPacket::PubRec { .. } | BrokerPacket::PubComp { .. }) => {
                }
            }
        }
        if !publishes.is_empty() || !oversize.is_empty() {
            let arrival_ns = now_ns();
            let client_id = spec.client_id.as_str();
            let messages: Vec<Message<'_>> = publishes.iter().map(|p| p.message(client_id, arrival_ns)).collect();
            // Too large to store, so kept as dead letters, and acknowledged: a broker delivers
            // an unacknowledged message again at every reconnect.
            let refused: Vec<(Message<'_>, &str)> =
                oversize.iter().map(|(p, reason)| (p.message(client_id, arrival_ns), reason.as_str())).collect();
            metrics.messages.fetch_add((messages.len() + refused.len()) as u64, Ordering::Relaxed);
            let stored = ingestor.store(&source, &messages, &refused).await?;
            metrics.rows_written.fetch_add(stored.rows_written, Ordering::Relaxed);
            metrics.messages_rejected.fetch_add(stored.messages_rejected, Ordering::Relaxed);
            // Durable: now the broker may forget them.
            for p in publishes.iter().chain(oversize.iter().map(|(p, _)| p)) {
                match p.qos {
                    0 => {}
                    1 => codec::ack(&mut out, codec::PUBACK, p.pkid),
                    _ => codec::ack(&mut out, codec::PUBREC, p.pkid),
                }
            }
        }
        if !out.is_empty() {
            socket.write_all(&out).await.map_err(io_error)?;
        }
        if publishes.len() + oversize.len() == PUBLISHES_PER_WRITE_MAX {
            continue;
        }
        match tokio::time::timeout(keep_alive, socket.read_buf(&mut buf)).await {
            Ok(read) => {
                if read.map_err(io_error)? == 0 {
                    return Ok(());
                }
            }
            Err(_) => {
                // Idle for a keep-alive period: ping, and give the broker another one to answer.
                out.clear();
                client::pingreq(&mut out);
                socket.write_all(&out).await.map_err(io_error)?;
                let read = tokio::time::timeout(keep_alive, socket.read_buf(&mut buf))
                    .await
                    .map_err(|_| Error::Connection(format!("{} did not answer a ping", spec.broker)))?;
                if read.map_err(io_error)? == 0 {
                    return Ok(());
                }
            }
        }
    }
}
