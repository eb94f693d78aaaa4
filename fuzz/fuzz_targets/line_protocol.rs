//! Fuzzes InfluxDB line protocol: an arbitrary body (its first byte picks the precision) is
//! parsed line by line into points or errors, never a panic; every error names a line of the
//! body.
#![no_main]

use isobar_ingest::line_protocol::{Precision, parse};

const PRECISIONS: [&str; 6] = ["ns", "us", "ms", "s", "m", "h"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else { return };
    let Some(precision) = Precision::parse(PRECISIONS[usize::from(*first) % PRECISIONS.len()]) else { return };
    let body = String::from_utf8_lossy(rest);
    let lines = body.split('\n').count();
    for parsed in parse(&body, precision, 1_700_000_000_000_000_000) {
        let number = match parsed {
            Ok(line) => line.line_number,
            Err(error) => error.line_number,
        };
        assert!((1..=lines).contains(&number), "line {number} of {lines}");
    }
});
