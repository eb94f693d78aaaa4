//! One storage table as a DataFusion table provider.
//!
//! Scans read a storage snapshot on the thread running the query, one group of series per
//! batch as the plan pulls it: a slow client holds back decoding instead of buffering a table
//! in memory, a cancelled query stops decoding, and a query's CPU stays on the threads of the
//! runtime it runs on (the server gives queries a runtime of lower priority than ingest's).
//! DataFusion's `StreamingTableExec` makes the stream yield to other queries between batches.
//! Only projected columns are decoded; time and tag filters prune chunks and series (see
//! `pushdown.rs`). Inserts go through [`crate::insert::StorageSink`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::Session;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use isobar_storage::{ColumnKind, Scan, ScanRequest, Storage, TIME_COLUMN, TableSchema};

use crate::insert::StorageSink;
use crate::pushdown::Pushdown;

/// A storage table, as of when the query was planned.
#[derive(Debug)]
pub(crate) struct StorageTable {
    storage: Storage,
    table: TableSchema,
    schema: SchemaRef,
}

impl StorageTable {
    pub(crate) fn new(storage: Storage, table: TableSchema) -> Self {
        let schema = arrow_schema(&table);
        Self { storage, table, schema }
    }

    fn is_tag(&self, column: &str) -> bool {
        self.table.column(column).is_some_and(|c| c.kind == ColumnKind::Tag)
    }
}

/// `time`, then the other columns in the order they were declared or first written.
pub(crate) fn arrow_schema(table: &TableSchema) -> SchemaRef {
    let time = Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false);
    let columns = table.columns.iter().map(|c| match c.kind {
        ColumnKind::Tag => Field::new(&c.name, DataType::Utf8, true),
        ColumnKind::Field(t) => Field::new(&c.name, isobar_storage::arrow_type(t), true),
    });
    Arc::new(Schema::new(std::iter::once(time).chain(columns).collect::<Vec<_>>()))
}

/// Where storage puts a column in a scan's output: `time`, then tags, then fields, each in
/// creation order.
fn storage_rank(table: &TableSchema, name: &str) -> (u8, u16) {
    match table.column(name) {
        None => (0, 0),
        Some(c) if c.kind == ColumnKind::Tag => (1, c.id.0),
        Some(c) => (2, c.id.0),
    }
}

/// A table's column names in the order `SELECT *` returns them.
pub fn column_names(table: &TableSchema) -> Vec<String> {
    arrow_schema(table).fields().iter().map(|f| f.name().clone()).collect()
}

#[async_trait]
impl TableProvider for StorageTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let projected = Arc::new(self.schema.project(&projection)?);
        let pushdown = Pushdown::from_filters(filters, |c| self.is_tag(c));
        if pushdown.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Storage returns the requested columns in its own order; `reorder` puts them in
        // projection order.
        let mut names: Vec<String> = projection.iter().map(|i| self.schema.field(*i).name().clone()).collect();
        names.sort_by_key(|n| storage_rank(&self.table, n));
        names.dedup();
        if names.is_empty() {
            names.push(TIME_COLUMN.to_owned()); // a row count needs one column: `time` is the cheapest
        }
        let reorder = projection.iter().map(|i| names.iter().position(|n| n == self.schema.field(*i).name()).unwrap_or(0)).collect();
        let request = ScanRequest {
            table: self.table.name.clone(),
            time_min_ns: pushdown.time_min_ns,
            time_max_ns: pushdown.time_max_ns,
            series: pushdown.series,
            columns: Some(names),
        };
        let partition = ScanPartition { storage: self.storage.clone(), request, schema: Arc::clone(&projected), reorder };
        Ok(Arc::new(StreamingTableExec::try_new(projected, vec![Arc::new(partition)], None, Vec::new(), false, None)?))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match Pushdown::understands(f, |c| self.is_tag(c)) {
                true => TableProviderFilterPushDown::Inexact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!("{insert_op} into an isobar table; use INSERT INTO")));
        }
        if self.table.name.starts_with(isobar_storage::SYSTEM_TABLE_PREFIX) {
            let reason = format!("{} is one of isobar's own tables: only isobar writes to schema system", self.table.name);
            return Err(DataFusionError::from(crate::error::Error::Refused(reason)));
        }
        let sink = StorageSink::new(self.storage.clone(), self.table.clone(), Arc::clone(&self.schema));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// One scan, run when DataFusion executes the plan.
#[derive(Debug)]
struct ScanPartition {
    storage: Storage,
    request: ScanRequest,
    schema: SchemaRef,
    reorder: Vec<usize>,
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (storage, request, schema, reorder) =
            (self.storage.clone(), self.request.clone(), Arc::clone(&self.schema), self.reorder.clone());
        // Registered here, in the query's task, so that it counts against the query's budget;
        // the copy of buffered rows the scan makes is held until the scan ends.
        let reservation = MemoryConsumer::new(format!("scan of {}", request.table)).register(ctx.memory_pool());
        let mut to_open = Some((storage, request, reservation));
        let mut open: Option<(Scan, MemoryReservation)> = None;
        let batches = std::iter::from_fn(move || {
            if let Some((storage, request, reservation)) = to_open.take() {
                match open_scan(&storage, &request, reservation) {
                    Ok(scan) => open = Some(scan),
                    Err(e) => return Some(Err(e)),
                }
            }
            let batch = open.as_mut()?.0.next()?;
            Some(batch.map_err(|e| DataFusionError::External(Box::new(e))).and_then(|b| reshape(&b, &schema, &reorder)))
        });
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::iter(batches)))
    }
}

/// Takes the scan's snapshot, charging its copy of buffered rows to `reservation`.
fn open_scan(storage: &Storage, request: &ScanRequest, reservation: MemoryReservation) -> Result<(Scan, MemoryReservation)> {
    let mut refused = None;
    let scanned = storage.scan_charged(request, &mut |bytes| {
        reservation.try_grow(bytes).map_err(|e| {
            let reason = e.to_string();
            refused = Some(e);
            reason
        })
    });
    match (scanned, refused) {
        (Ok(scan), _) => Ok((scan, reservation)),
        (Err(_), Some(refused)) => Err(refused),
        (Err(e), None) => Err(DataFusionError::External(Box::new(e))),
    }
}

/// Puts storage's columns in projection order, under the planned schema.
fn reshape(batch: &RecordBatch, schema: &SchemaRef, reorder: &[usize]) -> Result<RecordBatch> {
    let columns = reorder.iter().map(|i| Arc::clone(batch.column(*i))).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}
