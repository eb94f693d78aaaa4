//! Rollup maintenance: the work that turns the in-memory rollup state into rows of the
//! rollup tables. It runs on the `isobar-rollup` thread, woken by writes that make windows
//! due, and on callers of [`Storage::settle_rollups`]; one round at a time.
//!
//! A round finalizes due windows (those the watermark passed), recomputing from raw rows any
//! whose values were replaced, and writes them with the new frontier in one commit; then it
//! writes dirty windows (final windows that took late rows) again, from memory for recent
//! windows that merged their late rows and from raw rows for the others, with the removal of
//! their dirty marks in one commit. Before reading raw rows it waits until every write
//! prepared before the round is applied, so a recomputation sees them all.
//!
//! On open, [`start`] creates what rollups need for tables that predate them and rebuilds the
//! open windows from the raw rows at and after each durable frontier.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::batch::Row;
use crate::catalog::Op;
use crate::commit::CommitRequest;
use crate::engine::{Shared, Storage, commit};
use crate::error::{Error, Result};
use crate::model::{FieldValue, SeriesId, TableId};
use crate::registry::now_ns;
use crate::rollup::recompute::{for_each_row, recompute, wait_applied};
use crate::rollup::{DirtyKey, LATE_UPDATES_COLUMN, Observed, Window};
use crate::scan::{RollupView, ScanRequest, SeriesFilter, scan_view};

/// Dirty windows one round recomputes at most, so a large backfill is worked off in bounded
/// steps.
const DIRTY_PER_ROUND_MAX: usize = 10_000;

/// What a rollup is doing, for `system.rollups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupStatus {
    /// The rollup table, e.g. `weather_1m`.
    pub table: String,
    /// The table it is built from: the raw table, or a finer rollup.
    pub source: String,
    pub interval_ns: i64,
    /// Windows starting before this are final; `None` while none is.
    pub frontier_ns: Option<i64>,
    /// The newest event time the rollup has seen (never ahead of the wall clock).
    pub newest_ns: Option<i64>,
    /// Windows still taking rows, one per series and window.
    pub open_windows: u64,
    /// Final windows that took late rows or are being recomputed, whose stored rows scans
    /// correct until the maintainer writes them again.
    pub stale_windows: u64,
}

/// A table's rollup as a query is planned over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupOf {
    /// The rollup table, e.g. `weather_1m`.
    pub table: String,
    pub interval_ns: i64,
    /// Windows starting before this are final; `None` while none is.
    pub frontier_ns: Option<i64>,
}

impl Storage {
    /// The rollups built from table `source`, finest first: its rollup (`weather_1m`), the
    /// rollup built from that (`weather_1h`), and so on; without the counts
    /// [`Storage::rollups`] gathers.
    pub fn rollup_chain(&self, source: &str) -> Vec<RollupOf> {
        let registry = self.shared.registry.lock();
        let mut out = Vec::new();
        let Some(mut table) = registry.table(source).map(|t| t.id) else { return out };
        while let Some(rollup) = registry.rollups.get(&table) {
            let Some(name) = registry.table_by_id(rollup.table).map(|t| t.name.clone()) else { break };
            out.push(RollupOf {
                table: name,
                interval_ns: rollup.entry.interval_ns,
                frontier_ns: (rollup.entry.frontier_ns != i64::MIN).then_some(rollup.entry.frontier_ns),
            });
            // A chain never comes back to a table; the bound is for a catalog that says otherwise.
            if out.len() > registry.rollups.len() {
                break;
            }
            table = rollup.table;
        }
        out
    }

    /// Every rollup's state, by table name.
    pub fn rollups(&self) -> Vec<RollupStatus> {
        let registry = self.shared.registry.lock();
        let open = registry.open_windows.lock();
        let name = |id| registry.table_by_id(id).map(|t| t.name.clone()).unwrap_or_default();
        let mut out: Vec<RollupStatus> = registry
            .rollups
            .iter()
            .map(|(source, r)| RollupStatus {
                table: name(r.table),
                source: name(*source),
                interval_ns: r.entry.interval_ns,
                frontier_ns: (r.entry.frontier_ns != i64::MIN).then_some(r.entry.frontier_ns),
                newest_ns: r.newest_ns(),
                open_windows: open.get(source).map_or(0, |o| o.values().map(|w| w.len() as u64).sum()),
                stale_windows: r.stale_windows() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.table.cmp(&b.table));
        out
    }

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
        while round(&self.shared, &tx, true)? {}
        Ok(())
    }
}

/// One round of maintenance; returns whether it found work. Without `dirty`, windows that
/// took late rows wait for a later round, so that a burst of late rows rewrites each window
/// once instead of once per write.
pub(crate) fn round(shared: &Shared, tx: &Sender<CommitRequest>, dirty: bool) -> Result<bool> {
    let _one_at_a_time = shared.rollup_maintenance.lock();
    let finalized = finalize(shared, tx)?;
    let recomputed = dirty && recompute_dirty(shared, tx)?;
    Ok(finalized || recomputed)
}

/// Rows of one rollup to write in one commit.
struct Work {
    source: TableId,
    table: TableId,
    raw_table: String,
    interval_ns: i64,
    /// The frontier the commit records, when it moves.
    frontier_ns: Option<i64>,
    /// Rows built from memory.
    rows: Vec<Row>,
    /// Windows to recompute from raw rows.
    recompute: Vec<Recompute>,
    /// Dirty marks the commit deletes.
    done: Vec<DirtyKey>,
}

/// A window to recompute from raw rows.
struct Recompute {
    series: SeriesId,
    start_ns: i64,
    raw_series: SeriesId,
    /// Late rows since the stored row was written, added to its count; `None` for a window
    /// becoming final (none yet).
    late_rows: Option<u64>,
}

fn finalize(shared: &Shared, tx: &Sender<CommitRequest>) -> Result<bool> {
    let (work, prepared_sequence) = {
        let mut registry = shared.registry.lock();
        let names: Vec<(TableId, String)> =
            registry.rollups.keys().filter_map(|id| Some((*id, registry.table_by_id(*id)?.name.clone()))).collect();
        let mut work = Vec::new();
        let open_windows = Arc::clone(&registry.open_windows);
        let mut open = open_windows.lock();
        for (source, raw_table) in names {
            let Some(rollup) = registry.rollups.get_mut(&source) else { continue };
            let Some(frontier_ns) = rollup.due_frontier() else { continue };
            let (rows, replaced) = rollup.take_due(frontier_ns, open.entry(source).or_default());
            let recompute =
                replaced.into_iter().map(|(series, start_ns, raw_series)| Recompute { series, start_ns, raw_series, late_rows: None });
            work.push(Work {
                source,
                table: rollup.table,
                raw_table,
                interval_ns: rollup.entry.interval_ns,
                frontier_ns: Some(frontier_ns),
                rows,
                recompute: recompute.collect(),
                done: Vec::new(),
            });
        }
        (work, registry.next_sequence.saturating_sub(1))
    };
    write(shared, tx, work, prepared_sequence)
}

fn recompute_dirty(shared: &Shared, tx: &Sender<CommitRequest>) -> Result<bool> {
    let (work, prepared_sequence) = {
        let mut registry = shared.registry.lock();
        let sources: Vec<TableId> = registry.rollups.keys().copied().collect();
        let mut work = Vec::new();
        for source in sources {
            let raw_table = registry.table_by_id(source).map(|t| t.name.clone()).unwrap_or_default();
            let raw_cutoff = registry.retention_cutoff_ns(source, &shared.config).unwrap_or(i64::MIN);
            let Some(rollup) = registry.rollups.get_mut(&source) else { continue };
            let dirty = rollup.take_dirty(DIRTY_PER_ROUND_MAX);
            if dirty.is_empty() {
                continue;
            }
            let (table, interval_ns) = (rollup.table, rollup.entry.interval_ns);
            let mut w = Work {
                source,
                table,
                raw_table,
                interval_ns,
                frontier_ns: None,
                rows: Vec::new(),
                recompute: Vec::new(),
                done: Vec::new(),
            };
            for ((series, start_ns), d) in dirty {
                w.done.extend(d.sequences.iter().map(|&sequence| DirtyKey { table, series, window_ns: start_ns, sequence }));
                // A window whose raw rows have expired keeps its stored row.
                if start_ns < raw_cutoff {
                    rollup.forget(series, start_ns);
                    continue;
                }
                // A recent window merged its late rows in memory; an older one, or one whose
                // values were replaced, is recomputed.
                match rollup.recent_row(series, start_ns) {
                    Some(row) => w.rows.push(row),
                    None => w.recompute.push(Recompute { series, start_ns, raw_series: d.raw_series, late_rows: Some(d.late_rows) }),
                }
            }
            work.push(w);
        }
        (work, registry.next_sequence.saturating_sub(1))
    };
    write(shared, tx, work, prepared_sequence)
}

/// Recomputes what `work` needs from raw rows (once every write prepared up to
/// `prepared_sequence` is applied), writes each rollup's rows with its frontier and dirty-mark
/// deletions in one commit, and hands them to the watcher. Rows built from memory become
/// durable after the raw rows they summarize, since commits are durable in sequence order.
/// Returns whether there was work.
fn write(shared: &Shared, tx: &Sender<CommitRequest>, work: Vec<Work>, prepared_sequence: u64) -> Result<bool> {
    if work.is_empty() {
        return Ok(false);
    }
    if work.iter().any(|w| !w.recompute.is_empty()) {
        wait_applied(shared, prepared_sequence)?;
    }
    for w in work {
        let rollup_table = shared.registry.lock().table_by_id(w.table).map(|t| t.name.clone()).unwrap_or_default();
        let wanted: Vec<(SeriesId, i64)> = w.recompute.iter().map(|r| (r.raw_series, r.start_ns)).collect();
        let mut windows = recompute(shared, &w.raw_table, w.interval_ns, &wanted)?;
        let mut recomputed = Vec::with_capacity(w.recompute.len());
        for r in &w.recompute {
            let window = windows.remove(&(r.raw_series, r.start_ns)).unwrap_or_else(|| Window::new(r.raw_series));
            let late = match r.late_rows {
                None => 0,
                Some(n) => late_updates(shared, &rollup_table, r.series, r.start_ns)?.saturating_add(i64::try_from(n).unwrap_or(i64::MAX)),
            };
            recomputed.push((r.series, r.start_ns, window, late));
        }
        let mut written = w.rows;
        commit(shared, tx, |registry| {
            let rollup = registry.rollups.get_mut(&w.source).ok_or_else(|| Error::Internal("a rollup vanished".into()))?;
            for (series, start, window, late) in &recomputed {
                // A window whose rows were all deleted has no row (the delete removed it).
                match window.is_empty() {
                    true => rollup.forget(*series, *start),
                    false => written.push(rollup.row(*series, *start, window, true, *late)),
                }
            }
            rollup.writing(&written);
            let mut ops: Vec<Op> = w.done.iter().map(|key| Op::DeleteRollupDirty(*key)).collect();
            if let Some(frontier_ns) = w.frontier_ns {
                ops.push(Op::Rollup(w.table, crate::rollup::RollupEntry { frontier_ns, ..rollup.entry }));
            }
            let tables = if written.is_empty() { Vec::new() } else { vec![(w.table, written.clone().into())] };
            registry.prepare_rollup_rows(tables, ops, &shared.config)
        })?;
        let mut registry = shared.registry.lock();
        if let Some(rollup) = registry.rollups.get_mut(&w.source) {
            for row in &written {
                rollup.pending.remove(&(row.time, row.series));
            }
        }
        hand_over(shared, &registry, w.table, &written);
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

/// The late updates the stored (or pending) rollup row already counts.
fn late_updates(shared: &Shared, rollup_table: &str, series: SeriesId, start_ns: i64) -> Result<i64> {
    let request = ScanRequest {
        table: rollup_table.to_owned(),
        time_min_ns: start_ns,
        time_max_ns: start_ns,
        series: SeriesFilter::Ids(vec![series]),
        columns: Some(vec![LATE_UPDATES_COLUMN.to_owned()]),
    };
    let mut rows = scan_view(shared, &request, RollupView::Written)?;
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
    commit(shared, &tx, |registry| registry.prepare_rollups(&shared.config, &reopened))?;
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
        let mut rows = scan_view(shared, &request, RollupView::Final)?;
        while let Some(set) = rows.next_rows()? {
            let mut registry = shared.registry.lock();
            let open_windows = Arc::clone(&registry.open_windows);
            let mut open = open_windows.lock();
            let Some(rollup) = registry.rollups.get_mut(&source) else { break };
            let windows = open.entry(source).or_default();
            for_each_row(&set, |raw_series, time, fields| {
                let Some(series) = rollup.series.get(&raw_series).copied() else { return };
                let row = Row { series: raw_series, time, fields: fields.to_vec().into_boxed_slice() };
                if let Observed::Open(start) = rollup.observe(row.as_row_ref(), series, now) {
                    windows.entry(start).or_default().entry(series).or_insert_with(|| Window::new(raw_series)).add(time, fields);
                }
            });
        }
    }
    let _ = shared.rollup_kick.try_send(());
    Ok(())
}
