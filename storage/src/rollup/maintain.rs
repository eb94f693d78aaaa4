//! Rollup maintenance: the work that turns the in-memory rollup state into rows of the
//! rollup tables. It runs on the `isobar-rollup` thread, woken by writes that make windows
//! due, and on callers of [`Storage::settle_rollups`]; one round at a time.
//!
//! A round finalizes due windows (those the watermark passed), recomputing from raw rows any
//! whose values were replaced, and writes them with the new frontier in one commit; then it
//! recomputes dirty windows (final windows that took late rows) from raw rows and writes them
//! with the removal of their dirty marks in one commit. Before reading raw rows it waits until
//! every write prepared before the round is applied, so a recomputation sees them all.
//!
//! On open, [`start`] creates what rollups need for tables that predate them and rebuilds the
//! open windows from the raw rows at and after each durable frontier.

use std::time::Duration;

use crossbeam_channel::Sender;

use crate::catalog::Op;
use crate::commit::CommitRequest;
use crate::engine::{Shared, Storage, commit};
use crate::error::{Error, Result};
use crate::model::{FieldValue, SeriesId, TableId};
use crate::registry::now_ns;
use crate::rollup::{DirtyKey, LATE_UPDATES_COLUMN, Window};
use crate::rowset::RowSet;
use crate::scan::{ScanRequest, SeriesFilter, scan};
use crate::wal::{Row, TableRows};

/// Dirty windows one round recomputes at most, so a large backfill is worked off in bounded
/// steps.
const DIRTY_PER_ROUND_MAX: usize = 10_000;

impl Storage {
    /// Hands every rollup window written final from now on (and again after late rows) to the
    /// returned queue of `capacity` windows; a window that finds the queue full is counted in
    /// [`crate::Metrics::rollup_windows_unwatched`] and not handed over. A second call replaces
    /// the first watcher.
    pub fn final_windows(&self, capacity: usize) -> crossbeam_channel::Receiver<crate::rollup::FinalWindow> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        *self.shared.final_windows.lock() = Some(tx);
        rx
    }

    /// Finalizes every window the watermark has passed and recomputes every window that took
    /// late rows, and returns once their rows are durable. The background thread does the same
    /// within moments of each write; this is for callers that must see the result now.
    pub fn settle_rollups(&self) -> Result<()> {
        let tx = self.commit_sender()?;
        while round(&self.shared, &tx)? {}
        Ok(())
    }
}

/// One round of maintenance; returns whether it found work.
pub(crate) fn round(shared: &Shared, tx: &Sender<CommitRequest>) -> Result<bool> {
    let _one_at_a_time = shared.rollup_maintenance.lock();
    let finalized = finalize(shared, tx)?;
    let recomputed = recompute_dirty(shared, tx)?;
    Ok(finalized || recomputed)
}

/// Windows of one rollup that became final, with what their commit records.
struct Due {
    source: TableId,
    table: TableId,
    raw_table: String,
    interval_ns: i64,
    frontier_ns: i64,
    windows: Vec<(i64, SeriesId, Window)>,
}

fn finalize(shared: &Shared, tx: &Sender<CommitRequest>) -> Result<bool> {
    let (due, prepared_sequence) = {
        let mut registry = shared.registry.lock();
        let names: Vec<(TableId, String)> =
            registry.rollups.keys().filter_map(|id| Some((*id, registry.table_by_id(*id)?.name.clone()))).collect();
        let mut due = Vec::new();
        for (source, raw_table) in names {
            let Some(rollup) = registry.rollups.get_mut(&source) else { continue };
            let Some(frontier_ns) = rollup.due_frontier() else { continue };
            let windows = rollup.take_due(frontier_ns);
            due.push(Due { source, table: rollup.table, raw_table, interval_ns: rollup.entry.interval_ns, frontier_ns, windows });
        }
        (due, registry.next_sequence.saturating_sub(1))
    };
    if due.is_empty() {
        return Ok(false);
    }
    if due.iter().any(|d| d.windows.iter().any(|(_, _, w)| w.replaced)) {
        wait_applied(shared, prepared_sequence)?;
    }
    for mut d in due {
        for (start, _, window) in &mut d.windows {
            if window.replaced {
                *window = recompute(shared, &d.raw_table, window.raw_series, *start, d.interval_ns)?;
            }
        }
        let mut written = Vec::new();
        commit(shared, tx, |registry| {
            let rollup = registry.rollups.get(&d.source).ok_or_else(|| Error::Internal("a rollup vanished".into()))?;
            written = d.windows.iter().map(|(start, series, w)| rollup.row(*series, *start, w, true, 0)).collect();
            let entry = crate::rollup::RollupEntry { frontier_ns: d.frontier_ns, ..rollup.entry };
            let tables = if written.is_empty() { Vec::new() } else { vec![TableRows { table: d.table, rows: written.clone() }] };
            Ok(registry.prepare_rows(tables, vec![Op::Rollup(d.table, entry)]))
        })?;
        let mut registry = shared.registry.lock();
        if let Some(rollup) = registry.rollups.get_mut(&d.source) {
            for (start, series, _) in &d.windows {
                rollup.pending.remove(&(*start, *series));
            }
        }
        hand_over(shared, &registry, d.table, &written);
    }
    Ok(true)
}

/// Gives the rows just written final to the watcher of [`Storage::final_windows`], if any.
fn hand_over(shared: &Shared, registry: &crate::registry::Registry, table: TableId, rows: &[Row]) {
    use std::sync::atomic::Ordering;
    shared.metrics.rollup_windows_final.fetch_add(rows.len() as u64, Ordering::Relaxed);
    let watcher = shared.final_windows.lock();
    let (Some(watcher), Some(schema)) = (watcher.as_ref(), registry.table_by_id(table)) else { return };
    let name = |id| schema.column_by_id(id).map(|c| c.name.clone()).unwrap_or_default();
    for row in rows {
        let tags = registry.series_tags(row.series).iter().map(|(c, v)| (name(*c), v.clone())).collect();
        let fields = row.fields.iter().map(|(c, v)| (name(*c), v.clone())).collect();
        let window = crate::rollup::FinalWindow { table: schema.name.clone(), start_ns: row.time, tags, fields };
        if watcher.try_send(window).is_err() {
            shared.metrics.rollup_windows_unwatched.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn recompute_dirty(shared: &Shared, tx: &Sender<CommitRequest>) -> Result<bool> {
    let (work, prepared_sequence) = {
        let mut registry = shared.registry.lock();
        let sources: Vec<TableId> = registry.rollups.keys().copied().collect();
        let mut work = Vec::new();
        for source in sources {
            let raw_table = registry.table_by_id(source).map(|t| t.name.clone()).unwrap_or_default();
            let Some(rollup) = registry.rollups.get_mut(&source) else { continue };
            let dirty = rollup.take_dirty(DIRTY_PER_ROUND_MAX);
            if dirty.is_empty() {
                continue;
            }
            let rollup_table = (rollup.table, rollup.entry.interval_ns);
            work.push((source, raw_table, rollup_table, dirty));
        }
        (work, registry.next_sequence.saturating_sub(1))
    };
    if work.is_empty() {
        return Ok(false);
    }
    wait_applied(shared, prepared_sequence)?;
    for (source, raw_table, (table, interval_ns), dirty) in work {
        let rollup_name = shared.registry.lock().table_by_id(table).map(|t| t.name.clone()).unwrap_or_default();
        let mut recomputed = Vec::with_capacity(dirty.len());
        let mut ops = Vec::new();
        for ((series, window_ns), d) in dirty {
            let window = recompute(shared, &raw_table, d.raw_series, window_ns, interval_ns)?;
            let late_before = late_updates(shared, &rollup_name, series, window_ns)?;
            let late = late_before.saturating_add(i64::try_from(d.late_rows).unwrap_or(i64::MAX));
            ops.extend(d.sequences.iter().map(|&sequence| Op::DeleteRollupDirty(DirtyKey { table, series, window_ns, sequence })));
            recomputed.push((series, window_ns, window, late));
        }
        let mut written = Vec::new();
        commit(shared, tx, |registry| {
            let rollup = registry.rollups.get(&source).ok_or_else(|| Error::Internal("a rollup vanished".into()))?;
            written = recomputed.iter().map(|(series, start, w, late)| rollup.row(*series, *start, w, true, *late)).collect();
            Ok(registry.prepare_rows(vec![TableRows { table, rows: written.clone() }], ops))
        })?;
        hand_over(shared, &shared.registry.lock(), table, &written);
    }
    Ok(true)
}

/// Waits until every write prepared up to `sequence` is in the write buffer.
fn wait_applied(shared: &Shared, sequence: u64) -> Result<()> {
    while shared.state.read().applied_sequence.0 < sequence {
        if let Some(reason) = shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Every row of `rows` as a raw row, for [`Window::add`] and rebuilding.
fn for_each_row(rows: &RowSet, mut f: impl FnMut(SeriesId, i64, &[(crate::model::ColumnId, FieldValue)])) {
    let mut fields = Vec::with_capacity(rows.columns.len());
    for run in &rows.series {
        for i in run.row_start..run.row_start + run.rows {
            fields.clear();
            fields.extend(rows.columns.iter().filter(|c| c.valid[i]).filter_map(|c| Some((c.id, c.values.number(i)?))));
            f(run.series, rows.times[i], &fields);
        }
    }
}

/// The window of raw series `raw_series` at `start_ns`, from the raw rows as they are now.
fn recompute(shared: &Shared, raw_table: &str, raw_series: SeriesId, start_ns: i64, interval_ns: i64) -> Result<Window> {
    let request = ScanRequest {
        table: raw_table.to_owned(),
        time_min_ns: start_ns,
        time_max_ns: start_ns.saturating_add(interval_ns - 1),
        series: SeriesFilter::Ids(vec![raw_series]),
        columns: None,
    };
    let mut window = Window::new(raw_series);
    let mut rows = scan(shared, &request)?;
    while let Some(set) = rows.next_rows()? {
        for_each_row(&set, |_, time, fields| window.add(time, fields));
    }
    Ok(window)
}

/// The late updates a stored rollup row already counts.
fn late_updates(shared: &Shared, rollup_table: &str, series: SeriesId, start_ns: i64) -> Result<i64> {
    let request = ScanRequest {
        table: rollup_table.to_owned(),
        time_min_ns: start_ns,
        time_max_ns: start_ns,
        series: SeriesFilter::Ids(vec![series]),
        columns: Some(vec![LATE_UPDATES_COLUMN.to_owned()]),
    };
    let mut rows = scan(shared, &request)?;
    let mut late = 0;
    while let Some(set) = rows.next_rows()? {
        for_each_row(&set, |_, _, fields| {
            if let Some((_, FieldValue::I64(n))) = fields.first() {
                late = *n;
            }
        });
    }
    Ok(late)
}

/// On open: creates what rollups need for tables and series from before them, forgets dirty
/// marks of windows that are open again, and rebuilds the open windows from raw rows.
pub(crate) fn start(storage: &Storage, reopened: Vec<DirtyKey>) -> Result<()> {
    let shared = &storage.shared;
    let tx = storage.commit_sender()?;
    commit(shared, &tx, |registry| {
        let mut prepared = registry.prepare_rollups(&shared.config)?;
        prepared.ops.extend(reopened.iter().map(|key| Op::DeleteRollupDirty(*key)));
        Ok(prepared)
    })?;
    let rollups: Vec<(TableId, String, i64)> = {
        let registry = shared.registry.lock();
        registry
            .rollups
            .iter()
            .filter_map(|(source, r)| Some((*source, registry.table_by_id(*source)?.name.clone(), r.entry.frontier_ns)))
            .collect()
    };
    let now = now_ns();
    for (source, raw_table, frontier_ns) in rollups {
        let request = ScanRequest { time_min_ns: frontier_ns, ..ScanRequest::all(&raw_table) };
        let mut rows = scan(shared, &request)?;
        while let Some(set) = rows.next_rows()? {
            let mut registry = shared.registry.lock();
            let Some(rollup) = registry.rollups.get_mut(&source) else { break };
            for_each_row(&set, |raw_series, time, fields| {
                let Some(series) = rollup.series.get(&raw_series).copied() else { return };
                let row = Row { series: raw_series, time, fields: fields.to_vec().into_boxed_slice() };
                rollup.observe(&row, series, now);
            });
        }
    }
    let _ = shared.rollup_kick.try_send(());
    Ok(())
}
