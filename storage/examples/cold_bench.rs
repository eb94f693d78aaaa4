//! The cold tier benchmark, at the storage engine's scan API (what SQL queries read through):
//! `--sensors` sensors with one reading every `--interval-s` seconds for `--days` days, in day
//! partitions; the first day moves to the cold store, the last stays local. For a one-sensor
//! one-day read and a one-day all-sensor aggregate (count, sum, min, max per sensor) it prints
//! the median latency of `--runs` runs hot (the local day), cold with an empty cache (the engine
//! reopened on an emptied cache before each run) and cold with a warm cache, with the GETs and
//! bytes fetched per query; and the bytes per point of the local and the cold day, and what a
//! cold chunk keeps on local disk.
//!
//! `cargo run --release -p isobar-storage --example cold_bench -- [--sensors 1000]
//! [--interval-s 10] [--days 2] [--runs 5] [--dir /tmp/cold-bench] [--s3-endpoint URL --bucket B]`
//!
//! Without `--s3-endpoint` the cold store is a local directory, so the latencies leave out the
//! network; the GETs and bytes are what S3 would serve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use isobar_storage::{
    ColdStoreConfig, FieldValue, Point, S3Config, ScanRequest, SeriesFilter, Storage, StorageConfig, TagPredicate, WriteBatch,
};

const SECOND_NS: i64 = 1_000_000_000;
const DAY_NS: i64 = 86_400 * SECOND_NS;
/// 2024-03-01 00:00 UTC.
const START_NS: i64 = 1_709_251_200 * SECOND_NS;

struct Args {
    sensors: usize,
    interval_s: i64,
    days: i64,
    runs: usize,
    dir: PathBuf,
    s3: Option<(String, String)>,
}

fn args() -> Args {
    let mut a = Args { sensors: 1000, interval_s: 10, days: 2, runs: 5, dir: std::env::temp_dir().join("isobar-cold-bench"), s3: None };
    let mut it = std::env::args().skip(1);
    let mut endpoint = None;
    let mut bucket = None;
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<i64>().unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--sensors" => a.sensors = number() as usize,
            "--interval-s" => a.interval_s = number(),
            "--days" => a.days = number().max(2),
            "--runs" => a.runs = number().max(1) as usize,
            "--dir" => a.dir = PathBuf::from(&value),
            "--s3-endpoint" => endpoint = Some(value),
            "--bucket" => bucket = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a.s3 = endpoint.map(|e| (e, bucket.expect("--s3-endpoint needs --bucket")));
    a
}

fn config(args: &Args) -> StorageConfig {
    let mut c = StorageConfig::new(&args.dir);
    c.background_persist = false;
    c.rollup_interval_ms = 0;
    c.future_tolerance_ms = 0;
    c.cold_after_ms = 1;
    c.cold_store = match &args.s3 {
        None => ColdStoreConfig::Local(Some(args.dir.join("bucket"))),
        Some((endpoint, bucket)) => ColdStoreConfig::S3(S3Config {
            bucket: bucket.clone(),
            prefix: "cold-bench".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.clone()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
        }),
    };
    c
}

fn load(storage: &Storage, args: &Args) {
    let readings = DAY_NS / (args.interval_s * SECOND_NS);
    for day in 0..args.days {
        for step in 0..readings {
            let mut batch = WriteBatch::new();
            let time = START_NS + day * DAY_NS + step * args.interval_s * SECOND_NS;
            for s in 0..args.sensors {
                let v = 20.0 + (s % 17) as f64 + ((step % 360) as f64 / 36.0).sin() * 5.0;
                batch.push(
                    "w",
                    Point::new(time).tag("sensor_id", &format!("s{s:05}")).field("v", FieldValue::F64((v * 100.0).round() / 100.0)),
                );
            }
            storage.write(&batch).expect("write");
        }
        storage.persist().expect("persist");
    }
    storage.compact().expect("compact");
}

fn one_sensor(day: i64) -> ScanRequest {
    ScanRequest {
        time_min_ns: START_NS + day * DAY_NS,
        time_max_ns: START_NS + (day + 1) * DAY_NS - 1,
        series: SeriesFilter::Tags(vec![TagPredicate::equals("sensor_id", "s00042")]),
        ..ScanRequest::all("w")
    }
}

fn all_sensors(day: i64) -> ScanRequest {
    ScanRequest { time_min_ns: START_NS + day * DAY_NS, time_max_ns: START_NS + (day + 1) * DAY_NS - 1, ..ScanRequest::all("w") }
}

/// Count, sum, min and max of `v`, by sensor.
type Aggregates = BTreeMap<String, (u64, f64, f64, f64)>;

/// Reads `req` and aggregates per sensor: rows, and count, sum, min and max of `v`.
fn run(storage: &Storage, req: &ScanRequest) -> (usize, Aggregates) {
    let mut rows = 0;
    let mut out = Aggregates::new();
    for batch in storage.scan(req).expect("scan") {
        let batch = batch.expect("batch");
        rows += batch.num_rows();
        let sensor = batch.column_by_name("sensor_id").expect("sensor_id").as_string::<i32>().clone();
        let v = batch.column_by_name("v").expect("v").as_primitive::<Float64Type>().clone();
        for i in 0..batch.num_rows() {
            let e = out.entry(sensor.value(i).to_owned()).or_insert((0, 0.0, f64::MAX, f64::MIN));
            let x = v.value(i);
            *e = (e.0 + 1, e.1 + x, e.2.min(x), e.3.max(x));
        }
    }
    (rows, out)
}

/// Median latency of `runs` runs, and GETs and bytes fetched per run; `fresh` reopens the
/// engine on an emptied cache before each run.
fn measure(args: &Args, storage: &mut Option<Storage>, req: &ScanRequest, fresh: bool) -> (Duration, f64, f64, usize) {
    let mut times = Vec::new();
    let (mut gets, mut bytes, mut rows) = (0u64, 0u64, 0);
    for _ in 0..args.runs {
        if fresh {
            drop(storage.take());
            let _ = std::fs::remove_dir_all(args.dir.join("cold-cache"));
            *storage = Some(Storage::open(config(args)).expect("reopen"));
        }
        let s = storage.as_ref().expect("open");
        let m = s.cold_metrics().expect("a cold store");
        let (g0, b0) = (m.gets.load(Ordering::Relaxed), m.bytes_fetched.load(Ordering::Relaxed));
        let started = Instant::now();
        rows = run(s, req).0;
        times.push(started.elapsed());
        gets += m.gets.load(Ordering::Relaxed) - g0;
        bytes += m.bytes_fetched.load(Ordering::Relaxed) - b0;
    }
    times.sort();
    let n = args.runs as f64;
    (times[times.len() / 2], gets as f64 / n, bytes as f64 / n, rows)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
        .sum()
}

fn main() {
    let args = args();
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut storage = Some(Storage::open(config(&args)).expect("open"));
    let started = Instant::now();
    load(storage.as_ref().expect("open"), &args);
    let points = args.sensors as i64 * args.days * (DAY_NS / (args.interval_s * SECOND_NS));
    println!(
        "loaded {points} points ({} sensors, every {} s, {} days) in {:.1?}",
        args.sensors,
        args.interval_s,
        args.days,
        started.elapsed()
    );
    let hot_day = args.days - 1;
    // Hot answers first, to compare with the cold ones.
    let s = storage.as_ref().expect("open");
    let expected = (run(s, &one_sensor(0)), run(s, &all_sensors(0)));
    let moved = s.tier().expect("tier");
    println!("moved {moved} chunks to {}", if args.s3.is_some() { "S3" } else { "a local directory" });
    let chunks = s.chunks();
    for location in ["local", "cold"] {
        let (bytes, rows): (u64, u64) = chunks.iter().filter(|c| c.location == location).fold((0, 0), |a, c| (a.0 + c.bytes, a.1 + c.rows));
        println!("{location}: {rows} points in {bytes} bytes, {:.3} bytes per point", bytes as f64 / rows.max(1) as f64);
    }
    let kept = dir_bytes(&args.dir.join("cold-footers"));
    let cold_rows: u64 = chunks.iter().filter(|c| c.location == "cold").map(|c| c.rows).sum();
    println!("a cold chunk keeps {kept} bytes locally (footers): {:.4} bytes per cold point", kept as f64 / cold_rows.max(1) as f64);

    println!("\n| query | where | median latency | GETs per query | bytes fetched per query |\n|---|---|---|---|---|");
    for (name, day_req, cold_req) in [
        ("one sensor, one day", one_sensor(hot_day), one_sensor(0)),
        ("all sensors, one day, count/sum/min/max", all_sensors(hot_day), all_sensors(0)),
    ] {
        let rows = |r: &(Duration, f64, f64, usize)| format!("{:.2?} | {:.1} | {:.0}", r.0, r.1, r.2);
        let hot = measure(&args, &mut storage, &day_req, false);
        println!("| {name} | hot | {} |", rows(&hot));
        let empty = measure(&args, &mut storage, &cold_req, true);
        println!("| {name} | cold, empty cache | {} |", rows(&empty));
        let warm = measure(&args, &mut storage, &cold_req, false);
        println!("| {name} | cold, warm cache | {} |", rows(&warm));
    }
    let s = storage.as_ref().expect("open");
    assert_eq!((run(s, &one_sensor(0)), run(s, &all_sensors(0))), expected, "cold answers equal the hot ones");
    println!("\ncold answers checked against the same day read hot");
}
