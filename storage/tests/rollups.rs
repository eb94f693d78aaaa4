//! Rollups against a model: random streams with out-of-order rows, duplicates, overwrites,
//! late rows, truncations, deletes, persists and reopens (also while windows are marked dirty and not yet
//! recomputed). After every step, each final window of the rollup table equals the aggregates
//! of the raw rows as a `GROUP BY` window would compute them and counts the late rows it took,
//! also before maintenance has rewritten the windows that took late rows; and once maintenance
//! has run, every window the watermark passed is final.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use isobar_storage::{ScanRequest, SeriesFilter, Storage, StorageConfig, TagPredicate, TagTest, WriteBatch};
use proptest::prelude::*;

use crate::common::point;

const SECOND_NS: i64 = 1_000_000_000;
const INTERVAL_NS: i64 = 60 * SECOND_NS;
/// The coarser rollup, `m_5m`, built from `m_1m`.
const COARSE_NS: i64 = 5 * INTERVAL_NS;
const LATENESS_NS: i64 = 5 * SECOND_NS;
/// 2023-11-14, a whole minute.
const BASE_NS: i64 = 1_699_999_980 * SECOND_NS;

#[derive(Debug, Clone)]
enum Op {
    /// The stream's clock moves on by this many seconds, then rows arrive at clock + offset.
    Write(i64, Vec<(u8, i64, Option<i32>, Option<i64>)>),
    Persist,
    Reopen,
    /// Maintenance runs: due windows become final, dirty ones are recomputed.
    Settle,
    /// `TRUNCATE m`: the raw table and its rollups are empty, and start again.
    Truncate,
    /// `DELETE FROM m WHERE time BETWEEN clock + from AND clock + from + length` (seconds), of
    /// series `s<n>` or of all.
    Delete(Option<u8>, i64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let row = (0u8..3, -150i64..20, prop::option::of(-1000i32..1000), prop::option::of(-50i64..50))
        .prop_filter("at least one field", |(_, _, a, b)| a.is_some() || b.is_some());
    prop_oneof![
        8 => (0i64..40, prop::collection::vec(row, 1..10)).prop_map(|(advance, rows)| Op::Write(advance, rows)),
        1 => Just(Op::Persist),
        1 => Just(Op::Reopen),
        3 => Just(Op::Settle),
        1 => Just(Op::Truncate),
        2 => (prop::option::of(0u8..3), -200i64..10, 0i64..200).prop_map(|(s, from, length)| Op::Delete(s, from, length)),
    ]
}

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    c.rollup_interval_ms = 60_000;
    c.rollup_coarser_intervals_ms = vec![300_000];
    c.rollup_lateness_ms = 5_000;
    c.partition_duration_ms = 10 * 60 * 1000;
    c
}

/// What the raw rows say, kept as the test writes them.
#[derive(Debug, Default)]
struct Model {
    raw: BTreeMap<(String, i64), (Option<f64>, Option<i64>)>,
    late: BTreeMap<(String, i64), i64>,
    newest_ns: i64,
    frontier_ns: i64,
    /// Of the coarser rollup.
    coarse_frontier_ns: i64,
}

impl Model {
    /// The frontier once maintenance has run: windows ending at or before the watermark.
    fn settle(&mut self) {
        if self.newest_ns == i64::MIN {
            return;
        }
        let frontier = (self.newest_ns - LATENESS_NS).div_euclid(INTERVAL_NS) * INTERVAL_NS;
        self.frontier_ns = self.frontier_ns.max(frontier);
        // The coarser rollup's windows are final once the finer windows in them are: its
        // newest time is that of the newest final finer window.
        let newest_final = self.windows(INTERVAL_NS).keys().map(|(_, w)| *w).filter(|w| *w < self.frontier_ns).max();
        if let Some(newest) = newest_final {
            self.coarse_frontier_ns = self.coarse_frontier_ns.max((newest + INTERVAL_NS).div_euclid(COARSE_NS) * COARSE_NS);
        }
    }

    /// `SELECT count(a), sum(a), min(a), max(a), avg(a), count(b), ... GROUP BY s, date_bin(interval, time)`.
    fn windows(&self, interval_ns: i64) -> BTreeMap<(String, i64), Aggregates> {
        let mut out: BTreeMap<(String, i64), Aggregates> = BTreeMap::new();
        for ((s, t), (a, b)) in &self.raw {
            let w = out.entry((s.clone(), t.div_euclid(interval_ns) * interval_ns)).or_default();
            if let Some(a) = a {
                w.a.push(*a);
            }
            if let Some(b) = b {
                w.b.push(*b);
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Aggregates {
    a: Vec<f64>,
    b: Vec<i64>,
}

/// One row of the rollup table.
#[derive(Debug)]
struct RollupRow {
    is_final: bool,
    late_updates: i64,
    /// count, sum, min, max, avg.
    a: (i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>),
    b: (i64, Option<i64>, Option<i64>, Option<i64>, Option<f64>),
}

fn read_rollups(storage: &Storage, table: &str) -> BTreeMap<(String, i64), RollupRow> {
    let mut out = BTreeMap::new();
    if storage.table(table).is_none() {
        return out;
    }
    for batch in storage.scan(&ScanRequest::all(table)).expect("scan rollups") {
        let batch: RecordBatch = batch.expect("batch");
        let time = batch.column_by_name("time").expect("time").as_primitive::<TimestampNanosecondType>();
        let s = batch.column_by_name("s").expect("tag s").as_string::<i32>();
        let is_final = batch.column_by_name("final").expect("final").as_boolean();
        let late = batch.column_by_name("late_updates").expect("late_updates").as_primitive::<Int64Type>();
        let f = |name: &str, i: usize| {
            batch.column_by_name(name).map(|c| c.as_primitive::<Float64Type>().clone()).and_then(|c| c.is_valid(i).then(|| c.value(i)))
        };
        let n = |name: &str, i: usize| {
            batch.column_by_name(name).map(|c| c.as_primitive::<Int64Type>().clone()).and_then(|c| c.is_valid(i).then(|| c.value(i)))
        };
        for i in 0..batch.num_rows() {
            let row = RollupRow {
                is_final: is_final.value(i),
                late_updates: late.value(i),
                a: (n("a_count", i).unwrap_or(0), f("a_sum", i), f("a_min", i), f("a_max", i), f("a_avg", i)),
                b: (n("b_count", i).unwrap_or(0), n("b_sum", i), n("b_min", i), n("b_max", i), f("b_avg", i)),
            };
            let key = (s.value(i).to_owned(), time.value(i));
            assert!(out.insert(key.clone(), row).is_none(), "window {key:?} returned twice");
        }
    }
    out
}

fn close(x: Option<f64>, y: Option<f64>) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        (x, y) => x == y,
    }
}

/// Every final window equals the model's aggregates and late count; every window before the
/// frontier is final, and every other window is open.
fn check(storage: &Storage, model: &Model) {
    let rollups = read_rollups(storage, "m_1m");
    let windows = model.windows(INTERVAL_NS);
    for (key, w) in &windows {
        let row = rollups.get(key).unwrap_or_else(|| panic!("window {key:?} is missing"));
        assert_eq!(row.is_final, key.1 < model.frontier_ns, "window {key:?} final iff before the frontier {}", model.frontier_ns);
        if row.is_final {
            check_window(key, row, w, Some(model.late.get(key).copied().unwrap_or(0)));
        }
    }
    for key in rollups.keys() {
        assert!(windows.contains_key(key), "window {key:?} has no raw rows");
    }
}

/// Every final window of the coarser rollup equals the aggregates of the raw rows over its
/// interval at every instant, also while late raw rows wait for maintenance to reach it through
/// the finer rollup; windows before its frontier are final, the others open. Once maintenance has
/// run (`settled`), every coarse window with a final finer window in it has a row.
fn check_coarse(storage: &Storage, model: &Model, settled: bool) {
    let rollups = read_rollups(storage, "m_5m");
    let windows = model.windows(COARSE_NS);
    for (key, w) in &windows {
        let Some(row) = rollups.get(key) else {
            // Only the finer rollup's final rows reach the coarser one, as maintenance writes
            // them.
            let finer_final = |(s, t): &(String, i64)| {
                *s == key.0 && t.div_euclid(COARSE_NS) * COARSE_NS == key.1 && t.div_euclid(INTERVAL_NS) * INTERVAL_NS < model.frontier_ns
            };
            let expected = key.1 < model.coarse_frontier_ns || (settled && model.raw.keys().any(finer_final));
            assert!(!expected, "coarse window {key:?} is missing");
            continue;
        };
        assert_eq!(row.is_final, key.1 < model.coarse_frontier_ns, "coarse window {key:?} final iff before {}", model.coarse_frontier_ns);
        if row.is_final {
            check_window(key, row, w, None);
        }
    }
    for key in rollups.keys() {
        assert!(windows.contains_key(key), "coarse window {key:?} has no raw rows");
    }
}

/// The rollup row of window `key` holds the aggregates of `w` and, when given, `late` late
/// updates.
fn check_window(key: &(String, i64), row: &RollupRow, w: &Aggregates, late: Option<i64>) {
    if let Some(late) = late {
        assert_eq!(row.late_updates, late, "late updates of {key:?}");
    }
    let sum_a: f64 = w.a.iter().sum();
    let count_a = w.a.len() as i64;
    let a_min = w.a.iter().copied().reduce(f64::min);
    let a_max = w.a.iter().copied().reduce(f64::max);
    assert_eq!(row.a.0, count_a, "count(a) of {key:?}");
    assert!(close(row.a.1, (count_a > 0).then_some(sum_a)), "sum(a) of {key:?}: {:?} vs {sum_a}", row.a.1);
    assert_eq!((row.a.2, row.a.3), (a_min, a_max), "min/max(a) of {key:?}");
    assert!(close(row.a.4, (count_a > 0).then(|| sum_a / count_a as f64)), "avg(a) of {key:?}");
    let count_b = w.b.len() as i64;
    let sum_b: i64 = w.b.iter().sum();
    assert_eq!(row.b.0, count_b, "count(b) of {key:?}");
    assert_eq!(row.b.1, (count_b > 0).then_some(sum_b), "sum(b) of {key:?}");
    assert_eq!((row.b.2, row.b.3), (w.b.iter().copied().min(), w.b.iter().copied().max()), "min/max(b) of {key:?}");
    assert!(close(row.b.4, (count_b > 0).then(|| sum_b as f64 / count_b as f64)), "avg(b) of {key:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn final_rollup_windows_equal_group_by_over_raw_rows(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}

/// Runs `ops` against storage and the model, checking after each.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = Some(Storage::open(config(dir.path())).expect("open"));
    let mut model = Model { newest_ns: i64::MIN, frontier_ns: i64::MIN, coarse_frontier_ns: i64::MIN, ..Model::default() };
    let mut clock_ns = BASE_NS;
    for op in ops {
        match op {
            Op::Write(advance_s, rows) => {
                clock_ns += advance_s * SECOND_NS;
                let mut batch = WriteBatch::new();
                for (s, offset_s, a, b) in rows {
                    let (series, time) = (format!("s{s}"), clock_ns + offset_s * SECOND_NS);
                    let a = a.map(|a| f64::from(a) / 8.0);
                    batch.push("m", point(&series, time, a, *b));
                    let window = time.div_euclid(INTERVAL_NS) * INTERVAL_NS;
                    if window < model.frontier_ns {
                        *model.late.entry((series.clone(), window)).or_default() += 1;
                    }
                    model.newest_ns = model.newest_ns.max(time);
                    model.raw.insert((series, time), (a, *b));
                }
                storage.as_ref().expect("open").write(&batch).expect("write");
            }
            Op::Persist => {
                storage.as_ref().expect("open").persist().expect("persist");
            }
            Op::Reopen => {
                storage.take().expect("open").close(false).expect("close");
                storage = Some(Storage::open(config(dir.path())).expect("reopen"));
                // The watermark is rebuilt from the rows there are: a deleted newest row no
                // longer holds it up (the frontier never goes back).
                model.newest_ns = model.raw.keys().map(|(_, t)| *t).max().unwrap_or(i64::MIN);
            }
            Op::Settle => {
                storage.as_ref().expect("open").settle_rollups().expect("settle");
                model.settle();
            }
            Op::Truncate => {
                let storage = storage.as_ref().expect("open");
                if storage.table("m").is_some() {
                    let emptied = storage.truncate_tables(&["m".to_owned()]).expect("truncate");
                    // The rollups once m has rows.
                    prop_assert!(emptied == ["m", "m_1m", "m_5m"] || emptied == ["m"], "{:?}", emptied);
                }
                model = Model { newest_ns: i64::MIN, frontier_ns: i64::MIN, coarse_frontier_ns: i64::MIN, ..Model::default() };
            }
            Op::Delete(series, from_s, length_s) => {
                let storage = storage.as_ref().expect("open");
                let (time_min, time_max) = (clock_ns + from_s * SECOND_NS, clock_ns + (from_s + length_s) * SECOND_NS);
                let series_name = series.map(|s| format!("s{s}"));
                let wanted = |s: &String| series_name.as_ref().is_none_or(|n| n == s);
                let expected = model.raw.keys().filter(|(s, t)| wanted(s) && (time_min..=time_max).contains(t)).count() as u64;
                if storage.table("m").is_some() {
                    let filter = match &series_name {
                        Some(name) => SeriesFilter::Tags(vec![TagPredicate { tag: "s".into(), test: TagTest::In(vec![name.clone()]) }]),
                        None => SeriesFilter::All,
                    };
                    let request = ScanRequest { time_min_ns: time_min, time_max_ns: time_max, series: filter, ..ScanRequest::all("m") };
                    prop_assert_eq!(storage.delete_rows(&request).expect("delete"), expected, "rows deleted");
                }
                model.raw.retain(|(s, t), _| !(wanted(s) && (time_min..=time_max).contains(t)));
                // Every window the delete touched counts late rows from 0 again.
                let (first, last) = (time_min.div_euclid(INTERVAL_NS) * INTERVAL_NS, time_max.div_euclid(INTERVAL_NS) * INTERVAL_NS);
                model.late.retain(|(s, w), _| !(wanted(s) && (first..=last).contains(w)));
            }
        }
        check(storage.as_ref().expect("open"), &model);
        check_coarse(storage.as_ref().expect("open"), &model, matches!(op, Op::Settle));
    }
    // The watermark moves far on: every window of the stream is final and exact.
    let storage = storage.as_ref().expect("open");
    let far = clock_ns + 3_600 * SECOND_NS;
    let mut batch = WriteBatch::new();
    batch.push("m", point("s9", far, Some(0.0), None));
    storage.write(&batch).expect("write");
    model.raw.insert(("s9".into(), far), (Some(0.0), None));
    model.newest_ns = far;
    storage.settle_rollups().expect("settle");
    model.settle();
    check(storage, &model);
    check_coarse(storage, &model, true);
    Ok(())
}

#[test]
fn writes_to_a_rollup_table_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    let mut batch = WriteBatch::new();
    batch.push("m", point("s0", BASE_NS, Some(1.0), None));
    storage.write(&batch).expect("write");
    let mut batch = WriteBatch::new();
    batch.push("m_1m", point("s0", BASE_NS, Some(1.0), None));
    let receipt = storage.write(&batch).expect("write");
    assert_eq!(receipt.rows_written, 0);
    assert!(receipt.rejected[0].reason.contains("is the rollup of m"), "{:?}", receipt.rejected);
}

/// With the maintainer on its own thread, finalizing windows and rewriting those that took
/// late rows while the test reads: a final window read right after a write, whatever the
/// maintainer is doing then, equals the raw rows and counts its late rows; so does a final
/// window of the coarser rollup.
#[test]
fn final_windows_are_exact_while_the_maintainer_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.background_persist = true;
    c.persist_buffer_bytes = 256 * 1024;
    let storage = Storage::open(c).expect("open");
    let mut model = Model { newest_ns: i64::MIN, frontier_ns: i64::MIN, coarse_frontier_ns: i64::MIN, ..Model::default() };
    // A small deterministic generator, so a failure repeats.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Windows that read final: a row for one of them now is late.
    let mut finals: Vec<(String, i64)> = Vec::new();
    let (mut late_rows, mut coarse_finals) = (0, 0);
    for step in 0..800i64 {
        let clock_ns = BASE_NS + step * 5 * SECOND_NS;
        let mut batch = WriteBatch::new();
        let mut rows = Vec::new();
        for s in 0..4 {
            rows.push((format!("s{s}"), clock_ns + next(5) as i64 * SECOND_NS));
        }
        for _ in 0..next(4) {
            if finals.is_empty() {
                break;
            }
            let (series, window) = finals[next(finals.len() as u64) as usize].clone();
            // A new time in the window, or one that replaces a value.
            rows.push((series, window + next(60) as i64 * SECOND_NS));
        }
        for (series, time) in rows {
            let (a, b) = (Some(next(1000) as f64 / 4.0), Some(next(100) as i64 - 50));
            batch.push("m", point(&series, time, a, b));
            let window = time.div_euclid(INTERVAL_NS) * INTERVAL_NS;
            if finals.contains(&(series.clone(), window)) {
                *model.late.entry((series.clone(), window)).or_default() += 1;
                late_rows += 1;
            }
            model.raw.insert((series, time), (a, b));
        }
        storage.write(&batch).expect("write");
        let rollups = read_rollups(&storage, "m_1m");
        let windows = model.windows(INTERVAL_NS);
        finals.clear();
        for (key, row) in rollups.iter().filter(|(_, row)| row.is_final) {
            let w = windows.get(key).unwrap_or_else(|| panic!("window {key:?} has no raw rows"));
            check_window(key, row, w, Some(model.late.get(key).copied().unwrap_or(0)));
            finals.push(key.clone());
        }
        // The coarser rollup's final windows too, while late rows make their way up to it.
        let coarse_windows = model.windows(COARSE_NS);
        for (key, row) in read_rollups(&storage, "m_5m").iter().filter(|(_, row)| row.is_final) {
            let w = coarse_windows.get(key).unwrap_or_else(|| panic!("coarse window {key:?} has no raw rows"));
            check_window(key, row, w, None);
            coarse_finals += 1;
        }
    }
    assert!(finals.len() > 100, "windows became final: {}", finals.len());
    assert!(coarse_finals > 100, "coarse windows read final: {coarse_finals}");
    assert!(late_rows > 100, "late rows written: {late_rows}");
}

/// A table written while it had no rollup gets one when isobar reopens with rollups for it,
/// built from every raw row, with the maintainer's thread running: the rebuild reads the
/// table in many groups of series, and no round in between may move the frontier past rows
/// of groups not yet read.
#[test]
fn a_rollup_added_on_reopen_covers_every_raw_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.rollup_table_intervals_ms = BTreeMap::from([("m".to_owned(), vec![])]);
    c.background_persist = true;
    let storage = Storage::open(c.clone()).expect("open");
    let mut model = Model { newest_ns: i64::MIN, frontier_ns: i64::MIN, coarse_frontier_ns: i64::MIN, ..Model::default() };
    let (series_count, seconds) = (200, 3_600);
    for second in (0..seconds).step_by(60) {
        let mut batch = WriteBatch::new();
        for s in 0..series_count {
            for t in second..second + 60 {
                let (series, time) = (format!("s{s}"), BASE_NS + t * SECOND_NS);
                let (a, b) = (Some(f64::from(s) + t as f64 / 4.0), Some(t % 17 - 8));
                batch.push("m", point(&series, time, a, b));
                model.newest_ns = model.newest_ns.max(time);
                model.raw.insert((series, time), (a, b));
            }
        }
        storage.write(&batch).expect("write");
    }
    storage.close(false).expect("close");

    c.rollup_table_intervals_ms.clear();
    let storage = Storage::open(c).expect("reopen with rollups");
    storage.settle_rollups().expect("settle");
    model.settle();
    check(&storage, &model);
}

#[test]
fn tables_have_their_own_rollup_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.rollup_table_intervals_ms = BTreeMap::from([("fast".to_owned(), vec![10_000, 60_000]), ("quiet".to_owned(), vec![])]);
    let storage = Storage::open(c.clone()).expect("open");
    let mut batch = WriteBatch::new();
    for table in ["m", "fast", "quiet"] {
        batch.push(table, point("s0", BASE_NS, Some(1.0), None));
    }
    storage.write(&batch).expect("write");
    let names: Vec<String> = storage.tables().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["fast", "fast_10s", "fast_1m", "m", "m_1m", "m_5m", "quiet"]);
    storage.close(false).expect("close");

    // A coarser interval configured later is built from the rollup the table has.
    c.rollup_table_intervals_ms.insert("fast".to_owned(), vec![10_000, 60_000, 600_000]);
    let storage = Storage::open(c.clone()).expect("reopen");
    assert!(storage.table("fast_10m").is_some(), "the new coarser rollup exists on open");
    storage.close(false).expect("close");

    for bad in [vec![60_000, 90_000], vec![7_000], vec![60_000, 60_000]] {
        let mut c = config(dir.path());
        c.rollup_table_intervals_ms.insert("fast".to_owned(), bad.clone());
        let err = c.validate().expect_err("a chain that cannot work").to_string();
        assert!(err.contains("rollup_table_intervals_ms.fast"), "{bad:?}: {err}");
    }
}

/// A late row for a finer window of a series whose coarser rollup has no row yet (its only
/// other row is in an open window) reads in the coarser rollup at once, before maintenance
/// feeds the finer window to it: the coarser rollup has the series from the start.
#[test]
fn a_late_row_of_a_series_new_to_the_coarser_rollup_reads_there_at_once() {
    use Op::{Settle, Write};
    let ops = vec![
        Write(117, vec![(0, -142, Some(448), Some(-22)), (0, -123, None, Some(12)), (0, -19, Some(838), Some(-17))]),
        Write(28, vec![(0, -71, Some(-842), Some(19))]),
        Write(20, vec![(1, -40, Some(969), None), (0, -40, None, Some(42)), (2, -104, Some(-893), Some(-1))]),
        Settle,
        Write(18, vec![(1, -90, None, Some(-33)), (1, -56, Some(745), None)]),
    ];
    run(&ops).expect("matches the model");
}
