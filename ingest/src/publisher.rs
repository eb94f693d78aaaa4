//! `isobar simulate`: the seed fleet publishing over MQTT to isobar's listener or any broker.
//!
//! The stations are split across a few connections. Each connection publishes one tick of
//! its sensors' readings per period (paced by the wall clock, so event times are real times),
//! keeps at most `window` QoS 1 publishes unacknowledged, and times each publish to its PUBACK.
//! When a tick cannot go out on time the connection falls behind and the report says so: the
//! achieved rate, not the asked one, is what it prints.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::mqtt_codec::client::{self, BrokerPacket, ConnectOptions};
use crate::simulator::SeedFleet;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// `HOST:PORT` of the broker or isobar's listener.
    pub broker: String,
    pub stations: usize,
    /// Sensors per station.
    pub sensors: usize,
    /// Readings per sensor per second.
    pub rate_hz: f64,
    /// Seconds to run; `None` runs until the process ends.
    pub duration_s: Option<f64>,
    pub seed: u64,
    pub qos: u8,
    /// TCP connections the stations are split across.
    pub connections: usize,
    /// Unacknowledged QoS 1 publishes per connection, at most.
    pub window: usize,
    /// Seconds of readings published per second of wall clock. Above 1, the readings replay
    /// `duration_s` of the past, ending about now (event times never run ahead of the clock).
    pub time_scale: f64,
}

/// What a simulation did.
#[derive(Debug, Clone, Default)]
pub struct SimulateReport {
    pub messages: u64,
    pub elapsed: Duration,
    /// Publish-to-PUBACK times of QoS 1 messages, sorted.
    pub ack_latencies: Vec<Duration>,
    /// Each QoS 1 message's send time (from the start) and PUBACK time, in send order per
    /// connection.
    pub acks_by_send_time: Vec<(Duration, Duration)>,
}

impl SimulateReport {
    /// Messages per second achieved.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the PUBACK times.
    pub fn ack_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.ack_latencies, q)
    }

    /// The PUBACK times of the messages sent in each second: one line per second with the
    /// count, p50, p99 and max, to see when slow acknowledgements happen.
    pub fn timeline(&self) -> String {
        let mut seconds: Vec<Vec<Duration>> = Vec::new();
        for &(sent, latency) in &self.acks_by_send_time {
            let second = sent.as_secs() as usize;
            if seconds.len() <= second {
                seconds.resize_with(second + 1, Vec::new);
            }
            seconds[second].push(latency);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut out = String::from("second  acked    p50 ms   p99 ms   max ms\n");
        for (second, latencies) in seconds.iter_mut().enumerate() {
            latencies.sort_unstable();
            if let (Some(p50), Some(p99), Some(max)) = (quantile(latencies, 0.5), quantile(latencies, 0.99), quantile(latencies, 1.0)) {
                out += &format!("{second:>6} {:>6} {:>9.1} {:>8.1} {:>8.1}\n", latencies.len(), ms(p50), ms(p99), ms(max));
            }
        }
        out
    }
}

/// The `q` quantile (0..=1) of `sorted`, nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((last as f64) * q).round() as usize])
}

impl std::fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "published {} messages in {:.1} s: {:.0} messages/s", self.messages, self.elapsed.as_secs_f64(), self.rate())?;
        if let (Some(p50), Some(p99), Some(max)) = (self.ack_quantile(0.5), self.ack_quantile(0.99), self.ack_quantile(1.0)) {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            write!(f, "; publish to PUBACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(p50), ms(p99), ms(max))?;
        }
        Ok(())
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Connection(e.to_string())
}

/// Runs the simulation and reports what it achieved.
pub async fn simulate(options: &SimulateOptions) -> Result<SimulateReport> {
    let started = Instant::now();
    let replayed_ms = match options.duration_s {
        Some(s) if options.time_scale > 1.0 => (s * 1000.0) as i64,
        _ => 0,
    };
    let start_ms = chrono::Utc::now().timestamp_millis() - replayed_ms;
    let connections = options.connections.clamp(1, options.stations.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let first = options.stations * c / connections;
        let last = options.stations * (c + 1) / connections;
        let fleet = SeedFleet::stations(first..last, options.sensors, start_ms * 1_000_000, options.seed.wrapping_add(c as u64));
        let options = options.clone();
        tasks.spawn(async move { publish_fleet(fleet, c, start_ms, &options).await });
    }
    let mut report = SimulateReport::default();
    while let Some(done) = tasks.join_next().await {
        let (messages, acks) = done.map_err(|e| Error::Connection(format!("publisher task: {e}")))??;
        report.messages += messages;
        report.acks_by_send_time.extend(acks.into_iter().map(|(sent, latency)| (sent.duration_since(started), latency)));
    }
    report.elapsed = started.elapsed();
    report.ack_latencies = report.acks_by_send_time.iter().map(|&(_, latency)| latency).collect();
    report.ack_latencies.sort_unstable();
    Ok(report)
}

/// What a connection's writer and its PUBACK reader share.
#[derive(Debug)]
struct Acks {
    /// Send times of the publishes awaiting their PUBACK, by packet id.
    in_flight: Vec<Option<Instant>>,
    /// Send and publish-to-PUBACK times so far.
    acked: Vec<(Instant, Duration)>,
}

type SharedAcks = Arc<Mutex<Acks>>;

fn lock(acks: &SharedAcks) -> std::sync::MutexGuard<'_, Acks> {
    acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One connection's share of the fleet; returns the messages it published and the send and
/// PUBACK times of those acknowledged.
async fn publish_fleet(
    mut fleet: SeedFleet,
    connection: usize,
    start_ms: i64,
    options: &SimulateOptions,
) -> Result<(u64, Vec<(Instant, Duration)>)> {
    let mut socket = TcpStream::connect(&options.broker).await.map_err(io_error)?;
    socket.set_nodelay(true).map_err(io_error)?;
    let client_id = format!("isobar-simulate-{}-{connection}", options.seed);
    let mut out = BytesMut::new();
    client::connect(&mut out, &ConnectOptions { client_id, clean_session: true, keep_alive_s: 0, ..Default::default() });
    socket.write_all(&out).await.map_err(io_error)?;
    let (mut reader, mut writer) = socket.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    match next_packet(&mut reader, &mut buf).await? {
        Some(BrokerPacket::ConnAck { code: 0, .. }) => {}
        other => return Err(Error::Connection(format!("the broker refused the connection: {other:?}"))),
    }

    let window_size = options.window.clamp(1, usize::from(u16::MAX) - 1);
    let window = Arc::new(Semaphore::new(window_size));
    let period = Duration::from_secs_f64(1.0 / (options.rate_hz * options.time_scale.max(1e-6)).max(1e-6));
    let ticks = options.duration_s.map(|s| (s * options.rate_hz).round() as u64);
    // Room for every acknowledgement up front (within reason): growing the array by doubling
    // would copy it while the PUBACK reader holds the lock, and time that as the server's.
    let expected = ticks.map_or(0, |t| usize::try_from(t).unwrap_or(0).saturating_mul(fleet.series())).min(1 << 26);
    let acked = if options.qos > 0 { Vec::with_capacity(expected) } else { Vec::new() };
    let shared: SharedAcks = Arc::new(Mutex::new(Acks { in_flight: vec![None; usize::from(u16::MAX) + 1], acked }));
    let reading = tokio::spawn(read_acks(reader, buf, Arc::clone(&window), Arc::clone(&shared)));

    let topics: Vec<String> = (0..fleet.series()).map(|i| fleet.topic(i)).collect();
    let clock = tokio::time::Instant::now();
    let (mut messages, mut pkid) = (0u64, 0u16);
    let mut tick = 0u64;
    while ticks.is_none_or(|t| tick < t) {
        tokio::time::sleep_until(clock + period.mul_f64(tick as f64)).await;
        let time_ms = start_ms + (tick as f64 * 1000.0 / options.rate_hz) as i64;
        out.clear();
        for (i, topic) in topics.iter().enumerate() {
            let payload = fleet.next_reading(i).payload(time_ms);
            if options.qos > 0 {
                if window.available_permits() == 0 {
                    // The window is full: what is buffered must go out, or no PUBACK frees it.
                    writer.write_all(&out).await.map_err(io_error)?;
                    out.clear();
                }
                window.acquire().await.map_err(|_| Error::Connection("the connection closed".into()))?.forget();
                pkid = pkid.checked_add(1).unwrap_or(1);
                lock(&shared).in_flight[usize::from(pkid)] = Some(Instant::now());
            }
            client::publish(&mut out, topic, payload.as_bytes(), options.qos.min(1), pkid);
            messages += 1;
            // Keep writes to a reasonable size, and let acknowledgements in between.
            if out.len() > 64 * 1024 {
                writer.write_all(&out).await.map_err(io_error)?;
                out.clear();
            }
        }
        writer.write_all(&out).await.map_err(io_error)?;
        tick += 1;
    }
    // Wait for every outstanding PUBACK before hanging up.
    if options.qos > 0 {
        let all = u32::try_from(window_size).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(60), window.acquire_many(all)).await;
    }
    out.clear();
    client::disconnect(&mut out);
    let _ = writer.write_all(&out).await;
    reading.abort();
    let acked = std::mem::take(&mut lock(&shared).acked);
    Ok((messages, acked))
}

/// Reads PUBACKs, releasing a window slot and timing each; ends when the connection does.
async fn read_acks(mut reader: OwnedReadHalf, mut buf: BytesMut, window: Arc<Semaphore>, shared: SharedAcks) -> Result<()> {
    while let Some(packet) = next_packet(&mut reader, &mut buf).await? {
        if let BrokerPacket::PubAck { pkid } = packet {
            let mut acks = lock(&shared);
            if let Some(sent) = acks.in_flight[usize::from(pkid)].take() {
                acks.acked.push((sent, sent.elapsed()));
                window.add_permits(1);
            }
        }
    }
    // The broker hung up: writers waiting for a window slot must not wait forever.
    window.close();
    Ok(())
}

async fn next_packet(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Option<BrokerPacket>> {
    loop {
        if let Some(packet) = client::read(buf, 1 << 20).map_err(|e| Error::Connection(e.0))? {
            return Ok(Some(packet));
        }
        if reader.read_buf(buf).await.map_err(io_error)? == 0 {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_has_each_seconds_acknowledgements() {
        let ms = Duration::from_millis;
        let acks = [(ms(100), ms(3)), (ms(900), ms(5)), (ms(2_500), ms(40)), (ms(400), ms(4))];
        let report = SimulateReport { acks_by_send_time: acks.to_vec(), ..SimulateReport::default() };
        let lines: Vec<Vec<String>> =
            report.timeline().lines().skip(1).map(|l| l.split_whitespace().map(str::to_owned).collect()).collect();
        assert_eq!(lines, [["0", "3", "4.0", "5.0", "5.0"], ["2", "1", "40.0", "40.0", "40.0"]], "second 1 had none");
    }
}
