//! Bulk loads of Arrow batches into a table (Flight SQL's ingest, ADBC's `adbc_ingest`): the
//! table made from the batches' schema when asked, and the rows handed to storage as columns,
//! as COPY hands them (`RowColumns`: each tag set once per write, no per-row point), with one
//! write in flight while the next rows are gathered. A row that cannot be stored (a null
//! `time`, no field value, a value past a limit) ends the load with the reason and its row
//! number; the rows before it stay written, as with COPY.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampNanosecondType};
use isobar_storage::{ColumnKind, FieldType, Storage, TIME_COLUMN, WriteBatch, WriteReceipt};
use tokio::task::JoinHandle;

use crate::engine::QueryEngine;
use crate::error::{Error, Result};
use crate::insert::rejections;
use crate::row_columns::{RowColumns, Target, Value};

/// Rows handed to storage in one write: large enough that a write's fixed cost is small
/// against its rows, small enough that gathering the next overlaps the WAL's fsync.
const ROWS_PER_WRITE: usize = 16_384;

impl QueryEngine {
    /// Creates table `name` for batches of `schema`: a `time` timestamp column, text columns
    /// as tags (together they name a series), numbers and booleans as fields. `Ok(false)` when
    /// it exists.
    pub async fn create_table_for(&self, name: &str, schema: &Schema) -> Result<bool> {
        let columns = columns_for(schema)?;
        let (storage, name) = (self.storage().clone(), name.to_owned());
        let created = tokio::task::spawn_blocking(move || match storage.create_table(&name, &columns) {
            Ok(_) => Ok(true),
            Err(isobar_storage::Error::TableExists(_)) => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::Unsupported(format!("create table task: {e}")))??;
        Ok(created)
    }

    /// A load of batches of `schema` into table `name`: refused when the table does not exist,
    /// or when a column of the batches is not one of its columns.
    pub fn bulk_load(&self, name: &str, schema: &Schema) -> Result<BulkLoad> {
        let table = self.storage().table(name).ok_or_else(|| isobar_storage::Error::NoSuchTable(name.to_owned()))?;
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let rows = RowColumns::new(&table, &names).map_err(|e| match e {
            Error::InvalidRows(reason) => Error::InvalidRows(format!("{reason}; add a column with ALTER TABLE {name} ADD COLUMN")),
            other => other,
        })?;
        let types = rows.targets().iter().map(|t| canonical_type(*t)).collect();
        Ok(BulkLoad { storage: self.storage().clone(), table: table.name, rows, types, rows_before: 0, in_flight: None, written: 0 })
    }
}

/// A load under way: rows gathered into columns, one write in flight.
#[derive(Debug)]
pub struct BulkLoad {
    storage: Storage,
    table: String,
    rows: RowColumns,
    /// The type each input column is cast to before its values are read.
    types: Vec<DataType>,
    /// Rows of the load before the rows gathered now.
    rows_before: usize,
    /// The write in flight, with the number of the load's first row in it.
    in_flight: Option<(usize, JoinHandle<isobar_storage::Result<WriteReceipt>>)>,
    written: u64,
}

impl BulkLoad {
    /// Gathers `batch`'s rows, handing storage each full write.
    pub async fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        // A value the column's type cannot hold (an unsigned number past i64) is an error, not
        // a null.
        let options = CastOptions { safe: false, ..CastOptions::default() };
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(&self.types)
            .map(|(c, ty)| cast_with_options(c, ty, &options))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::InvalidRows(format!("rows from {}: {e}", self.rows_before + self.rows.len() + 1)))?;
        for row in 0..batch.num_rows() {
            let values = columns.iter().map(|c| Ok(value(c.as_ref(), row)));
            if let Err(reason) = self.rows.push_row(values) {
                self.submit().await?;
                self.settle().await?;
                return Err(Error::InvalidRows(format!("row {}: {reason}", self.rows_before + self.rows.len() + 1)));
            }
            if self.rows.len() >= ROWS_PER_WRITE {
                self.submit().await?;
            }
        }
        Ok(())
    }

    /// Writes the rest and waits until every row is durable; the rows written.
    pub async fn finish(mut self) -> Result<u64> {
        self.submit().await?;
        self.settle().await?;
        Ok(self.written)
    }

    /// Waits for the write in flight, then hands storage the rows gathered.
    async fn submit(&mut self) -> Result<()> {
        self.settle().await?;
        if self.rows.is_empty() {
            return Ok(());
        }
        let first_row = self.rows_before;
        self.rows_before += self.rows.len();
        let mut batch = WriteBatch::new();
        batch.push_columns(&self.table, self.rows.take());
        let storage = self.storage.clone();
        self.in_flight = Some((first_row, tokio::task::spawn_blocking(move || storage.write(&batch))));
        Ok(())
    }

    /// Waits for the write in flight; rows it refused end the load, named.
    async fn settle(&mut self) -> Result<()> {
        let Some((first_row, write)) = self.in_flight.take() else { return Ok(()) };
        let receipt = write.await.map_err(|e| Error::Unsupported(format!("the write stopped: {e}")))??;
        self.written += receipt.rows_written;
        if !receipt.rejected.is_empty() {
            let message = rejections(&receipt.rejected, self.written, |index| format!("row {}", first_row + index + 1));
            return Err(Error::InvalidRows(message));
        }
        Ok(())
    }
}

/// The type an input column's values are read in.
fn canonical_type(target: Target) -> DataType {
    match target {
        Target::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
        Target::Tag(_) => DataType::Utf8,
        Target::Field(_, ty) => isobar_storage::arrow_type(ty),
    }
}

/// Row `row` of a column cast to its [`canonical_type`].
fn value(column: &dyn Array, row: usize) -> Value<'_> {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Timestamp(..) => Value::TimestampNs(column.as_primitive::<TimestampNanosecondType>().value(row)),
        DataType::Utf8 => Value::Text(column.as_string::<i32>().value(row)),
        DataType::Float64 => Value::F64(column.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => Value::I64(column.as_primitive::<Int64Type>().value(row)),
        DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
        _ => Value::Null,
    }
}

/// The columns of a table for batches of `schema`.
fn columns_for(schema: &Schema) -> Result<Vec<(String, ColumnKind)>> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut has_time = false;
    for field in schema.fields() {
        let ty = match field.data_type() {
            DataType::Dictionary(_, value) => value.as_ref(),
            other => other,
        };
        if field.name() == TIME_COLUMN {
            if !matches!(ty, DataType::Timestamp(..) | DataType::Date64) {
                return Err(Error::InvalidRows(format!("column {TIME_COLUMN} is {ty}; it must be a timestamp")));
            }
            has_time = true;
            continue;
        }
        let kind = match ty {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnKind::Tag,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnKind::Field(FieldType::F64),
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnKind::Field(FieldType::I64),
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => ColumnKind::Field(FieldType::I64),
            DataType::Boolean => ColumnKind::Field(FieldType::Bool),
            other => {
                return Err(Error::InvalidRows(format!(
                    "column {} is {other}; isobar keeps text, numbers and booleans (create the table first to choose)",
                    field.name()
                )));
            }
        };
        columns.push((field.name().clone(), kind));
    }
    if !has_time {
        return Err(Error::InvalidRows(format!("the batches have no {TIME_COLUMN} column")));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use isobar_storage::StorageConfig;

    use super::*;
    use crate::engine::{Output, QueryConfig};

    fn batch(times: Vec<Option<i64>>, stations: Vec<&str>, values: Vec<f64>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
            Field::new("station", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]);
        let times = TimestampNanosecondArray::from(times).with_timezone("UTC");
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(times), Arc::new(StringArray::from(stations)), Arc::new(Float64Array::from(values))],
        )
        .expect("batch")
    }

    async fn count(engine: &QueryEngine) -> String {
        match engine.execute("SELECT count(*) FROM loaded").await.expect("count").pop() {
            Some(Output::Rows(batches)) => datafusion::arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_writes_every_batch_and_a_bad_row_keeps_the_rows_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("storage");
        let engine = QueryEngine::new(storage, QueryConfig::default()).expect("engine");
        let first = batch(vec![Some(1_000), Some(2_000)], vec!["a", "b"], vec![1.0, 2.0]);
        assert!(engine.create_table_for("loaded", &first.schema()).await.expect("create"));
        let mut load = engine.bulk_load("loaded", &first.schema()).expect("load");
        load.push(&first).await.expect("first batch");
        load.push(&batch(vec![Some(3_000)], vec!["c"], vec![3.0])).await.expect("second batch");
        assert_eq!(load.finish().await.expect("finish"), 3);
        assert!(count(&engine).await.contains("| 3 "), "{}", count(&engine).await);

        let mut load = engine.bulk_load("loaded", &first.schema()).expect("load");
        let bad = batch(vec![Some(4_000), Some(5_000), None], vec!["d", "e", "f"], vec![4.0, 5.0, 6.0]);
        let error = load.push(&bad).await.expect_err("a null time");
        assert!(error.to_string().contains("row 3: time is null"), "{error}");
        assert!(count(&engine).await.contains("| 5 "), "the two rows before it stay: {}", count(&engine).await);

        let unknown = Schema::new(vec![Field::new("time", DataType::Int64, true), Field::new("nope", DataType::Utf8, true)]);
        assert!(engine.bulk_load("loaded", &unknown).expect_err("unknown column").to_string().contains("nope"));
        let signed = Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("n", DataType::Int64, true),
        ]);
        engine.create_table_for("counts", &signed).await.expect("create");
        let wide = Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("n", DataType::UInt64, true),
        ]);
        let mut load = engine.bulk_load("counts", &wide).expect("load");
        let too_big = RecordBatch::try_new(
            Arc::new(wide),
            vec![Arc::new(TimestampNanosecondArray::from(vec![6_000])), Arc::new(UInt64Array::from(vec![u64::MAX]))],
        )
        .expect("batch");
        assert!(load.push(&too_big).await.is_err(), "a number past its column's type is an error, not a null");
    }

    #[test]
    fn a_table_for_batches_takes_text_as_tags_and_numbers_as_fields() {
        let schema = Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("station", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true),
            Field::new("v", DataType::Float32, true),
            Field::new("n", DataType::UInt16, true),
            Field::new("ok", DataType::Boolean, true),
        ]);
        let columns = columns_for(&schema).expect("columns");
        assert_eq!(
            columns,
            vec![
                ("station".into(), ColumnKind::Tag),
                ("v".into(), ColumnKind::Field(FieldType::F64)),
                ("n".into(), ColumnKind::Field(FieldType::I64)),
                ("ok".into(), ColumnKind::Field(FieldType::Bool)),
            ]
        );
        let no_time = Schema::new(vec![Field::new("v", DataType::Float64, true)]);
        assert!(columns_for(&no_time).expect_err("no time").to_string().contains("no time column"));
        let binary = Schema::new(vec![Field::new("time", DataType::Int64, false)]);
        assert!(columns_for(&binary).expect_err("not a timestamp").to_string().contains("must be a timestamp"));
    }
}
