//! Rows given in columns ([`Columns`]) are written exactly as the same rows given as points:
//! the same rows stored, the same columns and series made, the same rows refused (type
//! conflicts, new columns part-way, strings over the limit, the series limit) for the same
//! reasons (a row's fields are checked in the order of the batch's columns).

use std::sync::Arc;

use arrow::util::display::array_value_to_string;
use isobar_storage::{Columns, FieldValue, Point, ScanRequest, Storage, WriteBatch, WriteReceipt};
use proptest::prelude::*;

use crate::common::config;

/// Tag sets by their tags, each in one `Arc` that every batch shares, as line protocol's
/// parsed keys are shared between writes.
type TagSetPool = Vec<(Vec<(String, String)>, Arc<[(String, String)]>)>;

/// The same points in columns: one tag set per distinct tags, taken from `pool`, fields by name.
fn to_columns(points: &[Point], pool: &mut TagSetPool) -> Columns {
    let mut columns = Columns::new();
    let mut tag_sets: Vec<(Vec<(String, String)>, u32)> = Vec::new();
    for point in points {
        let tag_set = match tag_sets.iter().find(|(tags, _)| *tags == point.tags) {
            Some((_, i)) => *i,
            None => {
                let shared = match pool.iter().find(|(tags, _)| *tags == point.tags) {
                    Some((_, shared)) => Arc::clone(shared),
                    None => {
                        pool.push((point.tags.clone(), point.tags.clone().into()));
                        Arc::clone(&pool[pool.len() - 1].1)
                    }
                };
                let i = columns.add_tag_set(shared);
                tag_sets.push((point.tags.clone(), i));
                i
            }
        };
        let row = columns.push_row(tag_set, point.time.0);
        for (name, value) in &point.fields {
            let field = columns.field(name);
            columns.set(row, field, value.clone());
        }
    }
    columns
}

/// Every row of `table`, each value as text, in scan order, with the column names.
fn rows(storage: &Storage, table: &str) -> Vec<Vec<String>> {
    let Some(schema) = storage.table(table) else { return Vec::new() };
    let mut out = vec![schema.columns.iter().map(|c| format!("{}:{:?}", c.name, c.kind)).collect()];
    for batch in storage.scan(&ScanRequest::all(table)).expect("scan") {
        let batch = batch.expect("batch");
        for i in 0..batch.num_rows() {
            out.push(batch.columns().iter().map(|c| array_value_to_string(c, i).expect("display")).collect());
        }
    }
    out
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        (-3i64..3).prop_map(FieldValue::I64),
        (-3i64..3).prop_map(|v| FieldValue::F64(v as f64 / 2.0)),
        any::<bool>().prop_map(FieldValue::Bool),
        "[a-z]{0,12}".prop_map(|s| FieldValue::String(s.into())),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    let tags = prop::collection::btree_map(prop::sample::select(vec!["s", "t", "time"]), prop::sample::select(vec!["x", "y", "z"]), 0..3);
    let fields = prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "s"]), value(), 0..3);
    (0i64..50, tags, fields).prop_map(|(time, tags, fields)| Point {
        time: isobar_storage::TimestampNs(time * 1000),
        tags: tags.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}

fn open(dir: &std::path::Path) -> Storage {
    let mut config = config(dir);
    config.string_bytes_max = 8;
    config.series_per_table_max = 4;
    Storage::open(config).expect("open")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn columns_are_written_as_points_are(batches in prop::collection::vec(prop::collection::vec(point(), 0..20), 1..4)) {
        let (dir_points, dir_columns) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let (as_points, as_columns) = (open(dir_points.path()), open(dir_columns.path()));
        let mut pool = TagSetPool::new();
        for points in &batches {
            let columns = to_columns(points, &mut pool);
            // A row in columns has its fields in the columns' order, which decides which of
            // a row's problems its reason names.
            let points: Vec<Point> = (0..columns.len()).map(|row| columns.point(row)).collect();
            let mut batch = WriteBatch::new();
            batch.extend("m", points.iter().cloned());
            let expected: WriteReceipt = as_points.write(&batch).expect("write points");
            let mut batch = WriteBatch::new();
            batch.push_columns("m", columns);
            let got = as_columns.write(&batch).expect("write columns");
            prop_assert_eq!(got.rows_written, expected.rows_written);
            let refused = |r: &WriteReceipt| r.rejected.iter().map(|r| (r.index, r.reason.clone())).collect::<Vec<_>>();
            prop_assert_eq!(refused(&got), refused(&expected));
            prop_assert_eq!(rows(&as_columns, "m"), rows(&as_points, "m"));
            prop_assert_eq!(as_columns.series("m").ok(), as_points.series("m").ok());
        }
    }
}

/// One row of `columns` in table `table` with the tag set `tags`, at `time`, `a` = `value`.
fn write_row(storage: &Storage, table: &str, tags: &Arc<[(String, String)]>, time: i64, value: f64) {
    let mut columns = Columns::new();
    let tag_set = columns.add_tag_set(Arc::clone(tags));
    let row = columns.push_row(tag_set, time);
    let field = columns.field("a");
    columns.set(row, field, FieldValue::F64(value));
    let mut batch = WriteBatch::new();
    batch.push_columns(table, columns);
    assert_eq!(storage.write(&batch).expect("write").rows_written, 1);
}

#[test]
fn a_tag_set_shared_between_writes_finds_its_own_series_in_each_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    let x: Arc<[(String, String)]> = vec![("s".to_owned(), "x".to_owned())].into();
    let y: Arc<[(String, String)]> = vec![("s".to_owned(), "y".to_owned())].into();
    // Table `n` gets series y first, so the shared tag set x has different series ids in m and n.
    write_row(&storage, "n", &y, 1, 1.0);
    for time in 1..4 {
        write_row(&storage, "m", &x, time, 2.0);
        write_row(&storage, "n", &x, time, 3.0);
    }
    // A tag set whose `Arc` is gone: a new one with other tags may get its address, and must
    // not be taken for it.
    for value in 10..20 {
        let fresh: Arc<[(String, String)]> = vec![("s".to_owned(), format!("z{value}"))].into();
        write_row(&storage, "m", &fresh, i64::from(value), f64::from(value));
    }
    // Each table's (s, a) pairs.
    let pairs = |table: &str| {
        let mut pairs = Vec::new();
        for batch in storage.scan(&ScanRequest::all(table)).expect("scan") {
            let batch = batch.expect("batch");
            let column = |name: &str| batch.column_by_name(name).expect("column").clone();
            let (s, a) = (column("s"), column("a"));
            for i in 0..batch.num_rows() {
                let text = |c: &arrow::array::ArrayRef| array_value_to_string(c, i).expect("display");
                pairs.push((text(&s), text(&a)));
            }
        }
        pairs.sort();
        pairs
    };
    let pair = |s: &str, a: f64| (s.to_owned(), format!("{a:?}"));
    let mut m = vec![pair("x", 2.0); 3];
    m.extend((10..20).map(|v| pair(&format!("z{v}"), f64::from(v))));
    m.sort();
    assert_eq!(pairs("m"), m);
    assert_eq!(pairs("n"), [vec![pair("x", 3.0); 3], vec![pair("y", 1.0)]].concat());
    assert_eq!(storage.series("m").expect("series").len(), 11);
    assert_eq!(storage.series("n").expect("series").len(), 2);
}
