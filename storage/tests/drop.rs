//! `DROP TABLE` and `TRUNCATE`: a dropped table is gone from every place its rows were (chunks,
//! write buffer, WAL, rollups), also after a reopen, and its name is free for a new table; a
//! rollup goes with its table; and a SIGKILL at any moment of a `DROP TABLE`, `TRUNCATE`,
//! `ALTER TABLE` or `DELETE` leaves the table either as it was before the statement or as after
//! it.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use isobar_storage::{
    Error, FieldValue, Point, ScanRequest, SeriesFilter, Storage, StorageConfig, TableAlteration, TagPredicate, TagTest, WriteBatch,
};

use crate::common::{config, kill_cycles, point, read_all, run_until_killed};

const MINUTE_NS: i64 = 60_000_000_000;
/// 2023-11-14, a whole minute.
const BASE_NS: i64 = 1_699_999_980_000_000_000;

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

fn write_rows(storage: &Storage, table: &str, times: std::ops::Range<i64>, a: f64) {
    let mut batch = WriteBatch::new();
    for t in times {
        batch.push(table, point(&format!("s{}", t % 3), t, Some(a), None));
    }
    storage.write(&batch).expect("write");
}

/// The chunk files of every table, by table directory.
fn chunk_files(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for table in std::fs::read_dir(dir.join("chunks")).expect("chunks dir").flatten() {
        let files = std::fs::read_dir(table.path()).expect("table dir").count();
        out.insert(table.file_name().to_string_lossy().into_owned(), files);
    }
    out
}

#[test]
fn a_dropped_table_is_gone_from_chunks_buffer_and_wal_and_its_name_is_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    write_rows(&storage, "w", 0..40, 1.0);
    storage.persist().expect("persist");
    write_rows(&storage, "w", 40..60, 2.0);
    write_rows(&storage, "keep", 0..10, 3.0);
    let before = chunk_files(dir.path());
    assert!(before.len() == 1 && before.values().all(|n| *n > 0), "w has chunk files: {before:?}");

    assert_eq!(storage.drop_tables(&names(&["w"]), false).expect("drop"), ["w"]);
    assert!(storage.table("w").is_none());
    assert!(matches!(storage.scan(&ScanRequest::all("w")), Err(Error::InvalidRequest(_))));
    assert!(chunk_files(dir.path()).is_empty(), "w's chunk files are deleted: {:?}", chunk_files(dir.path()));
    assert!(matches!(storage.drop_tables(&names(&["w"]), false), Err(Error::NoSuchTable(t)) if t == "w"));
    assert_eq!(storage.drop_tables(&names(&["w"]), true).expect("IF EXISTS"), Vec::<String>::new());

    // The name is free: a new table of it may even give its columns other types.
    let mut batch = WriteBatch::new();
    batch.push("w", Point::new(5).tag("s", "s9").field("a", FieldValue::I64(7)));
    let receipt = storage.write(&batch).expect("write");
    assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
    let expect_new = |storage: &Storage| {
        let rows: Vec<_> = storage.scan(&ScanRequest::all("w")).expect("scan").map(|b| b.expect("batch")).collect();
        let a: Vec<i64> =
            rows.iter().flat_map(|b| b.column_by_name("a").expect("a").as_primitive::<Int64Type>().values().to_vec()).collect();
        assert_eq!(a, [7], "only the new table's row");
        assert_eq!(read_all(storage, "keep").expect("scan").len(), 10, "other tables keep their rows");
    };
    expect_new(&storage);
    // The old rows still in the WAL (and the buffer) are not replayed into the new table, nor
    // persisted into chunks of it.
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    expect_new(&storage);
    storage.persist().expect("persist");
    storage.close(false).expect("close");
    let storage = Storage::open(config(dir.path())).expect("reopen");
    expect_new(&storage);
    assert_eq!(storage.row_count(&ScanRequest::all("w")).expect("count"), Some(1));
}

#[test]
fn truncate_empties_tables_and_keeps_their_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    write_rows(&storage, "w", 0..30, 1.0);
    storage.persist().expect("persist");
    write_rows(&storage, "w", 30..40, 1.0);
    write_rows(&storage, "v", 0..5, 1.0);
    let columns = storage.table("w").expect("w").columns;
    assert!(matches!(storage.truncate_tables(&names(&["w", "nope"])), Err(Error::NoSuchTable(t)) if t == "nope"));
    assert_eq!(read_all(&storage, "w").expect("scan").len(), 40, "a failed TRUNCATE changes nothing");
    assert_eq!(storage.truncate_tables(&names(&["w", "v"])).expect("truncate"), ["w", "v"]);
    let check = |storage: &Storage| {
        assert_eq!(storage.table("w").expect("w is still there").columns, columns);
        assert!(read_all(storage, "w").expect("scan").is_empty());
        assert!(read_all(storage, "v").expect("scan").is_empty());
        assert!(
            storage
                .latest(&ScanRequest::all("w"))
                .expect("latest")
                .is_none_or(|rows| rows.map(|b| b.expect("batch").num_rows()).sum::<usize>() == 0)
        );
    };
    check(&storage);
    storage.close(false).expect("close");
    check(&Storage::open(config(dir.path())).expect("reopen"));
}

fn rollup_config(dir: &std::path::Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    c.rollup_interval_ms = 60_000;
    c.rollup_coarser_intervals_ms = vec![300_000];
    c.rollup_lateness_ms = 0;
    c
}

#[test]
fn rollups_go_with_their_table_and_cannot_be_dropped_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(rollup_config(dir.path())).expect("open");
    write_rows(&storage, "m", BASE_NS..BASE_NS + 3, 1.0);
    write_rows(&storage, "m", BASE_NS + 20 * MINUTE_NS..BASE_NS + 20 * MINUTE_NS + 1, 1.0);
    storage.settle_rollups().expect("settle");
    assert_eq!(read_all(&storage, "m_1m").expect("scan").len(), 4, "three series' first window and one later");
    for rollup in ["m_1m", "m_5m"] {
        let refused = storage.drop_tables(&names(&[rollup]), false).expect_err("a rollup alone");
        assert!(refused.to_string().contains("rollup of"), "{refused}");
        assert!(storage.truncate_tables(&names(&[rollup])).is_err());
    }
    assert_eq!(storage.drop_tables(&names(&["m"]), false).expect("drop"), ["m", "m_1m", "m_5m"]);
    assert!(storage.tables().is_empty(), "{:?}", storage.tables().iter().map(|t| &t.name).collect::<Vec<_>>());
    // Written again, the table gets its rollups again, holding only the new rows.
    write_rows(&storage, "m", BASE_NS..BASE_NS + 1, 5.0);
    write_rows(&storage, "m", BASE_NS + 20 * MINUTE_NS..BASE_NS + 20 * MINUTE_NS + 1, 5.0);
    storage.settle_rollups().expect("settle");
    storage.close(false).expect("close");
    let storage = Storage::open(rollup_config(dir.path())).expect("reopen");
    storage.settle_rollups().expect("settle");
    let windows = read_all(&storage, "m_1m").expect("scan");
    assert_eq!(windows.len(), 2, "one series, one final window and the open one: {windows:?}");
}

/// The crash test's table: each cycle writes `CRASH_ROWS` rows valued with the cycle number in
/// one batch, renames their column `a` to `a2`, then empties the table: by `TRUNCATE` (and a
/// `DROP COLUMN a2`) on even cycles, by `DROP TABLE` on odd ones.
const CRASH_ROWS: i64 = 120;

fn crash_config(dir: &std::path::Path) -> StorageConfig {
    let mut c = rollup_config(dir);
    // Persists and compactions happen in the background too, at moments the kill does not know.
    c.background_persist = true;
    c.persist_buffer_bytes = 16 << 10;
    c.compaction_chunks_trigger = 2;
    c.partition_duration_ms = 60_000;
    c
}

/// The child: run only when the parent sets `ISOBAR_DROP_CRASH_DIR`.
#[test]
#[ignore = "run by kill_during_drop_truncate_and_alter as a child process"]
fn drop_crash_child() {
    let Ok(dir) = std::env::var("ISOBAR_DROP_CRASH_DIR") else { return };
    let start: i64 = std::env::var("ISOBAR_DROP_CRASH_START").expect("start cycle").parse().expect("number");
    let storage = Storage::open(crash_config(dir.as_ref())).expect("open");
    let t = names(&["t"]);
    for cycle in start.. {
        let mut batch = WriteBatch::new();
        for i in 0..CRASH_ROWS {
            batch.push("t", point(&format!("s{}", i % 4), BASE_NS + i * 1_000_000_000, Some(cycle as f64), None));
        }
        storage.write(&batch).expect("write");
        println!("wrote {cycle}");
        if cycle % 3 == 0 {
            storage.persist().expect("persist");
        }
        storage.alter_table("t", &[TableAlteration::RenameColumn { from: "a".into(), to: "a2".into() }]).expect("rename");
        println!("renamed {cycle}");
        let half = SeriesFilter::Tags(vec![TagPredicate { tag: "s".into(), test: TagTest::In(names(&["s0", "s1"])) }]);
        let deleted = storage.delete_rows(&ScanRequest { series: half, ..ScanRequest::all("t") }).expect("delete");
        assert_eq!(deleted, CRASH_ROWS as u64 / 2);
        println!("deleted {cycle}");
        match cycle % 2 {
            0 => drop(storage.truncate_tables(&t).expect("truncate")),
            _ => drop(storage.drop_tables(&t, false).expect("drop")),
        }
        println!("emptied {cycle}");
        if cycle % 2 == 0 {
            storage.alter_table("t", &[TableAlteration::DropColumn { name: "a2".into(), if_exists: false }]).expect("drop column");
            println!("cleaned {cycle}");
        }
    }
}

/// What the table holds after a reopen: the cycle of its rows and whether they are all of them
/// (or the half a delete leaves), or `None` when it is empty; it never holds rows of two
/// cycles, nor any other part of one cycle's rows, and its rollup counts them.
fn crash_state(storage: &Storage) -> Option<(i64, bool)> {
    let schema = storage.table("t")?;
    let column = ["a", "a2"].into_iter().find(|c| schema.column(c).is_some());
    let mut values = Vec::new();
    let mut series = std::collections::BTreeSet::new();
    for batch in storage.scan(&ScanRequest::all("t")).expect("scan after recovery") {
        let batch = batch.expect("batch");
        let a = column.and_then(|c| batch.column_by_name(c)).map(|c| c.as_primitive::<arrow::datatypes::Float64Type>().clone());
        values.extend((0..batch.num_rows()).map(|i| a.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i) as i64))));
        let s = batch.column_by_name("s").expect("tag s").as_string::<i32>();
        series.extend(s.iter().flatten().map(str::to_owned));
    }
    let cycles: std::collections::BTreeSet<Option<i64>> = values.iter().copied().collect();
    assert!(cycles.len() <= 1 && !cycles.contains(&None), "rows of several cycles, or without their value: {cycles:?}");
    let whole = values.len() == CRASH_ROWS as usize;
    let half = values.len() == CRASH_ROWS as usize / 2 && series == ["s2", "s3"].map(str::to_owned).into();
    assert!(values.is_empty() || whole || half, "{} rows of {cycles:?} in series {series:?}: not all, half or none", values.len());
    // The rollup follows the raw table's column, and counts each raw row once.
    storage.settle_rollups().expect("settle");
    if let Some(column) = column.filter(|_| !values.is_empty()) {
        let count = format!("{column}_count");
        let counted: i64 = storage
            .scan(&ScanRequest::all("t_1m"))
            .expect("rollup scan")
            .map(|b| {
                b.expect("batch")
                    .column_by_name(&count)
                    .expect("the rollup's count of the column")
                    .as_primitive::<Int64Type>()
                    .iter()
                    .flatten()
                    .sum::<i64>()
            })
            .sum();
        assert_eq!(counted, values.len() as i64, "the rollup counts the raw rows");
    }
    cycles.into_iter().next().flatten().map(|cycle| (cycle, whole))
}

#[test]
fn kill_during_drop_truncate_and_alter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut start = 0;
    let kills = kill_cycles(20);
    for kill in 0..kills {
        let env = [("ISOBAR_DROP_CRASH_DIR", dir.path().display().to_string()), ("ISOBAR_DROP_CRASH_START", start.to_string())];
        let steps = ["wrote", "renamed", "deleted", "emptied", "cleaned"];
        let step = |l: &String| l.split_once(' ').and_then(|(s, n)| Some((steps.iter().position(|x| *x == s)?, n.parse::<i64>().ok()?)));
        let last = run_until_killed("drop::drop_crash_child", &env, 50..400).iter().rev().find_map(step);
        let storage = Storage::open(crash_config(dir.path())).unwrap_or_else(|e| panic!("reopen after kill {kill}: {e}"));
        let state = crash_state(&storage);
        // What the step in flight may have left: the rows of the last cycle written, none,
        // or the next cycle's.
        let allowed: Vec<Option<(i64, bool)>> = match last {
            Some((0, n)) => vec![Some((n, true))],
            Some((1, n)) => vec![Some((n, true)), Some((n, false))],
            Some((2, n)) => vec![Some((n, false)), None],
            Some((_, n)) => vec![None, Some((n + 1, true))],
            None => vec![None, Some((start, true))],
        };
        assert!(allowed.contains(&state), "kill {kill} after {last:?}: {state:?}, expected one of {allowed:?}");
        eprintln!("kill {kill}: last {last:?}, state {state:?}");
        // The next child starts with no table.
        storage.drop_tables(&names(&["t"]), true).expect("drop");
        drop(storage);
        start = last.map_or(start, |(_, n)| n) + 1;
    }
    assert!(start > kills as i64, "the children got through {start} cycles");
}
