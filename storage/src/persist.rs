//! Persisting the write buffer into chunks, and compacting chunks.
//!
//! A persist freezes the active buffer (scans keep seeing it), writes one chunk per table and
//! time partition, then commits the chunk entries and the WAL truncation in one synced RocksDB
//! write batch, and only then swaps the frozen buffer for the chunks. A crash before the commit
//! leaves orphaned files (removed at open) and a WAL that still holds every row; after it, the
//! chunks hold them. A compaction merges all chunks of a partition the same way: write the
//! merged chunk, commit "add new, remove old" in one batch, swap, delete the old files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::batch::TableRows;
use crate::buffer::{build_row_set, field_types};
use crate::catalog::{ChunkEntry, Op};
use crate::chunk::write::ChunkIdentity;
use crate::chunk::{ChunkReader, write_chunk};
use crate::engine::{ChunkHandle, Shared};
use crate::error::{Error, Result};
use crate::fxhash::FxHashMap;
use crate::latest::chunk_latest;
use crate::model::{ChunkId, ColumnId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::schema::TableSchema;

/// What a persist or compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub chunks_written: usize,
    pub chunks_removed: usize,
    pub rows_written: u64,
    pub bytes_written: u64,
}

impl MaintenanceReport {
    fn add(&mut self, other: Self) {
        self.chunks_written += other.chunks_written;
        self.chunks_removed += other.chunks_removed;
        self.rows_written += other.rows_written;
        self.bytes_written += other.bytes_written;
    }
}

/// Persists the write buffer; a no-op when it is empty.
pub(crate) fn persist(shared: &Shared) -> Result<MaintenanceReport> {
    let _maintenance = shared.maintenance.lock();
    persist_locked(shared)
}

/// [`persist`], for a caller holding the maintenance lock.
pub(crate) fn persist_locked(shared: &Shared) -> Result<MaintenanceReport> {
    let (frozen, generation) = {
        let mut state = shared.state.write();
        if state.frozen.is_none() {
            if state.active.is_empty() {
                return Ok(MaintenanceReport::default());
            }
            let active = std::mem::take(&mut state.active);
            state.frozen = Some(Arc::new(active.freeze()));
            shared.store.switch_wal();
            state.frozen_sequence = state.applied_sequence;
        }
        (Arc::clone(state.frozen.as_ref().expect("frozen above")), state.frozen_sequence)
    };
    let mut written = Vec::new();
    let result = (|| {
        let partition_ns = shared.config.partition_ns();
        for (table, (writes, partition_starts)) in frozen.partitions(partition_ns) {
            // Rows of a table dropped since they were written belong to no table.
            let Some(schema) = live_schema_of(shared, table)? else { continue };
            for partition_start_ns in partition_starts {
                let time_max = partition_start_ns.saturating_add(partition_ns - 1);
                let within = |w: &&TableRows| w.index.time_min <= time_max && w.index.time_max >= partition_start_ns;
                let writes: Vec<&TableRows> = writes.iter().copied().filter(within).collect();
                let present: BTreeSet<ColumnId> = writes.iter().flat_map(|w| w.index.columns.iter().copied()).collect();
                let selection = Selection { series: None, time_min: partition_start_ns, time_max, columns: None };
                let mut set = build_row_set(&writes, &selection, &field_types(&schema, |id| present.contains(&id)));
                // A write spanning partitions may name columns that have no value in this one.
                set.columns.retain(|c| c.valid.contains(&true));
                let identity = ChunkIdentity { table, partition_start_ns, generation: generation.0 };
                written.push(write_new_chunk(shared, identity, &set, &schema)?);
            }
        }
        let mut ops: Vec<Op> = written.iter().flat_map(NewChunk::ops).collect();
        ops.push(Op::TruncateWal(generation));
        shared.store.commit(&ops, true)
    })();
    if let Err(e) = result {
        remove_files(shared, written.iter().map(|c| (c.entry.table, c.entry.id)));
        return Err(e);
    }
    let report = MaintenanceReport {
        chunks_written: written.len(),
        chunks_removed: 0,
        rows_written: written.iter().map(|c| c.entry.row_count).sum(),
        bytes_written: written.iter().map(|c| c.entry.size_bytes).sum(),
    };
    {
        let mut state = shared.state.write();
        state.frozen = None;
        for chunk in written {
            state.chunks.insert(chunk.entry.id, chunk.handle);
        }
    }
    shared.metrics.persists.fetch_add(1, Ordering::Relaxed);
    shared.notify_memory_freed();
    shared.store.flush_wal()?;
    Ok(report)
}

/// Merges the chunks of every partition that has at least `chunks_min` (and at least two), or
/// `busy_chunks_min` if the write buffer holds rows of its time range (it is being written).
pub(crate) fn compact(shared: &Shared, chunks_min: usize, busy_chunks_min: usize) -> Result<MaintenanceReport> {
    let _maintenance = shared.maintenance.lock();
    let partition_ns = shared.config.partition_ns();
    let mut partitions: BTreeMap<(TableId, i64), Vec<Arc<ChunkHandle>>> = BTreeMap::new();
    let busy = {
        let state = shared.state.read();
        for chunk in state.chunks.values() {
            partitions.entry((chunk.table(), chunk.partition_start_ns())).or_default().push(Arc::clone(chunk));
        }
        partitions.retain(|_, chunks| chunks.len() >= chunks_min.max(2));
        let end = |start: i64| start.saturating_add(partition_ns - 1);
        let buffered = |table, start| {
            state.active.holds(table, start, end(start)) || state.frozen.as_ref().is_some_and(|f| f.holds(table, start, end(start)))
        };
        partitions.keys().filter(|(table, start)| buffered(*table, *start)).copied().collect::<std::collections::BTreeSet<_>>()
    };
    let mut report = MaintenanceReport::default();
    for ((table, partition_start_ns), mut chunks) in partitions {
        if busy.contains(&(table, partition_start_ns)) && chunks.len() < busy_chunks_min {
            continue;
        }
        chunks.sort_by_key(|c| c.age_key());
        for run in runs_within(&chunks, shared.config.compaction_rows_max) {
            report.add(compact_run(shared, table, partition_start_ns, run)?);
        }
    }
    Ok(report)
}

/// Splits chunks (sorted by age) into runs of adjacent local chunks holding at most `rows_max`
/// rows together; only runs of two or more are worth merging. Merging adjacent chunks keeps
/// last-write-wins: every chunk outside a run is older or newer than all of it.
fn runs_within(chunks: &[Arc<ChunkHandle>], rows_max: u64) -> Vec<&[Arc<ChunkHandle>]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut rows = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        // A cold chunk stays as it is: runs end before it and start after it.
        if chunk.reader.is_cold() {
            runs.push(&chunks[start..i]);
            (start, rows) = (i + 1, 0);
            continue;
        }
        let n = chunk.reader.footer.row_count;
        if i > start && rows + n > rows_max {
            runs.push(&chunks[start..i]);
            start = i;
            rows = 0;
        }
        rows += n;
    }
    runs.push(&chunks[start..]);
    runs.retain(|r| r.len() >= 2);
    runs
}

/// Merges `chunks` (adjacent in age) into one.
fn compact_run(shared: &Shared, table: TableId, partition_start_ns: i64, chunks: &[Arc<ChunkHandle>]) -> Result<MaintenanceReport> {
    let all = Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None };
    let sets = chunks.iter().map(|c| c.reader.read(&all)).collect::<Result<Vec<_>>>()?;
    let mut merged = RowSet::merge(sets);
    let schema = schema_of(shared, table)?;
    // Dropped columns' values are left behind.
    merged.columns.retain(|c| schema.column_by_id(c.id).is_some());
    let generation = chunks.iter().map(|c| c.reader.footer.generation).max().expect("runs hold two chunks or more");
    let identity = ChunkIdentity { table, partition_start_ns, generation };
    let new = write_new_chunk(shared, identity, &merged, &schema)?;
    let mut ops: Vec<Op> = new.ops().collect();
    ops.extend(chunks.iter().map(|c| Op::DeleteChunk(c.id)));
    let NewChunk { entry, handle, .. } = new;
    if let Err(e) = shared.store.commit(&ops, true) {
        remove_files(shared, [(table, entry.id)]);
        return Err(e);
    }
    {
        let mut state = shared.state.write();
        for c in chunks {
            state.chunks.remove(&c.id);
        }
        state.chunks.insert(entry.id, handle);
    }
    // Scans holding the old chunks keep reading their open files.
    remove_chunks(shared, chunks);
    shared.metrics.compactions.fetch_add(1, Ordering::Relaxed);
    Ok(MaintenanceReport {
        chunks_written: 1,
        chunks_removed: chunks.len(),
        rows_written: entry.row_count,
        bytes_written: entry.size_bytes,
    })
}

/// Deletes the chunks whose rows have all expired (see [`Registry::retention_cutoff_ns`]):
/// their catalog entries in one commit, then their files. Scans already hide expired rows of
/// the chunks that remain and of the buffer. Returns how many chunks it deleted.
///
/// [`Registry::retention_cutoff_ns`]: crate::registry::Registry::retention_cutoff_ns
pub(crate) fn expire(shared: &Shared) -> Result<usize> {
    let cutoffs: FxHashMap<TableId, i64> = {
        let registry = shared.registry.lock();
        registry.tables().filter_map(|t| Some((t.id, registry.retention_cutoff_ns(t.id, &shared.config)?))).collect()
    };
    if cutoffs.is_empty() {
        return Ok(0);
    }
    let _maintenance = shared.maintenance.lock();
    let expired: Vec<Arc<ChunkHandle>> = {
        let state = shared.state.read();
        let gone = |c: &&Arc<ChunkHandle>| cutoffs.get(&c.table()).is_some_and(|cutoff| c.reader.footer.time_max < *cutoff);
        state.chunks.values().filter(gone).cloned().collect()
    };
    if expired.is_empty() {
        return Ok(0);
    }
    let ops: Vec<Op> = expired.iter().map(|c| Op::DeleteChunk(c.id)).collect();
    shared.store.commit(&ops, true)?;
    {
        let mut state = shared.state.write();
        for c in &expired {
            state.chunks.remove(&c.id);
        }
    }
    remove_chunks(shared, &expired);
    shared.metrics.chunks_expired.fetch_add(expired.len() as u64, Ordering::Relaxed);
    Ok(expired.len())
}

/// The schema of `table`, or `None` when it was dropped.
fn live_schema_of(shared: &Shared, table: TableId) -> Result<Option<TableSchema>> {
    let registry = shared.registry.lock();
    match registry.table_by_id(table) {
        Some(schema) => Ok(Some(schema.clone())),
        None if registry.is_dropped(table) => Ok(None),
        None => Err(Error::Internal(format!("rows of table {} without a schema", table.0))),
    }
}

fn schema_of(shared: &Shared, table: TableId) -> Result<TableSchema> {
    shared.registry.lock().table_by_id(table).cloned().ok_or_else(|| Error::Internal(format!("rows of table {} without a schema", table.0)))
}

/// A chunk written and checked, not yet in the catalog.
pub(crate) struct NewChunk {
    pub(crate) entry: ChunkEntry,
    pub(crate) handle: Arc<ChunkHandle>,
    /// Its newest row of each series, for the catalog.
    latest: Vec<u8>,
}

impl NewChunk {
    /// What puts it in the catalog.
    pub(crate) fn ops(&self) -> impl Iterator<Item = Op> {
        [Op::PutChunk(self.entry.id, self.entry.encode()), Op::PutChunkLatest(self.entry.id, self.latest.clone())].into_iter()
    }
}

pub(crate) fn write_new_chunk(shared: &Shared, identity: ChunkIdentity, rows: &RowSet, schema: &TableSchema) -> Result<NewChunk> {
    let id = ChunkId(shared.next_chunk.fetch_add(1, Ordering::SeqCst));
    let path = shared.chunk_path(identity.table, id);
    let (_, size_bytes) = write_chunk(&path, identity, rows, schema, &shared.config.chunk)?;
    // Reopening checks what was written, the pair of the checks made when it is read again.
    let reader = ChunkReader::open(&path)?;
    let entry = ChunkEntry {
        id,
        table: identity.table,
        partition_start_ns: identity.partition_start_ns,
        generation: identity.generation,
        row_count: reader.footer.row_count,
        size_bytes,
        location: crate::catalog::ChunkLocation::Local,
    };
    let handle = Arc::new(ChunkHandle { id, reader, moved_at_ns: None });
    Ok(NewChunk { entry, handle, latest: chunk_latest(identity.table, rows) })
}

/// Removes chunks deleted from the catalog: a local file (best effort: one left behind is an
/// orphan, removed at the next open), or a cold chunk's object (in the background: one left
/// behind is removed by the next sweep), kept footer and cached blocks.
pub(crate) fn remove_chunks<'a>(shared: &Shared, chunks: impl IntoIterator<Item = &'a Arc<ChunkHandle>>) {
    for chunk in chunks {
        match (&shared.cold, chunk.reader.is_cold()) {
            (Some(cold), true) => {
                cold.delete_later(cold.key(chunk.table(), chunk.id));
                cold.cache.forget_chunk(chunk.id);
                let _ = std::fs::remove_file(shared.cold_footer_path(chunk.id));
            }
            _ => remove_files(shared, [(chunk.table(), chunk.id)]),
        }
    }
}

/// Best-effort removal: a file left behind is an orphan, removed at the next open.
pub(crate) fn remove_files(shared: &Shared, files: impl IntoIterator<Item = (TableId, ChunkId)>) {
    for (table, id) in files {
        let _ = std::fs::remove_file(shared.chunk_path(table, id));
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{FieldValue, Point, WriteBatch};
    use crate::{Storage, StorageConfig};

    const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;

    /// Writes one row of series `s` at `time` and persists it when `persist`.
    fn write(storage: &Storage, time: i64, persist: bool) {
        let mut batch = WriteBatch::new();
        batch.push("m", Point::new(time).tag("s", "a").field("v", FieldValue::F64(1.0)));
        storage.write(&batch).expect("write");
        if persist {
            storage.persist().expect("persist");
        }
    }

    /// A partition the write buffer holds rows of waits for the higher trigger; the others are
    /// merged at the lower one.
    #[test]
    fn partitions_still_written_wait_for_more_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        for time in [1, 2, DAY_NS + 1, DAY_NS + 2] {
            write(&storage, time, true);
        }
        write(&storage, 3, false);
        let report = super::compact(&storage.shared, 2, 3).expect("compact");
        assert_eq!((report.chunks_removed, report.chunks_written), (2, 1), "only the second day, which takes no writes");
        storage.persist().expect("persist");
        write(&storage, 4, false);
        let report = super::compact(&storage.shared, 2, 3).expect("compact");
        assert_eq!((report.chunks_removed, report.chunks_written), (3, 1), "the first day, still written, at three chunks");
        assert_eq!(super::compact(&storage.shared, 2, 3).expect("compact"), super::MaintenanceReport::default());
    }
}
