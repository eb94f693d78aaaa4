//! Publishing final rollup windows to an external MQTT broker (`[[emit]]` with `broker`), for
//! dashboards and services that already read from one.
//!
//! Each such entry has its own connection, kept by a task: it connects (over TLS for
//! `mqtts://`), publishes what the emitter queues, and reconnects with backoff when the
//! connection ends. QoS 1 publishes stay in flight until the broker acknowledges them and are
//! sent again after a reconnect, so a broker restart loses no window; at most
//! [`IN_FLIGHT_MAX`] are unacknowledged at once. While the broker is away, windows wait in a
//! bounded outbox; when it is full, the emitter counts the windows it drops.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::emit::EmitSpec;
use crate::error::{Error, Result};
use crate::mqtt_codec::client::{self, BrokerPacket, ConnectOptions};
use crate::mqtt_codec::{self as codec, Publish};
use crate::remote;

/// Windows waiting for the broker, per entry.
pub const OUTBOX_LEN_MAX: usize = 100_000;
/// QoS 1 publishes sent and not yet acknowledged, at most.
const IN_FLIGHT_MAX: usize = 1024;
/// Largest packet accepted from the broker, in bytes.
const PACKET_BYTES_MAX: usize = 1 << 20;
const KEEP_ALIVE_S: u16 = 30;

/// Starts the connection task of `spec` (which names a broker) on the current runtime and
/// returns its outbox.
pub fn spawn(spec: EmitSpec) -> mpsc::Sender<Publish> {
    let (tx, rx) = mpsc::channel(OUTBOX_LEN_MAX);
    tokio::spawn(run(spec, rx));
    tx
}

/// Publishes what arrives on `outbox` to `spec`'s broker until the emitter closes it.
async fn run(spec: EmitSpec, mut outbox: mpsc::Receiver<Publish>) {
    let Some(broker) = spec.broker.clone() else { return };
    let mut in_flight = InFlight::default();
    let mut backoff = remote::Backoff::new();
    loop {
        let mut connected = false;
        match session(&spec, &broker, &mut outbox, &mut in_flight, &mut connected).await {
            Ok(()) => return,
            Err(e) => log::warn!("emit {} to {broker}: {e}", spec.table),
        }
        backoff.wait(connected).await;
    }
}

/// QoS 1 publishes the broker has not acknowledged, by packet id.
#[derive(Default)]
struct InFlight {
    by_pkid: BTreeMap<u16, Publish>,
    next_pkid: u16,
}

impl InFlight {
    /// A packet id not in flight (1..=65535).
    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.by_pkid.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}

fn encode(out: &mut BytesMut, p: &Publish) {
    codec::publish(out, codec::LEVEL_V311, &p.topic, &p.payload, p.qos, p.retain, p.pkid);
}

/// One connection: connect, send again what is in flight, then publish the outbox until the
/// connection ends (an error) or the outbox closes (`Ok`). Sets `connected` once the broker
/// accepted the connection.
async fn session(
    spec: &EmitSpec,
    broker: &str,
    outbox: &mut mpsc::Receiver<Publish>,
    in_flight: &mut InFlight,
    connected: &mut bool,
) -> Result<()> {
    let mut socket = remote::connect(broker, spec.ca_path.as_deref()).await?;
    let io = |e: std::io::Error| Error::Connection(e.to_string());
    let mut out = BytesMut::new();
    let options = ConnectOptions {
        client_id: spec.client_id.clone().unwrap_or_else(|| format!("isobar-emit-{}", spec.table)),
        clean_session: true,
        keep_alive_s: KEEP_ALIVE_S,
        username: spec.username.clone(),
        password: spec.password.clone(),
    };
    client::connect(&mut out, &options);
    socket.write_all(&out).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(4096);
    let keep_alive = Duration::from_secs(u64::from(KEEP_ALIVE_S));
    let mut ping_due = tokio::time::Instant::now() + keep_alive;
    loop {
        out.clear();
        while let Some(packet) = client::read(&mut buf, PACKET_BYTES_MAX).map_err(|e| Error::Connection(e.0))? {
            match packet {
                BrokerPacket::ConnAck { code: 0, .. } => {
                    *connected = true;
                    log::info!("emit {}: connected to {broker}", spec.table);
                    for p in in_flight.by_pkid.values() {
                        encode(&mut out, p);
                    }
                }
                BrokerPacket::ConnAck { code, .. } => {
                    return Err(Error::Connection(format!("{broker} refused the connection (return code {code})")));
                }
                BrokerPacket::PubAck { pkid } => {
                    in_flight.by_pkid.remove(&pkid);
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            socket.write_all(&out).await.map_err(io)?;
            out.clear();
        }
        let room = *connected && in_flight.by_pkid.len() < IN_FLIGHT_MAX;
        tokio::select! {
            read = socket.read_buf(&mut buf) => {
                if read.map_err(io)? == 0 {
                    return Err(Error::Connection(format!("{broker} closed the connection")));
                }
            }
            next = outbox.recv(), if room => {
                let Some(mut p) = next else {
                    client::disconnect(&mut out);
                    let _ = socket.write_all(&out).await;
                    return Ok(());
                };
                if p.qos > 0 {
                    p.pkid = in_flight.pkid();
                }
                encode(&mut out, &p);
                if p.qos > 0 {
                    in_flight.by_pkid.insert(p.pkid, p);
                }
                socket.write_all(&out).await.map_err(io)?;
                ping_due = tokio::time::Instant::now() + keep_alive;
            }
            () = tokio::time::sleep_until(ping_due) => {
                client::pingreq(&mut out);
                socket.write_all(&out).await.map_err(io)?;
                ping_due = tokio::time::Instant::now() + keep_alive;
            }
        }
    }
}
