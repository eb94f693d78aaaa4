//! One storage table as a DataFusion table provider.
//!
//! A scan becomes a [`ScanExec`] (`scan_exec.rs`). Only projected columns are decoded; time and
//! tag filters prune chunks and series (see `pushdown.rs`). Inserts go through
//! [`crate::insert::StorageSink`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use isobar_storage::{ColumnKind, FieldType, PARTIAL_AGGREGATES, ScanRequest, Storage, TIME_COLUMN, TableSchema, Windows, partial_name};

use crate::insert::StorageSink;
use crate::pushdown::Pushdown;
use crate::scan_exec::{Read, ScanExec};

/// A storage table, as of when the query was planned.
#[derive(Debug, Clone)]
pub(crate) struct StorageTable {
    storage: Storage,
    table: TableSchema,
    schema: SchemaRef,
    /// Set when the table stands for the newest row of each series within these bounds on
    /// `time` (inclusive), as `latest.rs` plans it.
    latest: Option<(i64, i64)>,
    /// Set when only the first rows in time order are wanted (newest first, how many), as
    /// `time_order.rs` plans it.
    time_order: Option<(bool, u64)>,
    /// Set when the table stands for partial aggregates of its rows within these bounds on
    /// `time` (inclusive) per series and window, as `rollup_rewrite.rs` plans it: `time` is
    /// the window's start, then the tags and each numeric field's count, sum, min and max
    /// ([`isobar_storage::Windows`]).
    windows: Option<(Windows, i64, i64)>,
    /// Set when the table stands for one row of each distinct value of this tag among the
    /// series with rows within these bounds on `time` (inclusive), as `latest.rs` plans it.
    distinct_tag: Option<(String, i64, i64)>,
    /// Whether scans take the fast paths (`QueryConfig::fast_paths`).
    fast_paths: bool,
}

impl StorageTable {
    pub(crate) fn new(storage: Storage, table: TableSchema, fast_paths: bool) -> Self {
        let schema = arrow_schema(&table);
        Self { storage, table, schema, latest: None, time_order: None, windows: None, distinct_tag: None, fast_paths }
    }

    pub(crate) fn is_tag(&self, column: &str) -> bool {
        self.table.column(column).is_some_and(|c| c.kind == ColumnKind::Tag)
    }

    /// The storage engine the table is in.
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The table as storage describes it.
    pub(crate) fn schema_of_table(&self) -> &TableSchema {
        &self.table
    }

    /// Whether scans of the table may take fast paths (`QueryConfig::fast_paths`).
    pub(crate) fn fast_paths(&self) -> bool {
        self.fast_paths
    }

    /// Whether scans read every row the filters select (not only the newest of each series,
    /// nor only the first in time order, nor one per value of a tag).
    pub(crate) fn reads_every_row(&self) -> bool {
        self.latest.is_none() && self.time_order.is_none() && self.windows.is_none() && self.distinct_tag.is_none()
    }

    /// Whether the table can stand for the newest rows of its series (see `latest.rs`); not
    /// when it already does.
    pub(crate) fn keeps_latest(&self) -> bool {
        self.fast_paths && self.reads_every_row() && self.storage.keeps_latest(&self.table.name)
    }

    /// The table as the newest row of each series within `time_min_ns..=time_max_ns`.
    pub(crate) fn latest_rows(&self, time_min_ns: i64, time_max_ns: i64) -> Self {
        Self { latest: Some((time_min_ns, time_max_ns)), ..self.clone() }
    }

    /// The table as one row of a series for each distinct value of tag `tag` among the series
    /// with rows within `time_min_ns..=time_max_ns`.
    pub(crate) fn distinct_values(&self, tag: &str, time_min_ns: i64, time_max_ns: i64) -> Self {
        Self { distinct_tag: Some((tag.to_owned(), time_min_ns, time_max_ns)), ..self.clone() }
    }

    /// The table as partial aggregates of its rows within `time_min_ns..=time_max_ns` per
    /// series and window.
    pub(crate) fn in_windows(&self, windows: Windows, time_min_ns: i64, time_max_ns: i64) -> Self {
        let time = Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false);
        let tags = self.table.tags().map(|c| Field::new(&c.name, DataType::Utf8, true));
        let partials = self.table.columns.iter().flat_map(|c| match c.kind {
            ColumnKind::Field(t @ (FieldType::F64 | FieldType::I64)) => {
                let count = Field::new(partial_name(&c.name, PARTIAL_AGGREGATES[0]), DataType::Int64, false);
                let rest =
                    PARTIAL_AGGREGATES[1..].iter().map(|what| Field::new(partial_name(&c.name, what), isobar_storage::arrow_type(t), true));
                std::iter::once(count).chain(rest).collect()
            }
            _ => Vec::new(),
        });
        let schema = Arc::new(Schema::new(std::iter::once(time).chain(tags).chain(partials).collect::<Vec<_>>()));
        Self { schema, windows: Some((windows, time_min_ns, time_max_ns)), ..self.clone() }
    }

    /// The stored column an output column is read from: in windows, a field's partial
    /// aggregates are read from the field.
    fn stored_column(&self, output: &str) -> String {
        let partial_of = |f: &&isobar_storage::ColumnDef| {
            self.windows.is_some() && PARTIAL_AGGREGATES.iter().any(|what| partial_name(&f.name, what) == output)
        };
        self.table.columns.iter().find(partial_of).map_or_else(|| output.to_owned(), |f| f.name.clone())
    }

    /// The columns a scan of `stored` (in storage's order) outputs, by name.
    fn output_columns(&self, stored: &[String]) -> Vec<String> {
        if self.windows.is_none() {
            return stored.to_vec();
        }
        let output = |n: &String| match n == TIME_COLUMN || self.is_tag(n) {
            true => vec![n.clone()],
            false => PARTIAL_AGGREGATES.iter().map(|what| partial_name(n, what)).collect(),
        };
        stored.iter().flat_map(output).collect()
    }

    /// The table read in time order (newest first when `newest_first`) until `rows_wanted`
    /// rows are read, whole partitions at a time.
    pub(crate) fn in_time_order(&self, newest_first: bool, rows_wanted: u64) -> Self {
        Self { time_order: Some((newest_first, rows_wanted)), ..self.clone() }
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let projected = Arc::new(self.schema.project(&projection)?);
        let mut pushdown = Pushdown::from_filters(filters, |c| self.is_tag(c));
        let bounds =
            self.latest.or(self.windows.map(|(_, min, max)| (min, max))).or(self.distinct_tag.as_ref().map(|(_, min, max)| (*min, *max)));
        if let Some((time_min_ns, time_max_ns)) = bounds {
            pushdown.narrow(time_min_ns, time_max_ns);
        }
        if pushdown.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Storage returns the requested columns in its own order; `reorder` puts them in
        // projection order.
        let mut names: Vec<String> = projection.iter().map(|i| self.stored_column(self.schema.field(*i).name())).collect();
        if self.windows.is_some() || names.is_empty() {
            // Windows are cut by time; a row count needs one column, and `time` is the cheapest.
            names.push(TIME_COLUMN.to_owned());
        }
        names.sort_by_key(|n| storage_rank(&self.table, n));
        names.dedup();
        let output = self.output_columns(&names);
        let reorder = projection.iter().map(|i| output.iter().position(|n| n == self.schema.field(*i).name()).unwrap_or(0)).collect();
        let request = ScanRequest {
            table: self.table.name.clone(),
            time_min_ns: pushdown.time_min_ns,
            time_max_ns: pushdown.time_max_ns,
            series: pushdown.series,
            columns: Some(names),
        };
        let read = match (self.latest, self.time_order, self.windows, self.fast_paths) {
            _ if let Some((tag, ..)) = &self.distinct_tag => Read::DistinctTag(tag.clone()),
            (Some(_), ..) => Read::NewestRows,
            (None, Some((newest_first, rows_wanted)), ..) => Read::FirstRowsInTimeOrder { newest_first, rows_wanted },
            (None, None, Some((windows, ..)), _) => Read::Windows(windows),
            (None, None, None, true) => Read::RowsCountedByFooters,
            (None, None, None, false) => Read::Rows,
        };
        let threads = match read.shares_among_threads() {
            true => {
                let most = state.config().target_partitions();
                self.storage.parallel_reads(&request, most).map_err(|e| DataFusionError::External(Box::new(e)))?
            }
            false => 1,
        };
        Ok(Arc::new(ScanExec::new(self.storage.clone(), request, read, projected, reorder, threads)?))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // In windows, `time` is a window's start: filters on it stay above the scan, which
        // reads raw rows by their own times.
        let on_time = |f: &Expr| self.windows.is_some() && f.column_refs().iter().any(|c| c.name == TIME_COLUMN);
        Ok(filters
            .iter()
            .map(|f| match (Pushdown::applies_exactly(f, |c| self.is_tag(c)), Pushdown::understands(f, |c| self.is_tag(c))) {
                _ if on_time(f) => TableProviderFilterPushDown::Unsupported,
                (true, _) => TableProviderFilterPushDown::Exact,
                (false, true) => TableProviderFilterPushDown::Inexact,
                (false, false) => TableProviderFilterPushDown::Unsupported,
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
