//! isobar's MQTT listener: devices publish straight to isobar (MQTT 3.1.1 and 5).
//!
//! Each connection reads what the socket has, decodes every complete packet in it, routes the
//! PUBLISHes of that read through the rules and writes their rows in one durable write, and only
//! then sends PUBACK (QoS 1) or PUBREC (QoS 2). A message the rules refuse is acknowledged
//! too (it is a dead letter in `system.ingest_errors`), so one bad reading never makes a
//! device resend it forever.
//! While storage makes writers wait, the connection reads nothing more: TCP pushes back on
//! the device and nothing is dropped. Clients may also subscribe: each durable publish goes to
//! the matching subscriptions (`mqtt_broker.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use isobar_storage::LatencyHistogram;

use crate::error::{Error, Result};
use crate::mqtt_broker::{Broker, SUBSCRIBE_REFUSED, SUBSCRIBER_QUEUE_MAX, SubscriberId};
use crate::mqtt_codec::{self as codec, Packet, Publish};
use crate::rule::Message;
use crate::store::Ingestor;
use crate::tls::Stream;
use crate::users::{Grant, Users};

/// Largest MQTT packet accepted, in bytes; a larger one closes the connection.
pub const PACKET_BYTES_MAX: usize = 1 << 20;
/// Messages of one connection written to storage together at most.
const PUBLISHES_PER_WRITE_MAX: usize = 10_000;

/// Counters for `/metrics`, of the listener or of the broker subscriptions.
#[derive(Debug, Default)]
pub struct MqttMetrics {
    /// Connections accepted (listener) or made (subscriptions).
    pub connections: AtomicU64,
    pub messages: AtomicU64,
    pub rows_written: AtomicU64,
    /// Messages that made no row (no rule, not JSON, refused by a rule or by storage).
    pub messages_rejected: AtomicU64,
    /// Publishes to a topic the client may not publish to, and subscriptions it may not make.
    pub denied: AtomicU64,
    /// Connections refused because the listener served its most.
    pub connections_refused: AtomicU64,
    /// From reading a batch of publishes off a connection to their acknowledgements sent (at
    /// QoS 0, to their being stored): routing, the durable write, the broker's deliveries.
    pub ack_latency: LatencyHistogram,
}

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct MqttContext {
    pub ingestor: Ingestor,
    /// Subscriptions of the listener's clients.
    pub broker: Arc<Broker>,
    pub metrics: Arc<MqttMetrics>,
    /// Who may connect, and what each may publish and subscribe to. Empty: anyone (the server
    /// allows that only on a loopback listener).
    pub users: Arc<Users>,
    pub limits: ListenerLimits,
    /// One permit per connection served; a client past them is refused at CONNECT.
    pub connection_slots: Arc<tokio::sync::Semaphore>,
}

/// Limits of the listener (the broker's own are in [`crate::mqtt_broker::BrokerLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub connections_max: usize,
    /// How long a client that asked for no keep-alive (0) may stay silent before it is
    /// disconnected.
    pub idle_timeout_ms: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self { connections_max: 10_000, idle_timeout_ms: 600_000 }
    }
}

/// The `source` of the listener's dead letters.
const SOURCE: &str = "mqtt";

/// Longest wait for a device's CONNECT (and, on a TLS listener, its handshake before it).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is aborted, which also ends every connection. With
/// `tls`, every connection must begin with a TLS handshake (MQTT over TLS, port 8883 by
/// custom).
pub async fn serve(listener: TcpListener, cx: MqttContext, tls: Option<TlsAcceptor>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((socket, peer)) = listener.accept().await else { continue };
        while connections.try_join_next().is_some() {}
        let _ = socket.set_nodelay(true);
        let (cx, tls) = (cx.clone(), tls.clone());
        connections.spawn(async move {
            cx.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let served = match tls {
                None => connection(socket, &cx).await,
                Some(tls) => match tokio::time::timeout(CONNECT_WAIT, tls.accept(socket)).await {
                    Ok(Ok(socket)) => connection(socket, &cx).await,
                    Ok(Err(e)) => Err(protocol_error(format!("TLS handshake: {e}"))),
                    Err(_) => Err(protocol_error("no TLS handshake within 10 s")),
                },
            };
            if let Err(e) = served {
                log::info!("mqtt connection from {peer} closed: {e}");
            }
        });
    }
}

fn protocol_error(reason: impl Into<String>) -> Error {
    Error::Connection(reason.into())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Reads until `buf` holds a whole packet or the peer closes.
async fn read_packet(socket: &mut impl Stream, buf: &mut BytesMut, level: Option<u8>) -> Result<Option<Packet>> {
    loop {
        if let Some(packet) = codec::read(buf, level, PACKET_BYTES_MAX).map_err(|e| protocol_error(e.0))? {
            return Ok(Some(packet));
        }
        if socket.read_buf(buf).await.map_err(|e| protocol_error(e.to_string()))? == 0 {
            return Ok(None);
        }
    }
}

async fn connection(mut socket: impl Stream, cx: &MqttContext) -> Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // The first packet must be CONNECT, within a few seconds.
    let first = tokio::time::timeout(CONNECT_WAIT, read_packet(&mut socket, &mut buf, None))
        .await
        .map_err(|_| protocol_error("no CONNECT within 10 s"))??;
    let Some(Packet::Connect(connect)) = first else { return Err(protocol_error("the first packet was not CONNECT")) };
    let level = connect.level;
    let client_id = connect.client_id;
    let v5 = level == codec::LEVEL_V5;
    // A keep-alive of 0 asks for none: such a client may stay silent for the idle timeout.
    let keep_alive = match connect.keep_alive_s {
        0 => Duration::from_millis(cx.limits.idle_timeout_ms),
        s => Duration::from_millis(u64::from(s) * 1500),
    };
    let mut out = BytesMut::new();
    let Ok(_slot) = Arc::clone(&cx.connection_slots).try_acquire_owned() else {
        cx.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
        // "Server unavailable" (3.1.1) or "server busy" (5).
        codec::connack(&mut out, level, if v5 { 0x89 } else { 0x03 });
        socket.write_all(&out).await.map_err(|e| protocol_error(e.to_string()))?;
        return Err(protocol_error(format!("client {client_id}: {} connections served, the most", cx.limits.connections_max)));
    };
    let Some(grant) = cx.users.login(connect.username.as_deref(), connect.password.as_deref(), &client_id) else {
        // "Bad user name or password", in each version's code.
        codec::connack(&mut out, level, if v5 { 0x86 } else { 0x04 });
        socket.write_all(&out).await.map_err(|e| protocol_error(e.to_string()))?;
        return Err(protocol_error(format!("client {client_id}: bad user name or password")));
    };
    codec::connack(&mut out, level, 0);
    socket.write_all(&out).await.map_err(|e| protocol_error(e.to_string()))?;

    let (subscriber, mut deliveries) = cx.broker.register();
    let _subscription = Subscription { broker: &cx.broker, id: subscriber };
    let mut outbound_pkid = 0u16;
    // Bytes of an oversize publish still to throw away.
    let mut discard = 0usize;
    // QoS 2 packet ids stored and awaiting their PUBREL: a publish sent again with one of them
    // is acknowledged, not stored twice (exactly once, per packet id, for the session).
    let mut awaiting_release: HashSet<u16> = HashSet::new();
    loop {
        let read_at = std::time::Instant::now();
        let mut publishes = Vec::new();
        let mut oversize = Vec::new();
        let mut out = BytesMut::new();
        let mut disconnect = false;
        while publishes.len() + oversize.len() < PUBLISHES_PER_WRITE_MAX {
            if codec::skip(&mut buf, &mut discard) {
                break;
            }
            match codec::read(&mut buf, Some(level), PACKET_BYTES_MAX).map_err(|e| protocol_error(e.0))? {
                Some(Packet::Publish(p)) => publishes.push(p),
                Some(Packet::Oversize { publish, body_bytes, skip_bytes }) => {
                    discard = skip_bytes;
                    let reason = format!("a publish of {body_bytes} bytes exceeds the {PACKET_BYTES_MAX}-byte packet limit");
                    oversize.push((publish, reason));
                }
                Some(Packet::PingReq) => codec::pingresp(&mut out),
                Some(Packet::PubRel { pkid }) => {
                    awaiting_release.remove(&pkid);
                    codec::ack(&mut out, codec::PUBCOMP, pkid);
                }
                Some(Packet::Subscribe { pkid, filters }) => {
                    let codes = subscribe(cx, &grant, subscriber, &filters, v5, &client_id);
                    codec::suback(&mut out, level, pkid, &codes);
                }
                Some(Packet::Unsubscribe { pkid, filters }) => {
                    cx.broker.unsubscribe(subscriber, &filters);
                    codec::unsuback(&mut out, level, pkid, filters.len());
                }
                Some(Packet::Disconnect) => {
                    disconnect = true;
                    break;
                }
                Some(Packet::Connect(_)) => return Err(protocol_error("a second CONNECT")),
                Some(Packet::Ack) => {}
                None => break,
            }
        }
        let full = publishes.len() + oversize.len() == PUBLISHES_PER_WRITE_MAX;
        let acknowledging = !publishes.is_empty() || !oversize.is_empty();
        if acknowledging {
            let mut acks = Vec::with_capacity(publishes.len() + oversize.len());
            // Whether to store a publish; its acknowledgement either way.
            let mut admit = |p: &Publish| {
                let (store, reason) = match (grant.may_publish(&p.topic), p.qos == 2 && !awaiting_release.insert(p.pkid)) {
                    (false, _) => {
                        cx.metrics.denied.fetch_add(1, Ordering::Relaxed);
                        log::info!("mqtt client {client_id} may not publish to {}; not stored", p.topic);
                        (false, codec::NOT_AUTHORIZED)
                    }
                    (true, true) => (false, 0), // stored already, awaiting PUBREL: acknowledged again
                    (true, false) => (true, 0),
                };
                acks.push((p.qos, p.pkid, reason));
                store
            };
            let take: Vec<Publish> = publishes.into_iter().filter(|p| admit(p)).collect();
            let take_oversize: Vec<(Publish, String)> = oversize.into_iter().filter(|(p, _)| admit(p)).collect();
            store(&take, &take_oversize, &client_id, cx).await?;
            // Subscribers get, and the broker retains, only what was stored (as rows or as
            // dead letters): never a refused publish.
            cx.broker.publish(&take);
            for (qos, pkid, reason) in acks {
                match qos {
                    0 => {}
                    1 => codec::ack_with_reason(&mut out, level, codec::PUBACK, pkid, reason),
                    _ => codec::ack_with_reason(&mut out, level, codec::PUBREC, pkid, reason),
                }
            }
        }
        if !out.is_empty() {
            socket.write_all(&out).await.map_err(|e| protocol_error(e.to_string()))?;
        }
        if acknowledging {
            cx.metrics.ack_latency.record(read_at.elapsed());
        }
        if disconnect {
            return Ok(());
        }
        if full {
            continue;
        }
        // Wait for the client's next bytes, sending its subscriptions' deliveries meanwhile.
        let deadline = tokio::time::Instant::now() + keep_alive;
        loop {
            tokio::select! {
                read = socket.read_buf(&mut buf) => {
                    if read.map_err(|e| protocol_error(e.to_string()))? == 0 {
                        return Ok(());
                    }
                    break;
                }
                delivery = deliveries.recv() => {
                    let Some(delivery) = delivery else {
                        return Err(protocol_error(format!("subscriber {client_id} fell {SUBSCRIBER_QUEUE_MAX} messages or its bytes limit behind")));
                    };
                    let mut out = BytesMut::new();
                    let mut next = Some(delivery);
                    while let Some(d) = next.take() {
                        outbound_pkid = outbound_pkid.checked_add(1).unwrap_or(1);
                        codec::publish(&mut out, level, &d.topic, &d.payload, d.qos, d.retain, outbound_pkid);
                        if out.len() < 64 * 1024 {
                            next = deliveries.try_recv().ok();
                        }
                    }
                    socket.write_all(&out).await.map_err(|e| protocol_error(e.to_string()))?;
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(protocol_error(format!("client {client_id} silent for {} ms (keep-alive)", keep_alive.as_millis())));
                }
            }
        }
    }
}

/// The SUBACK codes for `filters`: refused where the client's access list does not allow
/// the filter (0x87 in MQTT 5), otherwise what the broker grants.
fn subscribe(cx: &MqttContext, grant: &Grant, subscriber: SubscriberId, filters: &[(String, u8)], v5: bool, client_id: &str) -> Vec<u8> {
    let allowed: Vec<(String, u8)> = filters.iter().filter(|(f, _)| grant.may_subscribe(f)).cloned().collect();
    let mut granted = cx.broker.subscribe(subscriber, &allowed).into_iter();
    filters
        .iter()
        .map(|(f, _)| match grant.may_subscribe(f) {
            true => granted.next().unwrap_or(SUBSCRIBE_REFUSED),
            false => {
                cx.metrics.denied.fetch_add(1, Ordering::Relaxed);
                log::info!("mqtt client {client_id} may not subscribe to {f}");
                if v5 { codec::NOT_AUTHORIZED } else { SUBSCRIBE_REFUSED }
            }
        })
        .collect()
}

/// Forgets a connection's subscriptions when it ends, however it ends.
struct Subscription<'a> {
    broker: &'a Broker,
    id: SubscriberId,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.broker.unregister(self.id);
    }
}

impl Publish {
    /// The message the rules see.
    pub(crate) fn message<'a>(&'a self, client_id: &'a str, arrival_ns: i64) -> Message<'a> {
        Message { topic: &self.topic, payload: &self.payload, client_id, arrival_ns, stream: None }
    }
}

/// Routes and durably writes one read's messages, and the dead letters of the publishes too
/// large to store; returns once they are durable.
async fn store(publishes: &[Publish], oversize: &[(Publish, String)], client_id: &str, cx: &MqttContext) -> Result<()> {
    if publishes.is_empty() && oversize.is_empty() {
        return Ok(());
    }
    let arrival_ns = now_ns();
    let messages: Vec<Message<'_>> = publishes.iter().map(|p| p.message(client_id, arrival_ns)).collect();
    let refused: Vec<(Message<'_>, &str)> =
        oversize.iter().map(|(p, reason)| (p.message(client_id, arrival_ns), reason.as_str())).collect();
    cx.metrics.messages.fetch_add((messages.len() + refused.len()) as u64, Ordering::Relaxed);
    let stored = cx.ingestor.store(SOURCE, &messages, &refused).await?;
    cx.metrics.rows_written.fetch_add(stored.rows_written, Ordering::Relaxed);
    cx.metrics.messages_rejected.fetch_add(stored.messages_rejected, Ordering::Relaxed);
    Ok(())
}
