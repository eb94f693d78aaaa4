//! The rollup benchmarks:
//!
//! 1. Ingest throughput with rollups off and on: the seed fleet (`--sensors`, 5 per station)
//!    writes `--seconds` of one-second readings from `--writers` threads, each writing its
//!    stations' readings one second per batch, as fast as storage takes them; the writers keep
//!    step in event time (each second starts when all finished the last), as devices on one
//!    clock do. Off and on alternate `--runs` times (every other run starting with on); the
//!    medians and their ratio are printed.
//! 2. Finalization delay: in the runs with rollups on, the time from the write that moves the
//!    watermark past a window's end returning to that window's rows reaching the watcher of
//!    `Storage::final_windows` (where `[[emit]]` publishes them): p50, p99 and max.
//! 3. A per-sensor 1-minute average over one day (`--query-sensors` sensors, 86,400 one-second
//!    readings each) read from `weather_1m` and computed from `weather` with `date_bin`,
//!    through the SQL engine: medians of `--runs` and their ratio, after checking that both
//!    return the same windows and averages.
//!
//! `cargo run --release -p isobar-benches --bin rollup-bench -- [--sensors 1000] [--seconds 3600]
//! [--writers 4] [--runs 3] [--query-sensors 100] [--dir /dev/shm]`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use isobar_ingest::simulator::SeedFleet;
use isobar_query::{Output, QueryConfig, QueryEngine};
use isobar_storage::{Storage, StorageConfig, WriteBatch};

const SECOND_NS: i64 = 1_000_000_000;
const INTERVAL_NS: i64 = 60 * SECOND_NS;
/// 2023-11-14 00:00 UTC.
const START_NS: i64 = 1_699_920_000 * SECOND_NS;
const SENSORS_PER_STATION: usize = 5;

struct Args {
    sensors: usize,
    seconds: i64,
    writers: usize,
    runs: usize,
    query_sensors: usize,
    /// Where the data directories go (`/dev/shm` takes the disk's fsync times out of the
    /// figures and leaves the CPU work rollups add).
    dir: Option<std::path::PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args { sensors: 1000, seconds: 3600, writers: 4, runs: 3, query_sensors: 100, dir: None };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair.get(1).with_context(|| format!("{} needs a value", pair[0]))?;
        match pair[0].as_str() {
            "--sensors" => a.sensors = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--writers" => a.writers = value.parse()?,
            "--runs" => a.runs = value.parse()?,
            "--query-sensors" => a.query_sensors = value.parse()?,
            "--dir" => a.dir = Some(value.into()),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

fn config(dir: &std::path::Path, rollups: bool) -> StorageConfig {
    let mut c = StorageConfig::new(dir);
    c.rollup_interval_ms = if rollups { 60_000 } else { 0 };
    c
}

/// Writes the fleet from `writers` threads; returns rows per second, and with rollups on the
/// delays from each window's watermark passing to its rows reaching the watcher.
fn ingest(a: &Args, rollups: bool) -> Result<(f64, Vec<f64>)> {
    let (sensors, seconds, writers) = (a.sensors, a.seconds, a.writers);
    let dir = tempdir(a)?;
    let storage = Storage::open(config(dir.path(), rollups))?;
    let lateness_ns = i64::try_from(config(dir.path(), rollups).rollup_lateness_ms)? * 1_000_000;
    let stations = sensors.div_ceil(SENSORS_PER_STATION);
    // When the watermark first passed each window's end, and when its rows were final.
    let passed: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let watcher = rollups.then(|| {
        let windows = storage.final_windows(1 << 20);
        std::thread::spawn(move || {
            let (mut first, mut late): (BTreeMap<i64, Instant>, u64) = (BTreeMap::new(), 0);
            for w in windows {
                first.entry(w.start_ns).or_insert_with(Instant::now);
                late += w.fields.iter().any(|(n, v)| n == "late_updates" && *v != isobar_storage::FieldValue::I64(0)) as u64;
            }
            eprintln!("windows written again after late rows: {late}");
            first
        })
    });
    let started = Instant::now();
    let mut threads = Vec::new();
    // Writers keep step in event time, as devices reporting on the same clock do.
    let step = Arc::new(std::sync::Barrier::new(writers));
    for w in 0..writers {
        let (storage, passed, step) = (storage.clone(), Arc::clone(&passed), Arc::clone(&step));
        let range = stations * w / writers..stations * (w + 1) / writers;
        threads.push(std::thread::spawn(move || -> Result<u64> {
            let mut fleet = SeedFleet::stations(range, SENSORS_PER_STATION, START_NS, 7 + w as u64);
            let mut rows = 0;
            for second in 0..seconds {
                step.wait();
                let mut batch = WriteBatch::new();
                fleet.tick("weather", &mut batch);
                rows += storage.write(&batch)?.rows_written;
                // This write's time minus the lateness is the watermark: the window ending at
                // or before it is due.
                let watermark = START_NS + second * SECOND_NS - lateness_ns;
                let window = watermark.div_euclid(INTERVAL_NS) * INTERVAL_NS - INTERVAL_NS;
                passed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.entry(window).or_insert_with(Instant::now);
            }
            Ok(rows)
        }));
    }
    let mut rows = 0;
    for t in threads {
        rows += t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    storage.settle_rollups()?;
    drop(storage);
    let mut delays = Vec::new();
    if let Some(watcher) = watcher {
        let finals = watcher.join().map_err(|_| anyhow::anyhow!("watcher panicked"))?;
        let passed = passed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (window, at) in passed.iter() {
            if let Some(done) = finals.get(window) {
                delays.push(done.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
    }
    Ok((rate, delays))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Rows and the sum of the last column (the averages), to check two answers agree.
fn summary(batches: &[RecordBatch]) -> (usize, f64) {
    let mut sum = 0.0;
    for b in batches {
        let avg = b.column(b.num_columns() - 1).as_primitive::<Float64Type>();
        sum += (0..avg.len()).filter(|i| avg.is_valid(*i)).map(|i| avg.value(i)).sum::<f64>();
    }
    (batches.iter().map(RecordBatch::num_rows).sum(), sum)
}

fn tempdir(a: &Args) -> Result<tempfile::TempDir> {
    Ok(match &a.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    })
}

fn day_query(a: &Args) -> Result<()> {
    let (sensors, runs) = (a.query_sensors, a.runs.max(3));
    let dir = tempdir(a)?;
    let storage = Storage::open(config(dir.path(), true))?;
    let mut fleet = SeedFleet::stations(0..sensors.div_ceil(SENSORS_PER_STATION), SENSORS_PER_STATION, START_NS, 11);
    for _ in 0..86_400 + 120 {
        let mut batch = WriteBatch::new();
        fleet.tick("weather", &mut batch);
        storage.write(&batch)?;
    }
    storage.settle_rollups()?;
    storage.persist()?;
    storage.compact()?;
    let (from, to) = ("'2023-11-14T00:00:00Z'", "'2023-11-15T00:00:00Z'");
    let raw = format!(
        "SELECT sensor_id, date_bin(INTERVAL '60 seconds', time) AS minute, avg(sensor_value) FROM weather \
         WHERE time >= {from} AND time < {to} GROUP BY 1, 2"
    );
    let rollup = format!("SELECT sensor_id, time, sensor_value_avg FROM weather_1m WHERE time >= {from} AND time < {to}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let engine = QueryEngine::new(storage.clone(), QueryConfig::default())?;
    let mut results = Vec::new();
    for sql in [&raw, &rollup] {
        let mut times = Vec::new();
        let mut answer = (0, 0.0);
        for _ in 0..runs {
            let t = Instant::now();
            let outputs = runtime.block_on(engine.execute(sql))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(Output::Rows(batches)) = outputs.last() {
                answer = summary(batches);
            }
        }
        results.push((median(times), answer));
    }
    let ((raw_ms, raw_answer), (rollup_ms, rollup_answer)) = (results[0], results[1]);
    if raw_answer.0 != rollup_answer.0 || (raw_answer.1 - rollup_answer.1).abs() > 1e-6 * raw_answer.1.abs().max(1.0) {
        bail!("the raw query returned {raw_answer:?} (windows, sum of averages), the rollup {rollup_answer:?}");
    }
    println!(
        "one day, per-sensor 1-minute average ({} sensors, {} rows, {} windows): raw_ms={raw_ms:.1} rollup_ms={rollup_ms:.1} ratio={:.3}",
        fleet.series(),
        fleet.series() * 86_400,
        rollup_answer.0,
        rollup_ms / raw_ms
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = args()?;
    let (mut off, mut on, mut delays) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..a.runs {
        // Every other run starts with rollups on, so neither side always runs second.
        for rollups in [run % 2 == 1, run % 2 == 0] {
            let (rate, d) = ingest(&a, rollups)?;
            match rollups {
                true => on.push(rate),
                false => off.push(rate),
            }
            delays.extend(d);
        }
        eprintln!("run {run}: rollups off {:.0} rows/s, on {:.0} rows/s", off[run], on[run]);
    }
    let (off, on) = (median(off), median(on));
    println!(
        "ingest ({} sensors, {} s of readings, {} writers): rollups off {off:.0} rows/s, on {on:.0} rows/s, ratio={:.3}",
        a.sensors,
        a.seconds,
        a.writers,
        on / off
    );
    delays.sort_by(f64::total_cmp);
    if delays.is_empty() {
        bail!("no window was finalized");
    }
    println!(
        "watermark passing to final window handed to the emitter ({} windows): p50={:.1} ms p99={:.1} ms max={:.1} ms",
        delays.len(),
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        quantile(&delays, 1.0)
    );
    day_query(&a)
}
