//! The in-memory catalog: tables and series by name and id, and the preparation of a write
//! batch into a WAL record plus the catalog changes it brings.
//!
//! Preparation runs under one lock, which also hands out WAL sequence numbers, so records
//! reach the committer in sequence order. The rollups' in-memory state lives here too, so a
//! raw row reaches its rollup window in the same order (their open windows behind a lock of
//! their own, which the writer takes before it lets go of this one). So does each table's
//! retention clock, its newest event time.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::fxhash::{FxHashMap, FxHasher};

use crate::batch::{RowBatch, RowRef, TableRows};
use crate::catalog::{Op, SeriesEntry};
use crate::config::StorageConfig;
use crate::error::{Error, Result};
use crate::model::{ColumnId, Columns, Point, RejectedPoint, SeriesId, TableId, WalSequence, WriteBatch, WriteReceipt};
use crate::postings::{Postings, TagTest};
use crate::rollup::{DirtyKey, Observed, OpenRows, OpenWindows, Rollup, RollupEntry, rollup_table_name, sync_schema};
use crate::schema::{ColumnKind, SYSTEM_TABLE_PREFIX, TableSchema, check_table_name};

mod alter;
mod columns;
mod drop;
mod series_by_id;

use series_by_id::SeriesById;

pub use alter::TableAlteration;
pub(crate) use drop::DropMode;

/// A table's rows in a write batch.
enum Input<'a> {
    Points(&'a [Point]),
    Columns(&'a Columns),
}

impl Input<'_> {
    fn len(&self) -> usize {
        match self {
            Input::Points(points) => points.len(),
            Input::Columns(columns) => columns.len(),
        }
    }

    /// Field values given, so that a write's rows are laid out without growing.
    fn value_count(&self) -> usize {
        match self {
            Input::Points(points) => points.iter().map(|p| p.fields.len()).sum(),
            Input::Columns(columns) => columns.fields().iter().map(|(_, values)| values.iter().filter(|v| v.is_some()).count()).sum(),
        }
    }
}

/// Tables and series known to the engine.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    tables: HashMap<String, TableSchema>,
    table_names: HashMap<TableId, String>,
    /// Series by the hash of their table and tags; entries of one hash are told apart by tags.
    series_ids: FxHashMap<u64, Vec<SeriesId>>,
    series: SeriesById,
    /// Each table's series, in id order.
    table_series: FxHashMap<TableId, Vec<SeriesId>>,
    /// Each table's series by tag column and value: what tag conditions select.
    postings: Postings,
    next_table: u32,
    next_series: u64,
    pub(crate) next_sequence: u64,
    /// Rollups by raw table.
    pub(crate) rollups: FxHashMap<TableId, Rollup>,
    /// Raw tables by rollup table.
    pub(crate) rollup_sources: FxHashMap<TableId, TableId>,
    /// The rollups' open windows, behind their own lock (see [`OpenWindows`]).
    pub(crate) open_windows: Arc<Mutex<OpenWindows>>,
    /// Newest event time written to each table: with the wall clock, its retention clock.
    newest_ns: FxHashMap<TableId, i64>,
    /// See [`columns::TagSetSeries`].
    tag_set_series: columns::TagSetSeries,
    /// Tables dropped (see `drop.rs`): their ids are never given again.
    dropped: crate::fxhash::FxHashSet<TableId>,
}

/// The wall clock, in nanoseconds since 1970.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A batch ready for the committer.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) sequence: WalSequence,
    pub(crate) ops: Vec<Op>,
    /// Each table's rows, indexed by series (`TableRows::new`) by `engine::commit` after the
    /// registry lock.
    pub(crate) tables: Vec<(TableId, RowBatch)>,
    /// A WAL record of `tables` at `sequence` goes with `ops`: encoded by `engine::commit` once
    /// the registry lock is let go, so the next writer prepares meanwhile.
    pub(crate) logged: bool,
    pub(crate) receipt: WriteReceipt,
    /// A rollup has windows to finalize or recompute.
    pub(crate) rollups_due: bool,
    /// Rows for open rollup windows, merged by `engine::commit` after the registry lock.
    pub(crate) open_rows: Vec<OpenRows>,
}

impl Registry {
    /// The registry of the catalog's tables, series and rollups, with rollup windows marked
    /// for recomputation (`dirty`). Returns the marks of windows that are open again (the
    /// frontier never got past them), for deletion.
    pub(crate) fn load(
        tables: Vec<TableSchema>,
        dropped: Vec<TableId>,
        series: Vec<SeriesEntry>,
        rollups: Vec<(TableId, RollupEntry)>,
        dirty: Vec<(DirtyKey, u64)>,
        config: &StorageConfig,
    ) -> (Self, Vec<DirtyKey>) {
        let mut r = Self::default();
        for id in dropped {
            r.next_table = r.next_table.max(id.0.saturating_add(1));
            r.dropped.insert(id);
        }
        for t in tables {
            r.next_table = r.next_table.max(t.id.0 + 1);
            r.table_names.insert(t.id, t.name.clone());
            r.tables.insert(t.name.clone(), t);
        }
        for s in series {
            r.insert_series(s);
        }
        let intervals: FxHashMap<TableId, i64> = rollups.iter().map(|(table, entry)| (*table, entry.interval_ns)).collect();
        for (table, entry) in rollups {
            let (Some(source), Some(rollup)) = (r.table_by_id(entry.source), r.table_by_id(table)) else { continue };
            let finer_ns = intervals.get(&entry.source).copied();
            let mut rollup_state = Rollup::new(entry, lateness_ns(finer_ns, config), source, rollup, finer_ns.is_some());
            rollup_state.series = r.rollup_series_of(source.id, rollup.id);
            r.rollup_sources.insert(table, entry.source);
            r.rollups.insert(entry.source, rollup_state);
        }
        let mut reopened = Vec::new();
        let mut raw_series: FxHashMap<SeriesId, SeriesId> = FxHashMap::default();
        if !dirty.is_empty() {
            raw_series = r.rollups.values().flat_map(|rollup| rollup.series.iter().map(|(raw, s)| (*s, *raw))).collect();
        }
        for (key, late_rows) in dirty {
            let Some(source) = r.rollup_sources.get(&key.table).copied() else { continue };
            let Some(rollup) = r.rollups.get_mut(&source) else { continue };
            match raw_series.get(&key.series).copied() {
                Some(raw) if key.window_ns < rollup.entry.frontier_ns => {
                    rollup.mark_dirty(key.series, raw, key.window_ns, late_rows, key.sequence)
                }
                _ => reopened.push(key),
            }
        }
        (r, reopened)
    }

    /// The rollup series of each series of raw table `source` that has one, by tags.
    fn rollup_series_of(&self, source: TableId, rollup: TableId) -> FxHashMap<SeriesId, SeriesId> {
        let mut out = FxHashMap::default();
        for s in self.series.values().filter(|s| s.table == source) {
            if let Some(tags) = self.rollup_tags(source, rollup, s.id) {
                let tags: Vec<(ColumnId, &str)> = tags.iter().map(|(c, v)| (*c, v.as_str())).collect();
                if let Some(id) = self.find_series(rollup, &tags) {
                    out.insert(s.id, id);
                }
            }
        }
        out
    }

    /// The tags of raw series `series` as rollup table `rollup`'s columns, sorted by id.
    fn rollup_tags(&self, source: TableId, rollup: TableId, series: SeriesId) -> Option<Vec<(ColumnId, String)>> {
        let (source, rollup, entry) = (self.table_by_id(source)?, self.table_by_id(rollup)?, self.series.get(&series)?);
        let mut tags: Vec<(ColumnId, String)> =
            entry.tags.iter().map(|(c, v)| Some((rollup.column(&source.column_by_id(*c)?.name)?.id, v.clone()))).collect::<Option<_>>()?;
        tags.sort_by_key(|(c, _)| *c);
        Some(tags)
    }

    fn insert_series(&mut self, s: SeriesEntry) {
        self.next_series = self.next_series.max(s.id.0 + 1);
        let tags: Vec<(ColumnId, &str)> = s.tags.iter().map(|(c, v)| (*c, v.as_str())).collect();
        self.series_ids.entry(series_hash(s.table, &tags)).or_default().push(s.id);
        insert_sorted(self.table_series.entry(s.table).or_default(), s.id);
        self.postings.insert(s.table, s.id, &s.tags);
        self.series.insert(s);
    }

    pub(crate) fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.get(name)
    }

    pub(crate) fn table_by_id(&self, id: TableId) -> Option<&TableSchema> {
        self.table_names.get(&id).and_then(|n| self.tables.get(n))
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = &TableSchema> {
        self.tables.values()
    }

    /// The tags of series `id`, by column id.
    pub(crate) fn series_tags(&self, id: SeriesId) -> &[(ColumnId, String)] {
        self.series.get(&id).map_or(&[], |s| s.tags.as_slice())
    }

    /// Series of `table`, in id order.
    pub(crate) fn series_of(&self, table: TableId) -> Vec<&SeriesEntry> {
        self.entries(self.table_series.get(&table).map(Vec::as_slice).unwrap_or_default())
    }

    /// The ids of the series of `table` whose tags meet every (column, test), in id order;
    /// with no tests, every series. Fails when a regular expression does not compile.
    pub(crate) fn series_meeting(&self, table: TableId, tests: &[(ColumnId, &TagTest)]) -> Result<Vec<SeriesId>, String> {
        if tests.is_empty() {
            return Ok(self.table_series.get(&table).cloned().unwrap_or_default());
        }
        self.postings.select(table, tests)
    }

    /// For each value of tag `column` among the series of `table` that `pick` gives something
    /// for, what it gives for one of them; and once more for one that lacks the tag, if any.
    pub(crate) fn one_series_per_value<T>(&self, table: TableId, column: ColumnId, pick: impl Fn(SeriesId) -> Option<T>) -> Vec<T> {
        let (mut picked, listed) = self.postings.first_of_each_value(table, column, &pick);
        let all = self.table_series.get(&table).map(Vec::as_slice).unwrap_or_default();
        // Every series is listed under its value unless some lack the tag.
        if listed < all.len()
            && let Some(lacking) =
                all.iter().filter(|id| !self.series_tags(**id).iter().any(|(c, _)| *c == column)).find_map(|id| pick(*id))
        {
            picked.push(lacking);
        }
        picked
    }

    /// Whether tag `column` tells the series of `table` apart: every series has it, each with
    /// a value of its own.
    pub(crate) fn tag_is_key(&self, table: TableId, column: ColumnId) -> bool {
        self.postings.is_key(table, column, self.table_series.get(&table).map_or(0, Vec::len))
    }

    fn entries(&self, ids: &[SeriesId]) -> Vec<&SeriesEntry> {
        ids.iter().filter_map(|id| self.series.get(id)).collect()
    }

    /// Checks that logged rows name known tables, series and columns of the right types, so
    /// that a WAL record that decodes but disagrees with the catalog stops recovery.
    pub(crate) fn check_logged(&self, tables: &[TableRows]) -> Result<(), String> {
        for t in tables {
            let schema = self.table_by_id(t.table).ok_or_else(|| format!("unknown table {}", t.table.0))?;
            for row in t.rows.iter() {
                match self.series.get(&row.series) {
                    Some(s) if s.table == t.table => {}
                    _ => return Err(format!("series {} is not in table {}", row.series.0, schema.name)),
                }
                for (id, value) in row.fields.iter().filter(|(id, _)| !schema.is_dropped_column(*id)) {
                    let kind = schema.column_by_id(*id).map(|c| c.kind);
                    if kind != Some(ColumnKind::Field(value.field_type())) {
                        return Err(format!("column {} of table {} is not a {} field", id.0, schema.name, value.field_type()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `batch` against the schemas, assigning ids to new tables and series, and stages
    /// the WAL record and catalog changes. Points that cannot be written are listed in the
    /// receipt; the rest go ahead.
    pub(crate) fn prepare(&mut self, batch: &WriteBatch, config: &StorageConfig) -> Result<Prepared> {
        let limits = config.point_limits();
        let mut ops = Vec::new();
        let mut tables = Vec::new();
        let mut receipt = WriteReceipt::default();
        let sequence = WalSequence(self.next_sequence);
        let mut rollups_due = false;
        let mut open_rows = Vec::new();
        let now_ns = now_ns();
        let inputs = batch.tables.iter().map(|(name, points)| (name, Input::Points(points)));
        for (name, input) in inputs.chain(batch.columns.iter().map(|(name, columns)| (name, Input::Columns(columns)))) {
            let refused = check_table_name(name, &limits).err().or_else(|| self.refuse_rollup_write(name));
            if let Some(reason) = refused {
                let rejected = (0..input.len()).map(|index| RejectedPoint { table: name.clone(), index, reason: reason.clone() });
                receipt.rejected.extend(rejected);
                continue;
            }
            let mut schema = match self.tables.get(name) {
                Some(s) => s.clone(),
                None => TableSchema::new(TableId(self.next_table), name),
            };
            let mut schema_changed = !self.tables.contains_key(name);
            let expired_before = self.retention_cutoff_ns(schema.id, config);
            let future_limit = config.future_limit_ns(now_ns);
            // Why a row at `time` is refused whatever it holds.
            let refuse_time = |time: i64| {
                let refused = expired_before.and_then(|cutoff| expired(name, time, cutoff));
                refused.or_else(|| future_limit.and_then(|limit| too_far_ahead(time, limit, config)))
            };
            let mut rows = RowBatch::with_capacity(input.len(), input.value_count());
            let mut reject = |index: usize, reason: String| receipt.rejected.push(RejectedPoint { table: name.clone(), index, reason });
            match input {
                Input::Points(points) => {
                    for (index, point) in points.iter().enumerate() {
                        if let Some(reason) = refuse_time(point.time.0) {
                            reject(index, reason);
                            continue;
                        }
                        let resolved = schema.resolve(point, &limits).and_then(|(resolved, changed)| {
                            let series = self.series_for(schema.id, resolved.tags, config, &mut ops)?;
                            Ok((series, resolved.time, resolved.fields, changed))
                        });
                        match resolved {
                            Ok((series, time, fields, changed)) => {
                                schema_changed |= changed;
                                rows.push(series, time, fields);
                            }
                            Err(reason) => reject(index, reason),
                        }
                    }
                }
                Input::Columns(columns) => {
                    let out = columns::Out { rows: &mut rows, reject };
                    schema_changed |= self.rows_of_columns(&mut schema, columns, config, &mut ops, refuse_time, out);
                }
            }
            if schema_changed && !rows.is_empty() {
                ops.push(Op::Table(schema.id, schema.encode()));
                if !self.tables.contains_key(name) {
                    self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
                    self.table_names.insert(schema.id, name.clone());
                }
                self.tables.insert(name.clone(), schema.clone());
            }
            if !rows.is_empty() {
                self.note_rows(schema.id, &rows);
                receipt.rows_written += rows.len() as u64;
                let rolled = self.roll_up(schema.id, schema_changed, &rows, sequence.0, now_ns, config, &mut ops)?;
                rollups_due |= rolled.due;
                open_rows.extend(rolled.open_rows(tables.len()));
                tables.push((schema.id, rows));
            }
        }
        ops.extend(batch.positions.iter().map(|p| Op::Position(p.source.clone(), p.position.clone())));
        let logged = !tables.is_empty() || !batch.positions.is_empty();
        if logged {
            self.next_sequence += 1;
            receipt.sequence = Some(sequence);
        }
        Ok(Prepared { sequence, ops, tables, logged, receipt, rollups_due, open_rows })
    }

    /// Takes `rows` of `table` into its retention clock.
    pub(crate) fn note_rows(&mut self, table: TableId, rows: &RowBatch) {
        if let Some(time) = rows.times().max() {
            self.note_time(table, time);
        }
    }

    /// Takes `time` of a row of `table` into its retention clock.
    pub(crate) fn note_time(&mut self, table: TableId, time: i64) {
        let newest = self.newest_ns.entry(table).or_insert(time);
        *newest = (*newest).max(time);
    }

    /// The time before which `table`'s rows have expired, when it has a retention: its
    /// retention clock (its newest event time, never ahead of the wall clock) minus the
    /// retention, so one reading from the far future cannot expire a table.
    pub(crate) fn retention_cutoff_ns(&self, table: TableId, config: &StorageConfig) -> Option<i64> {
        let retention = config.retention_ns(self.table_names.get(&table)?, self.rollup_sources.contains_key(&table))?;
        let clock = (*self.newest_ns.get(&table)?).min(now_ns());
        Some(clock.saturating_sub(retention))
    }

    /// Table `table`'s clock: its newest event time, never ahead of the wall clock; `None`
    /// before its first row.
    pub(crate) fn clock_ns(&self, table: TableId) -> Option<i64> {
        Some((*self.newest_ns.get(&table)?).min(now_ns()))
    }

    /// The time before which table `table`'s chunks belong in the cold store (see
    /// [`StorageConfig::cold_after_ns`]), by the same clock as retention; `None` when they stay
    /// local.
    pub(crate) fn cold_cutoff_ns(&self, table: TableId, config: &StorageConfig) -> Option<i64> {
        let cold_after = config.cold_after_ns(self.table_names.get(&table)?, self.rollup_sources.contains_key(&table))?;
        let clock = (*self.newest_ns.get(&table)?).min(now_ns());
        Some(clock.saturating_sub(cold_after))
    }

    /// Why points may not be written to table `name`: it is a rollup, which isobar maintains.
    fn refuse_rollup_write(&self, name: &str) -> Option<String> {
        let table = self.tables.get(name)?;
        let source = self.rollup_sources.get(&table.id).and_then(|s| self.table_names.get(s))?;
        Some(format!("table {name} is the rollup of {source}; isobar maintains it from {source}'s rows"))
    }

    /// Stages rollup rows the maintainer wrote, with `ops`, in one WAL record, and feeds them to
    /// the coarser rollups built from them.
    pub(crate) fn prepare_rollup_rows(
        &mut self,
        tables: Vec<(TableId, RowBatch)>,
        mut ops: Vec<Op>,
        config: &StorageConfig,
    ) -> Result<Prepared> {
        let (sequence, now_ns) = (self.next_sequence, now_ns());
        let (mut rollups_due, mut open_rows) = (false, Vec::new());
        for (i, (table, rows)) in tables.iter().enumerate() {
            let rolled = self.roll_up(*table, false, rows, sequence, now_ns, config, &mut ops)?;
            rollups_due |= rolled.due;
            open_rows.extend(rolled.open_rows(i));
        }
        Ok(Prepared { rollups_due, open_rows, ..self.prepare_rows(tables, ops) })
    }

    /// Stages a WAL record of rows isobar derived itself (rollup rows), with `ops` in the same
    /// commit.
    pub(crate) fn prepare_rows(&mut self, tables: Vec<(TableId, RowBatch)>, ops: Vec<Op>) -> Prepared {
        for (table, rows) in &tables {
            self.note_rows(*table, rows);
        }
        let sequence = WalSequence(self.next_sequence);
        self.next_sequence += 1;
        let receipt = WriteReceipt {
            sequence: Some(sequence),
            rows_written: tables.iter().map(|(_, rows)| rows.len() as u64).sum(),
            ..WriteReceipt::default()
        };
        Prepared { sequence, ops, tables, logged: true, receipt, rollups_due: false, open_rows: Vec::new() }
    }

    /// Feeds the rows just prepared for table `source` to its rollup, creating the rollup
    /// table on the table's first rows and keeping its columns and series in step. Late rows
    /// mark their windows dirty in the same commit; rows for open windows are returned, for
    /// the caller to merge (in WAL order) after the registry lock.
    #[allow(clippy::too_many_arguments)]
    fn roll_up(
        &mut self,
        source: TableId,
        schema_changed: bool,
        rows: &RowBatch,
        sequence: u64,
        now_ns: i64,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Result<RolledUp> {
        let mut out = RolledUp { source, due: false, open: Vec::new() };
        if !config.has_rollups() {
            return Ok(out);
        }
        // A raw table gets its rollups on its first rows; a rollup table has its coarser one
        // from the start, or none.
        if !self.rollups.contains_key(&source)
            && (self.rollup_sources.contains_key(&source) || !self.create_rollups(source, config, ops)?)
        {
            return Ok(out);
        }
        let Some(rollup_id) = self.rollups.get(&source).map(|r| r.table) else { return Ok(out) };
        if schema_changed {
            self.sync_rollup_schema(source, rollup_id, ops);
        }
        let mut late: BTreeMap<(SeriesId, i64), (SeriesId, u64)> = BTreeMap::new();
        let mut observe = |rollup: &mut Rollup, i: usize, row: RowRef<'_>, series: SeriesId| match rollup.observe(row, series, now_ns) {
            Observed::Open(start) => out.open.push((i, series, start)),
            Observed::Late(window_ns) => late.entry((series, window_ns)).or_insert((row.series, 0)).1 += 1,
        };
        // Rows of series that have their rollup series; then the others, once it exists.
        let Some(rollup) = self.rollups.get_mut(&source) else { return Ok(out) };
        let mut unmapped = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match rollup.series.get(&row.series) {
                Some(series) => observe(rollup, i, row, *series),
                None => unmapped.push(i),
            }
        }
        for i in unmapped {
            let row = rows.get(i);
            let Some(series) = self.rollup_series_for(source, rollup_id, row.series, config, ops) else { continue };
            let Some(rollup) = self.rollups.get_mut(&source) else { continue };
            observe(rollup, i, row, series);
        }
        let Some(rollup) = self.rollups.get_mut(&source) else { return Ok(out) };
        for ((series, window_ns), (raw, late_rows)) in &late {
            ops.push(Op::RollupDirty(DirtyKey { table: rollup_id, series: *series, window_ns: *window_ns, sequence }, *late_rows));
            rollup.mark_dirty(*series, *raw, *window_ns, *late_rows, sequence);
        }
        out.due = !late.is_empty() || rollup.due_frontier().is_some();
        Ok(out)
    }

    /// The rollup series of raw series `raw` of `source`, creating it (and staging its catalog
    /// entry) when it does not exist. `None` at the series limit: the rollup then skips the
    /// series, whose raw rows are still written.
    fn rollup_series_for(
        &mut self,
        source: TableId,
        rollup_id: TableId,
        raw: SeriesId,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Option<SeriesId> {
        if let Some(series) = self.rollups.get(&source)?.series.get(&raw) {
            return Some(*series);
        }
        let tags = self.rollup_tags(source, rollup_id, raw)?;
        let tags: Vec<(ColumnId, &str)> = tags.iter().map(|(c, v)| (*c, v.as_str())).collect();
        let series = self.series_for(rollup_id, tags, config, ops).ok()?;
        self.rollups.get_mut(&source)?.series.insert(raw, series);
        // The coarser rollups get the series at once: a scan of one places the finer rollup's
        // windows not yet fed to it (`unsettled_under`) in its series, which a late row for a
        // finer window of a series with no final window yet would otherwise lack.
        if let Some(coarser) = self.rollups.get(&rollup_id).map(|r| r.table) {
            self.rollup_series_for(rollup_id, coarser, series, config, ops);
        }
        Some(series)
    }

    /// Creates the rollups of raw table `raw` that its configuration asks for and that do not
    /// exist yet, each from the one before it, and stages their catalog entries. A rollup that
    /// exists keeps its interval; a coarser one is only built on an interval it divides.
    /// Returns whether `raw` has a rollup.
    pub(crate) fn create_rollups(&mut self, raw: TableId, config: &StorageConfig, ops: &mut Vec<Op>) -> Result<bool> {
        let Some(raw_name) = self.table_names.get(&raw).cloned() else { return Ok(false) };
        if raw_name.starts_with(SYSTEM_TABLE_PREFIX) || self.rollup_sources.contains_key(&raw) {
            return Ok(false);
        }
        let (mut source, mut finer_ns) = (raw, None);
        for interval_ns in config.rollup_chain_ns(&raw_name) {
            let table = match self.rollups.get(&source) {
                Some(rollup) => rollup.table,
                None if finer_ns.is_some_and(|f: i64| interval_ns <= f || interval_ns % f != 0) => break,
                None => match self.create_rollup(source, &raw_name, interval_ns, finer_ns, config, ops)? {
                    Some(table) => table,
                    None => break,
                },
            };
            finer_ns = self.rollups.get(&source).map(|r| r.entry.interval_ns);
            source = table;
        }
        Ok(self.rollups.contains_key(&raw))
    }

    /// Creates the rollup of `source` (raw table `raw_name`, or its rollup of interval
    /// `finer_ns`) at `interval_ns`; `None` when its name is taken.
    fn create_rollup(
        &mut self,
        source: TableId,
        raw_name: &str,
        interval_ns: i64,
        finer_ns: Option<i64>,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Result<Option<TableId>> {
        let name = rollup_table_name(raw_name, interval_ns);
        let Some(source_schema) = self.table_by_id(source).cloned() else { return Ok(None) };
        if self.tables.contains_key(&name) {
            return Ok(None);
        }
        let mut schema = TableSchema::new(TableId(self.next_table), &name);
        self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
        sync_schema(&source_schema, &mut schema, finer_ns.is_some());
        let entry = RollupEntry { source, interval_ns, frontier_ns: i64::MIN };
        ops.push(Op::Table(schema.id, schema.encode()));
        ops.push(Op::Rollup(schema.id, entry));
        let rollup = Rollup::new(entry, lateness_ns(finer_ns, config), &source_schema, &schema, finer_ns.is_some());
        let id = schema.id;
        self.table_names.insert(id, name.clone());
        self.rollup_sources.insert(id, source);
        self.tables.insert(name, schema);
        self.rollups.insert(source, rollup);
        Ok(Some(id))
    }

    /// Adds to the rollup table the columns new tags and fields of `source` need, and so on
    /// down to the coarsest rollup.
    fn sync_rollup_schema(&mut self, source: TableId, rollup_id: TableId, ops: &mut Vec<Op>) {
        let finer = self.rollups.get(&source).is_some_and(|r| r.finer);
        let (Some(source_schema), Some(mut schema)) = (self.table_by_id(source).cloned(), self.table_by_id(rollup_id).cloned()) else {
            return;
        };
        if !sync_schema(&source_schema, &mut schema, finer) {
            return;
        }
        ops.push(Op::Table(schema.id, schema.encode()));
        if let Some(r) = self.rollups.get_mut(&source) {
            r.resolve_columns(&source_schema, &schema);
        }
        self.tables.insert(schema.name.clone(), schema);
        if let Some(coarser) = self.rollups.get(&rollup_id).map(|r| r.table) {
            self.sync_rollup_schema(rollup_id, coarser, ops);
        }
    }

    /// Creates what rollups need for tables and series that predate them (a data directory
    /// from before rollups were on, or before a coarser rollup was configured): rollup tables,
    /// their columns and their series; and deletes the dirty marks of `reopened` windows.
    /// Stages nothing when nothing is missing.
    pub(crate) fn prepare_rollups(&mut self, config: &StorageConfig, reopened: &[DirtyKey]) -> Result<Prepared> {
        let mut ops: Vec<Op> = reopened.iter().map(|key| Op::DeleteRollupDirty(*key)).collect();
        if config.has_rollups() {
            let raw_tables: Vec<TableId> = self.tables.values().map(|t| t.id).filter(|id| !self.rollup_sources.contains_key(id)).collect();
            for raw in raw_tables {
                if !self.create_rollups(raw, config, &mut ops)? {
                    continue;
                }
                let mut source = raw;
                while let Some(rollup_id) = self.rollups.get(&source).map(|r| r.table) {
                    self.sync_rollup_schema(source, rollup_id, &mut ops);
                    let source_series: Vec<SeriesId> = self.series.values().filter(|s| s.table == source).map(|s| s.id).collect();
                    for s in source_series {
                        self.rollup_series_for(source, rollup_id, s, config, &mut ops);
                    }
                    source = rollup_id;
                }
            }
        }
        if ops.is_empty() {
            let sequence = WalSequence(self.next_sequence);
            return Ok(Prepared {
                sequence,
                ops,
                tables: Vec::new(),
                logged: false,
                receipt: WriteReceipt::default(),
                rollups_due: false,
                open_rows: Vec::new(),
            });
        }
        Ok(self.prepare_rows(Vec::new(), ops))
    }

    /// Stages a new table with declared tag and field columns, in their order.
    pub(crate) fn define_table(&mut self, name: &str, columns: &[(String, ColumnKind)], config: &StorageConfig) -> Result<Prepared> {
        let limits = config.point_limits();
        check_table_name(name, &limits).map_err(Error::InvalidRequest)?;
        if self.tables.contains_key(name) {
            return Err(Error::TableExists(name.to_owned()));
        }
        let mut schema = TableSchema::new(TableId(self.next_table), name);
        schema.define(columns, &limits).map_err(Error::InvalidRequest)?;
        self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
        // An empty WAL record keeps the table's catalog entry in WAL sequence order.
        let sequence = WalSequence(self.next_sequence);
        self.next_sequence += 1;
        let ops = vec![Op::Table(schema.id, schema.encode())];
        self.table_names.insert(schema.id, name.to_owned());
        self.tables.insert(name.to_owned(), schema);
        let receipt = WriteReceipt { sequence: Some(sequence), ..WriteReceipt::default() };
        Ok(Prepared { sequence, ops, tables: Vec::new(), logged: true, receipt, rollups_due: false, open_rows: Vec::new() })
    }

    /// The id of the series with `tags` in `table`, creating it (and staging its catalog entry).
    fn series_for(
        &mut self,
        table: TableId,
        tags: Vec<(ColumnId, &str)>,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Result<SeriesId, String> {
        if let Some(id) = self.find_series(table, &tags) {
            return Ok(id);
        }
        if self.table_series.get(&table).map_or(0, Vec::len) >= config.series_per_table_max {
            return Err(format!("table has {} series, the limit", config.series_per_table_max));
        }
        let id = SeriesId(self.next_series);
        let entry = SeriesEntry { id, table, tags: tags.into_iter().map(|(c, v)| (c, v.to_owned())).collect() };
        ops.push(Op::Series(id, entry.encode()));
        self.insert_series(entry);
        Ok(id)
    }
}

impl Registry {
    /// The final windows of rollup table `table` (series, start) whose rows do not hold every
    /// raw row under them yet, with the source series: for a coarser rollup, those holding
    /// windows its finer rollups have not settled (late rows not yet recomputed, rows being
    /// written), which a coarser rollup only learns of once the finer rows are stored.
    pub(crate) fn unsettled_under(&self, table: TableId) -> BTreeMap<(SeriesId, i64), SeriesId> {
        let Some(source) = self.rollup_sources.get(&table) else { return BTreeMap::new() };
        let Some(rollup) = self.rollups.get(source).filter(|r| r.finer) else { return BTreeMap::new() };
        let Some(finer) = self.rollup_sources.get(source).and_then(|s| self.rollups.get(s)) else { return BTreeMap::new() };
        let mut unsettled: Vec<(SeriesId, i64)> = finer.unsettled().collect();
        unsettled.extend(self.unsettled_under(*source).into_keys());
        rollup.windows_over(unsettled)
    }
}

impl Registry {
    /// The series of `table` with exactly `tags` (sorted by column id), if there is one.
    fn find_series(&self, table: TableId, tags: &[(ColumnId, &str)]) -> Option<SeriesId> {
        let same = |s: &SeriesEntry| s.table == table && s.tags.iter().map(|(c, v)| (*c, v.as_str())).eq(tags.iter().copied());
        self.series_ids.get(&series_hash(table, tags))?.iter().find(|id| self.series.get(id).is_some_and(same)).copied()
    }
}

fn series_hash(table: TableId, tags: &[(ColumnId, &str)]) -> u64 {
    let mut h = FxHasher::default();
    table.hash(&mut h);
    tags.hash(&mut h);
    h.finish()
}

/// Why a point of table `name` at `time` is refused: it is older than the table keeps rows.
fn expired(name: &str, time: i64, cutoff_ns: i64) -> Option<String> {
    (time < cutoff_ns)
        .then(|| format!("point at {} is older than table {name} keeps rows (from {} on)", epoch_seconds(time), epoch_seconds(cutoff_ns)))
}

/// Why a point at `time` is refused: it is further ahead of the wall clock than the tolerance.
fn too_far_ahead(time: i64, limit_ns: i64, config: &StorageConfig) -> Option<String> {
    (time > limit_ns).then(|| {
        format!(
            "point at {} is more than {} ms ahead of the server's clock (future_tolerance_ms): is the device's clock or time unit wrong?",
            epoch_seconds(time),
            config.future_tolerance_ms
        )
    })
}

/// `ns` as seconds since 1970 with nine decimals, for messages.
fn epoch_seconds(ns: i64) -> String {
    format!("{}.{:09} s since 1970", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// What [`Registry::roll_up`] made of one table's rows.
struct RolledUp {
    source: TableId,
    /// Windows are due (to finalize, or to recompute after late rows).
    due: bool,
    /// Rows for open windows: (row index, rollup series, window start).
    open: Vec<(usize, SeriesId, i64)>,
}

impl RolledUp {
    /// The rows to merge, when there are any, as rows of the prepared write's table `table_index`.
    fn open_rows(self, table_index: usize) -> Option<OpenRows> {
        (!self.open.is_empty()).then_some(OpenRows { source: self.source, table_index, rows: self.open })
    }
}

/// The allowed lateness of a rollup: the configured one for a rollup of raw rows; for one of a
/// finer rollup (of interval `finer_ns`), minus that interval, so a window is final as soon as
/// the finer windows in it are.
fn lateness_ns(finer_ns: Option<i64>, config: &StorageConfig) -> i64 {
    finer_ns.map_or(config.rollup_lateness_ns(), |finer| finer.saturating_neg())
}

/// Inserts `id` into the sorted `ids` (new series have the highest ids, so this appends).
fn insert_sorted(ids: &mut Vec<SeriesId>, id: SeriesId) {
    match ids.last() {
        Some(last) if *last >= id => {
            if let Err(at) = ids.binary_search(&id) {
                ids.insert(at, id);
            }
        }
        _ => ids.push(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_equalities_select_series_by_their_postings() {
        let mut registry = Registry::default();
        let (station, sensor) = (ColumnId(1), ColumnId(2));
        let tagged = [("a", "temp"), ("a", "hum"), ("b", "temp"), ("b", "hum")];
        for (i, (st, se)) in tagged.iter().enumerate() {
            let tags = vec![(station, (*st).to_owned()), (sensor, (*se).to_owned())];
            registry.insert_series(SeriesEntry { id: SeriesId(10 - i as u64), table: TableId(1), tags });
        }
        registry.insert_series(SeriesEntry { id: SeriesId(20), table: TableId(2), tags: vec![(station, "a".into())] });
        let ids = |tags: &[(ColumnId, &str)]| {
            let tests: Vec<(ColumnId, TagTest)> = tags.iter().map(|(c, v)| (*c, TagTest::In(vec![(*v).to_owned()]))).collect();
            let tests: Vec<(ColumnId, &TagTest)> = tests.iter().map(|(c, t)| (*c, t)).collect();
            registry.series_meeting(TableId(1), &tests).expect("no regex").iter().map(|s| s.0).collect::<Vec<_>>()
        };
        assert_eq!(ids(&[(station, "a")]), [9, 10], "in id order, of table 1 only");
        assert_eq!(ids(&[(sensor, "temp"), (station, "b")]), [8]);
        assert_eq!(ids(&[(station, "c")]), Vec::<u64>::new());
        assert_eq!(ids(&[(ColumnId(9), "a")]), Vec::<u64>::new(), "a tag no series has");
        assert_eq!(ids(&[]), [7, 8, 9, 10], "no condition: every series");
        assert_eq!(registry.series_of(TableId(2)).len(), 1);
    }
}
