//! Moving chunks to the cold store, opening cold chunks, and sweeping what interrupted moves
//! left behind.
//!
//! A chunk moves once its newest row is older than its table's `cold_after` (measured, as
//! retention is, against the table's clock). The move is crash-safe, with one copy
//! authoritative at every instant:
//!
//! 1. upload the file unchanged, create-only (a key left by an earlier, interrupted move of the
//!    same chunk holds the same bytes: chunk ids are never given again), and check the object's
//!    size and last bytes;
//! 2. keep the chunk's footer and trailer under `cold-footers/`, synced, so opening the engine
//!    needs no request to the store;
//! 3. one synced catalog commit marks the chunk cold (under the maintenance lock, and only if
//!    no compaction, delete or drop removed the chunk meanwhile), and scans switch to it;
//! 4. delete the local file.
//!
//! A crash before 3 leaves the local file authoritative: the object is an orphan, deleted by
//! the sweep (a listing of the store at the start of tiering), and the kept footer is deleted
//! at open. A crash after 3 leaves the object authoritative, and open deletes the local file.
//! Uploads happen without any lock that writers or persists take, so a slow or unreachable
//! store delays only the moves, which retry with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::catalog::{ChunkEntry, ChunkLocation, Op};
use crate::chunk::ChunkReader;
use crate::cold::ColdStore;
use crate::engine::{ChunkHandle, Shared};
use crate::error::{Error, Result, io_err};
use crate::model::ChunkId;

/// Chunks moved in one round at most, before the backlog is counted again.
const MOVES_PER_ROUND_MAX: usize = 64;
/// How often the tiering thread looks for chunks to move, at most (and at least as often as
/// the buffer is persisted).
const TIER_PERIOD: Duration = Duration::from_secs(10);
/// Longest wait between attempts while the store fails.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Moves due chunks, and writes the lake's closed days, every [`TIER_PERIOD`] until stopped, the
/// first round after a sweep; after a failure, waits twice as long each time, up to
/// [`BACKOFF_MAX`].
pub(crate) fn run_tiering(shared: &Shared, stop: &Receiver<()>) {
    let mut swept = false;
    let mut wait = Duration::ZERO;
    let period = TIER_PERIOD.min(Duration::from_millis(shared.config.persist_interval_ms));
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            default(wait) => {},
        }
        let result = match swept {
            true => tier(shared).and_then(|_| crate::lake::export(shared)).map(drop),
            false => sweep(shared).map(|_| swept = true),
        };
        wait = match &result {
            Ok(()) if swept => period,
            Ok(()) => Duration::ZERO,
            Err(_) => (wait * 2).clamp(Duration::from_secs(1), BACKOFF_MAX),
        };
        shared.background_result("tiering", result);
    }
}

/// Moves the chunks due to the cold store, oldest first; returns how many moved.
pub(crate) fn tier(shared: &Shared) -> Result<usize> {
    let Some(cold) = &shared.cold else { return Ok(0) };
    let mut moved = 0;
    for chunk in due(shared).iter().take(MOVES_PER_ROUND_MAX) {
        if move_chunk(shared, cold, chunk)? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// Local chunks whose newest row is older than their table's `cold_after`, oldest first: the
/// backlog of moves.
pub(crate) fn due(shared: &Shared) -> Vec<Arc<ChunkHandle>> {
    let cutoffs: crate::fxhash::FxHashMap<_, i64> = {
        let registry = shared.registry.lock();
        registry.tables().filter_map(|t| Some((t.id, registry.cold_cutoff_ns(t.id, &shared.config)?))).collect()
    };
    let state = shared.state.read();
    let mut due: Vec<Arc<ChunkHandle>> = state
        .chunks
        .values()
        .filter(|c| !c.reader.is_cold() && cutoffs.get(&c.table()).is_some_and(|cutoff| c.reader.footer.time_max < *cutoff))
        .cloned()
        .collect();
    due.sort_by_key(|c| (c.reader.footer.time_max, c.id));
    due
}

/// Moves one chunk; false when it went (compacted, deleted) while it was uploaded.
fn move_chunk(shared: &Shared, cold: &Arc<ColdStore>, chunk: &Arc<ChunkHandle>) -> Result<bool> {
    let key = cold.key(chunk.table(), chunk.id);
    shared.moving.lock().insert(chunk.id);
    let _moved = Unmark(shared, chunk.id);
    let path = shared.chunk_path(chunk.table(), chunk.id);
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    let tail = chunk.reader.tail()?;
    cold.upload(&key, bytes)?;
    cold.check(&key, chunk.reader.size_bytes, &tail)?;
    let footer_path = shared.cold_footer_path(chunk.id);
    write_synced(&footer_path, &tail)?;
    let _maintenance = shared.maintenance.lock();
    if shared.state.read().chunks.get(&chunk.id).is_none_or(|c| c.reader.is_cold()) {
        cold.delete_later(key);
        let _ = std::fs::remove_file(&footer_path);
        return Ok(false);
    }
    let moved_at_ns = crate::registry::now_ns();
    let handle = ChunkHandle { id: chunk.id, reader: chunk.reader.moved(Arc::clone(cold), key, chunk.id), moved_at_ns: Some(moved_at_ns) };
    shared.store.commit(&[Op::PutChunk(chunk.id, handle.entry().encode())], true)?;
    shared.state.write().chunks.insert(chunk.id, Arc::new(handle));
    // Scans still reading the local file keep it open.
    let _ = std::fs::remove_file(&path);
    cold.metrics.chunks_moved.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// Takes a chunk off the list of those moving when dropped.
struct Unmark<'a>(&'a Shared, ChunkId);

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        self.0.moving.lock().remove(&self.1);
    }
}

fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_err("create", path))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_err("write", path))
}

/// Opens cold chunk `entry`, its footer from the kept copy (or fetched when it is missing).
pub(crate) fn open_cold(shared: &Shared, entry: &ChunkEntry) -> Result<ChunkReader> {
    let cold = shared.cold.as_ref().ok_or_else(|| Error::Internal("a cold chunk without a cold store".into()))?;
    let kept = std::fs::read(shared.cold_footer_path(entry.id)).ok();
    ChunkReader::open_cold(Arc::clone(cold), cold.key(entry.table, entry.id), entry.id, entry.size_bytes, kept)
}

/// Deletes kept footers of chunks that are not cold (a move that crashed before its commit).
pub(crate) fn remove_stray_footers(shared: &Shared, entries: &[ChunkEntry]) -> Result<()> {
    let Ok(files) = std::fs::read_dir(&shared.cold_footer_dir) else { return Ok(()) };
    let cold: std::collections::HashSet<std::path::PathBuf> =
        entries.iter().filter(|e| matches!(e.location, ChunkLocation::Cold { .. })).map(|e| shared.cold_footer_path(e.id)).collect();
    for file in files {
        let path = file.map_err(io_err("list", &shared.cold_footer_dir))?.path();
        if !cold.contains(&path) {
            std::fs::remove_file(&path).map_err(io_err("remove stray footer", &path))?;
        }
    }
    Ok(())
}

/// Deletes the objects of the cold store that are no cold chunk of the catalog: left by a move
/// that crashed before its commit, or by a delete that failed. Runs before any move of this
/// process starts. Returns how many it deleted.
pub(crate) fn sweep(shared: &Shared) -> Result<usize> {
    let Some(cold) = &shared.cold else { return Ok(0) };
    let cold_chunks: std::collections::HashSet<ChunkId> =
        shared.store.chunks()?.into_iter().filter(|e| matches!(e.location, ChunkLocation::Cold { .. })).map(|e| e.id).collect();
    let mut deleted = cold.remove_staged_uploads()?;
    for (key, _, id) in cold.list_chunks()? {
        if !cold_chunks.contains(&id) {
            cold.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
