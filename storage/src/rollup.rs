//! Continuous rollups: for every raw table (`weather`) a rollup table (`weather_1m`) with one
//! row per series and event-time window holding `count`, `sum`, `min`, `max` and `avg` of
//! each numeric field, whether the window is `final`, and its `late_updates`.
//!
//! This module is the in-memory state, kept under the registry lock so that it changes in
//! WAL order with the raw rows:
//!
//! - A raw row whose window is still open merges into that window's partial aggregates. Each
//!   open window also keeps its times, so a row that replaces an existing (series, time) value
//!   marks the window `replaced`: its aggregates are provisional until it is recomputed from
//!   raw data when it becomes final.
//! - The watermark is the newest event time seen (never ahead of the wall clock, so one bogus
//!   future timestamp cannot close every window) minus the allowed lateness. Windows that end
//!   at or before it are due: `maintain.rs` writes them to the rollup table and moves the
//!   `frontier` (the start of the first window that is not final) in the same commit.
//! - A raw row for a window before the frontier is late: the window is marked dirty, durably
//!   in the same commit as the row, and written again by `maintain.rs`. Windows that became
//!   final in the last [`RECENT_WINDOWS`] intervals keep their state, so a late row that adds
//!   a new time merges into it and the new row comes from memory; otherwise (an older window,
//!   or a late row that replaces a value) the window is recomputed from raw rows.
//!
//! Open windows are not persisted: on open they are rebuilt from the raw rows at and after
//! the durable frontier, so they survive a crash exactly as the raw data does.

use std::collections::BTreeMap;

use crate::batch::{Row, RowBatch, RowRef};
use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;
use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, FieldType, FieldValue, SeriesId, TableId};
use crate::schema::{ColumnKind, TableSchema};

pub(crate) mod maintain;
pub(crate) mod recompute;

/// Column of a rollup table saying whether its window is final.
pub const FINAL_COLUMN: &str = "final";
/// Column of a rollup table counting the raw rows that arrived after its window was final.
pub const LATE_UPDATES_COLUMN: &str = "late_updates";

/// Intervals behind the frontier whose final windows keep their state for late rows.
pub(crate) const RECENT_WINDOWS: i64 = 5;

/// The aggregates of each numeric field, as rollup column name suffixes.
const AGGREGATES: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// A rollup window as it was written final (or final again, after late rows), for those who
/// publish rollups (see [`crate::Storage::final_windows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FinalWindow {
    /// The rollup table, e.g. `weather_1m`.
    pub table: String,
    pub start_ns: i64,
    /// The series' tags, by name.
    pub tags: Vec<(String, String)>,
    /// `final`, `late_updates` and the aggregates, by column name in table order.
    pub fields: Vec<(String, FieldValue)>,
}

/// The rollup columns of a numeric field: `<field>_count`, `_sum`, `_min`, `_max`, `_avg`.
pub(crate) fn aggregate_column_names(field: &str) -> [String; 5] {
    AGGREGATES.map(|a| format!("{field}_{a}"))
}

/// Start of the window of `interval_ns` that holds `time`.
pub(crate) fn window_start(time: i64, interval_ns: i64) -> i64 {
    time.div_euclid(interval_ns).saturating_mul(interval_ns)
}

/// The rollup table's name for a raw table and interval: `weather_1m`, `weather_30s`.
pub(crate) fn rollup_table_name(table: &str, interval_ns: i64) -> String {
    let s = interval_ns / 1_000_000_000;
    let suffix = match s {
        _ if interval_ns % 1_000_000_000 != 0 => format!("{}ms", interval_ns / 1_000_000),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    };
    format!("{table}_{suffix}")
}

/// The rollup of one raw table as the catalog records it (column family `rollups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollupEntry {
    pub(crate) source: TableId,
    pub(crate) interval_ns: i64,
    /// Windows starting before this are final; `i64::MIN` while none is.
    pub(crate) frontier_ns: i64,
}

impl RollupEntry {
    const VERSION: u8 = 1;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(Self::VERSION);
        w.u32(self.source.0);
        w.i64(self.interval_ns);
        w.i64(self.frontier_ns);
        w.into_inner()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != Self::VERSION {
            return Err(r.err(format!("unknown rollup entry version {version}")));
        }
        let entry = Self { source: TableId(r.u32()?), interval_ns: r.i64()?, frontier_ns: r.i64()? };
        r.finish()?;
        if entry.interval_ns <= 0 {
            return Err(DecodeError::new(5, format!("rollup interval of {} ns", entry.interval_ns)));
        }
        Ok(entry)
    }
}

/// A window marked for recomputation, durably: key of column family `rollups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DirtyKey {
    pub(crate) table: TableId,
    pub(crate) series: SeriesId,
    pub(crate) window_ns: i64,
    /// The WAL sequence of the write that brought the late rows.
    pub(crate) sequence: u64,
}

/// Aggregates of one numeric field over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Agg {
    F64 {
        count: i64,
        sum: f64,
        min: f64,
        max: f64,
    },
    /// Sums wrap on overflow, as SQL's `sum` over `bigint` does in DataFusion.
    I64 {
        count: i64,
        sum: i64,
        min: i64,
        max: i64,
    },
}

impl Agg {
    fn of(value: &FieldValue) -> Option<Self> {
        match *value {
            FieldValue::F64(x) => Some(Self::F64 { count: 1, sum: x, min: x, max: x }),
            FieldValue::I64(x) => Some(Self::I64 { count: 1, sum: x, min: x, max: x }),
            FieldValue::Bool(_) | FieldValue::String(_) => None,
        }
    }

    fn add(&mut self, value: &FieldValue) {
        match (self, value) {
            (Self::F64 { count, sum, min, max }, FieldValue::F64(x)) => {
                *count += 1;
                *sum += x;
                *min = min.min(*x);
                *max = max.max(*x);
            }
            (Self::I64 { count, sum, min, max }, FieldValue::I64(x)) => {
                *count += 1;
                *sum = sum.wrapping_add(*x);
                *min = (*min).min(*x);
                *max = (*max).max(*x);
            }
            // Schemas never change a column's type.
            _ => {}
        }
    }

    fn sum(&self) -> FieldValue {
        match *self {
            Self::F64 { sum, .. } => FieldValue::F64(sum),
            Self::I64 { sum, .. } => FieldValue::I64(sum),
        }
    }

    fn min(&self) -> FieldValue {
        match *self {
            Self::F64 { min, .. } => FieldValue::F64(min),
            Self::I64 { min, .. } => FieldValue::I64(min),
        }
    }

    fn max(&self) -> FieldValue {
        match *self {
            Self::F64 { max, .. } => FieldValue::F64(max),
            Self::I64 { max, .. } => FieldValue::I64(max),
        }
    }

    /// (count, sum, min, max, avg) as field values.
    fn values(&self) -> [FieldValue; 5] {
        match *self {
            Self::F64 { count, sum, min, max } => [
                FieldValue::I64(count),
                FieldValue::F64(sum),
                FieldValue::F64(min),
                FieldValue::F64(max),
                FieldValue::F64(sum / count as f64),
            ],
            Self::I64 { count, sum, min, max } => [
                FieldValue::I64(count),
                FieldValue::I64(sum),
                FieldValue::I64(min),
                FieldValue::I64(max),
                FieldValue::F64(sum as f64 / count as f64),
            ],
        }
    }
}

/// The partial aggregates of one series over one window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub(crate) raw_series: SeriesId,
    /// Times seen, sorted, to tell a new row from one that replaces an existing value.
    times: Vec<i64>,
    /// By raw field column, sorted.
    aggs: Vec<(ColumnId, Agg)>,
    /// A row replaced an existing value: the aggregates are provisional.
    pub(crate) replaced: bool,
    /// Rows merged after the window was final.
    late_updates: i64,
}

impl Window {
    pub(crate) fn new(raw_series: SeriesId) -> Self {
        Self { raw_series, times: Vec::with_capacity(64), aggs: Vec::with_capacity(4), replaced: false, late_updates: 0 }
    }

    /// Whether no row is in the window (all of its rows were deleted): it has no rollup row.
    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Merges one raw row (time and fields sorted by column id).
    pub(crate) fn add(&mut self, time: i64, fields: &[(ColumnId, FieldValue)]) {
        match self.times.last() {
            Some(last) if *last >= time => match self.times.binary_search(&time) {
                Ok(_) => {
                    self.replaced = true;
                    return;
                }
                Err(i) => self.times.insert(i, time),
            },
            _ => self.times.push(time),
        }
        for (column, value) in fields {
            match self.aggs.binary_search_by_key(column, |(c, _)| *c) {
                Ok(i) => self.aggs[i].1.add(value),
                Err(i) => {
                    if let Some(agg) = Agg::of(value) {
                        self.aggs.insert(i, (*column, agg));
                    }
                }
            }
        }
    }
}

/// The rollup table's columns for one field's aggregates, in [`AGGREGATES`] order.
type AggColumns = [ColumnId; 5];

/// Where the aggregates of one field of a rollup come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inputs {
    /// A raw table's numeric field: count, sum, min, max and avg of its values.
    Raw(ColumnId),
    /// A finer rollup's `<field>_count`, `_sum`, `_min` and `_max`: the sum of the counts, the
    /// sum of the sums, the least minimum and the greatest maximum; avg is sum / count.
    Finer([ColumnId; 4]),
}

impl Inputs {
    /// The aggregates of a window's partial aggregates (by source column, sorted); `None` when
    /// the window holds no value of the field.
    fn values(&self, aggs: &[(ColumnId, Agg)]) -> Option<[FieldValue; 5]> {
        let agg = |column: ColumnId| aggs.binary_search_by_key(&column, |(c, _)| *c).ok().map(|i| aggs[i].1);
        match *self {
            Self::Raw(column) => Some(agg(column)?.values()),
            Self::Finer([count, sum, min, max]) => {
                let count = match agg(count)?.sum() {
                    FieldValue::I64(n) if n > 0 => n,
                    _ => return None,
                };
                let sum = agg(sum)?.sum();
                let avg = match sum {
                    FieldValue::F64(x) => x / count as f64,
                    FieldValue::I64(x) => x as f64 / count as f64,
                    _ => f64::NAN,
                };
                Some([FieldValue::I64(count), sum, agg(min)?.min(), agg(max)?.max(), FieldValue::F64(avg)])
            }
        }
    }
}

/// The fields a rollup of `source` keeps: name, type of sum, min and max, and their inputs.
/// From a raw table (`finer` false), its numeric fields; from a finer rollup, the fields whose
/// `_count`, `_sum`, `_min` and `_max` it holds.
fn rolled_up_fields(source: &TableSchema, finer: bool) -> Vec<(String, FieldType, Inputs)> {
    let numeric = |kind: ColumnKind| match kind {
        ColumnKind::Field(ty @ (FieldType::F64 | FieldType::I64)) => Some(ty),
        _ => None,
    };
    if !finer {
        return source.fields().filter_map(|f| Some((f.name.clone(), numeric(f.kind)?, Inputs::Raw(f.id)))).collect();
    }
    source
        .fields()
        .filter(|f| f.kind == ColumnKind::Field(FieldType::I64))
        .filter_map(|count| {
            let name = count.name.strip_suffix("_count")?;
            let part = |a: &str| source.column(&format!("{name}_{a}")).and_then(|c| Some((c.id, numeric(c.kind)?)));
            let ((sum, ty), (min, min_ty), (max, max_ty)) = (part("sum")?, part("min")?, part("max")?);
            (ty == min_ty && ty == max_ty).then(|| (name.to_owned(), ty, Inputs::Finer([count.id, sum, min, max])))
        })
        .collect()
}

/// The rollup of one raw table.
#[derive(Debug)]
pub(crate) struct Rollup {
    pub(crate) table: TableId,
    pub(crate) entry: RollupEntry,
    lateness_ns: i64,
    /// Newest event time seen, capped at the wall clock when it was seen.
    newest_ns: i64,
    /// Rollup series by raw series.
    pub(crate) series: FxHashMap<SeriesId, SeriesId>,
    /// Whether the source is a finer rollup rather than a raw table.
    pub(crate) finer: bool,
    /// Each field's inputs and rollup columns.
    columns: Vec<(Inputs, AggColumns)>,
    final_column: ColumnId,
    late_column: ColumnId,
    /// Windows final for fewer than [`RECENT_WINDOWS`] intervals, whose state is complete.
    recent: BTreeMap<i64, FxHashMap<SeriesId, Window>>,
    /// Final rows being written, by (window, rollup series): scans see them until the write
    /// that stores them is applied.
    pub(crate) pending: BTreeMap<(i64, SeriesId), Row>,
    /// Windows before the frontier to recompute, by (rollup series, window).
    pub(crate) dirty: BTreeMap<(SeriesId, i64), Dirty>,
    /// Windows the maintainer is recomputing (taken from `dirty`, or becoming final after a
    /// value was replaced), until the write of their rows is prepared and they move to
    /// `pending`. Scans recompute them, so a final window reads exact at every instant.
    rewriting: BTreeMap<(SeriesId, i64), Dirty>,
}

/// A final window that took late rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dirty {
    pub(crate) raw_series: SeriesId,
    pub(crate) late_rows: u64,
    /// The WAL sequences of the writes that brought them (their durable marks).
    pub(crate) sequences: Vec<u64>,
}

impl Dirty {
    fn new(raw_series: SeriesId) -> Self {
        Self { raw_series, late_rows: 0, sequences: Vec::new() }
    }
}

/// A final window a scan recomputes from raw rows: its stored (or pending) row lacks late rows,
/// or holds provisional aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fix {
    pub(crate) series: SeriesId,
    pub(crate) start_ns: i64,
    pub(crate) raw_series: SeriesId,
    /// Late rows the stored row does not count yet.
    pub(crate) late_rows: i64,
}

/// The open windows of one rollup, by start, then by rollup series.
pub(crate) type Open = BTreeMap<i64, FxHashMap<SeriesId, Window>>;

/// Every rollup's open windows, by source table. They live behind their own lock, which a
/// writer takes before it lets go of the registry lock and holds while it merges its rows and
/// queues its commit, so rows reach their windows in WAL order while the next writer already
/// prepares (see `engine::commit`). Lock order: registry, then open windows.
pub(crate) type OpenWindows = FxHashMap<TableId, Open>;

/// Rows of one table to merge into its rollup's open windows once the registry lock is
/// released: (row index, rollup series, window start).
#[derive(Debug)]
pub(crate) struct OpenRows {
    pub(crate) source: TableId,
    /// The index of the rows' table in the prepared write.
    pub(crate) table_index: usize,
    pub(crate) rows: Vec<(usize, SeriesId, i64)>,
}

impl OpenRows {
    /// Merges the rows (of `rows`, the table's prepared rows) into their windows.
    pub(crate) fn merge(&self, rows: &RowBatch, open: &mut OpenWindows) {
        let windows = open.entry(self.source).or_default();
        for &(i, series, start) in &self.rows {
            if i >= rows.len() {
                continue;
            }
            let row = rows.get(i);
            windows.entry(start).or_default().entry(series).or_insert_with(|| Window::new(row.series)).add(row.time, row.fields);
        }
    }
}

/// What became of a raw row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Its window (start) is open: merge it there.
    Open(i64),
    /// Its window (start) was final: it is late.
    Late(i64),
}

impl Rollup {
    /// The rollup in table `rollup` (whose columns [`sync_schema`] made) of `source`, a raw
    /// table or (`finer`) a finer rollup. A rollup of a finer one finalizes a window once the
    /// finer rollup's windows in it are final.
    pub(crate) fn new(entry: RollupEntry, lateness_ns: i64, source: &TableSchema, rollup: &TableSchema, finer: bool) -> Self {
        let mut r = Self {
            table: rollup.id,
            entry,
            lateness_ns,
            newest_ns: i64::MIN,
            series: FxHashMap::default(),
            finer,
            columns: Vec::new(),
            final_column: ColumnId(0),
            late_column: ColumnId(0),
            recent: BTreeMap::new(),
            pending: BTreeMap::new(),
            dirty: BTreeMap::new(),
            rewriting: BTreeMap::new(),
        };
        r.resolve_columns(source, rollup);
        r
    }

    /// Looks up the rollup columns of every numeric field of `source`; call after
    /// [`sync_schema`] changed `rollup`.
    pub(crate) fn resolve_columns(&mut self, source: &TableSchema, rollup: &TableSchema) {
        let id = |name: &str| rollup.column(name).map(|c| c.id);
        self.final_column = id(FINAL_COLUMN).unwrap_or(ColumnId(0));
        self.late_column = id(LATE_UPDATES_COLUMN).unwrap_or(ColumnId(0));
        self.columns.clear();
        for (name, _, inputs) in rolled_up_fields(source, self.finer) {
            let Some(ids) = AGGREGATES.iter().map(|a| id(&format!("{name}_{a}"))).collect::<Option<Vec<_>>>() else { continue };
            if let Ok(ids) = <AggColumns>::try_from(ids) {
                self.columns.push((inputs, ids));
            }
        }
    }

    /// Tells whether a raw row of rollup series `series` is for an open window (which the
    /// caller merges it into, in WAL order) or late; a late row for a recent window merges
    /// into that window's state.
    pub(crate) fn observe(&mut self, row: RowRef<'_>, series: SeriesId, now_ns: i64) -> Observed {
        self.newest_ns = self.newest_ns.max(row.time.min(now_ns));
        let start = window_start(row.time, self.entry.interval_ns);
        if start < self.entry.frontier_ns {
            if let Some(window) = self.recent.get_mut(&start).and_then(|w| w.get_mut(&series))
                && !window.replaced
            {
                window.add(row.time, row.fields);
                window.late_updates += 1;
            }
            return Observed::Late(start);
        }
        Observed::Open(start)
    }

    /// Marks rollup series `series`'s window at `window_ns` for recomputation.
    pub(crate) fn mark_dirty(&mut self, series: SeriesId, raw_series: SeriesId, window_ns: i64, late_rows: u64, sequence: u64) {
        let dirty = self.dirty.entry((series, window_ns)).or_insert_with(|| Dirty::new(raw_series));
        dirty.late_rows += late_rows;
        if dirty.sequences.last() != Some(&sequence) {
            dirty.sequences.push(sequence);
        }
    }

    /// Rows of the source series `source_series` in `time_min..=time_max` were deleted (by the
    /// delete at WAL sequence `sequence`), and with them this rollup's stored rows of every
    /// window over that range. Windows before the frontier that only partly lie in the range
    /// are marked for recomputation from the rows left, durably (`ops`); the others held only
    /// deleted rows. Final windows kept in memory become provisional, recomputed when written.
    /// The open windows of the series in the range are taken out of `open` (the caller builds
    /// them again from the rows left) and returned as (rollup series, source series) with the
    /// range of their starts. Every window the delete touches counts late updates from 0
    /// again, as a window first written now does.
    pub(crate) fn rows_deleted(
        &mut self,
        source_series: &[SeriesId],
        (time_min, time_max): (i64, i64),
        open: &mut Open,
        sequence: u64,
        ops: &mut Vec<crate::catalog::Op>,
    ) -> (Vec<(SeriesId, SeriesId)>, std::ops::RangeInclusive<i64>) {
        let interval_ns = self.entry.interval_ns;
        let (first, last) = (window_start(time_min, interval_ns), window_start(time_max, interval_ns));
        let mapped: Vec<(SeriesId, SeriesId)> = source_series.iter().filter_map(|s| Some((*self.series.get(s)?, *s))).collect();
        for (_, windows) in open.range_mut(first..=last) {
            for (series, _) in &mapped {
                windows.remove(series);
            }
        }
        open.retain(|_, windows| !windows.is_empty());
        for (_, windows) in self.recent.range_mut(first..=last) {
            for (series, _) in &mapped {
                if let Some(window) = windows.get_mut(series) {
                    window.replaced = true;
                    window.late_updates = 0;
                }
            }
        }
        let table = self.table;
        let key = |series, window_ns, sequence| DirtyKey { table, series, window_ns, sequence };
        for (series, _) in &mapped {
            for ((_, window_ns), dirty) in self.dirty.range_mut((*series, first)..=(*series, last)) {
                dirty.late_rows = 0;
                ops.extend(dirty.sequences.iter().map(|&s| crate::catalog::Op::RollupDirty(key(*series, *window_ns, s), 0)));
            }
        }
        let mut edges = Vec::new();
        if first < time_min {
            edges.push(first);
        }
        if last.saturating_add(interval_ns - 1) > time_max && edges.last() != Some(&last) {
            edges.push(last);
        }
        edges.retain(|start| *start < self.entry.frontier_ns);
        for &(series, source) in &mapped {
            for &start in &edges {
                ops.push(crate::catalog::Op::RollupDirty(key(series, start, sequence), 0));
                self.mark_dirty(series, source, start, 0, sequence);
            }
        }
        (mapped, first.max(self.entry.frontier_ns)..=last)
    }

    /// The newest event time seen, if any.
    pub(crate) fn newest_ns(&self) -> Option<i64> {
        (self.newest_ns != i64::MIN).then_some(self.newest_ns)
    }

    /// Final windows whose stored rows lack late rows or hold provisional aggregates.
    pub(crate) fn stale_windows(&self) -> usize {
        self.dirty.len() + self.rewriting.keys().filter(|k| !self.dirty.contains_key(k)).count()
    }

    /// The frontier the watermark allows, when it is past the current one.
    pub(crate) fn due_frontier(&self) -> Option<i64> {
        if self.newest_ns == i64::MIN {
            return None;
        }
        let watermark = self.newest_ns.saturating_sub(self.lateness_ns);
        let frontier = window_start(watermark, self.entry.interval_ns);
        (frontier > self.entry.frontier_ns).then_some(frontier)
    }

    /// The rollup row of `window` of rollup series `series`.
    pub(crate) fn row(&self, series: SeriesId, start_ns: i64, window: &Window, is_final: bool, late_updates: i64) -> Row {
        let mut fields = Vec::with_capacity(2 + window.aggs.len() * AGGREGATES.len());
        fields.push((self.final_column, FieldValue::Bool(is_final)));
        fields.push((self.late_column, FieldValue::I64(late_updates)));
        for (inputs, ids) in &self.columns {
            match inputs.values(&window.aggs) {
                Some(values) => fields.extend(ids.iter().copied().zip(values)),
                // No value in the window: a count of 0, and no sum, min, max or avg (as SQL).
                None => fields.push((ids[0], FieldValue::I64(0))),
            }
        }
        fields.sort_by_key(|(id, _)| *id);
        Row { series, time: start_ns, fields: fields.into_boxed_slice() }
    }

    /// Moves the windows before `frontier` out of the open set and makes `frontier` the
    /// in-memory frontier: rows for those windows are late from now on. Returns their final
    /// rows, which stay visible to scans as pending until the write that stores them is
    /// applied, and the windows whose values were replaced (rollup series, start, raw series),
    /// to recompute from raw rows, which scans recompute too until then.
    pub(crate) fn take_due(&mut self, frontier_ns: i64, open: &mut Open) -> (Vec<Row>, Vec<(SeriesId, i64, SeriesId)>) {
        let still_open = open.split_off(&frontier_ns);
        let due = std::mem::replace(open, still_open);
        self.entry.frontier_ns = frontier_ns;
        let (mut rows, mut replaced) = (Vec::new(), Vec::new());
        for (start, windows) in due {
            for (series, window) in &windows {
                if window.replaced {
                    replaced.push((*series, start, window.raw_series));
                    self.rewriting.insert((*series, start), Dirty::new(window.raw_series));
                } else {
                    let row = self.row(*series, start, window, true, 0);
                    self.pending.insert((start, *series), row.clone());
                    rows.push(row);
                }
            }
            self.recent.insert(start, windows);
        }
        let keep_from = frontier_ns.saturating_sub(RECENT_WINDOWS.saturating_mul(self.entry.interval_ns));
        self.recent = self.recent.split_off(&keep_from);
        (rows, replaced)
    }

    /// The row of a recent final window, from memory, unless a value of it was replaced.
    pub(crate) fn recent_row(&self, series: SeriesId, start_ns: i64) -> Option<Row> {
        let window = self.recent.get(&start_ns)?.get(&series).filter(|w| !w.replaced)?;
        Some(self.row(series, start_ns, window, true, window.late_updates))
    }

    /// Takes up to `max` dirty windows, in (series, window) order, for the maintainer to
    /// rewrite. Windows a failed round left in `rewriting` are dirty again first.
    pub(crate) fn take_dirty(&mut self, max: usize) -> Vec<((SeriesId, i64), Dirty)> {
        for (key, left) in std::mem::take(&mut self.rewriting) {
            let dirty = self.dirty.entry(key).or_insert_with(|| Dirty::new(left.raw_series));
            dirty.late_rows += left.late_rows;
            dirty.sequences.extend(left.sequences);
            dirty.sequences.sort_unstable();
            dirty.sequences.dedup();
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some((key, dirty)) = self.dirty.pop_first() else { break };
            self.rewriting.insert(key, dirty.clone());
            out.push((key, dirty));
        }
        out
    }

    /// The maintainer gives up rewriting a window it took (its raw rows have expired, or were
    /// all deleted).
    pub(crate) fn forget(&mut self, series: SeriesId, start_ns: i64) {
        self.rewriting.remove(&(series, start_ns));
    }

    /// The maintainer is about to write `rows` (final rows of this rollup): scans see them as
    /// pending, instead of recomputing their windows, until the write is applied.
    pub(crate) fn writing(&mut self, rows: &[Row]) {
        for row in rows {
            self.rewriting.remove(&(row.series, row.time));
            self.pending.insert((row.time, row.series), row.clone());
        }
    }

    /// The windows before the frontier that scans must not take from the stored rows: those
    /// that took late rows since, or are being recomputed, and (`under`, by window, with the
    /// source series) those holding windows of a finer rollup that are not settled there yet.
    /// Returns rows of recent windows, complete from memory, and for the others what to
    /// recompute from the source's rows.
    pub(crate) fn fixes(&self, wants: impl Fn(SeriesId, i64) -> bool, under: &BTreeMap<(SeriesId, i64), SeriesId>) -> (Vec<Row>, Vec<Fix>) {
        let mut late: BTreeMap<(SeriesId, i64), (SeriesId, u64)> = BTreeMap::new();
        for (key, d) in self.dirty.iter().chain(&self.rewriting).filter(|((s, t), _)| wants(*s, *t)) {
            late.entry(*key).or_insert((d.raw_series, 0)).1 += d.late_rows;
        }
        for (key, source_series) in under.iter().filter(|((s, t), _)| wants(*s, *t)) {
            late.entry(*key).or_insert((*source_series, 0));
        }
        let (mut rows, mut fixes) = (Vec::new(), Vec::new());
        for ((series, start_ns), (raw_series, late_rows)) in late {
            // A recent window's memory lacks what the finer rollup has yet to hand over.
            match self.recent_row(series, start_ns).filter(|_| !under.contains_key(&(series, start_ns))) {
                Some(row) => rows.push(row),
                None => fixes.push(Fix { series, start_ns, raw_series, late_rows: i64::try_from(late_rows).unwrap_or(i64::MAX) }),
            }
        }
        (rows, fixes)
    }

    /// Windows (series, start) whose final rows, stored or being written, may not hold every
    /// row of the source yet: those that took late rows, are being recomputed or written.
    pub(crate) fn unsettled(&self) -> impl Iterator<Item = (SeriesId, i64)> + '_ {
        self.dirty.keys().chain(self.rewriting.keys()).copied().chain(self.pending.keys().map(|(t, s)| (*s, *t)))
    }

    /// This coarser rollup's final windows holding `finer` windows (series of the source,
    /// start), with the source series, for [`Rollup::fixes`].
    pub(crate) fn windows_over(&self, finer: impl IntoIterator<Item = (SeriesId, i64)>) -> BTreeMap<(SeriesId, i64), SeriesId> {
        finer
            .into_iter()
            .filter_map(|(source_series, start)| {
                let window = window_start(start, self.entry.interval_ns);
                let series = *self.series.get(&source_series)?;
                (window < self.entry.frontier_ns).then_some(((series, window), source_series))
            })
            .collect()
    }

    /// Rows of final rows being written and of the `open` windows, for scans.
    pub(crate) fn overlay(&self, open: Option<&Open>, wants: impl Fn(SeriesId, i64) -> bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self.pending.iter().filter(|((t, s), _)| wants(*s, *t)).map(|(_, row)| row.clone()).collect();
        for (start, windows) in open.into_iter().flatten() {
            rows.extend(windows.iter().filter(|(s, _)| wants(**s, *start)).map(|(s, w)| self.row(*s, *start, w, false, 0)));
        }
        rows
    }
}

/// Adds to `rollup` the columns that `source`'s tags and fields need: the tags, `final`,
/// `late_updates`, and `<field>_count`, `_sum`, `_min`, `_max`, `_avg` per field rolled up
/// (see [`rolled_up_fields`]). Returns whether it changed. A name already taken by a column of
/// another kind is left alone (that aggregate is then not kept).
pub(crate) fn sync_schema(source: &TableSchema, rollup: &mut TableSchema, finer: bool) -> bool {
    let mut changed = false;
    let mut add = |rollup: &mut TableSchema, name: &str, kind: ColumnKind| {
        if rollup.column(name).is_none() {
            rollup.add_column(name, kind);
            changed = true;
        }
    };
    for tag in source.tags() {
        add(rollup, &tag.name, ColumnKind::Tag);
    }
    add(rollup, FINAL_COLUMN, ColumnKind::Field(FieldType::Bool));
    add(rollup, LATE_UPDATES_COLUMN, ColumnKind::Field(FieldType::I64));
    for (name, ty, _) in rolled_up_fields(source, finer) {
        let kinds = [FieldType::I64, ty, ty, ty, FieldType::F64];
        let names: Vec<String> = AGGREGATES.iter().map(|a| format!("{name}_{a}")).collect();
        let free = names.iter().zip(kinds).all(|(n, k)| rollup.column(n).is_none_or(|c| c.kind == ColumnKind::Field(k)));
        if free {
            for (name, kind) in names.iter().zip(kinds) {
                add(rollup, name, ColumnKind::Field(kind));
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_the_interval() {
        let s = 1_000_000_000;
        assert_eq!(rollup_table_name("weather", 60 * s), "weather_1m");
        assert_eq!(rollup_table_name("weather", 3_600 * s), "weather_1h");
        assert_eq!(rollup_table_name("weather", 30 * s), "weather_30s");
        assert_eq!(rollup_table_name("weather", 90 * s), "weather_90s");
        assert_eq!(rollup_table_name("weather", 86_400 * s), "weather_1d");
        assert_eq!(rollup_table_name("weather", 1_500_000_000), "weather_1500ms");
    }

    #[test]
    fn windows_tell_new_rows_from_replacements() {
        let mut w = Window::new(SeriesId(1));
        let v = |x: f64| [(ColumnId(1), FieldValue::F64(x))];
        w.add(10, &v(1.0));
        w.add(30, &v(3.0));
        w.add(20, &v(2.0));
        assert!(!w.replaced);
        assert_eq!(w.aggs, [(ColumnId(1), Agg::F64 { count: 3, sum: 6.0, min: 1.0, max: 3.0 })]);
        w.add(20, &v(5.0));
        assert!(w.replaced, "a second value at 20 replaces the first");
        assert_eq!(w.aggs[0].1, Agg::F64 { count: 3, sum: 6.0, min: 1.0, max: 3.0 }, "provisional until recomputed");
    }

    #[test]
    fn entries_round_trip_and_refuse_bad_bytes() {
        let e = RollupEntry { source: TableId(3), interval_ns: 60_000_000_000, frontier_ns: -120_000_000_000 };
        assert_eq!(RollupEntry::decode(&e.encode()), Ok(e));
        assert!(RollupEntry::decode(&e.encode()[..10]).is_err());
        let zero = RollupEntry { interval_ns: 0, ..e };
        assert!(RollupEntry::decode(&zero.encode()).is_err());
    }

    #[test]
    fn windows_start_on_interval_multiples() {
        assert_eq!(window_start(119, 60), 60);
        assert_eq!(window_start(-1, 60), -60);
        assert_eq!(window_start(120, 60), 120);
    }
}
