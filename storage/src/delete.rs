//! Deleting rows by hand: `DELETE FROM t WHERE` a time range and tag conditions.
//!
//! A delete rewrites the chunks that hold rows it removes, as a compaction that leaves those
//! rows out. It first persists the write buffer, so every row acknowledged before the delete
//! is in a chunk; then writes each chunk of the table with a selected row again without them,
//! under the chunk's own partition and generation (so last-write-wins between chunks holds as
//! before); then one synced catalog commit swaps the new chunks for the old. A crash before
//! the commit leaves the old chunks (the new files are orphans, deleted at the next open);
//! after it, the new ones: never a mix. Rows written while a delete runs stay, as rows
//! committed after a PostgreSQL `DELETE` began do.
//!
//! The rollups follow in the same commit. Their rows of windows that lie wholly in the time
//! range are deleted with the raw rows. Windows that only partly lie in it lose their rows too
//! and are marked for recomputation (durably, as late rows mark them): the rollup maintainer
//! writes them again from the rows left, and scans recompute them until then. Windows still
//! open, or final and kept in memory, become provisional and are recomputed from the rows left
//! when they are written.

use std::sync::Arc;

use crate::catalog::Op;
use crate::chunk::write::ChunkIdentity;
use crate::engine::{ChunkHandle, Shared, Storage};
use crate::error::{Error, Result};
use crate::fxhash::FxHashMap;
use crate::latest::Latest;
use crate::model::{SeriesId, TableId, WalSequence, WriteReceipt};
use crate::persist::{NewChunk, persist_locked, remove_chunks, remove_files, write_new_chunk};
use crate::registry::{Prepared, Registry};
use crate::rollup::recompute::{for_each_row, wait_applied};
use crate::rollup::{Window, window_start};
use crate::rowset::{RowSet, Selection};
use crate::scan::{ScanRequest, Target};
use crate::schema::TableSchema;

/// What a delete removes from one table: the raw table's selected rows, or a rollup table's
/// windows over them.
struct Removal {
    table: TableId,
    schema: TableSchema,
    /// Sorted.
    series: Vec<SeriesId>,
    time_min: i64,
    time_max: i64,
}

impl Removal {
    fn selection(&self) -> Selection<'_> {
        Selection { series: Some(&self.series), time_min: self.time_min, time_max: self.time_max, columns: None }
    }
}

/// A chunk rewritten without the deleted rows; `None` when no row is left.
type Rewrite = (Arc<ChunkHandle>, Option<NewChunk>);

impl Storage {
    /// Deletes the rows of `req.table` that `req` selects (its time range and series; the
    /// columns do not matter), with the rows of its rollups' windows over them, and returns
    /// how many raw rows it deleted once the delete is durable. A rollup table is refused:
    /// isobar keeps it from its source's rows.
    pub fn delete_rows(&self, req: &ScanRequest) -> Result<u64> {
        let shared = &self.shared;
        if let Some(reason) = shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        // No rollup round writes rows, and no persist, compaction or expiry changes chunks,
        // while the delete rewrites them.
        let _rollups = shared.rollup_maintenance.lock();
        let _maintenance = shared.maintenance.lock();
        persist_locked(shared)?;
        let removals = removals(shared, req)?;
        let Some(raw) = removals.first().filter(|r| r.time_min <= r.time_max && !r.series.is_empty()) else { return Ok(0) };
        let mut rewrites: Vec<Rewrite> = Vec::new();
        let result = (|| {
            let mut deleted_keys = Vec::new();
            for (i, removal) in removals.iter().enumerate() {
                rewrite(shared, removal, &mut rewrites, (i == 0).then_some(&mut deleted_keys))?;
            }
            deleted_keys.sort_unstable();
            deleted_keys.dedup();
            // Each table's chunks as they will be once the delete is done.
            let gone: Vec<_> = rewrites.iter().map(|(old, _)| old.id).collect();
            let after: Vec<Vec<Arc<ChunkHandle>>> = {
                let state = shared.state.read();
                let new = rewrites.iter().filter_map(|(_, new)| new.as_ref().map(|n| &n.handle));
                let all: Vec<&Arc<ChunkHandle>> = state.chunks.values().filter(|c| !gone.contains(&c.id)).chain(new).collect();
                removals.iter().map(|r| all.iter().filter(|c| c.table() == r.table).map(|c| Arc::clone(c)).collect()).collect()
            };
            // The raw table's newest rows from its chunks; buffered rows are offered when the
            // chunks are swapped.
            let latest = Latest::of_chunks(None, &after[0], |s| raw.series.binary_search(&s).is_ok())?;
            let mut ops: Vec<Op> = rewrites.iter().flat_map(|(_, new)| new.iter().flat_map(NewChunk::ops)).collect();
            ops.extend(rewrites.iter().map(|(old, _)| Op::DeleteChunk(old.id)));
            let time_range = (req.time_min_ns, req.time_max_ns);
            self.commit(|registry| prepare_delete(shared, registry, &removals, &after, time_range, ops))?;
            Ok((deleted_keys.len() as u64, latest))
        })();
        let (deleted, latest) = match result {
            Ok(done) => done,
            Err(e) => {
                remove_files(shared, rewrites.iter().filter_map(|(_, new)| new.as_ref().map(|n| (n.entry.table, n.entry.id))));
                return Err(e);
            }
        };
        {
            let mut state = shared.state.write();
            for (old, new) in &rewrites {
                state.chunks.remove(&old.id);
                if let Some(new) = new {
                    state.chunks.insert(new.entry.id, Arc::clone(&new.handle));
                }
            }
            let all = Selection { series: Some(&raw.series), time_min: i64::MIN, time_max: i64::MAX, columns: None };
            let buffered = state.active.view(raw.table).select(&raw.schema, &all);
            state.latest.replace_series(raw.table, &raw.series, latest, &buffered);
        }
        // Scans still reading the old chunks keep their open files.
        remove_chunks(shared, rewrites.iter().map(|(old, _)| old));
        let _ = shared.rollup_kick.try_send(());
        Ok(deleted)
    }
}

/// What a delete of `req` removes: from the raw table first, then from each of its rollup
/// tables, finest first.
fn removals(shared: &Shared, req: &ScanRequest) -> Result<Vec<Removal>> {
    let registry = shared.registry.lock();
    let ids = registry.table_and_rollups(&req.table)?.ok_or_else(|| Error::NoSuchTable(req.table.clone()))?;
    let target = Target::new(&registry, &shared.config, &ScanRequest { columns: None, ..req.clone() })?;
    let mut series = match target.series {
        Some(series) => series,
        None => registry.series_of(target.schema.id).into_iter().map(|s| s.id).collect(),
    };
    series.sort_unstable();
    let mut out =
        vec![Removal { table: target.schema.id, schema: target.schema, series, time_min: target.time_min, time_max: target.time_max }];
    for pair in ids.windows(2) {
        let (Some(rollup), Some(schema)) = (registry.rollups.get(&pair[0]), registry.table_by_id(pair[1])) else { break };
        let source = &out.last().expect("the raw table's removal is first").series;
        let mut series: Vec<SeriesId> = source.iter().filter_map(|s| rollup.series.get(s).copied()).collect();
        series.sort_unstable();
        let time_min = window_start(req.time_min_ns, rollup.entry.interval_ns);
        out.push(Removal { table: pair[1], schema: schema.clone(), series, time_min, time_max: req.time_max_ns });
    }
    Ok(out)
}

/// Writes again, without the rows `removal` selects, every chunk of its table holding some,
/// adding them to `rewrites`; the (series, time) of each row left out go to `deleted`.
fn rewrite(shared: &Shared, removal: &Removal, rewrites: &mut Vec<Rewrite>, mut deleted: Option<&mut Vec<(SeriesId, i64)>>) -> Result<()> {
    let selection = removal.selection();
    let chunks: Vec<Arc<ChunkHandle>> = {
        let state = shared.state.read();
        state.chunks.values().filter(|c| c.table() == removal.table && c.reader.may_match(&selection)).cloned().collect()
    };
    let everything = Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None };
    for chunk in chunks {
        let rows = chunk.reader.read(&everything)?;
        let mut kept = Vec::with_capacity(rows.len());
        let mut removed = 0usize;
        for run in &rows.series {
            let wanted = selection.wants_series(run.series);
            for i in run.row_start..run.row_start + run.rows {
                if wanted && selection.wants_time(rows.times[i]) {
                    removed += 1;
                    if let Some(keys) = deleted.as_deref_mut() {
                        keys.push((run.series, rows.times[i]));
                    }
                } else {
                    kept.push(i);
                }
            }
        }
        if removed == 0 {
            continue;
        }
        let new = match kept.is_empty() {
            true => None,
            false => Some(write_kept(shared, &chunk, rows.take(&kept), &removal.schema)?),
        };
        rewrites.push((chunk, new));
    }
    Ok(())
}

/// Writes the rows a chunk keeps as a chunk of the same partition and generation.
fn write_kept(shared: &Shared, chunk: &ChunkHandle, mut rows: RowSet, schema: &TableSchema) -> Result<NewChunk> {
    // Dropped columns' values are left behind, as by compaction, and so are columns that had
    // values only in the deleted rows.
    rows.columns.retain(|c| schema.column_by_id(c.id).is_some() && c.valid.contains(&true));
    let identity =
        ChunkIdentity { table: chunk.table(), partition_start_ns: chunk.partition_start_ns(), generation: chunk.reader.footer.generation };
    write_new_chunk(shared, identity, &rows, schema)
}

/// Stages the delete: the chunk swap (`ops`) and, in each rollup of the raw table, what the
/// rows deleted from `time_min..=time_max` change (see [`crate::rollup::Rollup::rows_deleted`]),
/// with an empty WAL record that keeps the delete in sequence order with writes. The open
/// windows the delete touched are built again from the rows left (in the chunks as they will
/// be, `after`, and the write buffer): under the registry lock, once every write prepared
/// before is in the buffer, so that no row is missed or counted twice.
fn prepare_delete(
    shared: &Shared,
    registry: &mut Registry,
    removals: &[Removal],
    after: &[Vec<Arc<ChunkHandle>>],
    time_range: (i64, i64),
    mut ops: Vec<Op>,
) -> Result<Prepared> {
    let sequence = WalSequence(registry.next_sequence);
    let open_windows = Arc::clone(&registry.open_windows);
    let mut open = open_windows.lock();
    wait_applied(shared, registry.next_sequence.saturating_sub(1))?;
    for (k, pair) in removals.windows(2).enumerate() {
        let source = &pair[0];
        let Some(rollup) = registry.rollups.get_mut(&source.table) else { continue };
        let windows = open.entry(source.table).or_default();
        let (series, starts) = rollup.rows_deleted(&source.series, time_range, windows, sequence.0, &mut ops);
        if series.is_empty() || starts.is_empty() {
            continue;
        }
        let interval_ns = rollup.entry.interval_ns;
        let of_source: FxHashMap<SeriesId, SeriesId> = series.iter().map(|&(series, source)| (source, series)).collect();
        let mut wanted: Vec<SeriesId> = of_source.keys().copied().collect();
        wanted.sort_unstable();
        let time_max = starts.end().saturating_add(interval_ns - 1);
        let selection = Selection { series: Some(&wanted), time_min: *starts.start(), time_max, columns: None };
        let rows = rows_left(shared, source, &after[k], &selection)?;
        for_each_row(&rows, |source_series, time, fields| {
            let Some(series) = of_source.get(&source_series) else { return };
            let start = window_start(time, interval_ns);
            windows.entry(start).or_default().entry(*series).or_insert_with(|| Window::new(source_series)).add(time, fields);
        });
    }
    drop(open);
    registry.next_sequence += 1;
    let receipt = WriteReceipt { sequence: Some(sequence), ..WriteReceipt::default() };
    Ok(Prepared { sequence, ops, tables: Vec::new(), logged: true, receipt, rollups_due: removals.len() > 1, open_rows: Vec::new() })
}

/// The rows of `removal`'s table that `selection` wants once the delete is done: of its
/// `chunks` as they will be, then of the write buffer, the later write of a key winning.
fn rows_left(shared: &Shared, removal: &Removal, chunks: &[Arc<ChunkHandle>], selection: &Selection<'_>) -> Result<RowSet> {
    let mut chunks: Vec<&Arc<ChunkHandle>> = chunks.iter().filter(|c| c.reader.may_match(selection)).collect();
    chunks.sort_by_key(|c| c.age_key());
    let mut sets = chunks.iter().map(|c| c.reader.read(selection)).collect::<Result<Vec<_>>>()?;
    sets.push(shared.state.read().active.view(removal.table).select(&removal.schema, selection));
    Ok(RowSet::merge(sets))
}
