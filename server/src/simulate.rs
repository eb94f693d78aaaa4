//! `isobar simulate`: publishes a simulated weather fleet over MQTT and prints the rate it
//! achieved and the publish-to-PUBACK times.
//!
//! `isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ
//! [--duration S] [--seed K] [--qos 0|1] [--connections C] [--window W] [--time-scale X]
//! [--timeline]`
//!
//! `--timeline` adds the PUBACK times of each second's messages, to see when slow
//! acknowledgements happen.
//! `--time-scale X` publishes X seconds of readings per second, replaying the last
//! `--duration` seconds up to now: a quick way to fill hours of history or close rollup windows.

use anyhow::{Context, Result};
use isobar_ingest::publisher::{SimulateOptions, simulate};

/// `isobar simulate`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The broker or isobar listener to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "mqtt://HOST:PORT")]
    broker: String,
    /// Weather stations.
    #[arg(long, default_value_t = 10)]
    stations: usize,
    /// Sensors per station.
    #[arg(long, default_value_t = 5)]
    sensors: usize,
    /// Readings per sensor per second.
    #[arg(long = "rate", default_value_t = 1.0, value_name = "HZ")]
    rate_hz: f64,
    /// Seconds to run; without it, until stopped.
    #[arg(long = "duration", value_name = "SECONDS")]
    duration_s: Option<f64>,
    /// Seed of the simulated readings.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// MQTT QoS of the publishes: 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// TCP connections the stations are split across.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Unacknowledged QoS 1 publishes per connection, at most.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Seconds of readings per second of wall clock; above 1 replays the last --duration
    /// seconds up to now.
    #[arg(long = "time-scale", default_value_t = 1.0, value_name = "X")]
    time_scale: f64,
    /// Also print the PUBACK times of each second's messages (count, p50, p99, max).
    #[arg(long)]
    pub(crate) timeline: bool,
}

impl Args {
    /// The options, or what is wrong with the flags.
    pub(crate) fn options(&self) -> Result<SimulateOptions, String> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.rate_hz) {
            return Err("--rate must be above 0".into());
        }
        if !positive(self.time_scale) {
            return Err("--time-scale must be above 0".into());
        }
        if self.time_scale > 1.0 && self.duration_s.is_none() {
            return Err("--time-scale above 1 replays the past and needs --duration".into());
        }
        if self.stations == 0 || self.sensors == 0 || self.connections == 0 {
            return Err("--stations, --sensors and --connections must be above 0".into());
        }
        Ok(SimulateOptions {
            broker: self.broker.strip_prefix("mqtt://").unwrap_or(&self.broker).trim_end_matches('/').to_owned(),
            stations: self.stations,
            sensors: self.sensors,
            rate_hz: self.rate_hz,
            duration_s: self.duration_s,
            seed: self.seed,
            qos: self.qos,
            connections: self.connections,
            window: self.window,
            time_scale: self.time_scale,
        })
    }
}

/// Runs `isobar simulate`.
pub(crate) fn command(options: SimulateOptions, timeline: bool) -> Result<()> {
    println!(
        "isobar simulate: {} stations × {} sensors at {} Hz, QoS {}, to {} over {} connections",
        options.stations, options.sensors, options.rate_hz, options.qos, options.broker, options.connections
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    let report = runtime.block_on(simulate(&options)).with_context(|| format!("publish to {}", options.broker))?;
    if timeline {
        print!("{}", report.timeline());
    }
    println!("{report}");
    Ok(())
}
