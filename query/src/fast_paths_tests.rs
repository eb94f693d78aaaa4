//! The fast paths answer exactly what the general path answers (an engine with `fast_paths`
//! off), on random rows with overwrites, late rows, missing values, persists, compactions and
//! retention: the newest row of each series (`latest.rs`), row counts from chunk footers
//! (`scan_exec.rs`) and aggregates from the rollup table (`rollup_rewrite.rs`). Values are
//! multiples of 1/4, so that sums are exact in any order.

use std::sync::atomic::Ordering;

use datafusion::arrow::util::pretty::pretty_format_batches;
use isobar_storage::{ColumnKind, FieldType, FieldValue, Point, Storage, StorageConfig, WriteBatch};
use proptest::prelude::*;

use crate::engine::{Output, QueryConfig, QueryEngine};

const STATIONS: [&str; 3] = ["a", "b", "c"];
const SENSORS: [&str; 2] = ["temp", "hum"];
pub(crate) const SERIES: usize = STATIONS.len() * SENSORS.len();

#[derive(Debug, Clone)]
enum Step {
    /// (series, tick, value): rows at `tick` ms; a value of `None` leaves `v` out of the row.
    Write(Vec<(usize, i64, Option<i32>)>),
    Persist,
    Compact,
    /// Writes the rollup windows the watermark passed, and recomputes those that took late rows.
    Settle,
}

fn step() -> impl Strategy<Value = Step> {
    let row = (0..SERIES, 0i64..40, prop::option::of(-50i32..50));
    prop_oneof![
        6 => prop::collection::vec(row, 1..20).prop_map(Step::Write),
        2 => Just(Step::Persist),
        1 => Just(Step::Compact),
        1 => Just(Step::Settle),
    ]
}

/// A time unique across series, so that no two series tie for the newest row of a group.
pub(crate) fn time_ns(series: usize, tick: i64) -> i64 {
    tick * 1_000_000 + series as i64
}

pub(crate) fn literal(ns: i64) -> String {
    format!("'1970-01-01T00:00:00.{ns:09}Z'")
}

/// Storage in `dir` with table `m` ([`create_table`]), rollup windows of 2 ms final 3 ms after
/// the newest row and of 4 ms built from them, partitions of 10 ms and, when given, a retention
/// of `m` in ms.
pub(crate) fn open_with_table(dir: &std::path::Path, retention_ms: Option<u64>) -> Storage {
    let mut config = StorageConfig::test_config(dir);
    config.partition_duration_ms = 10;
    config.rollup_interval_ms = 2;
    config.rollup_coarser_intervals_ms = vec![4];
    config.rollup_lateness_ms = 3;
    if let Some(ms) = retention_ms {
        config.table_retention_ms.insert("m".into(), ms);
    }
    let storage = Storage::open(config).expect("open");
    create_table(&storage);
    storage
}

/// Table `m`: tags `station` and `sensor`, fields `v` (float) and `n` (integer).
fn create_table(storage: &Storage) {
    let columns = [
        ("station".to_owned(), ColumnKind::Tag),
        ("sensor".to_owned(), ColumnKind::Tag),
        ("v".to_owned(), ColumnKind::Field(FieldType::F64)),
        ("n".to_owned(), ColumnKind::Field(FieldType::I64)),
    ];
    storage.create_table("m", &columns).expect("create table");
}

pub(crate) fn write(storage: &Storage, rows: &[(usize, i64, Option<i32>)], version: i64) {
    let mut batch = WriteBatch::new();
    for (series, tick, value) in rows {
        let mut point = Point::new(time_ns(*series, *tick))
            .tag("station", STATIONS[series / SENSORS.len()])
            .tag("sensor", SENSORS[series % SENSORS.len()])
            .field("n", FieldValue::I64(version));
        if let Some(v) = value {
            point = point.field("v", FieldValue::F64(f64::from(*v) / 4.0));
        }
        batch.push("m", point);
    }
    storage.write(&batch).expect("write");
}

pub(crate) async fn rows(engine: &QueryEngine, sql: &str) -> String {
    let outputs = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    match outputs.into_iter().next() {
        Some(Output::Rows(batches)) => pretty_format_batches(&batches).expect("format").to_string(),
        other => panic!("{sql}: {other:?}"),
    }
}

/// Queries answered from the newest row of each series.
pub(crate) fn latest_queries(lo: i64, hi: i64) -> Vec<String> {
    vec![
        "SELECT station, sensor, last_value(v ORDER BY time) AS v, last_value(n ORDER BY time) AS n FROM m \
         GROUP BY station, sensor ORDER BY station, sensor"
            .into(),
        "SELECT DISTINCT ON (station, sensor) station, sensor, time, v FROM m ORDER BY station, sensor, time DESC".into(),
        "SELECT station, last(v, time) AS v, max(time) AS newest FROM m GROUP BY station ORDER BY station".into(),
        format!(
            "SELECT sensor, last_value(v ORDER BY time) AS v FROM m WHERE time >= {} AND time < {} GROUP BY sensor ORDER BY sensor",
            literal(lo),
            literal(hi)
        ),
        format!("SELECT DISTINCT station FROM m WHERE time > {} ORDER BY station", literal(lo)),
        format!(
            "SELECT DISTINCT sensor FROM m WHERE station IN ('a', 'c') AND time >= {} AND time < {} ORDER BY sensor",
            literal(lo),
            literal(hi)
        ),
        "SELECT count(*) FROM (SELECT DISTINCT x.station FROM m AS x) AS d".into(),
        format!("SELECT * FROM m WHERE sensor = 'temp' AND time < {} ORDER BY time DESC LIMIT 1", literal(hi)),
        "SELECT station, time, v FROM m ORDER BY station DESC, time DESC, v LIMIT 1".into(),
        "SELECT s.station, s.sensor, last_value(s.v ORDER BY s.time) FROM m AS s WHERE s.sensor LIKE 't%' AND s.station <> 'b' \
         GROUP BY s.station, s.sensor ORDER BY 1, 2"
            .into(),
    ]
}

/// The first rows in time order, read partition by partition.
pub(crate) fn time_order_queries(lo: i64, hi: i64) -> Vec<String> {
    vec![
        "SELECT station, sensor, time, v FROM m ORDER BY time DESC, station, sensor LIMIT 5".into(),
        format!("SELECT * FROM m WHERE station = 'a' AND time <= {} ORDER BY time, sensor LIMIT 3", literal(hi)),
        format!("SELECT s.time, s.sensor, s.n FROM m AS s WHERE s.time > {} ORDER BY s.time DESC, s.sensor LIMIT 4 OFFSET 2", literal(lo)),
        "SELECT time, station, sensor, v FROM m WHERE substr(sensor, 1) LIKE 't%' ORDER BY time DESC, station, sensor LIMIT 3".into(),
    ]
}

/// Aggregates by time buckets that are multiples of the rollup's 2 ms windows, then (the fifth
/// and sixth) by buckets that are not, answered from storage's windows of raw rows alone, then
/// (the last two) grouped by every tag, so that each group is one window of one series.
pub(crate) fn rollup_queries(lo: i64, hi: i64) -> Vec<String> {
    vec![
        "SELECT station, sensor, date_bin(INTERVAL '4 milliseconds', time) AS t, count(v), sum(v), min(v), max(v), avg(v), \
         sum(n), avg(n) FROM m GROUP BY station, sensor, t ORDER BY 1, 2, 3"
            .into(),
        format!(
            "SELECT sensor, time_bucket(INTERVAL '2 milliseconds', time) AS t, avg(v) AS mean, max(n) FROM m \
             WHERE time >= {} AND time < {} GROUP BY sensor, t ORDER BY 1, 2",
            literal(lo),
            literal(hi)
        ),
        format!("SELECT station, sum(v), count(n), min(v) FROM m WHERE time > {} GROUP BY station ORDER BY 1", literal(lo)),
        format!(
            "SELECT s.sensor, date_bin(INTERVAL '6 milliseconds', s.time, TIMESTAMP '1970-01-01 00:00:00.002') AS t, sum(s.v) \
             FROM m AS s WHERE s.station = 'a' AND s.time <= {} GROUP BY s.sensor, t ORDER BY 1, 2",
            literal(hi)
        ),
        format!(
            "SELECT station, date_bin(INTERVAL '3 milliseconds', time) AS t, count(v), sum(n), min(n), max(v), avg(v) FROM m \
             WHERE time >= {} GROUP BY station, t ORDER BY 1, 2",
            literal(lo)
        ),
        "SELECT sensor, date_trunc('millisecond', time) AS t, max(n), min(v) FROM m WHERE station <> 'c' GROUP BY sensor, t \
         ORDER BY 1, 2"
            .into(),
        // Groups of one series and one rollup window: the partials are the answer.
        "SELECT station, sensor, date_bin(INTERVAL '2 milliseconds', time) AS t, count(v), sum(v), min(v), max(n), avg(v) \
         FROM m GROUP BY station, sensor, t ORDER BY 1, 2, 3"
            .into(),
        format!("SELECT sensor, station, avg(n), count(v) FROM m WHERE time >= {} GROUP BY sensor, station ORDER BY 1, 2", literal(lo)),
    ]
}

/// Queries whose row counts chunk footers may give.
pub(crate) fn count_queries(lo: i64, hi: i64) -> Vec<String> {
    vec![
        "SELECT count(*) FROM m".into(),
        format!("SELECT count(*), count(time) FROM m WHERE time >= {} AND time <= {}", literal(lo), literal(hi)),
        "SELECT count(*) AS n FROM m WHERE station = 'a'".into(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn fast_paths_answer_as_the_general_path_does(
        steps in prop::collection::vec(step(), 1..12),
        retention in prop::option::of(5u64..30),
        // At least two rollup windows long, so that one lies wholly inside.
        (lo, hi) in (0i64..40, 4i64..20).prop_map(|(from, len)| (time_ns(0, from), time_ns(0, from + len))),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = open_with_table(dir.path(), retention);
        for (version, step) in steps.iter().enumerate() {
            match step {
                Step::Write(rows) => write(&storage, rows, version as i64),
                Step::Persist => drop(storage.persist().expect("persist")),
                Step::Compact => drop(storage.compact().expect("compact")),
                Step::Settle => storage.settle_rollups().expect("settle rollups"),
            }
        }
        // The fast paths on three threads, against the general path on one.
        let fast = QueryEngine::new(storage.clone(), QueryConfig { threads: 3, ..QueryConfig::default() }).expect("engine");
        let general = QueryEngine::new(storage.clone(), QueryConfig { fast_paths: false, threads: 1, ..QueryConfig::default() }).expect("engine");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let reads = || storage.metrics().latest_reads.load(Ordering::Relaxed);
        storage.settle_rollups().expect("settle rollups");
        // With every raw row kept, the first query (4 ms buckets, all of time) reads the final
        // windows of `m_4ms`, and those of `m_2ms` that `m_4ms` has yet to take.
        let mut rollups = storage.rollups();
        rollups.sort_by_key(|r| std::cmp::Reverse(r.interval_ns));
        let mut read_rollups = Vec::new();
        let mut covered_ns = i64::MIN;
        for r in rollups.into_iter().filter(|_| retention.is_none()) {
            if let Some(frontier_ns) = r.frontier_ns.filter(|f| *f > covered_ns) {
                read_rollups.push(r.table);
                covered_ns = frontier_ns;
            }
        }
        for (i, sql) in rollup_queries(lo, hi).into_iter().enumerate() {
            let expected = runtime.block_on(rows(&general, &sql));
            let plan = runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
            for table in read_rollups.iter().filter(|_| i == 0) {
                prop_assert!(plan.contains(&format!("ScanExec: table={table},")), "read from {}: {}\n{}", table, sql, plan);
            }
            if (4..6).contains(&i) {
                prop_assert!(plan.contains("ScanExec: table=m, read=count, sum, min, max per series and"), "windows: {}\n{}", sql, plan);
            }
            if i == 6 {
                prop_assert!(!plan.contains("AggregateExec"), "no aggregate: {}\n{}", sql, plan);
            }
            prop_assert_eq!(runtime.block_on(rows(&fast, &sql)), expected, "{}", sql);
        }
        for (i, sql) in time_order_queries(lo, hi).into_iter().enumerate() {
            let plan = runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
            // The last one filters on an expression of a tag, which storage does not apply itself.
            prop_assert_eq!(plan.contains("first until"), i < 3, "{}\n{}", sql, plan);
            let expected = runtime.block_on(rows(&general, &sql));
            prop_assert_eq!(runtime.block_on(rows(&fast, &sql)), expected, "{}", sql);
        }
        for sql in count_queries(lo, hi) {
            let expected = runtime.block_on(rows(&general, &sql));
            prop_assert_eq!(runtime.block_on(rows(&fast, &sql)), expected, "{}", sql);
        }
        for sql in latest_queries(lo, hi) {
            let before = reads();
            let expected = runtime.block_on(rows(&general, &sql));
            prop_assert_eq!(reads(), before, "the general path scans: {}", sql);
            let got = runtime.block_on(rows(&fast, &sql));
            prop_assert!(reads() > before, "answered from the newest rows: {}", sql);
            prop_assert_eq!(got, expected, "{}", sql);
        }
    }
}

#[test]
fn count_star_is_read_from_chunk_footers_while_chunks_tell_it_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::test_config(dir.path());
    config.partition_duration_ms = 10;
    let storage = Storage::open(config).expect("open");
    write(&storage, &(0..SERIES).flat_map(|s| (0..30).map(move |t| (s, t, Some(1)))).collect::<Vec<_>>(), 0);
    storage.persist().expect("persist");
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let plan = |sql: &str| runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
    let count = |sql: &str| runtime.block_on(rows(&fast, sql));
    let analyzed = count("EXPLAIN ANALYZE SELECT * FROM m WHERE station = 'a'");
    assert!(analyzed.contains("ScanExec") && analyzed.contains("output_rows=60"), "the scan shows the rows it read: {analyzed}");
    let all = "SELECT count(*) FROM m";
    assert!(!plan(all).contains("ScanExec"), "footers count every row: {}", plan(all));
    assert!(count(all).contains("| 180 "), "{}", count(all));
    // An overwrite in the buffer of a row a chunk holds: only a scan can tell.
    write(&storage, &[(0, 5, Some(2))], 1);
    assert!(plan(all).contains("ScanExec: table=m, read=rows"), "{}", plan(all));
    assert!(count(all).contains("| 180 "), "{}", count(all));
    // Once persisted, two chunks overlap until compacted.
    storage.persist().expect("persist");
    assert!(plan(all).contains("ScanExec"), "{}", plan(all));
    storage.compact().expect("compact");
    assert!(!plan(all).contains("ScanExec"), "{}", plan(all));
    // New readings after every chunk's are counted from the buffer.
    write(&storage, &[(1, 35, Some(3)), (2, 36, None)], 2);
    assert!(!plan(all).contains("ScanExec"), "{}", plan(all));
    assert!(count(all).contains("| 182 "), "{}", count(all));
    // A time range that cuts a chunk's series in two needs a scan; one that holds them does not.
    let cut = format!("SELECT count(*) FROM m WHERE time >= {}", literal(time_ns(0, 15)));
    assert!(plan(&cut).contains("ScanExec"), "{}", plan(&cut));
    assert!(count(&cut).contains("| 92 "), "{}", count(&cut));
    let whole = format!("SELECT count(*) FROM m WHERE time >= {} AND station = 'b'", literal(time_ns(0, 0)));
    assert!(!plan(&whole).contains("ScanExec"), "{}", plan(&whole));
    assert!(count(&whole).contains("| 61 "), "{}", count(&whole));
}

/// Grouped by tags that tell series apart, each group holds one newest row: the aggregate is a
/// projection of them, until a series shares a value of the tag with another.
#[test]
fn groups_of_one_series_take_the_newest_rows_as_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
    let point = |id: &str, site: &str, t: i64, v: Option<f64>| {
        let p = Point::new(t).tag("id", id).tag("site", site).field("n", FieldValue::I64(t));
        match v {
            Some(v) => p.field("v", FieldValue::F64(v)),
            None => p,
        }
    };
    let mut batch = WriteBatch::new();
    for (i, (id, site)) in [("a", "x"), ("b", "x"), ("c", "y")].into_iter().enumerate() {
        for t in 1..5 {
            // The newest row of `b` has no `v`: its last value is NULL, as over every row.
            let v = (id != "b" || t < 4).then_some(i as f64 + t as f64 / 4.0);
            batch.push("k", point(id, site, t * 1_000 + i as i64, v));
        }
    }
    storage.write(&batch).expect("write");
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let general = QueryEngine::new(storage.clone(), QueryConfig { fast_paths: false, ..QueryConfig::default() }).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let by_id = [
        "SELECT id, last_value(v ORDER BY time) AS v, max(time) AS newest FROM k GROUP BY id ORDER BY id",
        "SELECT DISTINCT ON (id) id, site, v, n FROM k ORDER BY id, time DESC",
    ];
    let by_all_tags =
        "SELECT site, id, last(v, time) AS v FROM k WHERE time < '1970-01-01T00:00:00.000003Z' GROUP BY site, id ORDER BY 1, 2";
    let check = |sql: &str, projected: bool| {
        let plan = runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
        assert_eq!(!plan.contains("Aggregate"), projected, "{sql}\n{plan}");
        assert_eq!(runtime.block_on(rows(&fast, sql)), runtime.block_on(rows(&general, sql)), "{sql}");
    };
    for sql in by_id {
        check(sql, true);
    }
    check(by_all_tags, true);
    // A second series with `id` a: a group by `id` may hold two series again.
    let mut batch = WriteBatch::new();
    batch.push("k", point("a", "y", 9_000, Some(7.0)));
    storage.write(&batch).expect("write");
    for sql in by_id {
        check(sql, false);
    }
    check(by_all_tags, true);
}

/// Without `GROUP BY`, a last value over no rows is one row of NULL, as over every row.
#[test]
fn a_last_value_without_groups_answers_one_row_when_no_row_is_in_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    batch.push("plain", Point::new(5).field("v", FieldValue::F64(1.5)));
    storage.write(&batch).expect("write");
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let general = QueryEngine::new(storage, QueryConfig { fast_paths: false, ..QueryConfig::default() }).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for sql in [
        "SELECT last_value(v ORDER BY time) AS v FROM plain",
        "SELECT last_value(v ORDER BY time) AS v FROM plain WHERE time > '1970-01-01T00:00:01Z'",
    ] {
        let expected = runtime.block_on(rows(&general, sql));
        assert_eq!(runtime.block_on(rows(&fast, sql)), expected, "{sql}");
    }
}

/// With a chain of rollups, each part of the range comes from the coarsest rollup that has it
/// final: an 8 ms bucket reads `m_4ms` where it is final, `m_2ms` where only it is, and raw
/// rows for the open windows and the partial windows at the range's edges; a 2 ms bucket
/// cannot read `m_4ms`.
#[test]
fn a_chain_of_rollups_serves_each_part_from_the_coarsest_that_has_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_with_table(dir.path(), None);
    write(&storage, &(0..SERIES).flat_map(|s| (0..42).map(move |t| (s, t, Some(t as i32 - 20)))).collect::<Vec<_>>(), 0);
    storage.settle_rollups().expect("settle rollups");
    let rollups = storage.rollups();
    let frontier = |table: &str| rollups.iter().find(|r| r.table == table).and_then(|r| r.frontier_ns);
    // The newest row is at 41 ms: 2 ms windows final up to 38 ms, and 4 ms windows, which take
    // the final 2 ms windows, up to 36 ms.
    assert_eq!((frontier("m_2ms"), frontier("m_4ms")), (Some(38_000_000), Some(36_000_000)), "{rollups:?}");
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let general = QueryEngine::new(storage.clone(), QueryConfig { fast_paths: false, ..QueryConfig::default() }).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cases = [
        // All of time: m_4ms to 36 ms, m_2ms to 38 ms, raw rows after.
        (
            "SELECT station, date_bin(INTERVAL '8 milliseconds', time) AS t, count(v), sum(v), min(v), max(v), avg(v) FROM m \
          GROUP BY station, t ORDER BY 1, 2"
                .to_owned(),
            ["m_4ms", "m_2ms"].as_slice(),
            true,
        ),
        // From 3 ms: raw rows to 4 ms, m_4ms to 36 ms, m_2ms to 38 ms.
        (
            format!(
                "SELECT sensor, sum(n), count(v), max(v) FROM m WHERE time >= {} AND time <= {} GROUP BY sensor ORDER BY 1",
                literal(3_000_000),
                literal(37_999_999)
            ),
            ["m_4ms", "m_2ms"].as_slice(),
            true,
        ),
        // From 34 ms: no whole final window of m_4ms; m_2ms to 38 ms, raw rows after.
        (
            format!("SELECT station, min(v) FROM m WHERE time >= {} GROUP BY station ORDER BY 1", literal(34_000_000)),
            ["m_2ms"].as_slice(),
            false,
        ),
        // 2 ms buckets fit m_2ms alone.
        (
            "SELECT sensor, date_bin(INTERVAL '2 milliseconds', time) AS t, avg(v) FROM m GROUP BY sensor, t ORDER BY 1, 2".to_owned(),
            ["m_2ms"].as_slice(),
            false,
        ),
    ];
    for (sql, tables, coarse) in cases {
        let plan = runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
        for table in tables {
            assert!(plan.contains(&format!("ScanExec: table={table},")), "reads {table}: {sql}\n{plan}");
        }
        assert_eq!(plan.contains("ScanExec: table=m_4ms,"), coarse, "{sql}\n{plan}");
        assert!(plan.contains("ScanExec: table=m, read=count, sum, min, max per series"), "raw rows after the rollups: {sql}\n{plan}");
        assert_eq!(runtime.block_on(rows(&fast, &sql)), runtime.block_on(rows(&general, &sql)), "{sql}");
    }
}

/// `SELECT DISTINCT tag` reads one series of each value from the series index: values of
/// series with rows in the time range only (a series whose newest row is after the range is
/// scanned for it), `NULL` once for series without the tag, tag conditions applied; a condition
/// storage does not apply exactly, or more than one tag, takes the newest rows instead.
#[test]
fn distinct_tag_values_come_from_the_series_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    for (id, site, times) in [("a", Some("x"), 1..6), ("b", Some("x"), 1..4), ("c", Some("y"), 10..13), ("d", None, 2..3)] {
        for t in times {
            let point = Point::new(t * 1_000_000).tag("id", id).field("v", FieldValue::F64(t as f64));
            batch.push(
                "k",
                match site {
                    Some(site) => point.tag("site", site),
                    None => point,
                },
            );
        }
    }
    storage.write(&batch).expect("write");
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let general = QueryEngine::new(storage.clone(), QueryConfig { fast_paths: false, ..QueryConfig::default() }).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cases = [
        ("SELECT DISTINCT site FROM k ORDER BY site".to_owned(), 3, true),
        (format!("SELECT DISTINCT site FROM k WHERE time <= {} ORDER BY site", literal(3_000_000)), 2, true),
        (format!("SELECT DISTINCT x.site FROM k AS x WHERE x.time >= {} ORDER BY 1", literal(4_000_000)), 2, true),
        (format!("SELECT DISTINCT site FROM k WHERE id <> 'a' AND time >= {} ORDER BY site", literal(4_000_000)), 1, true),
        // `a`, the first series of `x`, does not meet the condition; `b` does.
        ("SELECT DISTINCT site FROM k WHERE id IN ('b', 'c') ORDER BY site".to_owned(), 2, true),
        ("SELECT DISTINCT id FROM k WHERE site IS NULL OR site = 'y' ORDER BY id".to_owned(), 2, false),
        ("SELECT DISTINCT site FROM k WHERE substr(id, 1) = 'a' ORDER BY site".to_owned(), 1, false),
        ("SELECT DISTINCT site, id FROM k ORDER BY site, id".to_owned(), 4, false),
    ];
    for (sql, rows_expected, from_index) in cases {
        let plan = runtime.block_on(rows(&fast, &format!("EXPLAIN {sql}")));
        assert_eq!(plan.contains("read=distinct"), from_index, "{sql}\n{plan}");
        let got = runtime.block_on(rows(&fast, &sql));
        assert_eq!(got, runtime.block_on(rows(&general, &sql)), "{sql}");
        // A header, three rules and a row per value.
        assert_eq!(got.lines().count(), 4 + rows_expected, "{sql}\n{got}");
    }
}
