//! `DELETE`: the rows selected go from chunks, the write buffer and the WAL, and stay gone
//! through reopens and compactions; the newest rows follow; rows written afterwards at the
//! same times are kept; a rollup table is refused. The model tests (`model.rs`, `rollups.rs`)
//! and the kill test (`drop.rs`) check deletes among every other step.

use isobar_storage::{Error, ScanRequest, SeriesFilter, Storage, TagPredicate, WriteBatch};

use crate::common::{config, point, read_all};

fn write(storage: &Storage, series: &str, times: std::ops::Range<i64>, a: f64) {
    let mut batch = WriteBatch::new();
    for t in times {
        batch.push("m", point(series, t, Some(a), None));
    }
    storage.write(&batch).expect("write");
}

fn delete(storage: &Storage, series: &str, time_min_ns: i64, time_max_ns: i64) -> u64 {
    let filter = SeriesFilter::Tags(vec![TagPredicate::equals("s", series)]);
    storage.delete_rows(&ScanRequest { time_min_ns, time_max_ns, series: filter, ..ScanRequest::all("m") }).expect("delete")
}

/// The times of series `s` in table `m`.
fn times(storage: &Storage, series: &str) -> Vec<i64> {
    read_all(storage, "m").expect("scan").into_keys().filter(|(s, _)| s == series).map(|(_, t)| t).collect()
}

/// The newest time of each series, by [`Storage::latest`].
fn newest(storage: &Storage) -> Vec<(String, i64)> {
    let mut out = std::collections::BTreeMap::new();
    for batch in storage.latest(&ScanRequest::all("m")).expect("latest").expect("a raw table") {
        crate::common::collect(&batch.expect("batch"), &mut out);
    }
    out.into_keys().collect()
}

#[test]
fn deleted_rows_are_gone_from_chunks_buffer_and_wal_and_stay_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    // Rows in chunks (of several partitions and generations), overwritten ones, and rows in
    // the write buffer and the WAL only.
    write(&storage, "s0", 0..20, 1.0);
    write(&storage, "s1", 0..20, 1.0);
    storage.persist().expect("persist");
    write(&storage, "s0", 10..15, 2.0);
    storage.persist().expect("persist");
    write(&storage, "s0", 18..30, 3.0);

    // 5..=24 of s0: 5..20 from chunks (10..15 twice, counted once), 20..=24 from the buffer.
    assert_eq!(delete(&storage, "s0", 5, 24), 20);
    let kept: Vec<i64> = (0..5).chain(25..30).collect();
    assert_eq!(times(&storage, "s0"), kept);
    assert_eq!(times(&storage, "s1"), (0..20).collect::<Vec<_>>(), "other series keep their rows");
    assert_eq!(newest(&storage), [("s0".to_owned(), 29), ("s1".to_owned(), 19)]);

    // The newest rows of s0 go: the series' newest row is the one before them.
    assert_eq!(delete(&storage, "s0", 25, i64::MAX), 5);
    assert_eq!(newest(&storage), [("s0".to_owned(), 4), ("s1".to_owned(), 19)]);
    assert_eq!(delete(&storage, "s0", 25, i64::MAX), 0, "nothing left to delete");

    // Nothing comes back from the WAL, nor from compaction.
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    assert_eq!(times(&storage, "s0"), (0..5).collect::<Vec<_>>());
    storage.compact().expect("compact");
    assert_eq!(times(&storage, "s0"), (0..5).collect::<Vec<_>>());
    assert_eq!(newest(&storage), [("s0".to_owned(), 4), ("s1".to_owned(), 19)]);
    assert_eq!(storage.row_count(&ScanRequest::all("m")).expect("count"), Some(25), "chunk footers count what is left");
}

#[test]
fn rows_written_after_a_delete_are_kept_and_emptied_chunks_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    write(&storage, "s0", 0..10, 1.0);
    storage.persist().expect("persist");
    let files = |dir: &std::path::Path| walk_files(&dir.join("chunks"));
    assert!(files(dir.path()) > 0);
    assert_eq!(delete(&storage, "s0", i64::MIN, i64::MAX), 10);
    assert_eq!(files(dir.path()), 0, "a chunk with no row left is deleted");
    write(&storage, "s0", 5..7, 2.0);
    assert_eq!(times(&storage, "s0"), [5, 6]);
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    assert_eq!(times(&storage, "s0"), [5, 6], "rows written at deleted times after the delete stay");
}

#[test]
fn rollup_tables_and_missing_tables_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.rollup_interval_ms = 60_000;
    let storage = Storage::open(c).expect("open");
    write(&storage, "s0", 0..3, 1.0);
    let refused = storage.delete_rows(&ScanRequest::all("m_1m"));
    assert!(matches!(&refused, Err(Error::InvalidRequest(m)) if m.contains("delete from m")), "{refused:?}");
    assert!(matches!(storage.delete_rows(&ScanRequest::all("nope")), Err(Error::NoSuchTable(t)) if t == "nope"));
    assert_eq!(times(&storage, "s0"), [0, 1, 2]);
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 }).sum())
}
