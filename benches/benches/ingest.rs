//! Criterion benches of ingest's parsers: a 5,000-line body of InfluxDB line protocol in the
//! form of the peer benchmark's `fleet.lp` (five tags, two floats and an integer per line), as
//! one `POST /write` hands it to `parse_columns`.

use std::fmt::Write as _;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isobar_ingest::line_protocol::{KeyCache, Precision, parse_columns};

/// Lines per body, as the peer benchmark posts them.
const BODY_LINES: usize = 5_000;

/// `lines` lines of a fleet of 1,000 sensors, time-major, one second apart.
fn fleet_body(lines: usize) -> String {
    let sensors = ["vib", "temp", "hum", "wind"];
    let mut body = String::with_capacity(lines * 180);
    for n in 0..lines {
        let (station, sensor) = ((n / 4) % 250, sensors[n % 4]);
        let second = 1_704_067_200 + (n / 1000) as i64;
        let value = (n % 9973) as f64 * 0.0137;
        // Smoothed values carry binary noise in their last digits, as an exponential average does.
        let smoothed = value / 3.0 + 0.1;
        let direction = if n % 3 == 0 { -1 } else { 1 };
        writeln!(
            body,
            "weather,city=c{station},sensor={sensor},sensor_id=st{station:04}-{sensor},state=CA,station_id=st{station:04} \
             sensor_value={value:.4},sensor_value_smoothed={smoothed},direction={direction}i {second}000000000"
        )
        .expect("writing to a String");
    }
    body
}

fn line_protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("line_protocol");
    let body = fleet_body(BODY_LINES);
    let cache = KeyCache::default();
    group.throughput(Throughput::Elements(BODY_LINES as u64));
    group.bench_function("parse_columns_5000_lines", |b| {
        b.iter(|| {
            let parsed = parse_columns(&body, Precision::Nanoseconds, 0, &cache);
            assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
            parsed
        })
    });
    group.finish();
}

criterion_group!(benches, line_protocol);
criterion_main!(benches);
