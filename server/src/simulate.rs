//! `isobar simulate`: publishes a simulated weather fleet over MQTT and prints the rate it
//! achieved and the publish-to-PUBACK times.
//!
//! `isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ
//! [--duration S] [--seed K] [--qos 0|1] [--connections C] [--window W] [--time-scale X]`
//!
//! `--time-scale X` publishes X seconds of readings per second, replaying the last
//! `--duration` seconds up to now: a quick way to fill hours of history or close rollup windows.

use anyhow::{Context, Result, bail};
use isobar_ingest::publisher::{SimulateOptions, simulate};

const USAGE: &str = "usage: isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ \
                     [--duration S] [--seed K] [--qos 0|1] [--connections C] [--window W] [--time-scale X]";

fn parse(args: &[String]) -> Result<SimulateOptions> {
    let mut o = SimulateOptions {
        broker: "127.0.0.1:1883".into(),
        stations: 10,
        sensors: 5,
        rate_hz: 1.0,
        duration_s: None,
        seed: 42,
        qos: 1,
        connections: 4,
        window: 1000,
        time_scale: 1.0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || value.parse::<u64>().with_context(|| format!("{flag} takes a whole number, not {value}"));
        match flag.as_str() {
            "--broker" => o.broker = value.strip_prefix("mqtt://").unwrap_or(value).trim_end_matches('/').to_owned(),
            "--stations" => o.stations = usize::try_from(number()?)?,
            "--sensors" => o.sensors = usize::try_from(number()?)?,
            "--rate" => o.rate_hz = value.parse().with_context(|| format!("--rate takes readings per second, not {value}"))?,
            "--duration" => o.duration_s = Some(value.parse().with_context(|| format!("--duration takes seconds, not {value}"))?),
            "--seed" => o.seed = number()?,
            "--qos" => o.qos = u8::try_from(number()?)?,
            "--connections" => o.connections = usize::try_from(number()?)?,
            "--window" => o.window = usize::try_from(number()?)?,
            "--time-scale" => o.time_scale = value.parse().with_context(|| format!("--time-scale takes a factor, not {value}"))?,
            _ => bail!("unknown option {flag}\n{USAGE}"),
        }
    }
    if o.qos > 1 {
        bail!("--qos is 0 or 1");
    }
    if !(o.rate_hz > 0.0 && o.rate_hz.is_finite()) {
        bail!("--rate must be above 0");
    }
    if !(o.time_scale > 0.0 && o.time_scale.is_finite()) {
        bail!("--time-scale must be above 0");
    }
    if o.time_scale > 1.0 && o.duration_s.is_none() {
        bail!("--time-scale above 1 replays the past and needs --duration");
    }
    if o.stations == 0 || o.sensors == 0 {
        bail!("--stations and --sensors must be above 0");
    }
    Ok(o)
}

/// Runs `isobar simulate`.
pub(crate) fn command(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    println!(
        "isobar simulate: {} stations × {} sensors at {} Hz, QoS {}, to {} over {} connections",
        options.stations, options.sensors, options.rate_hz, options.qos, options.broker, options.connections
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    let report = runtime.block_on(simulate(&options)).with_context(|| format!("publish to {}", options.broker))?;
    println!("{report}");
    Ok(())
}
