//! Retention: rows past their table's retention disappear from scans at once and their
//! chunks are deleted; writes of such rows are refused, with a reason, and their neighbours
//! kept; rollup tables keep their own, longer retention; and the retention clock never runs
//! ahead of the wall clock.

use isobar_storage::{ScanRequest, Storage, StorageConfig, WriteBatch};

use crate::common::{point, read_all};

const SECOND_NS: i64 = 1_000_000_000;
const MINUTE_NS: i64 = 60 * SECOND_NS;
/// 2023-11-14, the start of a 10-minute partition.
const BASE_NS: i64 = 1_700_000_400 * SECOND_NS;

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    c.partition_duration_ms = 10 * 60 * 1000;
    c.retention_ms = 60 * 60 * 1000;
    c.rollup_interval_ms = 60_000;
    c
}

fn chunk_files(dir: &std::path::Path) -> usize {
    walk(&dir.join("chunks"))
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
}

fn rows_of(storage: &Storage, table: &str) -> usize {
    storage.scan(&ScanRequest::all(table)).expect("scan").map(|b| b.expect("batch").num_rows()).sum()
}

#[test]
fn expired_rows_vanish_and_their_chunks_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    // Three hours of one reading a minute.
    for k in 0..180 {
        let mut batch = WriteBatch::new();
        batch.push("m", point("s0", BASE_NS + k * MINUTE_NS, Some(k as f64), None));
        storage.write(&batch).expect("write");
    }
    storage.settle_rollups().expect("settle");
    storage.persist().expect("persist");
    assert_eq!(chunk_files(dir.path()), 18 + 18, "a chunk per 10-minute partition, of m and of m_1m");

    // The newest reading is at minute 179: the hour before it is kept, from minute 119 on.
    let cutoff = BASE_NS + 119 * MINUTE_NS;
    let rows = read_all(&storage, "m").expect("read");
    assert_eq!(rows.len(), 61);
    assert!(rows.keys().all(|(_, t)| *t >= cutoff), "no row before the retention cutoff");
    // Partitions whose newest row is before minute 119 go: minutes 0 to 109.
    assert_eq!(storage.expire().expect("expire"), 11);
    assert_eq!(chunk_files(dir.path()), 7 + 18);
    assert_eq!(read_all(&storage, "m").expect("read"), rows, "deleting chunks changes no answer");
    // The rollup keeps every minute (its retention is its own, unset here).
    assert_eq!(rows_of(&storage, "m_1m"), 180);

    // A reading older than the cutoff is refused with the reason; its neighbour is written.
    let mut batch = WriteBatch::new();
    batch.push("m", point("s0", BASE_NS + 5 * MINUTE_NS, Some(1.0), None));
    batch.push("m", point("s1", BASE_NS + 150 * MINUTE_NS, Some(2.0), None));
    let receipt = storage.write(&batch).expect("write");
    assert_eq!(receipt.rows_written, 1);
    assert_eq!(receipt.rejected.len(), 1);
    assert!(receipt.rejected[0].reason.contains("older than table m keeps rows"), "{:?}", receipt.rejected);

    // The same after a restart: the retention clock comes back from the chunks and the WAL.
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    assert_eq!(read_all(&storage, "m").expect("read").len(), 62);
    assert_eq!(storage.expire().expect("expire"), 0);
    assert_eq!(rows_of(&storage, "m_1m"), 180 + 1, "and s1's minute");
}

#[test]
fn rollups_have_their_own_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.retention_ms = 0;
    c.rollup_retention_ms = 30 * 60 * 1000;
    let storage = Storage::open(c).expect("open");
    for k in 0..120 {
        let mut batch = WriteBatch::new();
        batch.push("m", point("s0", BASE_NS + k * MINUTE_NS, Some(k as f64), None));
        storage.write(&batch).expect("write");
    }
    storage.settle_rollups().expect("settle");
    assert_eq!(rows_of(&storage, "m"), 120, "raw rows are kept forever");
    // Windows up to minute 117 are final (the watermark is 5 s before minute 119), so the
    // rollup's clock is at minute 117 and it keeps minutes 87 to 117, and the open 118 and 119.
    assert_eq!(rows_of(&storage, "m_1m"), 31 + 2);
}

#[test]
fn a_reading_from_the_future_expires_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Even where far-future readings are let in, they do not move the retention clock.
    let storage = Storage::open(StorageConfig { future_tolerance_ms: 0, ..config(dir.path()) }).expect("open");
    let now_ns = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()).expect("ns");
    let mut batch = WriteBatch::new();
    for k in 0..30 {
        batch.push("m", point("s0", now_ns - k * MINUTE_NS, Some(1.0), None));
    }
    storage.write(&batch).expect("write");
    // A device with a broken clock reports from ten years ahead.
    let mut batch = WriteBatch::new();
    batch.push("m", point("s0", now_ns + 10 * 365 * 24 * 60 * MINUTE_NS, Some(1.0), None));
    storage.write(&batch).expect("write");
    storage.persist().expect("persist");
    storage.expire().expect("expire");
    assert_eq!(rows_of(&storage, "m"), 31, "the retention clock is the wall clock, not the bogus reading");
}

#[test]
fn readings_too_far_ahead_of_the_clock_are_refused_and_their_neighbours_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig { future_tolerance_ms: 60 * 60 * 1000, ..config(dir.path()) }).expect("open");
    let now_ns = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()).expect("ns");
    let mut batch = WriteBatch::new();
    batch.push("m", point("s0", now_ns, Some(1.0), None));
    batch.push("m", point("s0", now_ns + 2 * 60 * MINUTE_NS, Some(2.0), None));
    batch.push("m", point("s0", now_ns + 30 * MINUTE_NS, Some(3.0), None));
    let receipt = storage.write(&batch).expect("write");
    assert_eq!(receipt.rows_written, 2, "within the hour's tolerance: written");
    assert_eq!(receipt.rejected.len(), 1);
    assert_eq!(receipt.rejected[0].index, 1);
    assert!(receipt.rejected[0].reason.contains("ahead of the server's clock"), "{}", receipt.rejected[0].reason);
    assert_eq!(rows_of(&storage, "m"), 2);
}
