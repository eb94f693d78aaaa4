//! `system.tables` (every table, raw or rollup, with its tags and series count) and
//! `system.storage` (the engine's health, the write buffer's and the catalog's sizes): status
//! tables read from storage when a query is planned, registered by the query engine itself.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use isobar_storage::Storage;

/// Every table: `raw` or `rollup` (with the table it is built from and its interval), its tags
/// in column order (comma-separated), and its series.
pub(crate) fn tables(storage: &Storage) -> Result<RecordBatch> {
    let rollups: Vec<_> = storage.rollups();
    let mut tables = storage.tables();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let rollup_of = |name: &str| rollups.iter().find(|r| r.table == name);
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("interval_ms", DataType::Int64, true),
        Field::new("tags", DataType::Utf8, false),
        Field::new("series", DataType::Int64, false),
    ]));
    let series = tables
        .iter()
        .map(|t| storage.series(&t.name).map(|s| s.len() as i64).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))))
        .collect::<Result<Vec<_>>>()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(tables.iter().map(|t| t.name.as_str()))),
        Arc::new(StringArray::from_iter_values(tables.iter().map(|t| if rollup_of(&t.name).is_some() { "rollup" } else { "raw" }))),
        Arc::new(tables.iter().map(|t| rollup_of(&t.name).map(|r| r.source.clone())).collect::<StringArray>()),
        Arc::new(tables.iter().map(|t| rollup_of(&t.name).map(|r| r.interval_ns / 1_000_000)).collect::<Int64Array>()),
        Arc::new(StringArray::from_iter_values(tables.iter().map(|t| t.tags().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")))),
        Arc::new(Int64Array::from_iter_values(series)),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// One row: the engine's health, the write buffer's bytes (durable in the WAL, not yet in
/// chunks) and the bytes of the catalog directory (RocksDB: the WAL, schemas, series, chunk
/// entries).
pub(crate) fn storage_sizes(storage: &Storage) -> Result<RecordBatch> {
    let catalog_bytes = storage.catalog_bytes();
    let schema = Arc::new(Schema::new(vec![
        Field::new("health", DataType::Utf8, false),
        Field::new("buffered_bytes", DataType::Int64, false),
        Field::new("catalog_bytes", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values([storage.health().name()])),
        Arc::new(Int64Array::from_iter_values([i64::try_from(storage.buffered_bytes()).unwrap_or(i64::MAX)])),
        Arc::new(Int64Array::from_iter_values([i64::try_from(catalog_bytes).unwrap_or(i64::MAX)])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
