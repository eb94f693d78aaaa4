//! The `isobar` binary.
//!
//! - `isobar serve [--config FILE]` runs the server: storage, the Postgres wire protocol
//!   listener (127.0.0.1:5433) and HTTP (`/health`, `/metrics` on 127.0.0.1:8086), all on
//!   embedded defaults unless the TOML file says otherwise (`docs/configuration.md`).
//! - `isobar demo [--data-dir DIR] [--sensors N] [--seconds S]` writes S seconds of readings
//!   from a simulated fleet of N sensors straight into storage, persists them into chunks, and
//!   reads them back.
//! - `isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ ...` publishes
//!   a simulated fleet over MQTT (`simulate.rs`).

mod auth;
mod config;
mod copy;
mod error;
mod http;
mod logging;
mod metrics;
mod pg;
mod pg_direct;
mod pg_functions;
mod pg_params;
mod serve;
mod simulate;
mod tls;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use isobar_ingest::simulator::SeedFleet;
use isobar_storage::arrow::array::{AsArray, RecordBatch};
use isobar_storage::arrow::datatypes::{Float64Type, TimestampNanosecondType};
use isobar_storage::{ScanRequest, SeriesFilter, Storage, StorageConfig, WriteBatch};

struct DemoArgs {
    data_dir: PathBuf,
    sensors: usize,
    seconds: u64,
}

fn parse_demo_args(args: &[String]) -> Result<DemoArgs> {
    let mut out = DemoArgs { data_dir: PathBuf::from("./isobar-data"), sensors: 100, seconds: 600 };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => out.data_dir = PathBuf::from(value),
            "--sensors" => out.sensors = value.parse().context("--sensors takes a number")?,
            "--seconds" => out.seconds = value.parse().context("--seconds takes a number")?,
            _ => bail!("unknown option {flag}"),
        }
    }
    Ok(out)
}

fn demo(args: &DemoArgs) -> Result<()> {
    let storage = Storage::open(StorageConfig::new(&args.data_dir))
        .with_context(|| format!("open storage in {}", args.data_dir.display()))?;
    let start_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i64
        - args.seconds as i64 * 1_000_000_000;
    let mut fleet = SeedFleet::new(args.sensors, start_ns, 42);
    let started = Instant::now();
    let mut rows = 0;
    for _ in 0..args.seconds {
        let mut batch = WriteBatch::new();
        fleet.tick("weather", &mut batch);
        rows += storage.write(&batch)?.rows_written;
    }
    let write_s = started.elapsed().as_secs_f64();
    println!("wrote {rows} rows durably in {write_s:.2} s ({:.0} rows/s, one fsync group per second of readings)", rows as f64 / write_s);
    let report = storage.persist()?;
    println!("persisted {} rows into {} chunks, {} bytes", report.rows_written, report.chunks_written, report.bytes_written);
    let one = ScanRequest {
        series: SeriesFilter::TagsEqual(vec![("sensor_id".into(), "st-00000-temperature".into())]),
        columns: Some(vec!["time".into(), "sensor_value".into(), "sensor_value_smoothed".into()]),
        ..ScanRequest::all("weather")
    };
    let mut total = 0;
    for batch in storage.scan(&one)? {
        let batch = batch?;
        if total == 0 {
            print!("{}", arrow_table(&batch.slice(0, batch.num_rows().min(5)))?);
        }
        total += batch.num_rows();
    }
    println!("st-00000-temperature: {total} readings; data is in {}", args.data_dir.display());
    storage.close(false)?;
    Ok(())
}

/// `time | sensor_value | sensor_value_smoothed` lines for the demo's output.
fn arrow_table(batch: &RecordBatch) -> Result<String> {
    let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let value = batch.column(1).as_primitive::<Float64Type>();
    let smoothed = batch.column(2).as_primitive::<Float64Type>();
    let mut out = String::from("time_ns             | sensor_value | sensor_value_smoothed\n");
    for i in 0..batch.num_rows() {
        out += &format!("{} | {:>12} | {}\n", time.value(i), value.value(i), smoothed.value(i));
    }
    Ok(out)
}

fn serve_command(args: &[String]) -> Result<()> {
    let config_path = match args {
        [] => None,
        [flag, path] if flag == "--config" => Some(PathBuf::from(path)),
        _ => bail!("usage: isobar serve [--config FILE]"),
    };
    let config = config::Config::load(config_path.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    runtime.block_on(serve::serve(config))?;
    Ok(())
}

fn main() -> Result<()> {
    logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = &args[args.len().min(1)..];
    match args.first().map(String::as_str) {
        Some("serve") | None => serve_command(rest),
        Some("demo") => demo(&parse_demo_args(rest)?),
        Some("simulate") => simulate::command(rest),
        Some(other) => bail!("unknown command {other}; try `isobar serve`, `isobar demo` or `isobar simulate`"),
    }
}
