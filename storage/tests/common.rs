//! Helpers shared by the storage integration tests.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use isobar_storage::{FieldValue, Point, Result, ScanRequest, Storage, StorageConfig};

/// A row as the tests compare it: tags, time, and the f64 field `a` and i64 field `b`.
pub(crate) type Key = (String, i64);
pub(crate) type Fields = (Option<u64>, Option<i64>);

pub(crate) fn config(dir: &Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    c.partition_duration_ms = 1;
    // Small enough that compactions split partitions into runs.
    c.compaction_rows_max = 40;
    // Partitions of a few series hold several groups: scans split in parts share them out.
    c.scan_group_rows = 3;
    c
}

pub(crate) fn point(series: &str, time: i64, a: Option<f64>, b: Option<i64>) -> Point {
    let mut p = Point::new(time).tag("s", series);
    if let Some(a) = a {
        p = p.field("a", FieldValue::F64(a));
    }
    if let Some(b) = b {
        p = p.field("b", FieldValue::I64(b));
    }
    p
}

/// Every row of table `t`, keyed by (tag `s`, time), with `a` as bits to compare NaNs exactly.
pub(crate) fn read_all(storage: &Storage, table: &str) -> Result<BTreeMap<Key, Fields>> {
    let mut out = BTreeMap::new();
    if storage.table(table).is_none() {
        return Ok(out);
    }
    for batch in storage.scan(&ScanRequest::all(table))? {
        collect(&batch?, &mut out);
    }
    Ok(out)
}

/// Adds a batch with columns `time`, `s`, and optionally `a` and `b` to `out`, asserting that
/// no key appears twice.
pub(crate) fn collect(batch: &RecordBatch, out: &mut BTreeMap<Key, Fields>) {
    let time = batch.column_by_name("time").expect("time column").as_primitive::<TimestampNanosecondType>();
    let s = batch.column_by_name("s").expect("tag s").as_string::<i32>();
    let a = batch.column_by_name("a").map(|c| c.as_primitive::<Float64Type>().clone());
    let b = batch.column_by_name("b").map(|c| c.as_primitive::<Int64Type>().clone());
    for i in 0..batch.num_rows() {
        let key = (s.value(i).to_owned(), time.value(i));
        let fa = a.as_ref().and_then(|c| c.is_valid(i).then(|| c.value(i).to_bits()));
        let fb = b.as_ref().and_then(|c| c.is_valid(i).then(|| c.value(i)));
        assert!(out.insert(key.clone(), (fa, fb)).is_none(), "key {key:?} returned twice");
    }
}

/// Runs test `child` of this binary (an ignored test that works until it is killed) with the
/// environment `env`, SIGKILLs it after a random `millis` range, and returns the lines it
/// printed before that: what it acknowledged.
pub(crate) fn run_until_killed(child: &str, env: &[(&str, String)], millis: std::ops::Range<u64>) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use rand::Rng;

    let exe = std::env::current_exe().expect("test binary");
    let mut process = Command::new(exe)
        .args([child, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = process.stdout.take().expect("piped");
    // libtest prints `test <name> ... ` before a serial test runs, and the test's first line
    // follows it on the same line: it is cut off, so that no line the child printed is missed.
    let own_line = |line: String| match line.split_once(" ... ") {
        Some((head, rest)) if head.starts_with("test ") => rest.to_owned(),
        _ => line,
    };
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).map(own_line).collect::<Vec<_>>());
    std::thread::sleep(std::time::Duration::from_millis(rand::rng().random_range(millis)));
    process.kill().expect("SIGKILL");
    process.wait().expect("reap");
    reader.join().expect("reader")
}

/// `ISOBAR_KILL_CYCLES`, or `default`.
pub(crate) fn kill_cycles(default: usize) -> usize {
    std::env::var("ISOBAR_KILL_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}
