//! `INSERT` into an isobar table: Arrow rows become storage points, durable before the
//! statement completes.
//!
//! Every row of a batch is checked before any is written (a null `time`, or no field value),
//! so such an error writes nothing from that batch. Storage's own per-point rejections (limits)
//! fail the statement and name the rows; the batch's other rows are written, as for every
//! isobar source.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use isobar_storage::{ColumnKind, FieldType, FieldValue, Point, RejectedPoint, Storage, TIME_COLUMN, TableSchema, WriteBatch};

use crate::error::Error;

/// Rejections named in an error, at most.
const REJECTIONS_SHOWN_MAX: usize = 5;

/// Writes inserted rows to one table.
#[derive(Debug)]
pub(crate) struct StorageSink {
    storage: Storage,
    table: TableSchema,
    schema: SchemaRef,
}

impl StorageSink {
    pub(crate) fn new(storage: Storage, table: TableSchema, schema: SchemaRef) -> Self {
        Self { storage, table, schema }
    }
}

impl DisplayAs for StorageSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageSink: table={}", self.table.name)
    }
}

#[async_trait]
impl DataSink for StorageSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let mut written = 0;
        let mut row_offset = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let points = points(&self.table, &batch, row_offset)?;
            row_offset += batch.num_rows();
            written += write_points(&self.storage, &self.table.name, points, written).await?;
        }
        Ok(written)
    }
}

/// Writes `points` durably; rejections fail the statement, naming them. `written_before`
/// counts the statement's rows already written, for the message.
pub(crate) async fn write_points(storage: &Storage, table: &str, points: Vec<Point>, written_before: u64) -> Result<u64> {
    let mut write = WriteBatch::new();
    write.extend(table, points);
    Ok(write_batch(storage, write, written_before).await?)
}

/// Writes `batch` durably; rejections fail the statement, naming them. `written_before`
/// counts the statement's rows already written, for the message.
pub(crate) async fn write_batch(storage: &Storage, batch: WriteBatch, written_before: u64) -> crate::error::Result<u64> {
    let storage = storage.clone();
    let receipt =
        tokio::task::spawn_blocking(move || storage.write(&batch)).await.map_err(|e| DataFusionError::External(Box::new(e)))??;
    if !receipt.rejected.is_empty() {
        let message = rejections(&receipt.rejected, written_before + receipt.rows_written, |index| format!("row {}", index + 1));
        return Err(Error::InvalidRows(message));
    }
    Ok(receipt.rows_written)
}

/// What a write's rejected rows say to the client: how many, the first few by `name` (from
/// a row's index in the batch), and how many rows were written.
pub fn rejections(rejected: &[RejectedPoint], written: u64, name: impl Fn(usize) -> String) -> String {
    let shown: Vec<String> = rejected.iter().take(REJECTIONS_SHOWN_MAX).map(|r| format!("{}: {}", name(r.index), r.reason)).collect();
    format!("{} rows rejected ({}); {written} rows written", rejected.len(), shown.join("; "))
}

/// The points of `batch`'s rows; `row_offset` numbers them within the statement.
pub(crate) fn points(table: &TableSchema, batch: &RecordBatch, row_offset: usize) -> Result<Vec<Point>> {
    let column = |name: &str, ty: &DataType| -> Result<Option<ArrayRef>> {
        match batch.schema().index_of(name) {
            Ok(i) => Ok(Some(cast(batch.column(i), ty)?)),
            Err(_) => Ok(None),
        }
    };
    let invalid = |row: usize, reason: String| DataFusionError::from(Error::InvalidRows(format!("row {}: {reason}", row_offset + row + 1)));
    let time_type = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let times = column(TIME_COLUMN, &time_type)?.ok_or_else(|| invalid(0, "no time column".into()))?;
    let times = times.as_primitive::<TimestampNanosecondType>();
    let mut points: Vec<Point> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if times.is_null(row) {
            return Err(invalid(row, "time is null".into()));
        }
        points.push(Point::new(times.value(row)));
    }
    let mut has_field = vec![false; batch.num_rows()];
    for def in &table.columns {
        let (ty, field_type) = match def.kind {
            ColumnKind::Tag => (DataType::Utf8, None),
            ColumnKind::Field(t) => (isobar_storage::arrow_type(t), Some(t)),
        };
        let Some(values) = column(&def.name, &ty)? else { continue };
        for (row, point) in points.iter_mut().enumerate() {
            if values.is_null(row) {
                continue;
            }
            let Some(field_type) = field_type else {
                point.tags.push((def.name.clone(), values.as_string::<i32>().value(row).to_owned()));
                continue;
            };
            let value = match field_type {
                FieldType::F64 => FieldValue::F64(values.as_primitive::<Float64Type>().value(row)),
                FieldType::I64 => FieldValue::I64(values.as_primitive::<Int64Type>().value(row)),
                FieldType::Bool => FieldValue::Bool(values.as_boolean().value(row)),
                FieldType::String => FieldValue::String(Arc::from(values.as_string::<i32>().value(row))),
            };
            point.fields.push((def.name.clone(), value));
            has_field[row] = true;
        }
    }
    if let Some(row) = has_field.iter().position(|f| !f) {
        return Err(invalid(row, format!("every field is null; a row of {} needs at least one field value", table.name)));
    }
    Ok(points)
}
