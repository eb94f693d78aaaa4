//! Rows given in columns ([`Columns`]) are written exactly as the same rows given as points:
//! the same rows stored, the same columns and series made, the same rows refused (type
//! conflicts, new columns part-way, strings over the limit, the series limit) for the same
//! reasons (a row's fields are checked in the order of the batch's columns).

use arrow::util::display::array_value_to_string;
use isobar_storage::{Columns, FieldValue, Point, ScanRequest, Storage, WriteBatch, WriteReceipt};
use proptest::prelude::*;

use crate::common::config;

/// The same points in columns: one tag set per distinct tags, fields by name.
fn to_columns(points: &[Point]) -> Columns {
    let mut columns = Columns::new();
    let mut tag_sets: Vec<(Vec<(String, String)>, u32)> = Vec::new();
    for point in points {
        let tag_set = match tag_sets.iter().find(|(tags, _)| *tags == point.tags) {
            Some((_, i)) => *i,
            None => {
                let i = columns.add_tag_set(point.tags.clone());
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
        for points in &batches {
            let columns = to_columns(points);
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
