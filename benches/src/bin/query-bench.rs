//! Query benchmark: isobar against DuckDB on the same rows.
//!
//! `cargo run --release -p isobar-benches --bin query-bench -- [--sensors N] [--seconds S] [--runs R]`
//!
//! Writes N sensors × S seconds of 1 Hz seed-shaped readings (default 1,000 × 10,000: 10 M
//! rows) through storage, persists them, exports the same rows to Parquet, and times three
//! queries in isobar (in-process, SQL through `QueryEngine`) and in DuckDB (the Python package
//! from `scripts/setup`'s venv, or `ISOBAR_PYTHON`) reading that Parquet file. Prints each
//! query's median time in both and the ratio isobar/DuckDB.

use std::fs::File;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use isobar_ingest::simulator::SeedFleet;
use isobar_query::{Output, QueryConfig, QueryEngine};
use isobar_storage::{ScanRequest, Storage, StorageConfig, WriteBatch};
use parquet::arrow::ArrowWriter;

const START_NS: i64 = 1_700_000_000_000_000_000;

/// Seconds of readings between two persists while loading.
const PERSIST_EVERY_SECONDS: u64 = 1_000;

/// (name, isobar SQL, DuckDB SQL); `{sensor}` is one sensor id. Both engines know
/// `time_bucket`; "last value" is `last(v, time)` in isobar and `arg_max(v, time)` in DuckDB.
const QUERIES: [(&str, &str, &str); 3] = [
    (
        "per-sensor 1-minute avg, one day",
        "SELECT sensor_id, time_bucket(INTERVAL '1 minute', time) AS minute, avg(sensor_value) AS v FROM weather \
         WHERE time >= '2023-11-14T22:13:20Z' AND time < '2023-11-15T22:13:20Z' GROUP BY 1, 2",
        "SELECT sensor_id, time_bucket(INTERVAL '1 minute', time) AS minute, avg(sensor_value) AS v FROM weather \
         WHERE time >= '2023-11-14T22:13:20Z' AND time < '2023-11-15T22:13:20Z' GROUP BY 1, 2",
    ),
    (
        "last value per sensor",
        "SELECT sensor_id, last(sensor_value, time) AS v FROM weather GROUP BY sensor_id",
        "SELECT sensor_id, arg_max(sensor_value, time) AS v FROM weather GROUP BY sensor_id",
    ),
    (
        "min/max over one hour of one sensor",
        "SELECT min(sensor_value), max(sensor_value) FROM weather WHERE sensor_id = '{sensor}' \
         AND time >= '2023-11-14T23:00:00Z' AND time < '2023-11-15T00:00:00Z'",
        "SELECT min(sensor_value), max(sensor_value) FROM weather WHERE sensor_id = '{sensor}' \
         AND time >= '2023-11-14T23:00:00Z' AND time < '2023-11-15T00:00:00Z'",
    ),
];

const DUCKDB_SCRIPT: &str = r#"
import sys, time, statistics, duckdb
path, runs = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW weather AS SELECT * FROM read_parquet('{path}')")
for sql in sys.stdin.read().split("\n;\n"):
    if not sql.strip():
        continue
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rows = con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    checksum = sum(float(r[-1]) for r in rows if r[-1] is not None)
    print(f"{statistics.median(times) * 1000:.3f} {len(rows)} {checksum!r}")
"#;

struct Args {
    sensors: usize,
    seconds: u64,
    runs: usize,
}

fn args() -> Result<Args> {
    let mut a = Args { sensors: 1000, seconds: 10_000, runs: 5 };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [flag, value] = pair else { bail!("{} needs a value", pair[0]) };
        match flag.as_str() {
            "--sensors" => a.sensors = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--runs" => a.runs = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

/// The sum of the last column's non-null values, as f64: a fingerprint of a result.
fn checksum(batches: &[isobar_storage::arrow::array::RecordBatch]) -> Result<f64> {
    use isobar_storage::arrow::array::{Array, AsArray};
    use isobar_storage::arrow::datatypes::{DataType, Float64Type};
    let mut sum = 0.0;
    for batch in batches {
        let Some(last) = batch.columns().last() else { continue };
        let values = isobar_storage::arrow::compute::cast(last, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        sum += (0..values.len()).filter(|i| !values.is_null(*i)).map(|i| values.value(i)).sum::<f64>();
    }
    Ok(sum)
}

fn main() -> Result<()> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::new(dir.path().join("data"));
    config.background_persist = false;
    let storage = Storage::open(config)?;
    let started = Instant::now();
    let mut fleet = SeedFleet::new(args.sensors, START_NS, 42);
    for second in 1..=args.seconds {
        let mut batch = WriteBatch::new();
        fleet.tick("weather", &mut batch);
        storage.write(&batch)?;
        // Background persists are off (the layout should not depend on timing), so the
        // bench persists as the server would, before the write buffer fills.
        if second % PERSIST_EVERY_SECONDS == 0 {
            storage.persist()?;
        }
    }
    storage.persist()?;
    // And compacts, as the server does in the background, into the layout queries meet.
    storage.compact()?;
    let rows = args.sensors as u64 * args.seconds;
    println!("wrote, persisted and compacted {rows} rows in {:.1} s", started.elapsed().as_secs_f64());

    let parquet = dir.path().join("weather.parquet");
    let scan = storage.scan(&ScanRequest::all("weather"))?;
    let mut writer = ArrowWriter::try_new(File::create(&parquet)?, scan.schema(), None)?;
    for batch in scan {
        writer.write(&batch?)?;
    }
    writer.close()?;

    let sensor = storage
        .series("weather")?
        .into_iter()
        .next()
        .and_then(|(_, tags)| tags.into_iter().find(|(k, _)| k == "sensor_id"))
        .map(|(_, v)| v)
        .context("a sensor")?;
    let queries: Vec<(&str, String, String)> =
        QUERIES.iter().map(|(name, ours, duck)| (*name, ours.replace("{sensor}", &sensor), duck.replace("{sensor}", &sensor))).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let engine = QueryEngine::new(storage.clone(), QueryConfig::default())?;
    let mut isobar_ms = Vec::new();
    for (_, sql, _) in &queries {
        let mut times = Vec::new();
        let mut result = (0, 0.0);
        for _ in 0..args.runs {
            let t = Instant::now();
            let outputs = runtime.block_on(engine.execute(sql))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(Output::Rows(batches)) = outputs.last() {
                result = (batches.iter().map(|b| b.num_rows()).sum::<usize>(), checksum(batches)?);
            }
        }
        times.sort_by(f64::total_cmp);
        isobar_ms.push((times[times.len() / 2], result));
    }

    let python = std::env::var("ISOBAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/isobar/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let mut child = Command::new(&python)
        .args(["-c", DUCKDB_SCRIPT])
        .arg(&parquet)
        .arg(args.runs.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {python} with duckdb (scripts/setup installs it)"))?;
    let sql_in: String = queries.iter().map(|(_, _, sql)| format!("{sql}\n;\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, sql_in.as_bytes())?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("duckdb failed");
    }
    let duck: Vec<(f64, (usize, f64))> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let parsed = || -> Result<(f64, (usize, f64))> {
                let mut parts = l.split(' ');
                let ms = parts.next().context("time")?.parse()?;
                let rows = parts.next().context("rows")?.parse()?;
                Ok((ms, (rows, parts.next().context("checksum")?.parse()?)))
            };
            parsed().with_context(|| format!("DuckDB printed {l:?}"))
        })
        .collect::<Result<_>>()?;

    println!("rows={rows} sensors={} runs={} (median ms)", args.sensors, args.runs);
    for (((name, _, _), (ms, (n, sum))), (duck_ms, (duck_n, duck_sum))) in queries.iter().zip(&isobar_ms).zip(&duck) {
        // Both engines must agree on the answer before their times are compared.
        if n != duck_n || (sum - duck_sum).abs() > 1e-9 * sum.abs().max(1.0) {
            bail!("{name}: isobar returned {n} rows summing to {sum}, DuckDB {duck_n} summing to {duck_sum}");
        }
        println!("{name}: isobar_ms={ms:.1} duckdb_ms={duck_ms:.1} ratio={:.2} rows={n}", ms / duck_ms);
    }
    Ok(())
}
