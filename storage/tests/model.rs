//! Model-based test: random sequences of writes, overwrites, rejected points, persists,
//! compactions, reopens, `DROP TABLE`, `TRUNCATE` and `DELETE`, checked after every step against a `BTreeMap`, and the newest row
//! of each series ([`Storage::latest`]) and row counts from chunk footers
//! ([`Storage::row_count`], when it gives one) against the model's.

use std::collections::BTreeMap;

use isobar_storage::{FieldValue, ScanRequest, SeriesFilter, Storage, TagPredicate, WriteBatch};
use proptest::prelude::*;

use crate::common::{Fields, Key, collect, config, point, read_all};

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(u8, i64, Option<f64>, Option<i64>)>),
    /// A point whose `a` is an integer: rejected for its type, neighbours still written.
    WriteConflict(u8, i64, i64),
    Persist,
    Compact,
    Reopen,
    ScanRange(i64, i64, u8),
    Drop,
    Truncate,
    /// `DELETE` of times `from..=to` of series `s<n>` (4: of all).
    Delete(i64, i64, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop_oneof![Just(None), (-1000i64..1000).prop_map(|v| Some(v as f64 / 8.0)), Just(Some(f64::NAN))];
    let row = (0u8..4, 0i64..16, value, prop::option::of(-5i64..5))
        .prop_filter("at least one field", |(_, _, a, b)| a.is_some() || b.is_some())
        .prop_map(|(s, t, a, b)| (s, t * 250_000, a, b));
    prop_oneof![
        6 => prop::collection::vec(row, 1..12).prop_map(Op::Write),
        1 => (0u8..4, 0i64..16, any::<i64>()).prop_map(|(s, t, v)| Op::WriteConflict(s, t * 250_000, v)),
        2 => Just(Op::Persist),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Drop),
        1 => Just(Op::Truncate),
        2 => (0i64..16, 0i64..16, 0u8..5).prop_map(|(a, b, s)| Op::Delete(a.min(b) * 250_000, a.max(b) * 250_000, s)),
        2 => (0i64..16, 0i64..16, 0u8..5).prop_map(|(a, b, s)| Op::ScanRange(a.min(b) * 250_000, a.max(b) * 250_000, s)),
    ]
}

fn series(s: u8) -> String {
    format!("s{s}")
}

/// Series `s<n>`, or every series for 4.
fn series_filter(s: u8) -> SeriesFilter {
    if s < 4 { SeriesFilter::Tags(vec![TagPredicate::equals("s", &series(s))]) } else { SeriesFilter::All }
}

fn apply(slot: &mut Option<Storage>, model: &mut BTreeMap<Key, Fields>, op: &Op, dir: &std::path::Path) {
    let storage = slot.as_ref().expect("storage is open");
    match op {
        Op::Write(rows) => {
            let mut batch = WriteBatch::new();
            for (s, t, a, b) in rows {
                batch.push("m", point(&series(*s), *t, *a, *b));
                model.insert((series(*s), *t), (a.map(f64::to_bits), *b));
            }
            let receipt = storage.write(&batch).expect("write");
            assert_eq!(receipt.rows_written, rows.len() as u64);
        }
        Op::WriteConflict(s, t, v) => {
            let mut batch = WriteBatch::new();
            batch.push("m", point(&series(*s), *t, Some(1.0), None));
            batch.push("m", point(&series(*s), *t + 1, None, None).field("a", FieldValue::I64(*v)));
            model.insert((series(*s), *t), (Some(1f64.to_bits()), None));
            let receipt = storage.write(&batch).expect("write");
            assert_eq!(receipt.rows_written, 1);
            assert_eq!(receipt.rejected.len(), 1);
            assert_eq!(receipt.rejected[0].reason, "table m, column a: expected f64, found i64");
        }
        Op::Persist => {
            storage.persist().expect("persist");
        }
        Op::Compact => {
            storage.compact().expect("compact");
        }
        Op::Drop => {
            let existed = storage.table("m").is_some();
            let dropped = storage.drop_tables(&["m".to_owned()], true).expect("drop");
            assert_eq!(dropped, if existed { vec!["m".to_owned()] } else { Vec::new() });
            assert!(storage.table("m").is_none(), "m is gone");
            model.clear();
        }
        Op::Truncate => match storage.truncate_tables(&["m".to_owned()]) {
            Ok(_) => model.clear(),
            Err(isobar_storage::Error::NoSuchTable(name)) => assert!(name == "m" && model.is_empty()),
            Err(e) => panic!("truncate: {e}"),
        },
        Op::Delete(from, to, s) => {
            let req = ScanRequest { time_min_ns: *from, time_max_ns: *to, series: series_filter(*s), ..ScanRequest::all("m") };
            let wanted = |(name, t): &Key| (*from..=*to).contains(t) && (*s == 4 || *name == series(*s));
            let expected = model.keys().filter(|k| wanted(k)).count() as u64;
            match storage.delete_rows(&req) {
                Ok(deleted) => assert_eq!(deleted, expected, "rows deleted {from}..={to} series {s}"),
                Err(isobar_storage::Error::NoSuchTable(name)) => assert!(name == "m" && model.is_empty()),
                Err(e) => panic!("delete: {e}"),
            }
            model.retain(|k, _| !wanted(k));
        }
        Op::Reopen => {
            slot.take().expect("storage is open").close(false).expect("close");
            *slot = Some(Storage::open(config(dir)).expect("reopen"));
        }
        Op::ScanRange(from, to, s) => {
            let req = ScanRequest { time_min_ns: *from, time_max_ns: *to, series: series_filter(*s), ..ScanRequest::all("m") };
            let mut got = BTreeMap::new();
            if storage.table("m").is_some() {
                for batch in storage.scan(&req).expect("scan") {
                    collect(&batch.expect("batch"), &mut got);
                }
            }
            let expected: BTreeMap<Key, Fields> = model
                .iter()
                .filter(|((name, t), _)| (*from..=*to).contains(t) && (*s == 4 || *name == series(*s)))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            assert_eq!(got, expected, "scan {from}..={to} series {s}");
            if storage.table("m").is_some() {
                assert_eq!(read_split(storage, &req, 3), expected, "scan split in three {from}..={to} series {s}");
            }
            assert_eq!(latest(storage, &req), newest_of(&expected), "latest {from}..={to} series {s}");
            if let Some(rows) = storage.table("m").and_then(|_| storage.row_count(&req).expect("row count")) {
                assert_eq!(rows, expected.len() as u64, "footer count {from}..={to} series {s}");
            }
        }
    }
}

/// What a scan of `req` split into `n` returns, each part read on a thread of its own at once
/// (`collect` asserts that no row comes twice).
fn read_split(storage: &Storage, req: &ScanRequest, n: usize) -> BTreeMap<Key, Fields> {
    let parts = storage.scan(req).expect("scan").split(n);
    assert_eq!(parts.len(), n);
    let batches: Vec<_> = std::thread::scope(|scope| {
        let readers: Vec<_> = parts.into_iter().map(|part| scope.spawn(move || part.collect::<Vec<_>>())).collect();
        readers.into_iter().flat_map(|reader| reader.join().expect("reader thread")).collect()
    });
    let mut got = BTreeMap::new();
    for batch in batches {
        collect(&batch.expect("batch"), &mut got);
    }
    got
}

/// What [`Storage::latest`] returns, as the model's keys.
fn latest(storage: &Storage, req: &ScanRequest) -> BTreeMap<Key, Fields> {
    let mut got = BTreeMap::new();
    if storage.table("m").is_some() {
        for batch in storage.latest(req).expect("latest").expect("a raw table has latest rows") {
            collect(&batch.expect("batch"), &mut got);
        }
    }
    got
}

/// The row of each series at its newest time.
fn newest_of(rows: &BTreeMap<Key, Fields>) -> BTreeMap<Key, Fields> {
    let mut newest: BTreeMap<String, (Key, Fields)> = BTreeMap::new();
    for (key, fields) in rows {
        newest.insert(key.0.clone(), (key.clone(), *fields));
    }
    newest.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn storage_matches_a_btreemap(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut storage = Some(Storage::open(config(dir.path())).expect("open"));
        let mut model = BTreeMap::new();
        for op in &ops {
            apply(&mut storage, &mut model, op, dir.path());
            let got = read_all(storage.as_ref().expect("open"), "m").expect("scan");
            prop_assert_eq!(&got, &model, "after {:?}", op);
            let newest = latest(storage.as_ref().expect("open"), &ScanRequest::all("m"));
            prop_assert_eq!(newest, newest_of(&model), "latest after {:?}", op);
        }
        storage.expect("open").verify().expect("every chunk block checks out");
    }
}
