//! [`Storage`]: opening, recovery, the write path's entry point and background work.
//!
//! Threads: the committer (see [`crate::commit`]); when `background_persist` is on, a
//! persister that persists the buffer when it is full or old and compacts partitions with many
//! chunks; and, when rollups are on, the rollup maintainer (see [`crate::rollup::maintain`]).
//! Everything else runs on the caller's thread: the API is synchronous.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::TableRows;
use crate::buffer::{Buffer, Frozen};
use crate::catalog::{CatalogStore, ChunkEntry, ChunkLocation, Op};
use crate::chunk::ChunkReader;
use crate::commit::{CommitRequest, run_committer};
use crate::config::StorageConfig;
use crate::disk::DiskGuard;
use crate::error::{Error, Result, io_err};
use crate::latest::Latest;
use crate::model::{ChunkId, SeriesId, TableId, WalSequence, WriteBatch, WriteReceipt};
use crate::registry::{Prepared, Registry};
use crate::schema::{ColumnKind, TableSchema};
use crate::wal;

/// Least time between two rewrites of the rollup windows that took late rows.
const ROLLUP_DIRTY_PERIOD: Duration = Duration::from_millis(250);

/// A chunk file in use, with its catalog identity.
#[derive(Debug)]
pub(crate) struct ChunkHandle {
    pub(crate) id: ChunkId,
    pub(crate) reader: ChunkReader,
    /// When it moved to the cold store; `None` while it is local.
    pub(crate) moved_at_ns: Option<i64>,
}

impl ChunkHandle {
    pub(crate) fn table(&self) -> TableId {
        self.reader.footer.table
    }
    pub(crate) fn partition_start_ns(&self) -> i64 {
        self.reader.footer.partition_start_ns
    }
    /// Orders chunks from oldest to newest for last-write-wins.
    pub(crate) fn age_key(&self) -> (u64, ChunkId) {
        (self.reader.footer.generation, self.id)
    }

    /// Its catalog entry.
    pub(crate) fn entry(&self) -> ChunkEntry {
        let footer = &self.reader.footer;
        ChunkEntry {
            id: self.id,
            table: footer.table,
            partition_start_ns: footer.partition_start_ns,
            generation: footer.generation,
            row_count: footer.row_count,
            size_bytes: self.reader.size_bytes,
            location: self.moved_at_ns.map_or(ChunkLocation::Local, |moved_at_ns| ChunkLocation::Cold { moved_at_ns }),
        }
    }
}

/// What a scan sees: the buffers and the chunk list, swapped together by persists.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) active: Buffer,
    /// The buffer being persisted, still visible to scans.
    pub(crate) frozen: Option<Arc<Frozen>>,
    pub(crate) frozen_sequence: WalSequence,
    pub(crate) chunks: BTreeMap<ChunkId, Arc<ChunkHandle>>,
    pub(crate) applied_sequence: WalSequence,
    /// The newest row of every series.
    pub(crate) latest: Latest,
}

/// Whether the engine can write; see [`Storage::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes are accepted and background work keeps up.
    Ok,
    /// Writes are accepted, but background work is failing and being retried: the write
    /// buffer fills, and writers will wait once it is full.
    BackgroundFailing(String),
    /// A WAL write or fsync failed: every write is refused until the engine is reopened, since
    /// what the failed fsync covered may not be on disk.
    WritesRefused(String),
    /// The disk is nearly full (below `disk_free_min_bytes`): writes are refused until space
    /// is freed, and then resume by themselves.
    DiskFull(String),
}

impl Health {
    /// The state's name, for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BackgroundFailing(_) => "background_failing",
            Self::WritesRefused(_) => "writes_refused",
            Self::DiskFull(_) => "disk_full",
        }
    }
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct Metrics {
    pub rows_written: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    /// How long writes took, from waiting for the registry to their rows being durable and in
    /// the buffer: preparing, the commit queue, their group's WAL write and fsync.
    pub write_latency: crate::LatencyHistogram,
    pub persists: AtomicU64,
    pub compactions: AtomicU64,
    /// Chunks deleted because all their rows were past their table's retention.
    pub chunks_expired: AtomicU64,
    /// Background persists or compactions that failed; see [`Storage::background_error`].
    pub background_failures: AtomicU64,
    pub writer_waits: AtomicU64,
    /// Rollup windows written final, and again after late rows.
    pub rollup_windows_final: AtomicU64,
    /// Final windows not handed to the watcher of [`Storage::final_windows`] because its queue
    /// was full.
    pub rollup_windows_unwatched: AtomicU64,
    /// Reads answered from the newest row of each series ([`Storage::latest`]).
    pub latest_reads: AtomicU64,
}

/// State shared by the API and the background threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: StorageConfig,
    pub(crate) store: CatalogStore,
    pub(crate) chunk_dir: PathBuf,
    /// Shared with scans, which read tag values from it ([`crate::scan::Scan::tags`]).
    pub(crate) registry: Arc<Mutex<Registry>>,
    pub(crate) state: RwLock<State>,
    pub(crate) next_chunk: AtomicU64,
    pub(crate) metrics: Metrics,
    /// Held by a persist or compaction; one at a time.
    pub(crate) maintenance: Mutex<()>,
    poison: Mutex<Option<String>>,
    /// The last failure of each kind of background work, until that work next succeeds.
    background_errors: Mutex<BTreeMap<&'static str, String>>,
    /// Chunks left out at open because they failed their checks.
    quarantined: Mutex<Vec<String>>,
    /// Refuses writes while the disk is nearly full.
    disk: DiskGuard,
    memory: Mutex<()>,
    memory_freed: Condvar,
    persist_kick: Sender<()>,
    /// Wakes the rollup maintainer.
    pub(crate) rollup_kick: Sender<()>,
    /// Held by a round of rollup maintenance; one at a time.
    pub(crate) rollup_maintenance: Mutex<()>,
    /// Where final rollup windows go, if anyone watches them.
    pub(crate) final_windows: Mutex<Option<Sender<crate::rollup::FinalWindow>>>,
    /// The cold store, when chunks move there or some are there.
    pub(crate) cold: Option<Arc<crate::cold::ColdStore>>,
    /// Where cold chunks' footers and trailers are kept: `<data_dir>/cold-footers`.
    pub(crate) cold_footer_dir: PathBuf,
    /// Chunks being moved to the cold store.
    pub(crate) moving: Mutex<std::collections::BTreeSet<ChunkId>>,
    /// See [`Storage::plan_generation`].
    plan_generation: AtomicU64,
    /// See [`Storage::schema_generation`].
    schema_generation: AtomicU64,
    /// Writes from asking for the registry lock until queued for the committer, which waits
    /// for them to share its fsync, and for nothing else.
    pub(crate) preparing_writes: AtomicUsize,
}

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poison.lock().clone()
    }

    pub(crate) fn poison(&self, reason: String) {
        self.poison.lock().get_or_insert(reason);
        self.memory_freed.notify_all();
    }

    /// Records how background work of `kind` (`persist`, `expire`, `rollup`) ended: a
    /// failure is kept, and reported by [`Storage::health`], until the same work succeeds.
    pub(crate) fn background_result<T>(&self, kind: &'static str, result: Result<T>) {
        match result {
            Ok(_) => {
                self.background_errors.lock().remove(kind);
            }
            Err(e) => {
                self.metrics.background_failures.fetch_add(1, Ordering::Relaxed);
                self.background_errors.lock().insert(kind, e.to_string());
            }
        }
    }

    fn buffered_bytes(&self) -> u64 {
        let state = self.state.read();
        state.active.bytes + state.frozen.as_ref().map_or(0, |f| f.bytes)
    }

    /// Wakes the persister when the active buffer is due for persisting.
    pub(crate) fn kick_persist_if_full(&self) {
        if self.state.read().active.bytes >= self.config.persist_buffer_bytes {
            let _ = self.persist_kick.try_send(());
        }
    }

    /// Blocks while the write buffer is at its limit (backpressure), until a persist frees it.
    fn wait_for_memory(&self) -> Result<()> {
        let mut guard = self.memory.lock();
        let mut waited = false;
        while self.buffered_bytes() >= self.config.write_buffer_bytes_max {
            if let Some(reason) = self.poisoned() {
                return Err(Error::Poisoned(reason));
            }
            if !waited {
                self.metrics.writer_waits.fetch_add(1, Ordering::Relaxed);
                waited = true;
            }
            let _ = self.persist_kick.try_send(());
            self.memory_freed.wait_for(&mut guard, Duration::from_millis(50));
        }
        Ok(())
    }

    pub(crate) fn notify_memory_freed(&self) {
        let _guard = self.memory.lock();
        self.memory_freed.notify_all();
    }

    pub(crate) fn chunk_path(&self, table: TableId, id: ChunkId) -> PathBuf {
        chunk_path(&self.chunk_dir, table, id)
    }

    /// Where the footer and trailer of cold chunk `id` are kept on local disk.
    pub(crate) fn cold_footer_path(&self, id: ChunkId) -> PathBuf {
        self.cold_footer_dir.join(format!("{:016x}.tail", id.0))
    }

    /// Where a damaged chunk file is moved: `quarantine/` beside `chunks/`, same layout.
    pub(crate) fn quarantine_path(&self, chunk: &std::path::Path) -> PathBuf {
        let root = self.chunk_dir.parent().unwrap_or(&self.chunk_dir);
        let relative = chunk.strip_prefix(&self.chunk_dir).unwrap_or(chunk);
        root.join("quarantine").join(relative)
    }
}

/// A series' tags: (column name, value) pairs.
pub type Tags = Vec<(String, String)>;

/// Where chunk `id` of `table` lives under `chunk_dir`.
pub(crate) fn chunk_path(chunk_dir: &std::path::Path, table: TableId, id: ChunkId) -> PathBuf {
    chunk_dir.join(table.0.to_string()).join(format!("{:016x}.chunk", id.0))
}

/// The storage engine. Cheap to clone; all clones share one engine.
#[derive(Debug, Clone)]
pub struct Storage {
    pub(crate) shared: Arc<Shared>,
    handle: Arc<Handle>,
}

/// Owns the background threads; stopping them when the last clone of [`Storage`] is dropped.
#[derive(Debug)]
struct Handle {
    commit_tx: Mutex<Option<Sender<CommitRequest>>>,
    stop_tx: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.commit_tx.lock().take();
        self.stop_tx.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Storage {
    /// Opens (or creates) the engine under `config.data_dir`: loads the catalog, opens every
    /// chunk, removes files no catalog entry names, and replays the WAL into the buffer.
    pub fn open(config: StorageConfig) -> Result<Self> {
        config.validate()?;
        let root = config.data_dir.clone();
        fs::create_dir_all(&root).map_err(io_err("create directory", &root))?;
        let store = CatalogStore::open(&root.join("catalog"), config.write_buffer_bytes_max)?;
        let chunk_dir = root.join("chunks");
        fs::create_dir_all(&chunk_dir).map_err(io_err("create directory", &chunk_dir))?;
        let cold_footer_dir = root.join("cold-footers");
        let has_cold = store.chunks()?.iter().any(|e| matches!(e.location, ChunkLocation::Cold { .. }));
        let cold = match config.tiers() || has_cold {
            true => {
                fs::create_dir_all(&cold_footer_dir).map_err(io_err("create directory", &cold_footer_dir))?;
                Some(Arc::new(crate::cold::ColdStore::open(&config)?))
            }
            false => None,
        };
        let (rollups, dirty) = store.rollups()?;
        let (mut registry, reopened) = Registry::load(store.tables()?, store.dropped()?, store.series()?, rollups, dirty, &config);
        let (persist_kick, kick_rx) = bounded(1);
        let (rollup_kick, rollup_kick_rx) = bounded(1);
        let (commit_tx, commit_rx) = bounded(config.commit_queue_len_max);
        let disk = DiskGuard::new(root.clone(), config.disk_free_min_bytes);
        let shared = Arc::new(Shared {
            config,
            store,
            chunk_dir,
            registry: Arc::new(Mutex::new(Registry::default())),
            state: RwLock::new(State::default()),
            next_chunk: AtomicU64::new(0),
            metrics: Metrics::default(),
            maintenance: Mutex::new(()),
            poison: Mutex::new(None),
            background_errors: Mutex::new(BTreeMap::new()),
            quarantined: Mutex::new(Vec::new()),
            disk,
            memory: Mutex::new(()),
            memory_freed: Condvar::new(),
            persist_kick,
            rollup_kick,
            rollup_maintenance: Mutex::new(()),
            final_windows: Mutex::new(None),
            cold,
            cold_footer_dir,
            moving: Mutex::new(std::collections::BTreeSet::new()),
            plan_generation: AtomicU64::new(0),
            schema_generation: AtomicU64::new(0),
            preparing_writes: AtomicUsize::new(0),
        });
        let (chunks, next_chunk, newest_generation) = open_chunks(&shared, &registry)?;
        for chunk in chunks.values() {
            registry.note_time(chunk.table(), chunk.reader.footer.time_max);
        }
        let latest = Latest::rebuild(&shared.store, &chunks)?;
        let mut state = State { chunks, latest, ..State::default() };
        let mut last = WalSequence(newest_generation);
        shared.store.replay_wal(|seq, bytes| {
            let mut tables = wal::decode(bytes)?;
            // Rows of tables dropped since belong to no table.
            tables.retain(|t| !registry.is_dropped(t.table));
            registry.check_logged(&tables).map_err(|reason| crate::error::DecodeError::new(0, reason))?;
            for t in &tables {
                registry.note_rows(t.table, &t.rows);
            }
            state.latest.note(&tables);
            state.active.apply(tables);
            last = last.max(seq);
            Ok(())
        })?;
        state.latest.sort();
        state.applied_sequence = last;
        registry.next_sequence = last.0 + 1;
        *shared.state.write() = state;
        *shared.registry.lock() = registry;
        shared.next_chunk.store(next_chunk, Ordering::SeqCst);

        let mut threads = Vec::new();
        let committer = Arc::clone(&shared);
        threads.push(spawn("isobar-commit", move || run_committer(committer, commit_rx))?);
        let (stop_tx, stop_rx) = bounded::<()>(0);
        if shared.config.background_persist {
            let (persister, stop_rx) = (Arc::clone(&shared), stop_rx.clone());
            threads.push(spawn("isobar-persist", move || run_persister(&persister, &kick_rx, &stop_rx))?);
        }
        if shared.config.background_persist && shared.cold.is_some() {
            let (tierer, stop_rx) = (Arc::clone(&shared), stop_rx.clone());
            threads.push(spawn("isobar-tier", move || crate::cold::tier::run_tiering(&tierer, &stop_rx))?);
        }
        let maintainer_tx = commit_tx.clone();
        let handle = Handle { commit_tx: Mutex::new(Some(commit_tx)), stop_tx: Mutex::new(Some(stop_tx)), threads: Mutex::new(threads) };
        let storage = Self { shared, handle: Arc::new(handle) };
        // The open windows are rebuilt before the maintainer starts: a round between two groups
        // of series read would move the frontier past rows of the groups not yet read.
        crate::rollup::maintain::start(&storage, reopened)?;
        if storage.shared.config.has_rollups() && storage.shared.config.background_persist {
            let maintainer = Arc::clone(&storage.shared);
            let thread = spawn("isobar-rollup", move || run_rollups(&maintainer, &maintainer_tx, &rollup_kick_rx, &stop_rx))?;
            storage.handle.threads.lock().push(thread);
        }
        Ok(storage)
    }

    /// Writes `batch` and returns once it is durable: its rows and source positions are in
    /// the WAL on stable storage. Points that cannot be written are listed in the receipt with
    /// their reason; the others are written. Waits while the write buffer is full.
    pub fn write(&self, batch: &WriteBatch) -> Result<WriteReceipt> {
        self.write_then(batch, || {})
    }

    /// [`Self::write`], calling `prepared` once the write has its place in the commit order
    /// (or has failed before taking one): a write started after `prepared` is called commits
    /// after this one, so its rows win where both write a series at the same time. A writer
    /// that prepares the parts of one request on several threads keeps their order with it.
    pub fn write_then(&self, batch: &WriteBatch, prepared: impl FnOnce()) -> Result<WriteReceipt> {
        let shared = &self.shared;
        // Called by the commit once prepared, or when dropped on a return before that.
        let prepared = CallOnDrop(Some(prepared));
        if let Some(reason) = shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        shared.wait_for_memory()?;
        let prepare = |registry: &mut Registry| registry.prepare(batch, &shared.config);
        let receipt = commit_then(shared, &self.commit_sender()?, prepare, move || drop(prepared))?;
        let m = &shared.metrics;
        m.rows_written.fetch_add(receipt.rows_written, Ordering::Relaxed);
        m.rows_rejected.fetch_add(receipt.rejected.len() as u64, Ordering::Relaxed);
        Ok(receipt)
    }

    /// Creates `table` with declared tag and field columns (in this order, after `time`) and
    /// returns once its definition is durable. Later writes may still add columns.
    pub fn create_table(&self, table: &str, columns: &[(String, ColumnKind)]) -> Result<TableSchema> {
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        self.commit(|registry| registry.define_table(table, columns, &self.shared.config))?;
        self.table(table).ok_or_else(|| Error::Internal(format!("table {table} missing after its creation")))
    }

    pub(crate) fn commit(&self, prepare: impl FnOnce(&mut Registry) -> Result<Prepared>) -> Result<WriteReceipt> {
        commit(&self.shared, &self.commit_sender()?, prepare)
    }

    /// The committer's queue.
    pub(crate) fn commit_sender(&self) -> Result<Sender<CommitRequest>> {
        self.handle.commit_tx.lock().clone().ok_or(Error::Closed)
    }

    /// The schema of `table`.
    pub fn table(&self, table: &str) -> Option<TableSchema> {
        self.shared.registry.lock().table(table).cloned()
    }

    /// The time before which `table`'s rows are past its retention (scans leave them out);
    /// `None` when it keeps every row.
    pub fn retention_cutoff_ns(&self, table: &str) -> Option<i64> {
        let registry = self.shared.registry.lock();
        registry.retention_cutoff_ns(registry.table(table)?.id, &self.shared.config)
    }

    /// A number that changes whenever something a query plan is made from changes: a table,
    /// column, series or rollup is created, or a rollup's frontier moves. Rows written or expired do
    /// not change it (scans read them when they run); retention cutoffs do not either
    /// ([`Storage::retention_cutoff_ns`] tells them).
    pub fn plan_generation(&self) -> u64 {
        self.shared.plan_generation.load(Ordering::SeqCst)
    }

    /// A number that changes whenever a table is created, dropped or renamed, or gains, loses
    /// or renames a column: a statement planned before it changed is planned again (as
    /// PostgreSQL re-plans a prepared statement after DDL).
    pub fn schema_generation(&self) -> u64 {
        self.shared.schema_generation.load(Ordering::SeqCst)
    }

    /// Every table's schema, by name.
    pub fn tables(&self) -> Vec<TableSchema> {
        let mut out: Vec<TableSchema> = self.shared.registry.lock().tables().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The series of `table` with their tags (name, value), in id order.
    pub fn series(&self, table: &str) -> Result<Vec<(SeriesId, Tags)>> {
        let registry = self.shared.registry.lock();
        let schema = registry.table(table).ok_or_else(|| Error::InvalidRequest(format!("no table {table}")))?;
        Ok(registry
            .series_of(schema.id)
            .into_iter()
            .map(|s| {
                let tags = s.tags.iter().filter_map(|(id, v)| Some((schema.column_by_id(*id)?.name.clone(), v.clone())));
                (s.id, tags.collect())
            })
            .collect())
    }

    /// The last position committed for `source`.
    pub fn position(&self, source: &str) -> Result<Option<Vec<u8>>> {
        self.shared.store.position(source)
    }

    /// Every source's last committed position.
    pub fn positions(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.shared.store.positions()
    }

    /// Counters since open.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Bytes of the catalog directory's files (RocksDB: the WAL, schemas, series, chunk entries).
    pub fn catalog_bytes(&self) -> u64 {
        std::fs::read_dir(self.shared.config.data_dir.join("catalog"))
            .map(|dir| dir.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// Width of a time partition, in nanoseconds: a scan reads each partition's rows apart.
    pub fn partition_ns(&self) -> i64 {
        self.shared.config.partition_ns()
    }

    /// Bytes of rows in the write buffer: written to the WAL and not yet persisted into chunks.
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.buffered_bytes()
    }

    /// Whether the engine can write, and if not why: a failed WAL write or fsync stops all
    /// writes until the engine is reopened; failing background work (persist, compaction,
    /// expiry, rollup maintenance) is retried, and reported until a retry succeeds.
    pub fn health(&self) -> Health {
        if let Some(reason) = self.shared.poisoned() {
            return Health::WritesRefused(reason);
        }
        if let Err(e) = self.shared.disk.check() {
            return Health::DiskFull(e.to_string());
        }
        let errors = self.shared.background_errors.lock();
        match errors.is_empty() {
            true => Health::Ok,
            false => Health::BackgroundFailing(errors.iter().map(|(kind, e)| format!("{kind}: {e}")).collect::<Vec<_>>().join("; ")),
        }
    }

    /// The chunks left out at open because they failed their checks, each with where it was
    /// moved and why. Their rows are missing from queries until an operator restores them.
    pub fn quarantined(&self) -> Vec<String> {
        self.shared.quarantined.lock().clone()
    }

    /// Reads every block of every chunk and checks it.
    pub fn verify(&self) -> Result<()> {
        let chunks: Vec<Arc<ChunkHandle>> = self.shared.state.read().chunks.values().cloned().collect();
        chunks.iter().try_for_each(|c| c.reader.verify())
    }

    /// Stops the background threads, optionally persisting the buffer first, and flushes
    /// the catalog. Other clones of this handle keep the engine open.
    pub fn close(self, persist: bool) -> Result<()> {
        if persist {
            self.persist()?;
        }
        self.shared.store.flush()?;
        drop(self);
        Ok(())
    }
}

/// Prepares a write under the registry lock (which fixes its WAL sequence), queues it on `tx`
/// for the committer in sequence order, and waits until it is durable. Wakes the rollup
/// maintainer when the write made windows due.
pub(crate) fn commit(
    shared: &Shared,
    tx: &Sender<CommitRequest>,
    prepare: impl FnOnce(&mut Registry) -> Result<Prepared>,
) -> Result<WriteReceipt> {
    commit_then(shared, tx, prepare, || {})
}

/// [`commit`], calling `prepared` once `prepare` has run, whatever it returned (a write that
/// fails before drops it uncalled): every write prepared after that call takes a later sequence.
pub(crate) fn commit_then(
    shared: &Shared,
    tx: &Sender<CommitRequest>,
    prepare: impl FnOnce(&mut Registry) -> Result<Prepared>,
    prepared: impl FnOnce(),
) -> Result<WriteReceipt> {
    shared.disk.check()?;
    let (done_tx, done_rx) = bounded(1);
    let started = std::time::Instant::now();
    let preparing = Preparing::enter(shared);
    let mut registry = shared.registry.lock();
    let result = prepare(&mut registry);
    prepared();
    let mut prepared = result?;
    if prepared.ops.is_empty() && !prepared.logged {
        return Ok(prepared.receipt);
    }
    // The registry already shows the change (a rollup's frontier moves in memory before its
    // write is prepared), so a plan made under the new generation sees it.
    if prepared.ops.iter().any(|op| matches!(op, Op::Table(..) | Op::Rollup(..) | Op::Series(..) | Op::DropTable(..))) {
        shared.plan_generation.fetch_add(1, Ordering::SeqCst);
    }
    if prepared.ops.iter().any(|op| matches!(op, Op::Table(..) | Op::DropTable(..))) {
        shared.schema_generation.fetch_add(1, Ordering::SeqCst);
    }
    // The rows for open rollup windows merge, and the WAL record is encoded, after the registry
    // lock, while the next writer prepares: the open windows' lock, taken before the registry's
    // is let go and held until the request is queued, keeps both the merges and the queue in
    // sequence order.
    let open_windows = Arc::clone(&registry.open_windows);
    let mut open = open_windows.lock();
    drop(registry);
    for rows in &prepared.open_rows {
        if let Some((_, table_rows)) = prepared.tables.get(rows.table_index) {
            rows.merge(table_rows, &mut open);
        }
    }
    if prepared.logged {
        prepared.ops.push(Op::Wal(prepared.sequence, wal::encode(&prepared.tables)));
    }
    let tables = prepared.tables.into_iter().map(|(table, rows)| TableRows::new(table, rows)).collect();
    let request = CommitRequest { sequence: prepared.sequence, ops: prepared.ops, tables, done: done_tx };
    // Counted out before it is queued, so the committer never waits for the request it holds.
    drop(preparing);
    tx.send(request).map_err(|_| Error::Closed)?;
    drop(open);
    done_rx.recv().map_err(|_| Error::Closed)??;
    shared.metrics.write_latency.record(started.elapsed());
    if prepared.rollups_due {
        let _ = shared.rollup_kick.try_send(());
    }
    Ok(prepared.receipt)
}

/// Calls its function when dropped.
struct CallOnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for CallOnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Counts a write in [`Shared::preparing_writes`] until dropped.
struct Preparing<'a>(&'a AtomicUsize);

impl<'a> Preparing<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.preparing_writes.fetch_add(1, Ordering::SeqCst);
        Self(&shared.preparing_writes)
    }
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Maintains rollups until stopped: finalizes due windows as soon as a write wakes it, and
/// rewrites windows that took late rows every [`ROLLUP_DIRTY_PERIOD`] at most.
fn run_rollups(shared: &Shared, tx: &Sender<CommitRequest>, kick: &Receiver<()>, stop: &Receiver<()>) {
    let mut dirty_done = std::time::Instant::now();
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(kick) -> _ => {},
            default(ROLLUP_DIRTY_PERIOD) => {},
        }
        if shared.poisoned().is_some() {
            continue;
        }
        let dirty = dirty_done.elapsed() >= ROLLUP_DIRTY_PERIOD;
        if dirty {
            dirty_done = std::time::Instant::now();
        }
        shared.background_result("rollup maintenance", crate::rollup::maintain::round(shared, tx, dirty));
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(io_err("spawn thread", name))
}

/// Chunks set aside at open, and the maximum chunk id and generation the catalog names.
type OpenedChunks = (BTreeMap<ChunkId, Arc<ChunkHandle>>, u64, u64);

/// Opens every chunk the catalog lists and deletes chunk files it does not list (left by a
/// persist or compaction that crashed before its commit, or after it, before the delete). A
/// chunk that fails its checks is moved to `quarantine/` (with a note of why) and left out:
/// the engine opens with the rest, and [`Storage::quarantined`] names it. Its catalog entry
/// stays, so moving the file back restores it.
fn open_chunks(shared: &Shared, registry: &Registry) -> Result<OpenedChunks> {
    let entries = shared.store.chunks()?;
    let mut chunks = BTreeMap::new();
    let mut next_chunk = 0u64;
    let mut newest_generation = 0u64;
    let mut quarantined = Vec::new();
    for entry in &entries {
        next_chunk = next_chunk.max(entry.id.0 + 1);
        newest_generation = newest_generation.max(entry.generation);
        if let ChunkLocation::Cold { moved_at_ns } = entry.location {
            let reader = crate::cold::tier::open_cold(shared, entry)?;
            chunks.insert(entry.id, Arc::new(ChunkHandle { id: entry.id, reader, moved_at_ns: Some(moved_at_ns) }));
            continue;
        }
        let path = shared.chunk_path(entry.table, entry.id);
        let aside = shared.quarantine_path(&path);
        if !path.exists() && aside.exists() {
            quarantined.push(format!("{}: quarantined at an earlier start", aside.display()));
            continue;
        }
        match open_chunk(&path, entry, registry) {
            Ok(reader) => {
                chunks.insert(entry.id, Arc::new(ChunkHandle { id: entry.id, reader, moved_at_ns: None }));
            }
            Err(Error::Corrupt { file, offset, reason }) => {
                let why = format!("corrupt at offset {offset}: {reason}");
                quarantine(&file, &aside, &why)?;
                quarantined.push(format!("{}: {why}", aside.display()));
            }
            Err(e) => return Err(e),
        }
    }
    *shared.quarantined.lock() = quarantined;
    // A cold chunk's local file is what a move left before its delete.
    let local = entries.iter().filter(|e| e.location == ChunkLocation::Local);
    let known: std::collections::HashSet<PathBuf> = local.map(|e| shared.chunk_path(e.table, e.id)).collect();
    crate::cold::tier::remove_stray_footers(shared, &entries)?;
    for table_dir in fs::read_dir(&shared.chunk_dir).map_err(io_err("list", &shared.chunk_dir))? {
        let table_dir = table_dir.map_err(io_err("list", &shared.chunk_dir))?.path();
        for file in fs::read_dir(&table_dir).map_err(io_err("list", &table_dir))? {
            let path = file.map_err(io_err("list", &table_dir))?.path();
            if !known.contains(&path) {
                fs::remove_file(&path).map_err(io_err("remove orphaned chunk", &path))?;
            }
        }
    }
    Ok((chunks, next_chunk, newest_generation))
}

/// Opens one chunk and checks it against its catalog entry and its table's schema.
fn open_chunk(path: &std::path::Path, entry: &crate::catalog::ChunkEntry, registry: &Registry) -> Result<ChunkReader> {
    let reader = ChunkReader::open(path)?;
    if reader.footer.table != entry.table || reader.footer.generation != entry.generation {
        return Err(Error::Corrupt { file: path.to_owned(), offset: 0, reason: "chunk does not match its catalog entry".into() });
    }
    let schema = registry.table_by_id(entry.table);
    for column in &reader.footer.columns {
        // A dropped column's values stay in its chunks until they are merged; reads skip them.
        if schema.is_some_and(|s| s.is_dropped_column(column.id)) {
            continue;
        }
        let declared = schema.and_then(|s| s.column_by_id(column.id)).map(|c| c.kind);
        if declared != Some(crate::schema::ColumnKind::Field(column.ty)) {
            let reason = format!("column {} ({}) does not match the table schema", column.name, column.ty);
            return Err(Error::Corrupt { file: path.to_owned(), offset: 0, reason });
        }
    }
    Ok(reader)
}

/// Moves a damaged chunk aside, with a note of why beside it.
fn quarantine(path: &std::path::Path, aside: &std::path::Path, why: &str) -> Result<()> {
    if let Some(dir) = aside.parent() {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    }
    fs::rename(path, aside).map_err(io_err("move to quarantine", path))?;
    let note = aside.with_extension("reason");
    fs::write(&note, format!("{why}\n")).map_err(io_err("write", &note))
}

fn compact(shared: &Shared) -> Result<crate::persist::MaintenanceReport> {
    crate::persist::compact(shared, shared.config.compaction_chunks_trigger, shared.config.compaction_busy_chunks_trigger)
}

/// Persists when kicked (buffer full) or when the oldest buffered row is older than the
/// persist interval; then compacts partitions that reached their trigger (a higher one while
/// the buffer holds rows of them). Each tick, deletes the chunks whose rows have all expired,
/// and compacts the partitions that reached the trigger once their writes stopped.
fn run_persister(shared: &Shared, kick: &Receiver<()>, stop: &Receiver<()>) {
    let interval = Duration::from_millis(shared.config.persist_interval_ms);
    let tick = interval.min(Duration::from_secs(1));
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(kick) -> _ => {},
            default(tick) => {
                shared.background_result("expiry", crate::persist::expire(shared));
                // A failed persist or compaction (which leaves its buffer frozen) is retried
                // every tick.
                let failed = shared.background_errors.lock().contains_key("persist");
                let state = shared.state.read();
                let old = failed || state.frozen.is_some() || state.active.oldest.is_some_and(|t| t.elapsed() >= interval);
                drop(state);
                if !old {
                    // A partition whose writes stopped is merged at the lower trigger.
                    shared.background_result("compaction", compact(shared));
                    continue;
                }
            },
        }
        if shared.poisoned().is_some() {
            continue;
        }
        // A failed persist leaves the frozen buffer in place; the next round retries it.
        let result = crate::persist::persist(shared).and_then(|_| compact(shared));
        shared.background_result("persist", result);
    }
}
