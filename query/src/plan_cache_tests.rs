//! A query run again takes its optimized plan from the cache (`plan_cache.rs`) and answers
//! what a plan made anew answers, while rows are written, overwritten and expire, rollup
//! windows become final, chunks are persisted and a column is added.

use isobar_storage::{FieldValue, Point, WriteBatch};

use crate::engine::{QueryConfig, QueryEngine};
use crate::fast_paths_tests::{
    SERIES, count_queries, latest_queries, open_with_table, rollup_queries, rows, time_ns, time_order_queries, write,
};

#[test]
fn kept_plans_answer_as_new_plans_do() {
    check_kept_plans(None);
}

/// Raw rows expire while the rollup keeps its windows: a plan that read the rollup from an
/// old cutoff on would count rows that are gone.
#[test]
fn kept_plans_follow_retention_cutoffs() {
    check_kept_plans(Some(12));
}

fn check_kept_plans(retention_ms: Option<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_with_table(dir.path(), retention_ms);
    let kept = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (lo, hi) = (time_ns(0, 3), time_ns(0, 33));
    let mut queries = rollup_queries(lo, hi);
    queries.extend(count_queries(lo, hi));
    queries.extend(latest_queries(lo, hi));
    queries.extend(time_order_queries(lo, hi));
    queries.push("SELECT * FROM m ORDER BY time, station, sensor".into());
    for round in 0..10i64 {
        // Five new ticks of every series, and a row of an earlier tick that replaces a value.
        let ticks = round * 5..round * 5 + 5;
        let rows_now: Vec<_> = (0..SERIES).flat_map(|s| ticks.clone().map(move |t| (s, t, Some(s as i32 * 3 + t as i32)))).collect();
        write(&storage, &rows_now, round);
        write(&storage, &[(round as usize % SERIES, round * 3, Some(-7))], round);
        match round % 3 {
            0 => storage.settle_rollups().expect("settle"),
            1 => drop(storage.persist().expect("persist")),
            _ => {}
        }
        if round == 6 {
            let mut batch = WriteBatch::new();
            batch.push("m", Point::new(time_ns(1, ticks.end)).tag("station", "a").tag("sensor", "hum").field("w", FieldValue::I64(1)));
            storage.write(&batch).expect("write a new column");
        }
        let fresh = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
        let made_before = kept.plans_reused().1;
        for sql in &queries {
            let expected = runtime.block_on(rows(&fresh, sql));
            // Kept from the round before if nothing it depends on changed, then kept from now.
            assert_eq!(runtime.block_on(rows(&kept, sql)), expected, "round {round}: {sql}");
            assert_eq!(runtime.block_on(rows(&kept, sql)), expected, "round {round}, run again: {sql}");
        }
        // Windows became final: every plan is made again, to read the rollup up to the new
        // frontier rather than raw rows.
        if round % 3 == 0 && round > 0 {
            let made = kept.plans_reused().1 - made_before;
            assert!(made >= queries.len() as u64, "round {round}: {made} plans made after the frontier moved");
        }
    }
    let (reused, made) = kept.plans_reused();
    let (queries_count, rounds) = (queries.len() as u64, 10);
    assert!(reused >= queries_count * rounds, "plans kept and used again: {reused}");
    assert!(made > queries_count, "plans made again once what they read changed: {made}");
    if retention_ms.is_none() {
        // Rounds that only write rows change nothing a plan is made from.
        assert!(reused > queries_count * (rounds + 2), "plans kept across writes: {reused}");
    }

    // `now()` is the time a query starts: such plans are never kept.
    for _ in 0..2 {
        runtime.block_on(rows(&kept, "SELECT now() AS t, count(*) FROM m WHERE time < now()"));
    }
    assert_eq!(kept.plans_reused(), (reused, made), "a plan with now() is neither kept nor looked up");

    // A table function's scan is named after the function, whatever its arguments.
    for n in [3, 5] {
        let answer = runtime.block_on(rows(&kept, &format!("SELECT count(*) AS n FROM generate_series(1, {n})")));
        assert!(answer.contains(&format!("| {n} ")), "{answer}");
    }
}
