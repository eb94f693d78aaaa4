//! Snapshot scans: a table's rows by time range, series and columns, as Arrow record batches.
//!
//! [`Storage::scan`] captures a snapshot (the buffered rows that match, copied, and the chunks
//! that may match, by their footers) and returns a [`Scan`] that yields one partition at a
//! time, merging chunks (oldest first), the frozen buffer and the active buffer with
//! last-write-wins. Output rows are sorted by (series, time). Within a partition, series are
//! read in groups of about `scan_group_rows` rows (counted from the chunk footers), so a
//! scan holds one group's rows at a time and its consumer starts on the first group while the
//! next is decoded. [`Scan::split`] lets several threads read one snapshot, each taking the
//! next group of series to read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parking_lot::Mutex;

use crate::buffer::{BufferView, partition_start};
use crate::config::StorageConfig;
use crate::engine::{ChunkHandle, Shared, Storage};
use crate::error::{Error, Result};
use crate::model::{ColumnId, FieldType, SeriesId};
use crate::postings::{TagPredicate, TagTest};
use crate::registry::Registry;
use crate::rollup::LATE_UPDATES_COLUMN;
use crate::rollup::recompute::{correct, corrections};
use crate::rowset::{RowSet, Selection, Values};
use crate::schema::{ColumnKind, TIME_COLUMN, TableSchema};
use crate::windows::Windows;

/// Rows per output record batch, at most.
const BATCH_ROWS_MAX: usize = 64 * 1024;

/// Which series a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesFilter {
    All,
    Ids(Vec<SeriesId>),
    /// Series whose tags meet all of these.
    Tags(Vec<TagPredicate>),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub table: String,
    /// Inclusive.
    pub time_min_ns: i64,
    /// Inclusive.
    pub time_max_ns: i64,
    pub series: SeriesFilter,
    /// Columns to return (`time`, tags, fields) in table order; `None` for all.
    pub columns: Option<Vec<String>>,
}

impl ScanRequest {
    /// Every row and column of `table`.
    pub fn all(table: &str) -> Self {
        Self { table: table.to_owned(), time_min_ns: i64::MIN, time_max_ns: i64::MAX, series: SeriesFilter::All, columns: None }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum OutColumn {
    Time,
    Tag(ColumnId),
    Field(ColumnId, FieldType),
}

/// An iterator of record batches over a snapshot, one partition at a time; [`Scan::split`]
/// shares one snapshot's reading among threads.
#[derive(Debug)]
pub struct Scan {
    pub(crate) schema: SchemaRef,
    pub(crate) out: Vec<OutColumn>,
    /// Where output tag values come from, locked once per batch. Series are never removed and
    /// their tags never change, so a value read late is the one of the snapshot.
    registry: Arc<Mutex<Registry>>,
    series: Option<Arc<[SeriesId]>>,
    fields: Vec<ColumnId>,
    time_min: i64,
    time_max: i64,
    partition_ns: i64,
    /// Rows a group of series aims at ([`StorageConfig::scan_group_rows`]).
    group_rows: u64,
    /// A rollup table's `late_updates` column, which [`correct`] adds to.
    late_column: Option<ColumnId>,
    /// What is left to read, shared with the scans split from this one.
    work: Arc<Mutex<Work>>,
    pending: Vec<RecordBatch>,
    /// Set when batches hold partial aggregates per window instead of rows (`windows.rs`).
    pub(crate) windows: Option<Windows>,
    /// Most bytes of a cold chunk a partition read fetches ahead (a quarter of the cache).
    prefetch_bytes_max: u64,
}

/// The groups of series a scan (and those split from it) has yet to read.
#[derive(Debug, Default)]
struct Work {
    /// Rows merged already (the newest rows of series), read before the partitions.
    ready: VecDeque<RowSet>,
    partitions: BTreeMap<i64, Parts>,
    /// The partition being read.
    current: Option<PartitionRead>,
    /// Partitions newest first instead of oldest first.
    newest_first: bool,
    /// Once this many rows are read, the partitions not begun are left unread.
    rows_wanted: Option<u64>,
    rows_read: u64,
}

/// What one partition's rows are merged from.
#[derive(Debug, Default)]
struct Parts {
    /// Oldest first.
    chunks: Vec<Arc<ChunkHandle>>,
    /// Frozen, active; for a rollup table then its unwritten windows.
    buffered: Vec<RowSet>,
    /// A rollup table's windows being rewritten, recomputed (see [`correct`]).
    fixed: RowSet,
}

/// A partition being read, one group of series at a time.
#[derive(Debug)]
struct PartitionRead {
    start_ns: i64,
    parts: Arc<Parts>,
    /// Groups of series (each sorted) still to read.
    groups: VecDeque<Vec<SeriesId>>,
    /// No group was taken yet.
    first: bool,
}

impl Storage {
    /// Starts a scan of a snapshot taken now. Writes after this call are not seen. A rollup
    /// table's scan returns its final windows and, with `final` false, its open ones.
    pub fn scan(&self, req: &ScanRequest) -> Result<Scan> {
        scan(&self.shared, req)
    }

    /// [`Self::scan`], first charging `charge` with the bytes its copy of buffered rows will
    /// take (an estimate made without copying); if `charge` refuses, the scan ends with
    /// [`Error::LimitExceeded`] and copies nothing.
    pub fn scan_charged(&self, req: &ScanRequest, charge: Charge<'_>) -> Result<Scan> {
        scan_charged(&self.shared, req, RollupView::Exact, charge)
    }
}

/// Accepts or refuses a scan's memory, in bytes, with the reason it refused.
pub type Charge<'a> = &'a mut dyn FnMut(usize) -> std::result::Result<(), String>;

/// What a scan of a rollup table shows of the windows the maintainer has yet to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RollupView {
    /// Open windows, and final windows exact at the instant the scan starts: rows being
    /// written, and windows that took late rows or are being recomputed, recomputed.
    Exact,
    /// [`RollupView::Exact`] without the open windows: what a coarser rollup is built from.
    Final,
    /// The stored rows and those being written: what the maintainer rewrites from.
    Written,
}

/// [`Storage::scan`], for the engine's own readers.
pub(crate) fn scan(shared: &Shared, req: &ScanRequest) -> Result<Scan> {
    scan_view(shared, req, RollupView::Exact)
}

/// A scan; of a rollup table, with `view` of its unwritten windows.
pub(crate) fn scan_view(shared: &Shared, req: &ScanRequest, view: RollupView) -> Result<Scan> {
    scan_charged(shared, req, view, &mut |_| Ok(()))
}

fn scan_charged(shared: &Shared, req: &ScanRequest, view: RollupView, charge: Charge<'_>) -> Result<Scan> {
    let registry = shared.registry.lock();
    let target = Target::new(&registry, &shared.config, req)?;
    let selection = target.selection();
    let schema = &target.schema;
    let column_types = crate::buffer::field_types(schema, |id| selection.wants_column(id));
    let source = registry.rollup_sources.get(&schema.id).copied();
    let (chunks, buffered, unwritten, fixed, late_column) = match source.and_then(|source| Some((source, registry.rollups.get(&source)?))) {
        None => {
            drop(registry);
            let (chunks, buffered) = snapshot(shared, schema, &selection);
            (chunks, buffered, RowSet::default(), RowSet::default(), None)
        }
        Some((source, rollup)) => {
            // The stored rows and the rollup's memory at one instant, so that each late row is
            // counted once: in a stored (or pending) row, or among those still to write.
            let (chunks, buffered) = snapshot(shared, schema, &selection);
            let wants = |series: SeriesId, time: i64| selection.wants_time(time) && selection.wants_series(series);
            let open = registry.open_windows.lock();
            let mut unwritten = rollup.overlay(open.get(&source).filter(|_| view == RollupView::Exact), wants);
            drop(open);
            let mut fixes = Vec::new();
            if view != RollupView::Written {
                let (rows, recompute) = rollup.fixes(wants, &registry.unsettled_under(schema.id));
                unwritten.extend(rows);
                // A window whose raw rows have expired keeps its stored row.
                let raw_cutoff = registry.retention_cutoff_ns(source, &shared.config).unwrap_or(i64::MIN);
                fixes = recompute.into_iter().filter(|f| f.start_ns >= raw_cutoff).collect();
            }
            let prepared_sequence = registry.next_sequence.saturating_sub(1);
            drop(registry);
            let unwritten = RowSet::from_rows(&unwritten, &column_types).select(&selection);
            let late_column = schema.column(LATE_UPDATES_COLUMN).map(|c| c.id);
            let fixed = corrections(shared, source, &fixes, prepared_sequence, &column_types, &selection)?;
            (chunks, buffered, unwritten, fixed, late_column)
        }
    };
    // The buffered rows are copied and sorted here, with no lock held.
    let estimate: usize = buffered.iter().map(|view| view.estimated_bytes(&selection)).sum();
    charge(estimate).map_err(|reason| Error::LimitExceeded(format!("buffered rows of {}: {reason}", schema.name)))?;
    let buffered: Vec<RowSet> = buffered.iter().map(|view| view.select(schema, &selection)).collect();
    let mut scan = target.into_scan(shared);
    scan.late_column = late_column;
    for set in buffered.into_iter().chain([unwritten]) {
        scan.add_rows(set);
    }
    let mut work = scan.work.lock();
    for chunk in chunks {
        work.partitions.entry(chunk.partition_start_ns()).or_default().chunks.push(chunk);
    }
    for (partition, part) in split_partitions(fixed, scan.partition_ns) {
        work.partitions.entry(partition).or_default().fixed = part;
    }
    for parts in work.partitions.values_mut() {
        parts.chunks.sort_by_key(|c| c.age_key());
    }
    drop(work);
    Ok(scan)
}

/// What a request selects of a table, decided under the registry lock.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) schema: TableSchema,
    out: Vec<OutColumn>,
    /// The field columns to read, sorted.
    fields: Vec<ColumnId>,
    /// The selected series, sorted; `None` for all of the table's.
    pub(crate) series: Option<Vec<SeriesId>>,
    /// Inclusive, and not before the table's retention.
    pub(crate) time_min: i64,
    /// Inclusive.
    pub(crate) time_max: i64,
}

impl Target {
    pub(crate) fn new(registry: &Registry, config: &StorageConfig, req: &ScanRequest) -> Result<Self> {
        if req.time_min_ns > req.time_max_ns {
            return Err(Error::InvalidRequest(format!("time range {}..={} is empty", req.time_min_ns, req.time_max_ns)));
        }
        let schema = registry.table(&req.table).cloned().ok_or_else(|| Error::InvalidRequest(format!("no table {}", req.table)))?;
        let out = output_columns(&schema, req.columns.as_deref())?;
        let fields = out.iter().filter_map(|c| if let OutColumn::Field(id, _) = c { Some(*id) } else { None }).collect();
        let series = match &req.series {
            SeriesFilter::All => None,
            SeriesFilter::Ids(ids) => {
                let ids: std::collections::HashSet<SeriesId> = ids.iter().copied().collect();
                Some(registry.series_of(schema.id).into_iter().map(|s| s.id).filter(|id| ids.contains(id)).collect())
            }
            SeriesFilter::Tags(predicates) => {
                let tests: Option<Vec<(ColumnId, &TagTest)>> =
                    predicates.iter().map(|p| Some((schema.column(&p.tag).filter(|c| c.kind == ColumnKind::Tag)?.id, &p.test))).collect();
                // A condition on a column that is not a tag: no series has it.
                match tests {
                    Some(tests) => Some(registry.series_meeting(schema.id, &tests).map_err(Error::InvalidRequest)?),
                    None => Some(Vec::new()),
                }
            }
        };
        // Rows past the table's retention are gone, whether or not their chunk is deleted yet.
        let time_min = req.time_min_ns.max(registry.retention_cutoff_ns(schema.id, config).unwrap_or(i64::MIN));
        Ok(Self { schema, out, fields, series, time_min, time_max: req.time_max_ns })
    }

    /// [`Target::new`] for a raw table; `None` for a rollup table, whose open windows are not
    /// stored rows.
    pub(crate) fn of_raw_table(shared: &Shared, req: &ScanRequest) -> Result<Option<Self>> {
        let registry = shared.registry.lock();
        let target = Self::new(&registry, &shared.config, req)?;
        Ok((!registry.rollup_sources.contains_key(&target.schema.id)).then_some(target))
    }

    pub(crate) fn selection(&self) -> Selection<'_> {
        Selection { series: self.series.as_deref(), time_min: self.time_min, time_max: self.time_max, columns: Some(&self.fields) }
    }

    /// A scan of nothing yet: add chunks and rows to its partitions.
    pub(crate) fn into_scan(self, shared: &Shared) -> Scan {
        let config = &shared.config;
        Scan {
            schema: arrow_schema(&self.schema, &self.out),
            out: self.out,
            registry: Arc::clone(&shared.registry),
            series: self.series.map(Arc::from),
            fields: self.fields,
            time_min: self.time_min,
            time_max: self.time_max,
            partition_ns: config.partition_ns(),
            group_rows: config.scan_group_rows.max(1),
            late_column: None,
            work: Arc::default(),
            pending: Vec::new(),
            windows: None,
            prefetch_bytes_max: config.cold_cache_bytes_max / 4,
        }
    }
}

/// The chunks that may hold rows of `selection`, and views of the buffered rows, frozen
/// before active. The state lock is held for neither copies nor sorts ([`crate::buffer`]).
pub(crate) fn snapshot(shared: &Shared, schema: &TableSchema, selection: &Selection<'_>) -> (Vec<Arc<ChunkHandle>>, Vec<BufferView>) {
    let state = shared.state.read();
    let chunks = state.chunks.values().filter(|c| c.table() == schema.id && c.reader.may_match(selection)).cloned().collect();
    let frozen = state.frozen.as_ref().map(|f| f.view(schema.id));
    (chunks, frozen.into_iter().chain([state.active.view(schema.id)]).collect())
}

impl Scan {
    /// The scan for `ORDER BY time [DESC] LIMIT rows_wanted`: partitions in time order (newest
    /// first when `newest_first`), and none begun once `rows_wanted` rows are read. Every row of
    /// a partition not begun is older (newer) than every row read, so the first `rows_wanted`
    /// rows in that order are among those read; within a partition rows still come by series.
    pub fn in_time_order(self, newest_first: bool, rows_wanted: u64) -> Self {
        let mut work = self.work.lock();
        work.newest_first = newest_first;
        work.rows_wanted = Some(rows_wanted);
        drop(work);
        self
    }

    /// Splits the scan into `n` scans of its snapshot that together return each of its rows
    /// once, for `n` threads to read: each takes the next group of series from a queue they
    /// share. Each returns whole groups, sorted by (series, time) within a group.
    pub fn split(self, n: usize) -> Vec<Scan> {
        let mut scans = Vec::with_capacity(n.max(1));
        for _ in 1..n {
            scans.push(Scan {
                schema: Arc::clone(&self.schema),
                out: self.out.clone(),
                registry: Arc::clone(&self.registry),
                series: self.series.clone(),
                fields: self.fields.clone(),
                time_min: self.time_min,
                time_max: self.time_max,
                partition_ns: self.partition_ns,
                group_rows: self.group_rows,
                late_column: self.late_column,
                work: Arc::clone(&self.work),
                pending: Vec::new(),
                windows: self.windows,
                prefetch_bytes_max: self.prefetch_bytes_max,
            });
        }
        scans.insert(0, self);
        scans
    }

    /// The schema of every batch: `time`, then the requested tags and fields in table order.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Adds rows (of the selected series and times) to the partitions they fall in.
    pub(crate) fn add_rows(&mut self, set: RowSet) {
        let mut work = self.work.lock();
        for (partition, part) in split_partitions(set, self.partition_ns) {
            work.partitions.entry(partition).or_default().buffered.push(part);
        }
    }

    /// Adds rows that need no merging (one row per series, as [`Storage::latest`] reads), read
    /// before any partition, in groups of about `group_rows` rows.
    pub(crate) fn add_ready(&mut self, set: RowSet) {
        let group_rows = usize::try_from(self.group_rows).unwrap_or(usize::MAX);
        let mut work = self.work.lock();
        if set.len() <= group_rows {
            work.ready.push_back(set);
            return;
        }
        for start in (0..set.len()).step_by(group_rows) {
            let rows: Vec<usize> = (start..set.len().min(start + group_rows)).collect();
            work.ready.push_back(set.take(&rows));
        }
    }

    fn selection(&self, time_min: i64, time_max: i64) -> Selection<'_> {
        Selection { series: self.series.as_deref(), time_min, time_max, columns: Some(&self.fields) }
    }

    /// The next group of series of the current partition, merged; the next partition's first
    /// group when the current one is done; `None` at the end.
    fn next_group(&mut self) -> Result<Option<RecordBatch>> {
        match (self.next_rows()?, self.windows) {
            (Some(set), Some(windows)) => Ok(Some(self.to_windows(&set, windows)?)),
            (Some(set), None) => Ok(Some(self.to_batch(set)?)),
            (None, _) => Ok(None),
        }
    }

    /// [`Self::next_group`] as rows with series ids, for the engine's own readers.
    pub(crate) fn next_rows(&mut self) -> Result<Option<RowSet>> {
        if let Some(set) = self.work.lock().ready.pop_front() {
            return Ok(Some(set));
        }
        let Some((start_ns, parts, group, prefetch)) = self.next_work() else { return Ok(None) };
        let end = start_ns.saturating_add(self.partition_ns - 1);
        if prefetch {
            // A partition read in several groups: its cold chunks' blocks come in one go.
            let whole = self.selection(self.time_min.max(start_ns), self.time_max.min(end));
            for chunk in parts.chunks.iter().filter(|c| c.reader.is_cold()) {
                chunk.reader.prefetch(&whole, self.prefetch_bytes_max)?;
            }
        }
        let selection = Selection {
            series: Some(&group),
            time_min: self.time_min.max(start_ns),
            time_max: self.time_max.min(end),
            columns: Some(&self.fields),
        };
        let Parts { chunks, buffered, fixed } = &*parts;
        let mut sets = Vec::with_capacity(chunks.len() + buffered.len());
        for chunk in chunks.iter().filter(|c| c.reader.may_match(&selection)) {
            sets.push(chunk.reader.read(&selection)?);
        }
        sets.extend(buffered.iter().map(|set| set.of_series(&group)));
        let merged = RowSet::merge(sets);
        let rows = match self.late_column {
            Some(late_column) => correct(merged, fixed.of_series(&group), late_column),
            None => merged,
        };
        self.work.lock().rows_read += rows.len() as u64;
        Ok(Some(rows))
    }

    /// The next group of series to read and the partition it is of, taken from the work
    /// shared by the scans split from one, and whether it is the first of several groups of its
    /// partition.
    fn next_work(&self) -> Option<(i64, Arc<Parts>, Vec<SeriesId>, bool)> {
        let mut work = self.work.lock();
        loop {
            if let Some(read) = work.current.as_mut()
                && let Some(group) = read.groups.pop_front()
            {
                let first_of_several = std::mem::take(&mut read.first) && !read.groups.is_empty();
                return Some((read.start_ns, Arc::clone(&read.parts), group, first_of_several));
            }
            if work.rows_wanted.is_some_and(|wanted| work.rows_read >= wanted) {
                return None;
            }
            let (start_ns, parts) = if work.newest_first { work.partitions.pop_last() } else { work.partitions.pop_first() }?;
            let groups = self.series_groups(start_ns, &parts);
            work.current = Some(PartitionRead { start_ns, parts: Arc::new(parts), groups, first: true });
        }
    }

    /// The series of one partition that the scan wants, in groups of about
    /// `group_rows` rows, by the rows chunk footers and buffers list for each.
    fn series_groups(&self, start_ns: i64, parts: &Parts) -> VecDeque<Vec<SeriesId>> {
        let end = start_ns.saturating_add(self.partition_ns - 1);
        let selection = self.selection(self.time_min.max(start_ns), self.time_max.min(end));
        let mut rows: BTreeMap<SeriesId, u64> = BTreeMap::new();
        for chunk in &parts.chunks {
            for s in chunk.reader.selected_series(&selection) {
                *rows.entry(s.series).or_default() += u64::from(s.rows);
            }
        }
        for run in parts.buffered.iter().chain([&parts.fixed]).flat_map(|set| &set.series) {
            *rows.entry(run.series).or_default() += run.rows as u64;
        }
        let mut groups = VecDeque::new();
        let (mut group, mut group_rows) = (Vec::new(), 0);
        for (series, n) in rows {
            group.push(series);
            group_rows += n;
            if group_rows >= self.group_rows {
                groups.push_back(std::mem::take(&mut group));
                group_rows = 0;
            }
        }
        if !group.is_empty() {
            groups.push_back(group);
        }
        groups
    }

    /// The registry, for [`tag`], when the output has tags.
    pub(crate) fn tags(&self) -> Option<parking_lot::MutexGuard<'_, Registry>> {
        self.out.iter().any(|c| matches!(c, OutColumn::Tag(_))).then(|| self.registry.lock())
    }

    /// The rows of `set` as a batch; its vectors move into the arrays without copies.
    fn to_batch(&self, mut set: RowSet) -> Result<RecordBatch> {
        let rows = set.len();
        let registry = self.tags();
        let columns: Vec<ArrayRef> = self.out.iter().map(|c| to_array(registry.as_deref(), &mut set, rows, *c)).collect();
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// The value of tag `id` of `series`, from the registry [`Scan::tags`] gave.
pub(crate) fn tag(registry: Option<&Registry>, series: SeriesId, id: ColumnId) -> Option<&str> {
    registry?.series_tags(series).iter().find(|(c, _)| *c == id).map(|(_, v)| v.as_str())
}

/// One output column of `set`, which holds `rows` rows; takes the column's values out of
/// `set` (each column is output once).
fn to_array(registry: Option<&Registry>, set: &mut RowSet, rows: usize, column: OutColumn) -> ArrayRef {
    match column {
        OutColumn::Time => Arc::new(TimestampNanosecondArray::from(std::mem::take(&mut set.times)).with_timezone("UTC")),
        OutColumn::Tag(id) => {
            let runs: Vec<(Option<&str>, usize)> = set.series.iter().map(|run| (tag(registry, run.series, id), run.rows)).collect();
            Arc::new(repeated_strings(&runs, rows))
        }
        OutColumn::Field(id, ty) => match set.columns.iter_mut().find(|c| c.id == id) {
            None => arrow::array::new_null_array(&arrow_type(ty), rows),
            Some(c) => {
                let valid = std::mem::take(&mut c.valid);
                let nulls = |valid: Vec<bool>| valid.contains(&false).then(|| NullBuffer::from(valid));
                match std::mem::replace(&mut c.values, Values::Bool(Vec::new())) {
                    Values::F64(v) => Arc::new(Float64Array::new(v.into(), nulls(valid))),
                    Values::I64(v) => Arc::new(Int64Array::new(v.into(), nulls(valid))),
                    Values::Bool(v) => Arc::new(BooleanArray::new(v.as_slice().into(), nulls(valid))),
                    Values::String(v) => Arc::new(v.iter().zip(&valid).map(|(s, ok)| ok.then_some(&**s)).collect::<StringArray>()),
                }
            }
        },
    }
}

impl Iterator for Scan {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.pending.pop() {
                return Some(Ok(batch));
            }
            match self.next_group() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(batch)) if batch.num_rows() == 0 => {}
                Ok(Some(batch)) => {
                    let slices =
                        (0..batch.num_rows()).step_by(BATCH_ROWS_MAX).map(|s| batch.slice(s, BATCH_ROWS_MAX.min(batch.num_rows() - s)));
                    self.pending = slices.collect();
                    self.pending.reverse();
                }
            }
        }
    }
}

/// A string column of `rows` rows given as runs of one value (`None`: null) repeated: the
/// value's bytes copied once per row, with no per-row allocation or dispatch.
pub(crate) fn repeated_strings(runs: &[(Option<&str>, usize)], rows: usize) -> StringArray {
    let bytes: usize = runs.iter().map(|(value, n)| value.map_or(0, str::len).saturating_mul(*n)).sum();
    if i32::try_from(bytes).is_err() {
        // Past what 32-bit offsets address: let Arrow report it as it builds.
        return runs.iter().flat_map(|(value, n)| std::iter::repeat_n(*value, *n)).collect();
    }
    let mut values = Vec::with_capacity(bytes);
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    // Kept once a null is met: whether each row so far has a value.
    let mut valid: Option<Vec<bool>> = None;
    for &(value, n) in runs {
        match value {
            Some(value) => {
                // The value once, then what is written so far doubled until the run is whole:
                // a few large copies rather than one per row.
                let (start, len) = (values.len(), value.len());
                values.extend_from_slice(value.as_bytes());
                let end = start + len * n;
                while values.len() < end {
                    let more = (values.len() - start).min(end - values.len());
                    values.extend_from_within(start..start + more);
                }
                values.truncate(end);
                offsets.extend((1..=n).map(|i| (start + i * len) as i32));
            }
            None => {
                let before = offsets.len() - 1;
                valid.get_or_insert_with(|| vec![true; before]);
                offsets.resize(offsets.len() + n, values.len() as i32);
            }
        }
        if let Some(valid) = &mut valid {
            valid.resize(offsets.len() - 1, value.is_some());
        }
    }
    // `new` checks that the offsets ascend and each slice is whole UTF-8.
    StringArray::new(OffsetBuffer::new(offsets.into()), values.into(), valid.map(NullBuffer::from))
}

fn split_partitions(set: RowSet, partition_ns: i64) -> BTreeMap<i64, RowSet> {
    let partitions: BTreeSet<i64> = set.times.iter().map(|t| partition_start(*t, partition_ns)).collect();
    if partitions.len() <= 1 {
        return partitions.into_iter().map(|p| (p, set.clone())).collect();
    }
    partitions
        .into_iter()
        .map(|p| {
            let keep: Vec<usize> = (0..set.len()).filter(|&i| partition_start(set.times[i], partition_ns) == p).collect();
            (p, set.take(&keep))
        })
        .collect()
}

fn output_columns(schema: &TableSchema, names: Option<&[String]>) -> Result<Vec<OutColumn>> {
    let wanted = |name: &str| names.is_none_or(|n| n.iter().any(|x| x == name));
    if let Some(names) = names
        && let Some(unknown) = names.iter().find(|n| *n != TIME_COLUMN && schema.column(n).is_none())
    {
        return Err(Error::InvalidRequest(format!("table {} has no column {unknown}", schema.name)));
    }
    let mut out = Vec::new();
    if wanted(TIME_COLUMN) {
        out.push(OutColumn::Time);
    }
    out.extend(schema.tags().filter(|c| wanted(&c.name)).map(|c| OutColumn::Tag(c.id)));
    out.extend(schema.columns.iter().filter(|c| wanted(&c.name)).filter_map(|c| match c.kind {
        ColumnKind::Field(t) => Some(OutColumn::Field(c.id, t)),
        ColumnKind::Tag => None,
    }));
    Ok(out)
}

/// The Arrow type of a field column.
pub fn arrow_type(ty: FieldType) -> DataType {
    match ty {
        FieldType::F64 => DataType::Float64,
        FieldType::I64 => DataType::Int64,
        FieldType::Bool => DataType::Boolean,
        FieldType::String => DataType::Utf8,
    }
}

fn arrow_schema(schema: &TableSchema, out: &[OutColumn]) -> SchemaRef {
    let name = |id: ColumnId| schema.column_by_id(id).map(|c| c.name.clone()).unwrap_or_default();
    let fields: Vec<Field> = out
        .iter()
        .map(|c| match c {
            OutColumn::Time => Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
            OutColumn::Tag(id) => Field::new(name(*id), DataType::Utf8, true),
            OutColumn::Field(id, ty) => Field::new(name(*id), arrow_type(*ty), true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn repeated_strings_equal_the_values_one_by_one(runs in prop::collection::vec((prop::option::of("[a-zé]{0,5}"), 0usize..5), 0..8)) {
            let rows = runs.iter().map(|(_, n)| n).sum();
            let expected: StringArray = runs.iter().flat_map(|(value, n)| std::iter::repeat_n(value.as_deref(), *n)).collect();
            let runs_of_str: Vec<(Option<&str>, usize)> = runs.iter().map(|(value, n)| (value.as_deref(), *n)).collect();
            let got = repeated_strings(&runs_of_str, rows);
            prop_assert_eq!(got.len(), rows);
            prop_assert_eq!(got, expected);
        }
    }
}
