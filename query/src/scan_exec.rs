//! The execution of a storage table's scan: [`ScanExec`], a leaf of the physical plan.
//!
//! A scan reads a storage snapshot on the thread running the query, one group of series per
//! batch as the plan pulls it: a slow client holds back decoding instead of buffering a table
//! in memory, a cancelled query stops decoding, and a query's CPU stays on the threads of the
//! runtime it runs on (the server gives queries a runtime of lower priority than ingest's).
//! DataFusion's `StreamingTableExec`, which `ScanExec` wraps, makes the stream yield to other
//! queries between batches. `ScanExec` names the table and what it reads in `EXPLAIN`, and
//! tells DataFusion the exact number of rows when chunk footers give it
//! ([`Storage::row_count`]), so that `count(*)` is answered without decoding. `EXPLAIN ANALYZE`
//! shows the rows it produced and the time spent reading and decoding them.

use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use isobar_storage::{Scan, ScanRequest, SeriesFilter, Storage};

/// What a scan reads of its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Every row the request selects.
    Rows,
    /// Every row the request selects, telling DataFusion how many from chunk footers.
    RowsCountedByFooters,
    /// The newest row of each selected series (`latest.rs`).
    NewestRows,
    /// Partitions in time order until `rows_wanted` rows are read (`time_order.rs`).
    FirstRowsInTimeOrder { newest_first: bool, rows_wanted: u64 },
}

/// A storage table's scan in the physical plan.
#[derive(Debug)]
pub(crate) struct ScanExec {
    partition: ScanPartition,
    inner: StreamingTableExec,
    /// The exact row count, once asked for; `None` inside when footers cannot tell it.
    rows: OnceLock<Option<u64>>,
}

impl ScanExec {
    /// A scan of `request` whose batches have `schema`: storage's columns picked in the order
    /// `reorder` gives.
    pub(crate) fn new(storage: Storage, request: ScanRequest, read: Read, schema: SchemaRef, reorder: Vec<usize>) -> Result<Self> {
        let metrics = ExecutionPlanMetricsSet::new();
        let partition = ScanPartition { storage, request, read, schema: Arc::clone(&schema), reorder, metrics };
        let inner = StreamingTableExec::try_new(schema, vec![Arc::new(partition.clone())], None, Vec::new(), false, None)?;
        Ok(Self { partition, inner, rows: OnceLock::new() })
    }

    fn row_count(&self) -> Option<u64> {
        *self.rows.get_or_init(|| match self.partition.read {
            Read::RowsCountedByFooters => self.partition.storage.row_count(&self.partition.request).ok().flatten(),
            Read::Rows | Read::NewestRows | Read::FirstRowsInTimeOrder { .. } => None,
        })
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = &self.partition.request;
        let read = match self.partition.read {
            Read::Rows | Read::RowsCountedByFooters => "rows".to_owned(),
            Read::NewestRows => "newest row of each series".to_owned(),
            Read::FirstRowsInTimeOrder { newest_first, rows_wanted } => {
                format!("rows {} first until {rows_wanted} are read", if newest_first { "newest" } else { "oldest" })
            }
        };
        write!(
            f,
            "ScanExec: table={}, read={read}, columns=[{}]",
            request.table,
            request.columns.as_deref().unwrap_or_default().join(", ")
        )?;
        if request.time_min_ns != i64::MIN || request.time_max_ns != i64::MAX {
            write!(f, ", time={}..={}", request.time_min_ns, request.time_max_ns)?;
        }
        match &request.series {
            SeriesFilter::All => {}
            SeriesFilter::Ids(ids) => write!(f, ", series={} ids", ids.len())?,
            SeriesFilter::TagsEqual(tags) => {
                let tags: Vec<String> = tags.iter().map(|(name, value)| format!("{name}={value}")).collect();
                write!(f, ", tags=[{}]", tags.join(", "))?;
            }
        }
        Ok(())
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        "ScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match children.is_empty() {
            true => Ok(self),
            false => internal_err!("a storage scan has no children"),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.partition.metrics.clone_inner())
    }

    fn statistics_from_inputs(&self, _inputs: &[Arc<Statistics>], _args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.partition.schema);
        if let Some(rows) = self.row_count().and_then(|n| usize::try_from(n).ok()) {
            statistics.num_rows = Precision::Exact(rows);
        }
        Ok(Arc::new(statistics))
    }
}

/// One scan, run when DataFusion executes the plan.
#[derive(Debug, Clone)]
struct ScanPartition {
    storage: Storage,
    request: ScanRequest,
    read: Read,
    schema: SchemaRef,
    reorder: Vec<usize>,
    /// Shared with the [`ScanExec`] that shows them.
    metrics: ExecutionPlanMetricsSet,
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (storage, request, read, schema, reorder) =
            (self.storage.clone(), self.request.clone(), self.read, Arc::clone(&self.schema), self.reorder.clone());
        // Registered here, in the query's task, so that it counts against the query's budget;
        // the copy of buffered rows the scan makes is held until the scan ends.
        let reservation = MemoryConsumer::new(format!("scan of {}", request.table)).register(ctx.memory_pool());
        let mut to_open = Some((storage, request, reservation));
        let mut open: Option<(Scan, MemoryReservation)> = None;
        let metrics = BaselineMetrics::new(&self.metrics, 0);
        let batches = std::iter::from_fn(move || {
            let _timer = metrics.elapsed_compute().timer();
            if let Some((storage, request, reservation)) = to_open.take() {
                let opened = match read {
                    Read::NewestRows => open_latest(&storage, &request, reservation),
                    Read::Rows | Read::RowsCountedByFooters => open_scan(&storage, &request, reservation),
                    Read::FirstRowsInTimeOrder { newest_first, rows_wanted } => open_scan(&storage, &request, reservation)
                        .map(|(scan, reservation)| (scan.in_time_order(newest_first, rows_wanted), reservation)),
                };
                match opened {
                    Ok(scan) => open = Some(scan),
                    Err(e) => return Some(Err(e)),
                }
            }
            let batch = open.as_mut()?.0.next()?;
            let batch = batch.map_err(|e| DataFusionError::External(Box::new(e))).and_then(|b| reshape(&b, &schema, &reorder));
            if let Ok(batch) = &batch {
                metrics.record_output(batch.num_rows());
            }
            Some(batch)
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

/// Reads the newest row of each series the request selects.
fn open_latest(storage: &Storage, request: &ScanRequest, reservation: MemoryReservation) -> Result<(Scan, MemoryReservation)> {
    match storage.latest(request) {
        Ok(Some(scan)) => Ok((scan, reservation)),
        Ok(None) => Err(DataFusionError::Internal(format!("{} keeps no newest rows", request.table))),
        Err(e) => Err(DataFusionError::External(Box::new(e))),
    }
}

/// Puts storage's columns in projection order, under the planned schema.
fn reshape(batch: &RecordBatch, schema: &SchemaRef, reorder: &[usize]) -> Result<RecordBatch> {
    let columns = reorder.iter().map(|i| Arc::clone(batch.column(*i))).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}
