//! The Parquet lake: closed days of a table written to the cold store as Parquet with a
//! `_SUCCESS` marker, holding exactly the day's rows, and written again when the day changes
//! (a late row, a `DELETE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use isobar_storage::{ColdStoreConfig, ScanRequest, SeriesFilter, Storage, StorageConfig, TagPredicate, WriteBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{Fields, Key, point, read_all};

const DAY_NS: i64 = 86_400_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;

fn lake_config(dir: &Path) -> StorageConfig {
    let mut c = crate::common::config(dir);
    c.partition_duration_ms = 86_400_000;
    c.lake_tables = vec!["m".into()];
    c.lake_delay_ms = 3_600_000;
    c.cold_store = ColdStoreConfig::Local(Some(dir.join("bucket")));
    c
}

/// Rows of s0..s3 every minute of the first `minutes` of day `day`.
fn write_day(storage: &Storage, day: i64, minutes: i64) {
    let mut batch = WriteBatch::new();
    for m in 0..minutes {
        for s in 0..4 {
            batch.push("m", point(&format!("s{s}"), day * DAY_NS + m * MINUTE_NS, Some(m as f64 / 4.0), Some(s)));
        }
    }
    storage.write(&batch).expect("write");
}

fn day_file(dir: &Path, date: &str, file: &str) -> PathBuf {
    dir.join("bucket/lake/m").join(format!("date={date}")).join(file)
}

/// The rows of a lake file, as the tests key rows.
fn parquet_rows(path: &Path) -> BTreeMap<Key, Fields> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
    let mut out = BTreeMap::new();
    let mut last: Option<(String, i64)> = None;
    for batch in reader {
        let batch = batch.expect("batch");
        let time = batch.column_by_name("time").expect("time").as_primitive::<TimestampNanosecondType>().clone();
        let s = batch.column_by_name("s").expect("s").as_string::<i32>().clone();
        let a = batch.column_by_name("a").expect("a").as_primitive::<Float64Type>().clone();
        let b = batch.column_by_name("b").expect("b").as_primitive::<Int64Type>().clone();
        for i in 0..batch.num_rows() {
            let key = (s.value(i).to_owned(), time.value(i));
            assert!(last.as_ref().is_none_or(|l| *l < key), "rows sorted by series and time: {last:?} then {key:?}");
            last = Some(key.clone());
            out.insert(key, (a.is_valid(i).then(|| a.value(i).to_bits()), b.is_valid(i).then(|| b.value(i))));
        }
    }
    out
}

fn day_rows(storage: &Storage, day: i64) -> BTreeMap<Key, Fields> {
    read_all(storage, "m").expect("scan").into_iter().filter(|((_, t), _)| t.div_euclid(DAY_NS) == day).collect()
}

#[test]
fn closed_days_are_written_as_parquet_and_again_when_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(lake_config(dir.path())).expect("open");
    for day in 0..3 {
        write_day(&storage, day, 600);
        storage.persist().expect("persist");
    }
    // Days 0 and 1 ended more than an hour before the newest row (day 2, 09:59).
    assert_eq!(storage.export_lake().expect("export"), 2);
    for (day, date) in [(0, "1970-01-01"), (1, "1970-01-02")] {
        assert_eq!(parquet_rows(&day_file(dir.path(), date, "part-0.parquet")), day_rows(&storage, day), "day {day}");
        assert!(day_file(dir.path(), date, "_SUCCESS").exists());
    }
    assert!(!day_file(dir.path(), "1970-01-03", "part-0.parquet").exists(), "the open day is not written");
    assert_eq!(storage.export_lake().expect("export"), 0, "nothing changed");

    // A DELETE and a late row change days 0 and 1: they are written again, and a reopen
    // remembers what was written.
    let s0 = SeriesFilter::Tags(vec![TagPredicate::equals("s", "s0")]);
    storage.delete_rows(&ScanRequest { time_max_ns: DAY_NS - 1, series: s0, ..ScanRequest::all("m") }).expect("delete");
    write_day(&storage, 1, 1);
    storage.persist().expect("persist");
    drop(storage);
    let storage = Storage::open(lake_config(dir.path())).expect("reopen");
    assert_eq!(storage.export_lake().expect("export"), 2);
    assert_eq!(parquet_rows(&day_file(dir.path(), "1970-01-01", "part-0.parquet")), day_rows(&storage, 0));
    assert_eq!(parquet_rows(&day_file(dir.path(), "1970-01-01", "part-0.parquet")).len(), 1800);
    assert_eq!(parquet_rows(&day_file(dir.path(), "1970-01-02", "part-0.parquet")), day_rows(&storage, 1));
    assert_eq!(storage.export_lake().expect("export"), 0);
}

/// The lake's files of `m`, by date.
fn lake_dates(dir: &Path) -> Vec<String> {
    let mut dates: Vec<String> = std::fs::read_dir(dir.join("bucket/lake/m"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_dir(e.path()).is_ok_and(|mut files| files.next().is_some()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dates.sort();
    dates
}

#[test]
fn days_past_retention_and_of_truncated_or_dropped_tables_leave_the_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = lake_config(dir.path());
    config.retention_ms = 2 * 86_400_000;
    config.lake_tables.push("m2".into());
    let storage = Storage::open(config.clone()).expect("open");
    for day in 0..3 {
        write_day(&storage, day, 600);
        storage.persist().expect("persist");
    }
    assert_eq!(storage.export_lake().expect("export"), 2);
    assert_eq!(lake_dates(dir.path()), ["date=1970-01-01", "date=1970-01-02"]);
    // Day 3 begins: day 0 is past the two days of retention, day 2 is closed.
    write_day(&storage, 3, 600);
    storage.persist().expect("persist");
    storage.expire().expect("expire");
    assert_eq!(storage.export_lake().expect("export"), 1);
    assert_eq!(lake_dates(dir.path()), ["date=1970-01-02", "date=1970-01-03"], "the expired day is gone");
    storage.truncate_tables(&["m".to_owned()]).expect("truncate");
    assert_eq!(storage.export_lake().expect("export"), 0);
    assert!(lake_dates(dir.path()).is_empty(), "an emptied table's days go");
    write_day(&storage, 5, 600);
    write_day(&storage, 6, 600);
    storage.persist().expect("persist");
    assert_eq!(storage.export_lake().expect("export"), 1);
    assert_eq!(lake_dates(dir.path()), ["date=1970-01-06"]);
    // A renamed table's days move to its new name (the configuration names both).
    storage.alter_table("m", &[isobar_storage::TableAlteration::RenameTo("m2".into())]).expect("rename");
    assert_eq!(storage.export_lake().expect("export"), 1);
    assert!(lake_dates(dir.path()).is_empty(), "the old name's days go");
    assert!(dir.path().join("bucket/lake/m2/date=1970-01-06/part-0.parquet").exists());
    storage.alter_table("m2", &[isobar_storage::TableAlteration::RenameTo("m".into())]).expect("rename back");
    storage.drop_tables(&["m".to_owned()], false).expect("drop");
    assert_eq!(storage.export_lake().expect("export"), 0);
    assert!(lake_dates(dir.path()).is_empty(), "a dropped table's days go");
    assert!(!dir.path().join("bucket/lake/m2/date=1970-01-06/part-0.parquet").exists());
}
