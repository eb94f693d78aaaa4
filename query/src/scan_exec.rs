//! The execution of a storage table's scan: [`ScanExec`], a leaf of the physical plan.
//!
//! A scan reads a storage snapshot on the threads running the query, one group of series per
//! batch as the plan pulls it: a slow client holds back decoding instead of buffering a table
//! in memory, a cancelled query stops decoding, and a query's CPU stays on the threads of the
//! runtime it runs on (the server gives queries a runtime of lower priority than ingest's).
//! A scan of many rows has one output partition per thread DataFusion plans for (up to one
//! per group of series, [`Storage::parallel_reads`]): the first partition polled takes the
//! snapshot and splits it ([`Scan::split`]), and each partition then reads the next group of
//! series not yet taken, so the table is decoded on every core. DataFusion's
//! `StreamingTableExec`, which `ScanExec` wraps, makes the streams yield to other queries
//! between batches. `ScanExec` names the table and what it reads in `EXPLAIN`, and
//! tells DataFusion the exact number of rows when chunk footers give it
//! ([`Storage::row_count`]), so that `count(*)` is answered without decoding. `EXPLAIN ANALYZE`
//! shows the rows it produced and the time spent reading and decoding them.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

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
use isobar_storage::{Scan, ScanRequest, SeriesFilter, Storage, TagPredicate, TagTest, Windows};
use parking_lot::Mutex;

/// What a scan reads of its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// Every row the request selects.
    Rows,
    /// Every row the request selects, telling DataFusion how many from chunk footers.
    RowsCountedByFooters,
    /// The newest row of each selected series (`latest.rs`).
    NewestRows,
    /// Partitions in time order until `rows_wanted` rows are read (`time_order.rs`).
    FirstRowsInTimeOrder { newest_first: bool, rows_wanted: u64 },
    /// Partial aggregates of the selected rows per series and window (`rollup_rewrite.rs`).
    Windows(Windows),
    /// One row for each distinct value of this tag among the selected series with rows
    /// (`latest.rs`).
    DistinctTag(String),
}

impl Read {
    /// Whether the rows may come in any order, so that threads can share the reading
    /// ([`Scan::split`]): not for the newest rows, nor for rows wanted in time order.
    pub(crate) fn shares_among_threads(&self) -> bool {
        match self {
            Read::Rows | Read::RowsCountedByFooters | Read::Windows(_) => true,
            Read::NewestRows | Read::FirstRowsInTimeOrder { .. } | Read::DistinctTag(_) => false,
        }
    }
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
    /// `reorder` gives; read by `threads` partitions (rows in no order) when `read` is
    /// [`Read::Rows`] or [`Read::RowsCountedByFooters`], else by one.
    pub(crate) fn new(
        storage: Storage,
        request: ScanRequest,
        read: Read,
        schema: SchemaRef,
        reorder: Vec<usize>,
        threads: usize,
    ) -> Result<Self> {
        let threads = if read.shares_among_threads() { threads.max(1) } else { 1 };
        let metrics = ExecutionPlanMetricsSet::new();
        let split = Arc::new(Mutex::new(Split { context: Weak::new(), scans: Vec::new() }));
        let partition = ScanPartition { storage, request, read, schema: Arc::clone(&schema), reorder, metrics, index: 0, threads, split };
        let partitions: Vec<Arc<dyn PartitionStream>> =
            (0..threads).map(|index| Arc::new(ScanPartition { index, ..partition.clone() }) as Arc<dyn PartitionStream>).collect();
        let inner = StreamingTableExec::try_new(schema, partitions, None, Vec::new(), false, None)?;
        Ok(Self { partition, inner, rows: OnceLock::new() })
    }

    fn row_count(&self) -> Option<u64> {
        *self.rows.get_or_init(|| match self.partition.read {
            Read::RowsCountedByFooters => self.partition.storage.row_count(&self.partition.request).ok().flatten(),
            Read::Rows | Read::NewestRows | Read::FirstRowsInTimeOrder { .. } | Read::Windows(_) | Read::DistinctTag(_) => None,
        })
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = &self.partition.request;
        let read = match &self.partition.read {
            Read::Rows | Read::RowsCountedByFooters => "rows".to_owned(),
            Read::Windows(Windows::Every { width_ns, origin_ns }) => {
                format!("count, sum, min, max per series and {width_ns} ns window from {origin_ns}")
            }
            Read::Windows(Windows::PerSeries) => "count, sum, min, max per series".to_owned(),
            Read::NewestRows => "newest row of each series".to_owned(),
            Read::FirstRowsInTimeOrder { newest_first, rows_wanted } => {
                format!("rows {} first until {rows_wanted} are read", if *newest_first { "newest" } else { "oldest" })
            }
            Read::DistinctTag(tag) => format!("distinct {tag} from the series index"),
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
        if self.partition.threads > 1 {
            write!(f, ", threads={}", self.partition.threads)?;
        }
        match &request.series {
            SeriesFilter::All => {}
            SeriesFilter::Ids(ids) => write!(f, ", series={} ids", ids.len())?,
            SeriesFilter::Tags(tags) => {
                let tags: Vec<String> = tags.iter().map(tag_condition).collect();
                write!(f, ", tags=[{}]", tags.join(", "))?;
            }
        }
        Ok(())
    }
}

/// A tag condition as `EXPLAIN` shows it.
fn tag_condition(p: &TagPredicate) -> String {
    let tag = &p.tag;
    match &p.test {
        TagTest::In(values) if values.len() == 1 => format!("{tag}={}", values[0]),
        TagTest::In(values) => format!("{tag} IN ({})", values.join(", ")),
        TagTest::NotIn(values) if values.len() == 1 => format!("{tag}<>{}", values[0]),
        TagTest::NotIn(values) => format!("{tag} NOT IN ({})", values.join(", ")),
        TagTest::Like { pattern, case_insensitive, negated } => {
            format!("{tag} {}{}LIKE {pattern}", if *negated { "NOT " } else { "" }, if *case_insensitive { "I" } else { "" })
        }
        TagTest::Regex { pattern, case_insensitive, negated } => {
            format!("{tag} {}~{} {pattern}", if *negated { "!" } else { "" }, if *case_insensitive { "*" } else { "" })
        }
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

/// One partition of a scan, run when DataFusion executes the plan.
#[derive(Debug, Clone)]
struct ScanPartition {
    storage: Storage,
    request: ScanRequest,
    read: Read,
    schema: SchemaRef,
    reorder: Vec<usize>,
    /// Shared with the [`ScanExec`] that shows them.
    metrics: ExecutionPlanMetricsSet,
    /// Which of the scan's `threads` partitions this is.
    index: usize,
    threads: usize,
    /// The scans split from the snapshot of the latest execution, shared by the partitions.
    split: Arc<Mutex<Split>>,
}

/// The scans one execution of a plan split from its snapshot, one per partition, each taken by
/// its partition; with the memory reservation for the snapshot's copy of buffered rows,
/// released when the last of them ends.
#[derive(Debug)]
struct Split {
    /// The execution's task context, which DataFusion hands every partition of one execution;
    /// held weakly, so that its address is not reused while the split is kept.
    context: Weak<TaskContext>,
    scans: Vec<Option<(Scan, Arc<MemoryReservation>)>>,
}

impl ScanPartition {
    /// This partition's share of the snapshot of the execution `ctx` belongs to: taken now by
    /// the first of its partitions to ask, and split for the others.
    fn take_scan(&self, ctx: &Arc<TaskContext>) -> Result<(Scan, Arc<MemoryReservation>)> {
        let mut split = self.split.lock();
        if split.context.ptr_eq(&Arc::downgrade(ctx))
            && let Some(scan) = split.scans.get_mut(self.index).and_then(Option::take)
        {
            return Ok(scan);
        }
        // Registered in the query's task, so that it counts against the query's budget; the
        // copy of buffered rows the scan makes is held until its last partition ends.
        let reservation = MemoryConsumer::new(format!("scan of {}", self.request.table)).register(ctx.memory_pool());
        let (scan, reservation) = match &self.read {
            Read::NewestRows => (of_raw_table(&self.request, self.storage.latest(&self.request))?, reservation),
            Read::DistinctTag(tag) => (of_raw_table(&self.request, self.storage.distinct_tag(&self.request, tag))?, reservation),
            Read::Rows | Read::RowsCountedByFooters => open_scan(&self.storage, &self.request, reservation)?,
            Read::FirstRowsInTimeOrder { newest_first, rows_wanted } => {
                let (scan, reservation) = open_scan(&self.storage, &self.request, reservation)?;
                (scan.in_time_order(*newest_first, *rows_wanted), reservation)
            }
            Read::Windows(windows) => {
                let (scan, reservation) = open_scan(&self.storage, &self.request, reservation)?;
                (scan.in_windows(*windows).map_err(|e| DataFusionError::External(Box::new(e)))?, reservation)
            }
        };
        let reservation = Arc::new(reservation);
        let mut scans: Vec<_> = scan.split(self.threads).into_iter().map(|scan| Some((scan, Arc::clone(&reservation)))).collect();
        let mine = scans.get_mut(self.index).and_then(Option::take);
        *split = Split { context: Arc::downgrade(ctx), scans };
        mine.ok_or_else(|| DataFusionError::Internal(format!("scan partition {} of {}", self.index, self.threads)))
    }
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (schema, reorder) = (Arc::clone(&self.schema), self.reorder.clone());
        let partition = self.clone();
        let mut to_open = Some(ctx);
        let mut open: Option<(Scan, Arc<MemoryReservation>)> = None;
        let metrics = BaselineMetrics::new(&self.metrics, self.index);
        let batches = std::iter::from_fn(move || {
            let _timer = metrics.elapsed_compute().timer();
            if let Some(ctx) = to_open.take() {
                match partition.take_scan(&ctx) {
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
/// A scan of what storage keeps for raw tables only (the newest rows, the series index).
fn of_raw_table(request: &ScanRequest, scan: isobar_storage::Result<Option<Scan>>) -> Result<Scan> {
    match scan {
        Ok(Some(scan)) => Ok(scan),
        Ok(None) => Err(DataFusionError::Internal(format!("{} is a rollup table", request.table))),
        Err(e) => Err(DataFusionError::External(Box::new(e))),
    }
}

/// Puts storage's columns in projection order, under the planned schema.
fn reshape(batch: &RecordBatch, schema: &SchemaRef, reorder: &[usize]) -> Result<RecordBatch> {
    let columns = reorder.iter().map(|i| Arc::clone(batch.column(*i))).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::collect;
    use isobar_storage::{FieldValue, Point, StorageConfig, WriteBatch};

    use crate::engine::{Output, QueryConfig, QueryEngine};

    /// 40 series of 60 rows in two chunks of overlapping times (an overwrite of every tenth
    /// row), and buffered rows: many more than `scan_group_rows` of the test configuration.
    fn storage(dir: &std::path::Path) -> isobar_storage::Storage {
        let storage = isobar_storage::Storage::open(StorageConfig::test_config(dir)).expect("open");
        let write = |ticks: std::ops::Range<i64>, step: usize, version: i64| {
            let mut batch = WriteBatch::new();
            for s in 0..40 {
                for t in ticks.clone().step_by(step) {
                    let point = Point::new(t * 1_000_000).tag("station", &format!("st{}", s / 4)).tag("sensor", &format!("x{}", s % 4));
                    batch.push("m", point.field("v", FieldValue::F64((s * 100) as f64 + t as f64 + version as f64 / 4.0)));
                }
            }
            storage.write(&batch).expect("write");
        };
        write(0..40, 1, 0);
        storage.persist().expect("persist");
        write(30..60, 1, 1);
        write(0..40, 10, 2);
        storage.persist().expect("persist");
        write(55..70, 1, 3);
        storage
    }

    async fn answer(engine: &QueryEngine, sql: &str) -> String {
        match engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).into_iter().next() {
            Some(Output::Rows(batches)) => pretty_format_batches(&batches).expect("format").to_string(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_read_by_several_threads_answers_what_one_thread_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = storage(dir.path());
        let four = QueryEngine::new(storage.clone(), QueryConfig { threads: 4, ..QueryConfig::default() }).expect("engine");
        let one = QueryEngine::new(storage, QueryConfig { threads: 1, ..QueryConfig::default() }).expect("engine");
        for sql in [
            "SELECT station, count(*), sum(v), min(time), max(time) FROM m GROUP BY station ORDER BY station",
            "SELECT * FROM m ORDER BY station, sensor, time",
            "SELECT sensor, avg(v) FROM m WHERE time >= '1970-01-01T00:00:00.020Z' GROUP BY sensor ORDER BY sensor",
        ] {
            let plan = answer(&four, &format!("EXPLAIN {sql}")).await;
            assert!(plan.contains("threads=4"), "{plan}");
            assert!(!answer(&one, &format!("EXPLAIN {sql}")).await.contains("threads="), "{sql}");
            assert_eq!(answer(&four, sql).await, answer(&one, sql).await, "{sql}");
        }
        // A scan of one series' few rows stays on one thread.
        let plan =
            answer(&four, "EXPLAIN SELECT * FROM m WHERE station = 'st3' AND sensor = 'x1' AND time < '1970-01-01T00:00:00.030Z'").await;
        assert!(plan.contains("ScanExec") && !plan.contains("threads="), "{plan}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plan_executed_again_reads_a_new_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = storage(dir.path());
        let engine = QueryEngine::new(storage.clone(), QueryConfig { threads: 3, ..QueryConfig::default() }).expect("engine");
        let frame = engine.context().sql("SELECT count(v), sum(v) FROM m WHERE v > 0").await.expect("plan");
        let plan = frame.create_physical_plan().await.expect("physical plan");
        let run = || collect(std::sync::Arc::clone(&plan), engine.context().task_ctx());
        let first = pretty_format_batches(&run().await.expect("first")).expect("format").to_string();
        assert!(first.contains("| 2800 "), "{first}");
        let mut batch = WriteBatch::new();
        batch.push("m", Point::new(100_000_000).tag("station", "st0").tag("sensor", "x0").field("v", FieldValue::F64(1.0)));
        storage.write(&batch).expect("write");
        let second = pretty_format_batches(&run().await.expect("second")).expect("format").to_string();
        assert!(second.contains("| 2801 "), "{second}");
    }
}
