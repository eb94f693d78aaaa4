//! Bulk loads of Arrow batches into a table (Flight SQL's ingest, ADBC's `adbc_ingest`): the
//! table made from the batches' schema when asked, and every batch written durably as an
//! `INSERT` of its rows would be, with the same checks and the same per-row errors.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use isobar_storage::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};

use crate::engine::QueryEngine;
use crate::error::{Error, Result};
use crate::insert::{points, write_points};

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

    /// The table batches of `schema` load into: refused when it does not exist, or when a
    /// column of the batches is not one of its columns.
    pub fn bulk_target(&self, name: &str, schema: &Schema) -> Result<TableSchema> {
        let table = self.storage().table(name).ok_or_else(|| isobar_storage::Error::NoSuchTable(name.to_owned()))?;
        for field in schema.fields() {
            if field.name() != TIME_COLUMN && table.column(field.name()).is_none() {
                return Err(Error::InvalidRows(format!(
                    "column {} is not a column of table {name}; add it with ALTER TABLE {name} ADD COLUMN",
                    field.name()
                )));
            }
        }
        if schema.field_with_name(TIME_COLUMN).is_err() {
            return Err(Error::InvalidRows(format!("the batches have no {TIME_COLUMN} column")));
        }
        Ok(table)
    }

    /// Writes `batch`'s rows into `table` durably and returns how many were written;
    /// `row_offset` numbers its rows within the load, for errors. Rows storage refuses fail the
    /// load, naming them; the batch's other rows are written.
    pub async fn bulk_write(&self, table: &TableSchema, batch: &RecordBatch, row_offset: usize) -> Result<u64> {
        let points = points(table, batch, row_offset)?;
        Ok(write_points(self.storage(), &table.name, points, row_offset as u64).await?)
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
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

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
