//! `ALTER TABLE`: renamed tables and columns keep their rows (in the buffer and in chunks, also
//! after a reopen), the rollup tables follow, an added column is empty in the rows stored
//! before it, and a dropped column's values are never read again, even by a new column of the
//! same name.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use isobar_storage::{Error, FieldType, FieldValue, Point, ScanRequest, Storage, StorageConfig, TableAlteration, WriteBatch};

use crate::common::{config, read_all};

const MINUTE_NS: i64 = 60_000_000_000;
/// 2023-11-14, a whole minute.
const BASE_NS: i64 = 1_699_999_980_000_000_000;

fn rollup_config(dir: &std::path::Path) -> StorageConfig {
    let mut c = StorageConfig::test_config(dir);
    c.rollup_interval_ms = 60_000;
    c.rollup_coarser_intervals_ms = vec![300_000];
    c.rollup_lateness_ms = 0;
    c
}

/// Rows of station `st-<i % 2>` at `BASE_NS + i` minutes, `temp` = i and `n` = 10 i.
fn write(storage: &Storage, table: &str, rows: std::ops::Range<i64>) {
    let mut batch = WriteBatch::new();
    for i in rows {
        let point = Point::new(BASE_NS + i * MINUTE_NS)
            .tag("station", &format!("st-{}", i % 2))
            .field("temp", FieldValue::F64(i as f64))
            .field("n", FieldValue::I64(i * 10));
        batch.push(table, point);
    }
    let receipt = storage.write(&batch).expect("write");
    assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
}

fn batches(storage: &Storage, table: &str) -> Vec<RecordBatch> {
    storage.scan(&ScanRequest::all(table)).expect("scan").map(|b| b.expect("batch")).collect()
}

/// The column `name` of every row of `table`, as f64 (NaN for null), in scan order.
fn column(storage: &Storage, table: &str, name: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for b in batches(storage, table) {
        let c = b.column_by_name(name).unwrap_or_else(|| panic!("{table} has no column {name}: {:?}", b.schema()));
        for i in 0..c.len() {
            out.push(match c.is_null(i) {
                true => f64::NAN,
                false => match c.data_type() {
                    arrow::datatypes::DataType::Int64 => c.as_primitive::<Int64Type>().value(i) as f64,
                    _ => c.as_primitive::<Float64Type>().value(i),
                },
            });
        }
    }
    out
}

fn column_names(storage: &Storage, table: &str) -> Vec<String> {
    storage.table(table).expect("table").columns.iter().map(|c| c.name.clone()).collect()
}

fn alter(storage: &Storage, table: &str, change: TableAlteration) -> Result<(), Error> {
    storage.alter_table(table, &[change])
}

fn rename_column(from: &str, to: &str) -> TableAlteration {
    TableAlteration::RenameColumn { from: from.into(), to: to.into() }
}

#[test]
fn renamed_tables_and_columns_keep_their_rows_and_rollups_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(rollup_config(dir.path())).expect("open");
    write(&storage, "m", 0..6);
    storage.persist().expect("persist");
    write(&storage, "m", 6..12);
    storage.settle_rollups().expect("settle");
    let temps = column(&storage, "m", "temp");
    let sums = column(&storage, "m_1m", "temp_sum");
    assert_eq!(temps.len(), 12);

    for rollup in ["m_1m", "m_5m"] {
        assert!(alter(&storage, rollup, TableAlteration::RenameTo("x".into())).is_err_and(|e| e.to_string().contains("rollup of m")));
    }
    storage.create_table("taken_1m", &[]).expect("create");
    assert!(matches!(alter(&storage, "m", TableAlteration::RenameTo("taken".into())), Err(Error::TableExists(t)) if t == "taken_1m"));
    assert!(matches!(alter(&storage, "nope", TableAlteration::RenameTo("x".into())), Err(Error::NoSuchTable(_))));

    alter(&storage, "m", TableAlteration::RenameTo("weather".into())).expect("rename");
    alter(&storage, "weather", rename_column("temp", "temperature")).expect("rename a field");
    alter(&storage, "weather", rename_column("station", "site")).expect("rename a tag");
    assert!(alter(&storage, "weather", rename_column("temperature", "n")).is_err(), "n is taken");
    assert!(alter(&storage, "weather", rename_column("time", "t")).is_err(), "time stays time");
    assert!(alter(&storage, "weather", rename_column("nope", "x")).is_err());

    let check = |storage: &Storage| {
        // (taken_1m is a raw table: it has rollups of its own.)
        let names: Vec<String> = storage.tables().into_iter().map(|t| t.name).filter(|n| !n.starts_with("taken")).collect();
        assert_eq!(names, ["weather", "weather_1m", "weather_5m"]);
        assert_eq!(column(storage, "weather", "temperature"), temps);
        assert_eq!(column(storage, "weather_1m", "temperature_sum"), sums);
        assert!(column_names(storage, "weather_1m").contains(&"site".to_owned()));
        assert!(column_names(storage, "weather_5m").contains(&"temperature_max".to_owned()));
        assert!(storage.series("weather").expect("series").iter().all(|(_, tags)| tags[0].0 == "site"));
    };
    check(&storage);
    storage.close(false).expect("close");
    check(&Storage::open(rollup_config(dir.path())).expect("reopen"));
    // Writes go on under the new names, and roll up.
    let storage = Storage::open(rollup_config(dir.path())).expect("reopen");
    let mut batch = WriteBatch::new();
    batch.push("weather", Point::new(BASE_NS + 20 * MINUTE_NS).tag("site", "st-0").field("temperature", FieldValue::F64(99.0)));
    batch.push("weather", Point::new(BASE_NS + 40 * MINUTE_NS).tag("site", "st-0").field("temperature", FieldValue::F64(1.0)));
    storage.write(&batch).expect("write");
    storage.settle_rollups().expect("settle");
    let maxes = column(&storage, "weather_1m", "temperature_max");
    assert!(maxes.contains(&99.0), "{maxes:?}");
}

#[test]
fn added_columns_are_empty_before_and_dropped_columns_are_never_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(rollup_config(dir.path())).expect("open");
    write(&storage, "m", 0..4);
    storage.persist().expect("persist");
    write(&storage, "m", 4..8);

    let add = |name: &str, ty, if_not_exists| TableAlteration::AddColumn { name: name.into(), ty, if_not_exists };
    let drop = |name: &str, if_exists| TableAlteration::DropColumn { name: name.into(), if_exists };
    storage.alter_table("m", &[add("gust", FieldType::F64, false), add("n", FieldType::F64, true)]).expect("add");
    assert!(alter(&storage, "m", add("n", FieldType::F64, false)).is_err(), "n exists");
    assert!(column(&storage, "m", "gust").iter().all(|v| v.is_nan()), "no stored row has gust");
    assert!(column_names(&storage, "m_1m").contains(&"gust_avg".to_owned()), "the rollup has gust's aggregates");

    // All or none: the second change fails, so the first is not made either.
    assert!(storage.alter_table("m", &[drop("n", false), drop("station", false)]).is_err_and(|e| e.to_string().contains("is a tag")));
    assert!(column_names(&storage, "m").contains(&"n".to_owned()));
    assert!(alter(&storage, "m", drop("time", true)).is_err());
    alter(&storage, "m", drop("nope", true)).expect("IF EXISTS");

    alter(&storage, "m", drop("n", false)).expect("drop n");
    assert!(!column_names(&storage, "m").contains(&"n".to_owned()));
    assert!(!column_names(&storage, "m_1m").iter().any(|c| c.starts_with("n_")), "{:?}", column_names(&storage, "m_1m"));
    // A new n, of another type: the old values (in chunks, buffer and WAL) are not its.
    let mut batch = WriteBatch::new();
    batch.push("m", Point::new(BASE_NS + 100 * MINUTE_NS).tag("station", "st-0").field("n", FieldValue::String("new".into())));
    assert!(storage.write(&batch).expect("write").rejected.is_empty());
    let check = |storage: &Storage| {
        let strings: Vec<Option<String>> = batches(storage, "m")
            .iter()
            .flat_map(|b| b.column_by_name("n").expect("n").as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>())
            .collect();
        assert_eq!(strings.iter().flatten().collect::<Vec<_>>(), ["new"], "{strings:?}");
        assert_eq!(strings.len(), 9);
        assert_eq!(column(storage, "m", "temp").iter().filter(|v| !v.is_nan()).count(), 8, "temp is untouched");
    };
    check(&storage);
    storage.close(false).expect("close");
    let storage = Storage::open(rollup_config(dir.path())).expect("reopen with the dropped column in a chunk and the WAL");
    check(&storage);
    storage.persist().expect("persist");
    storage.compact().expect("compact, leaving the dropped column's values behind");
    storage.close(false).expect("close");
    let storage = Storage::open(rollup_config(dir.path())).expect("reopen");
    check(&storage);
    storage.verify().expect("chunks check out");
    assert_eq!(read_all(&storage, "no such table").expect("no table").len(), 0);
}

#[test]
fn alter_without_rollups_changes_only_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(config(dir.path())).expect("open");
    write(&storage, "w", 0..3);
    alter(&storage, "w", TableAlteration::RenameTo("v".into())).expect("rename");
    assert!(storage.table("w").is_none());
    let mut n = column(&storage, "v", "n");
    n.sort_by(f64::total_cmp);
    assert_eq!(n, [0.0, 10.0, 20.0]);
    assert_eq!(storage.tables().len(), 1);
}
