//! Crash test: a child process writes batches and prints each acknowledged one; the parent
//! SIGKILLs it at random moments, reopens the data directory and checks that every
//! acknowledged row is there with its last value. `ISOBAR_KILL_CYCLES` sets the number of kills
//! (default 50); `./scripts/kill-cycles` runs 100.

use std::time::Instant;

use isobar_storage::{Storage, StorageConfig, WriteBatch};

use crate::common::{kill_cycles, point, read_all, run_until_killed};

const ROWS_PER_BATCH: i64 = 50;

fn crash_config(dir: &std::path::Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    // Persists and compactions happen in the background too, at moments the kill does not know.
    c.background_persist = true;
    c.persist_buffer_bytes = 64 << 10;
    c.compaction_chunks_trigger = 3;
    c.compaction_busy_chunks_trigger = 3;
    c.partition_duration_ms = 1;
    c
}

/// Batch `i`: 50 new rows, plus a rewrite of a key shared by batches 2m and 2m+1.
fn batch(i: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..ROWS_PER_BATCH {
        b.push("c", point(&format!("s{}", j % 5), i * 1000 + j, Some((i * 1000 + j) as f64), None));
    }
    b.push("c", point("shared", (i / 2) * 1000, None, Some(i)));
    b
}

/// The child: run only when the parent sets `ISOBAR_CRASH_DIR`.
#[test]
#[ignore = "run by crash_kill_and_recover as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("ISOBAR_CRASH_DIR") else { return };
    let start: i64 = std::env::var("ISOBAR_CRASH_START").expect("start batch").parse().expect("number");
    let storage = Storage::open(crash_config(dir.as_ref())).expect("open");
    for i in start.. {
        storage.write(&batch(i)).expect("write");
        println!("ack {i}");
        if i % 25 == 0 {
            storage.persist().expect("persist");
        }
    }
}

#[test]
fn crash_kill_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: i64 = -1;
    for kill in 0..kill_cycles(50) {
        let started = Instant::now();
        let env = [("ISOBAR_CRASH_DIR", dir.path().display().to_string()), ("ISOBAR_CRASH_START", (acked + 1).to_string())];
        let lines = run_until_killed("crash::crash_child", &env, 30..600);
        if let Some(last) = lines.iter().filter_map(|l| l.strip_prefix("ack ")?.parse::<i64>().ok()).max() {
            assert!(last > acked, "acks continue from the last run");
            acked = acked.max(last);
        }
        let storage = Storage::open(crash_config(dir.path())).unwrap_or_else(|e| panic!("reopen after kill {kill}: {e}"));
        check(&storage, acked);
        drop(storage);
        eprintln!("kill {kill} after {:?}: {} batches acknowledged", started.elapsed(), acked + 1);
    }
    assert!(acked > 50, "the children acknowledged only {} batches", acked + 1);
}

fn check(storage: &Storage, acked: i64) {
    let rows = read_all(storage, "c").expect("scan after recovery");
    for i in 0..=acked {
        for j in 0..ROWS_PER_BATCH {
            let key = (format!("s{}", j % 5), i * 1000 + j);
            let expected = ((i * 1000 + j) as f64).to_bits();
            assert_eq!(rows.get(&key).and_then(|f| f.0), Some(expected), "row {key:?} of acknowledged batch {i}");
        }
        // The shared key holds the newest acknowledged write, or a later one that became
        // durable just before the kill.
        let key = ("shared".to_owned(), (i / 2) * 1000);
        let last_writer = (i | 1).min(acked);
        let got = rows.get(&key).and_then(|f| f.1).unwrap_or(-1);
        assert!(got >= last_writer && got / 2 == i / 2, "shared key of batch {i}: {got}, acked up to {acked}");
    }
}
