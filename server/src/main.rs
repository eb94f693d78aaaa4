//! The `isobar` binary.
//!
//! `isobar demo [--data-dir DIR] [--sensors N] [--seconds S]` runs the storage engine on its
//! embedded defaults (data under `./isobar-data`): it writes S seconds of readings from a
//! simulated fleet of N sensors, persists them into chunks, and reads them back. The SQL and
//! MQTT servers come with their own work; `isobar serve` will then run them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use isobar_ingest::simulator::SeedFleet;
use isobar_query::{ScanRequest, SeriesFilter};
use isobar_storage::arrow::array::{AsArray, RecordBatch};
use isobar_storage::arrow::datatypes::{Float64Type, TimestampNanosecondType};
use isobar_storage::{Storage, StorageConfig, WriteBatch};

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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") | None => demo(&parse_demo_args(&args[args.len().min(1)..])?),
        Some(other) => bail!("unknown command {other}; try `isobar demo`"),
    }
}
