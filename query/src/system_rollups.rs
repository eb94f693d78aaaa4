//! `system.rollups`: one row per rollup table, read from storage's memory when a query is
//! planned (a status table the query engine registers itself). It shows how far each rollup is final (`final_before`), the newest event time it
//! has seen, and how many windows are open or stale (final windows that took late rows and
//! wait to be written again; queries correct them meanwhile), so an operator sees a rollup
//! falling behind instead of trusting stale numbers.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use isobar_storage::Storage;

use crate::status_tables::{time_column, time_type};

/// The table's name in schema `system`.
pub(crate) const NAME: &str = "rollups";

/// The rollups as they are now.
pub(crate) fn rows(storage: &Storage) -> Result<RecordBatch> {
    let rollups = storage.rollups();
    let schema = Arc::new(Schema::new(vec![
        Field::new("rollup", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("interval_ms", DataType::Int64, false),
        Field::new("final_before", time_type(), true),
        Field::new("newest_event", time_type(), true),
        Field::new("open_windows", DataType::Int64, false),
        Field::new("stale_windows", DataType::Int64, false),
    ]));
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rollups.iter().map(|r| r.table.as_str()))),
        Arc::new(StringArray::from_iter_values(rollups.iter().map(|r| r.source.as_str()))),
        Arc::new(Int64Array::from_iter_values(rollups.iter().map(|r| r.interval_ns / 1_000_000))),
        time_column(rollups.iter().map(|r| r.frontier_ns).collect()),
        time_column(rollups.iter().map(|r| r.newest_ns).collect()),
        Arc::new(Int64Array::from_iter_values(rollups.iter().map(|r| count(r.open_windows)))),
        Arc::new(Int64Array::from_iter_values(rollups.iter().map(|r| count(r.stale_windows)))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
