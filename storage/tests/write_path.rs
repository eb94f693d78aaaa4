//! The write path's contract: per-point rejections, source positions, schema on write,
//! projections and filters, backpressure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use isobar_storage::{
    ColumnKind, Error, FieldType, FieldValue, Point, ScanRequest, SeriesFilter, Storage, StorageConfig, TagPredicate, WriteBatch,
};

use crate::common::{config, point, read_all};

#[test]
fn a_type_conflict_rejects_only_its_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    batch.push("m", point("x", 1, Some(1.0), None));
    batch.push("m", Point::new(2).tag("s", "x").field("a", FieldValue::String(Arc::from("oops"))));
    batch.push("m", point("x", 3, Some(3.0), Some(7)));
    batch.push("", point("x", 3, Some(3.0), None));
    let receipt = storage.write(&batch).expect("write");
    assert_eq!(receipt.rows_written, 2);
    let reasons: Vec<&str> = receipt.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["empty table name", "table m, column a: expected f64, found string"]);
    assert_eq!(receipt.rejected[1].index, 1);
    let rows = read_all(&storage, "m").expect("scan");
    assert_eq!(rows.len(), 2);
}

#[test]
fn positions_commit_with_their_rows_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let storage = Storage::open(config(dir.path())).expect("open");
        assert_eq!(storage.position("kinesis/shard-0").expect("read"), None);
        let mut batch = WriteBatch::new();
        batch.push("m", point("x", 1, Some(1.0), None));
        batch.set_position("kinesis/shard-0", b"49590338271490256608559692538361571095921575989136588898".to_vec());
        storage.write(&batch).expect("write");
        let mut batch = WriteBatch::new();
        batch.set_position("mqtt/session", b"x".to_vec());
        assert!(storage.write(&batch).expect("write").sequence.is_some());
    }
    let storage = Storage::open(config(dir.path())).expect("reopen");
    assert_eq!(
        storage.position("kinesis/shard-0").expect("read").as_deref(),
        Some(&b"49590338271490256608559692538361571095921575989136588898"[..])
    );
    assert_eq!(storage.positions().expect("read").len(), 2);
    assert_eq!(read_all(&storage, "m").expect("scan").len(), 1);
}

#[test]
fn schemas_grow_on_write_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let storage = Storage::open(config(dir.path())).expect("open");
        let mut batch = WriteBatch::new();
        batch.push("w", Point::new(1).tag("station", "a").field("temp", FieldValue::F64(1.0)));
        batch.push("w", Point::new(2).tag("station", "a").tag("sensor", "t1").field("ok", FieldValue::Bool(true)));
        batch.push("w", Point::new(3).tag("station", "b").field("note", FieldValue::String(Arc::from("hi"))));
        storage.write(&batch).expect("write");
        storage.persist().expect("persist");
    }
    let storage = Storage::open(config(dir.path())).expect("reopen");
    let schema = storage.table("w").expect("table w");
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["station", "temp", "sensor", "ok", "note"]);
    let series = storage.series("w").expect("series");
    assert_eq!(series.len(), 3);
    let batches: Vec<_> = storage.scan(&ScanRequest::all("w")).expect("scan").collect::<Result<_, _>>().expect("batches");
    let schema = batches[0].schema();
    let types: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    assert_eq!(
        types[1..],
        [
            ("station", &DataType::Utf8),
            ("sensor", &DataType::Utf8),
            ("temp", &DataType::Float64),
            ("ok", &DataType::Boolean),
            ("note", &DataType::Utf8)
        ]
    );
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
}

#[test]
fn scans_project_and_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    for t in 0..100 {
        batch.push("m", point(if t % 2 == 0 { "even" } else { "odd" }, t * 100_000, Some(t as f64), Some(t)));
    }
    storage.write(&batch).expect("write");
    storage.persist().expect("persist");
    batch = WriteBatch::new();
    batch.push("m", point("even", 0, Some(-1.0), None));
    storage.write(&batch).expect("write");
    let req = ScanRequest {
        time_min_ns: 0,
        time_max_ns: 1_000_000,
        series: SeriesFilter::Tags(vec![TagPredicate::equals("s", "even")]),
        columns: Some(vec!["a".into()]),
        ..ScanRequest::all("m")
    };
    let batches: Vec<_> = storage.scan(&req).expect("scan").collect::<Result<_, _>>().expect("batches");
    let values: Vec<f64> =
        batches.iter().flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Float64Type>().values().to_vec()).collect();
    assert_eq!(batches[0].num_columns(), 1);
    assert_eq!(values, [-1.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    let bad = ScanRequest { columns: Some(vec!["nope".into()]), ..ScanRequest::all("m") };
    assert!(matches!(storage.scan(&bad), Err(Error::InvalidRequest(_))));
    let none = ScanRequest { series: SeriesFilter::Tags(vec![TagPredicate::equals("s", "none")]), ..ScanRequest::all("m") };
    assert_eq!(storage.scan(&none).expect("scan").count(), 0);
}

#[test]
fn a_partition_larger_than_one_read_is_scanned_group_by_group_with_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    // 700 series × 500 times in one partition: more rows than one read takes, so the scan
    // reads the series in several groups. Every 7th time is overwritten in the buffer, and
    // one series has only buffered rows.
    let (series, times) = (700, 500i64);
    let write = |base: f64, step: usize, names: std::ops::Range<usize>| {
        let mut batch = WriteBatch::new();
        for s in names {
            batch.extend("m", (0..times).step_by(step).map(|t| point(&format!("s{s:03}"), t, Some(base + t as f64), None)));
        }
        storage.write(&batch).expect("write");
    };
    write(0.0, 1, 0..series);
    storage.persist().expect("persist");
    write(1e6, 7, 0..series);
    write(2e6, 1, series..series + 1);
    let rows = read_all(&storage, "m").expect("scan");
    assert_eq!(rows.len(), (series + 1) * times as usize);
    for ((name, t), (a, _)) in &rows {
        let base = match name.as_str() {
            "s700" => 2e6,
            _ if t % 7 == 0 => 1e6,
            _ => 0.0,
        };
        assert_eq!(a.map(f64::from_bits), Some(base + *t as f64), "{name} at {t}");
    }
}

#[test]
fn a_full_buffer_makes_writers_wait_until_a_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c: StorageConfig = config(dir.path());
    c.write_buffer_bytes_max = 64 << 10;
    c.persist_buffer_bytes = 32 << 10;
    let storage = Storage::open(c).expect("open");
    let writer = {
        let storage = storage.clone();
        std::thread::spawn(move || {
            let mut written = 0;
            for i in 0..200i64 {
                let mut batch = WriteBatch::new();
                batch.extend("m", (0..20).map(|j| point("x", i * 20 + j, Some(1.0), Some(j))));
                written += storage.write(&batch).expect("write").rows_written;
            }
            written
        })
    };
    // Nothing persists on its own in this configuration: the writer must stop at the limit.
    let waits = || storage.metrics().writer_waits.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while waits() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(waits(), 1, "the writer waits at the limit");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!writer.is_finished(), "the writer is still waiting");
    let mut persists = 0;
    while !writer.is_finished() {
        persists += storage.persist().expect("persist").chunks_written;
        std::thread::sleep(Duration::from_millis(5));
    }
    let written = writer.join().expect("writer");
    assert_eq!(written, 4000);
    assert!(persists >= 1, "the writer went on only after a persist");
    assert_eq!(read_all(&storage, "m").expect("scan").len() as u64, written);
}

#[test]
fn declared_tables_keep_their_columns_and_check_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let columns = [
        ("station".to_owned(), ColumnKind::Tag),
        ("temp".to_owned(), ColumnKind::Field(FieldType::F64)),
        ("ok".to_owned(), ColumnKind::Field(FieldType::Bool)),
    ];
    {
        let storage = Storage::open(config(dir.path())).expect("open");
        let schema = storage.create_table("w", &columns).expect("create");
        assert_eq!(schema.columns.iter().map(|c| (c.name.clone(), c.kind)).collect::<Vec<_>>(), columns);
        assert!(matches!(storage.create_table("w", &columns), Err(Error::TableExists(t)) if t == "w"));
        let twice = [("a".to_owned(), ColumnKind::Tag), ("a".to_owned(), ColumnKind::Tag)];
        assert!(matches!(storage.create_table("v", &twice), Err(Error::InvalidRequest(r)) if r.contains("column a given twice")));
        assert!(storage.table("v").is_none(), "a refused definition leaves nothing behind");
        let mut batch = WriteBatch::new();
        batch.push("w", Point::new(1).tag("station", "a").field("temp", FieldValue::I64(1)));
        let receipt = storage.write(&batch).expect("write");
        assert_eq!(receipt.rejected[0].reason, "table w, column temp: expected f64, found i64");
    }
    // No rows were written, yet the definition survives a crash-free reopen and a WAL replay.
    let storage = Storage::open(config(dir.path())).expect("reopen");
    let schema = storage.table("w").expect("table survives");
    assert_eq!(schema.columns.iter().map(|c| (c.name.clone(), c.kind)).collect::<Vec<_>>(), columns);
    assert_eq!(read_all(&storage, "w").expect("scan").len(), 0);
}

#[test]
fn a_write_alone_is_not_held_for_the_group_commit_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c: StorageConfig = config(dir.path());
    // Long enough that a write waiting it out fails the test below.
    c.group_commit_window_us = 600_000_000;
    let storage = Storage::open(c).expect("open");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = {
        let storage = storage.clone();
        std::thread::spawn(move || {
            for i in 0..3i64 {
                let mut batch = WriteBatch::new();
                batch.push("m", point("x", i, Some(1.0), None));
                storage.write(&batch).expect("write");
                done_tx.send(i).expect("test waits");
            }
        })
    };
    for i in 0..3i64 {
        let done = done_rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(done, Ok(i), "write {i} came back without waiting for writes nobody is preparing");
    }
    writer.join().expect("writer");
    assert_eq!(storage.metrics().wal_fsyncs.load(Ordering::Relaxed), 3);
    assert_eq!(read_all(&storage, "m").expect("scan").len(), 3);
}
