//! Criterion benches of the storage engine: durable writes by batch size and writer count,
//! column encode and decode, chunk persist, and scans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use isobar_ingest::simulator::SeedFleet;
use isobar_storage::codec::{self, CodecOptions};
use isobar_storage::{FieldValue, Point, ScanRequest, SeriesFilter, Storage, StorageConfig, TagPredicate, WriteBatch};

/// Rows of 3 tags, time and 2 f64 fields, as the durable-write target states them.
fn write_batches(batches: usize, rows: usize, writer: usize, start: usize) -> Vec<WriteBatch> {
    (0..batches)
        .map(|b| {
            let mut batch = WriteBatch::new();
            for r in 0..rows {
                let n = start + b * rows + r;
                let series = n % 1000;
                batch.push(
                    "bench",
                    Point::new(n as i64 * 1_000)
                        .tag("region", &format!("r{}", series % 10))
                        .tag("station", &format!("st{}", series % 100))
                        .tag("sensor", &format!("w{writer}-s{series}"))
                        .field("value", FieldValue::F64(n as f64 * 0.25))
                        .field("smoothed", FieldValue::F64(n as f64 * 0.125)),
                );
            }
            batch
        })
        .collect()
}

fn durable_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_write");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (rows, writers) in [(100, 1), (1000, 1), (1000, 2), (1000, 4), (10_000, 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::new(dir.path())).expect("open");
        let batches_per_writer = 20;
        group.throughput(Throughput::Elements((rows * writers * batches_per_writer) as u64));
        let mut round = 0;
        group.bench_function(BenchmarkId::new(format!("{rows}_rows"), format!("{writers}_writers")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let work: Vec<Vec<WriteBatch>> =
                        (0..writers).map(|w| write_batches(batches_per_writer, rows, w, round * rows * batches_per_writer)).collect();
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for batches in &work {
                            let storage = storage.clone();
                            s.spawn(move || batches.iter().for_each(|b| drop(storage.write(b).expect("write"))));
                        }
                    });
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

/// One seed-shaped sensor's time, value and smoothed columns.
fn seed_columns(n: usize) -> (Vec<i64>, Vec<f64>, Vec<f64>) {
    let mut fleet = SeedFleet::new(1, 0, 7);
    let readings: Vec<_> = (0..n).map(|_| fleet.next_reading(0)).collect();
    let times = (0..n as i64).map(|i| 1_700_000_000_000_000_000 + i * 1_000_000_000).collect();
    (times, readings.iter().map(|r| r.sensor_value).collect(), readings.iter().map(|r| r.sensor_value_smoothed).collect())
}

fn codecs(c: &mut Criterion) {
    let n = 128 * 1024;
    let (times, values, smoothed) = seed_columns(n);
    let opts = CodecOptions::default();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(n as u64));
    for (name, column) in [("random_walk_4_decimals", &values), ("moving_average", &smoothed)] {
        group.bench_function(BenchmarkId::new("encode_f64", name), |b| b.iter(|| codec::encode_f64(column, &opts)));
        let encoded = codec::encode_f64(column, &opts);
        group.bench_function(BenchmarkId::new("decode_f64", name), |b| b.iter(|| codec::decode_f64(&encoded, n).expect("decodes")));
    }
    group.bench_function("encode_i64/timestamps_1s", |b| b.iter(|| codec::encode_i64(&times, &opts)));
    let encoded = codec::encode_i64(&times, &opts);
    group.bench_function("decode_i64/timestamps_1s", |b| b.iter(|| codec::decode_i64(&encoded, n).expect("decodes")));
    group.finish();
}

/// 100 seed-shaped series over 1 hour, persisted into chunks.
fn scan_fixture() -> (tempfile::TempDir, Storage, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig::new(dir.path())).expect("open");
    let mut fleet = SeedFleet::new(100, 1_700_000_000_000_000_000, 1);
    let mut rows = 0;
    for _ in 0..360 {
        let mut batch = WriteBatch::new();
        for _ in 0..10 {
            fleet.tick("weather", &mut batch);
        }
        rows += storage.write(&batch).expect("write").rows_written;
    }
    storage.persist().expect("persist");
    (dir, storage, rows)
}

fn chunks_and_scans(c: &mut Criterion) {
    let (_dir, storage, rows) = scan_fixture();
    let storage = Arc::new(storage);
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Elements(rows));
    group.bench_function("all_rows_all_columns", |b| {
        b.iter(|| storage.scan(&ScanRequest::all("weather")).expect("scan").map(|b| b.expect("batch").num_rows()).sum::<usize>())
    });
    group.throughput(Throughput::Elements(rows / 100));
    let one_series = ScanRequest {
        series: SeriesFilter::Tags(vec![TagPredicate::equals("sensor_id", "st-00003-humidity")]),
        columns: Some(vec!["time".into(), "sensor_value".into()]),
        ..ScanRequest::all("weather")
    };
    group.bench_function("one_series_one_column", |b| {
        b.iter(|| storage.scan(&one_series).expect("scan").map(|b| b.expect("batch").num_rows()).sum::<usize>())
    });
    group.finish();
    let mut group = c.benchmark_group("chunk");
    group.sample_size(10);
    group.throughput(Throughput::Elements(rows));
    group.bench_function("persist_360k_rows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let storage = Storage::open(StorageConfig::new(dir.path())).expect("open");
                let mut fleet = SeedFleet::new(100, 1_700_000_000_000_000_000, 1);
                let mut batch = WriteBatch::new();
                for _ in 0..3600 {
                    fleet.tick("weather", &mut batch);
                }
                storage.write(&batch).expect("write");
                let start = Instant::now();
                storage.persist().expect("persist");
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, durable_writes, codecs, chunks_and_scans);
criterion_main!(benches);
