//! The catalog store: one RocksDB instance holding the WAL, table schemas, series, chunk
//! entries and source positions, so that any combination of them commits atomically.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `wal` | sequence u64 BE | WAL record (see [`crate::wal`]) |
//! | `tables` | table id u32 BE | table schema |
//! | `series` | series id u64 BE | table id, tag column ids and values |
//! | `chunks` | chunk id u64 BE | [`ChunkEntry`] |
//! | `latest` | chunk id u64 BE | the chunk's newest row of each series, as a WAL record |
//! | `positions` | source name | opaque position bytes |
//! | `rollups` | `E`, rollup table id u32 BE | [`RollupEntry`] |
//! | `rollups` | `D`, rollup table u32, series u64, window start i64, WAL sequence u64 (BE, the window's sign bit flipped) | late rows u64 BE |
//! | `dropped` | table id u32 BE | WAL sequence u64 BE of the drop |
//!
//! Writes that acknowledge data use `sync = true`. RocksDB's own log is replayed with
//! `TolerateCorruptedTailRecords`: a torn last record (a write that never returned) is cut, and
//! damage anywhere else stops the open with RocksDB's error naming the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, IteratorMode, Options, WriteOptions};

use crate::batch::TableRows;
use crate::bytes::{Reader, Writer};
use crate::error::{DecodeError, Error, Result};
use crate::model::{ChunkId, ColumnId, SeriesId, TableId, WalSequence};
use crate::rollup::{DirtyKey, RollupEntry};
use crate::schema::TableSchema;

/// The WAL's two column families: new records go to one while the records of the buffer being
/// persisted sit in the other (see [`CatalogStore::switch_wal`]).
const CF_WALS: [&str; 2] = ["wal", "wal1"];
const CF_TABLES: &str = "tables";
const CF_SERIES: &str = "series";
const CF_CHUNKS: &str = "chunks";
const CF_POSITIONS: &str = "positions";
const CF_ROLLUPS: &str = "rollups";
const CF_LATEST: &str = "latest";
const CF_DROPPED: &str = "dropped";
const COLUMN_FAMILIES: [&str; 9] =
    [CF_WALS[0], CF_WALS[1], CF_TABLES, CF_SERIES, CF_CHUNKS, CF_POSITIONS, CF_ROLLUPS, CF_LATEST, CF_DROPPED];
const ROLLUP_ENTRY: u8 = b'E';
const ROLLUP_DIRTY: u8 = b'D';

/// One change to the catalog, staged for an atomic commit.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Wal(WalSequence, Vec<u8>),
    /// Removes WAL records up to and including this sequence.
    TruncateWal(WalSequence),
    Table(TableId, Vec<u8>),
    /// Deletes a table's schema and marks its id dropped (at the drop's WAL sequence), so the
    /// id is never given again and WAL records of its rows are skipped at replay.
    DropTable(TableId, WalSequence),
    Series(SeriesId, Vec<u8>),
    DeleteSeries(SeriesId),
    PutChunk(ChunkId, Vec<u8>),
    /// A chunk's newest row of each series (see [`crate::latest`]), put with its entry.
    PutChunkLatest(ChunkId, Vec<u8>),
    /// Deletes a chunk's entry and its newest rows.
    DeleteChunk(ChunkId),
    Position(String, Vec<u8>),
    DeletePosition(String),
    /// A rollup table's entry, by the rollup table's id.
    Rollup(TableId, RollupEntry),
    /// A window marked for recomputation, with the late rows it took.
    RollupDirty(DirtyKey, u64),
    DeleteRollupDirty(DirtyKey),
    /// Deletes a rollup table's entry and every window of it marked for recomputation.
    DeleteRollup(TableId),
}

impl DirtyKey {
    fn encode(&self) -> [u8; 29] {
        let mut key = [0u8; 29];
        key[0] = ROLLUP_DIRTY;
        key[1..5].copy_from_slice(&self.table.0.to_be_bytes());
        key[5..13].copy_from_slice(&self.series.0.to_be_bytes());
        key[13..21].copy_from_slice(&((self.window_ns as u64) ^ (1 << 63)).to_be_bytes());
        key[21..29].copy_from_slice(&self.sequence.to_be_bytes());
        key
    }

    fn decode(key: &[u8]) -> Option<Self> {
        let key: &[u8; 29] = key.try_into().ok()?;
        let u64_at = |i: usize| key[i..i + 8].try_into().ok().map(u64::from_be_bytes);
        Some(Self {
            table: TableId(u32::from_be_bytes(key[1..5].try_into().ok()?)),
            series: SeriesId(u64_at(5)?),
            window_ns: (u64_at(13)? ^ (1 << 63)) as i64,
            sequence: u64_at(21)?,
        })
    }
}

impl Op {
    pub(crate) fn size_bytes(&self) -> usize {
        match self {
            Self::Wal(_, v) | Self::Table(_, v) | Self::Series(_, v) | Self::PutChunk(_, v) | Self::PutChunkLatest(_, v) => v.len() + 8,
            Self::Position(k, v) => k.len() + v.len(),
            Self::DeletePosition(k) => k.len(),
            Self::TruncateWal(_) | Self::DeleteChunk(_) | Self::Rollup(..) | Self::DropTable(..) | Self::DeleteSeries(_) => 16,
            Self::DeleteRollup(_) => 40,
            Self::RollupDirty(..) | Self::DeleteRollupDirty(_) => 40,
        }
    }
}

/// A chunk as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkEntry {
    pub(crate) id: ChunkId,
    pub(crate) table: TableId,
    pub(crate) partition_start_ns: i64,
    pub(crate) generation: u64,
    pub(crate) row_count: u64,
    pub(crate) size_bytes: u64,
    pub(crate) location: ChunkLocation,
}

/// Where a chunk's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkLocation {
    /// A file under `chunks/`.
    Local,
    /// An object of the cold store, since it moved there (wall-clock nanoseconds).
    Cold { moved_at_ns: i64 },
}

impl ChunkEntry {
    /// Version 1: a local chunk; version 2 adds where it is (a local chunk is still written
    /// as version 1).
    const VERSION: u8 = 1;
    const VERSION_LOCATED: u8 = 2;
    const COLD: u8 = 1;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(match self.location {
            ChunkLocation::Local => Self::VERSION,
            ChunkLocation::Cold { .. } => Self::VERSION_LOCATED,
        });
        w.u32(self.table.0);
        w.i64(self.partition_start_ns);
        w.u64(self.generation);
        w.u64(self.row_count);
        w.u64(self.size_bytes);
        if let ChunkLocation::Cold { moved_at_ns } = self.location {
            w.u8(Self::COLD);
            w.i64(moved_at_ns);
        }
        w.into_inner()
    }

    fn decode(id: ChunkId, bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != Self::VERSION && version != Self::VERSION_LOCATED {
            return Err(r.err(format!("unknown chunk entry version {version}")));
        }
        let mut entry = Self {
            id,
            table: TableId(r.u32()?),
            partition_start_ns: r.i64()?,
            generation: r.u64()?,
            row_count: r.u64()?,
            size_bytes: r.u64()?,
            location: ChunkLocation::Local,
        };
        if version == Self::VERSION_LOCATED {
            entry.location = match r.u8()? {
                Self::COLD => ChunkLocation::Cold { moved_at_ns: r.i64()? },
                other => return Err(r.err(format!("unknown chunk location {other}"))),
            };
        }
        r.finish()?;
        Ok(entry)
    }
}

/// A series as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesEntry {
    pub(crate) id: SeriesId,
    pub(crate) table: TableId,
    /// Sorted by column id.
    pub(crate) tags: Vec<(ColumnId, String)>,
}

impl SeriesEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.table.0);
        w.u16(u16::try_from(self.tags.len()).expect("tags are limited below 65536"));
        for (id, value) in &self.tags {
            w.u16(id.0);
            w.str(value);
        }
        w.into_inner()
    }

    fn decode(id: SeriesId, bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let table = TableId(r.u32()?);
        let n = r.u16()?;
        let tags = (0..n).map(|_| Ok((ColumnId(r.u16()?), r.str()?.to_owned()))).collect::<Result<_, DecodeError>>()?;
        r.finish()?;
        Ok(Self { id, table, tags })
    }
}

fn rollup_key(table: TableId) -> [u8; 5] {
    let mut key = [ROLLUP_ENTRY; 5];
    key[1..].copy_from_slice(&table.0.to_be_bytes());
    key
}

/// Every rollup's entry by rollup table, and every window marked for recomputation with the
/// late rows it took.
pub(crate) type StoredRollups = (Vec<(TableId, RollupEntry)>, Vec<(DirtyKey, u64)>);

/// The RocksDB instance behind the catalog and the WAL.
#[derive(Debug)]
pub(crate) struct CatalogStore {
    db: DB,
    path: PathBuf,
    /// Which of [`CF_WALS`] takes new WAL records.
    wal_side: AtomicUsize,
}

impl CatalogStore {
    /// Opens (or creates) the store at `path`. `wal_memtable_bytes` is what the WAL's records
    /// may take in memory before RocksDB flushes them to an SST file.
    pub(crate) fn open(path: &Path, wal_memtable_bytes: u64) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let mut wal_opts = Options::default();
        // WAL records are deleted by the persist that writes their rows to chunks; a memtable
        // that holds what the write buffer may hold lets them die before they are flushed to an
        // SST file. Flushing them anyway wrote hundreds of megabytes, and WAL fsyncs (every
        // write's acknowledgement) queued behind that on the disk for half a second.
        wal_opts.set_write_buffer_size(usize::try_from(wal_memtable_bytes).unwrap_or(usize::MAX).max(128 << 20));
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, if CF_WALS.contains(name) { wal_opts.clone() } else { Options::default() }));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self { db, path: path.to_owned(), wal_side: AtomicUsize::new(0) })
    }

    /// Opens the catalog without writing to it (for `isobar verify`), also while a server
    /// has it open.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self> {
        if !path.join("CURRENT").exists() {
            return Err(Error::InvalidRequest(format!("{} holds no isobar catalog", path.display())));
        }
        let mut opts = Options::default();
        opts.set_paranoid_checks(true);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        // A catalog written by an older isobar lacks the newer column families.
        let existing = DB::list_cf(&opts, path)?;
        let db = DB::open_cf_for_read_only(&opts, path, COLUMN_FAMILIES.iter().filter(|cf| existing.iter().any(|e| e == *cf)), false)?;
        Ok(Self { db, path: path.to_owned(), wal_side: AtomicUsize::new(0) })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open (read only: verify reads the ones it has)")
    }

    /// Commits `ops` atomically; with `sync`, returns only once they are on stable storage.
    pub(crate) fn commit<'a>(&self, ops: impl IntoIterator<Item = &'a Op>, sync: bool) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                Op::Wal(seq, v) => batch.put_cf(self.cf(CF_WALS[self.wal_side.load(Ordering::SeqCst)]), seq.0.to_be_bytes(), v),
                Op::TruncateWal(seq) => {
                    for cf in CF_WALS {
                        batch.delete_range_cf(self.cf(cf), 0u64.to_be_bytes(), (seq.0 + 1).to_be_bytes());
                    }
                }
                Op::Table(id, v) => batch.put_cf(self.cf(CF_TABLES), id.0.to_be_bytes(), v),
                Op::DropTable(id, seq) => {
                    batch.delete_cf(self.cf(CF_TABLES), id.0.to_be_bytes());
                    batch.put_cf(self.cf(CF_DROPPED), id.0.to_be_bytes(), seq.0.to_be_bytes());
                }
                Op::Series(id, v) => batch.put_cf(self.cf(CF_SERIES), id.0.to_be_bytes(), v),
                Op::DeleteSeries(id) => batch.delete_cf(self.cf(CF_SERIES), id.0.to_be_bytes()),
                Op::PutChunk(id, v) => batch.put_cf(self.cf(CF_CHUNKS), id.0.to_be_bytes(), v),
                Op::PutChunkLatest(id, v) => batch.put_cf(self.cf(CF_LATEST), id.0.to_be_bytes(), v),
                Op::DeleteChunk(id) => {
                    batch.delete_cf(self.cf(CF_CHUNKS), id.0.to_be_bytes());
                    batch.delete_cf(self.cf(CF_LATEST), id.0.to_be_bytes());
                }
                Op::Position(k, v) => batch.put_cf(self.cf(CF_POSITIONS), k.as_bytes(), v),
                Op::DeletePosition(k) => batch.delete_cf(self.cf(CF_POSITIONS), k.as_bytes()),
                Op::Rollup(id, entry) => batch.put_cf(self.cf(CF_ROLLUPS), rollup_key(*id), entry.encode()),
                Op::RollupDirty(key, late) => batch.put_cf(self.cf(CF_ROLLUPS), key.encode(), late.to_be_bytes()),
                Op::DeleteRollupDirty(key) => batch.delete_cf(self.cf(CF_ROLLUPS), key.encode()),
                Op::DeleteRollup(id) => {
                    let cf = self.cf(CF_ROLLUPS);
                    batch.delete_cf(cf, rollup_key(*id));
                    let (mut from, mut to) = ([ROLLUP_DIRTY; 5], [ROLLUP_DIRTY; 5]);
                    from[1..].copy_from_slice(&id.0.to_be_bytes());
                    // The next table's first key; the last id's marks end at the next prefix.
                    match id.0.checked_add(1) {
                        Some(next) => to[1..].copy_from_slice(&next.to_be_bytes()),
                        None => to = [ROLLUP_DIRTY + 1, 0, 0, 0, 0],
                    }
                    batch.delete_range_cf(cf, from, to);
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    fn corrupt(&self, what: &str, key: u64, e: DecodeError) -> Error {
        Error::Corrupt { file: self.path.join(what), offset: key, reason: format!("{what} entry {key}: {}", e) }
    }

    fn scan<T>(&self, cf: &str, mut f: impl FnMut(&[u8], &[u8]) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
            let (k, v) = item?;
            out.push(f(&k, &v)?);
        }
        Ok(out)
    }

    fn key_u64(&self, cf: &str, key: &[u8]) -> Result<u64> {
        <[u8; 8]>::try_from(key).map(u64::from_be_bytes).map_err(|_| Error::Corrupt {
            file: self.path.join(cf),
            offset: 0,
            reason: format!("{cf} key of {} bytes", key.len()),
        })
    }

    pub(crate) fn tables(&self) -> Result<Vec<TableSchema>> {
        self.scan(CF_TABLES, |k, v| {
            let id = <[u8; 4]>::try_from(k).map(u32::from_be_bytes).unwrap_or(u32::MAX);
            TableSchema::decode(v).map_err(|e| self.corrupt(CF_TABLES, u64::from(id), e))
        })
    }

    /// The ids of dropped tables.
    pub(crate) fn dropped(&self) -> Result<Vec<TableId>> {
        // A catalog written before tables could be dropped, opened read only, lacks the family.
        if self.db.cf_handle(CF_DROPPED).is_none() {
            return Ok(Vec::new());
        }
        self.scan(CF_DROPPED, |k, _| {
            <[u8; 4]>::try_from(k).map(|k| TableId(u32::from_be_bytes(k))).map_err(|_| Error::Corrupt {
                file: self.path.join(CF_DROPPED),
                offset: 0,
                reason: format!("dropped table key of {} bytes", k.len()),
            })
        })
    }

    pub(crate) fn series(&self) -> Result<Vec<SeriesEntry>> {
        self.scan(CF_SERIES, |k, v| {
            let id = self.key_u64(CF_SERIES, k)?;
            SeriesEntry::decode(SeriesId(id), v).map_err(|e| self.corrupt(CF_SERIES, id, e))
        })
    }

    pub(crate) fn chunks(&self) -> Result<Vec<ChunkEntry>> {
        self.scan(CF_CHUNKS, |k, v| {
            let id = self.key_u64(CF_CHUNKS, k)?;
            ChunkEntry::decode(ChunkId(id), v).map_err(|e| self.corrupt(CF_CHUNKS, id, e))
        })
    }

    /// Every WAL record in sequence order, passed to `f`; a record that does not decode stops
    /// the walk with an error naming its sequence.
    pub(crate) fn replay_wal(&self, mut f: impl FnMut(WalSequence, &[u8]) -> Result<(), DecodeError>) -> Result<()> {
        // The two column families' records, merged by sequence (a catalog written before the
        // second existed, opened read only, lacks it).
        let mut sides: Vec<_> = CF_WALS
            .iter()
            .filter_map(|name| Some((*name, self.db.cf_handle(name)?)))
            .map(|(name, cf)| (name, self.db.iterator_cf(cf, IteratorMode::Start).peekable()))
            .collect();
        loop {
            let mut next: Option<(usize, u64)> = None;
            for (i, (name, records)) in sides.iter_mut().enumerate() {
                if let Some(Err(_)) = records.peek() {
                    records.next().transpose()?;
                }
                let Some(Ok((k, _))) = records.peek() else { continue };
                let seq = self.key_u64(name, k)?;
                if next.is_none_or(|(_, s)| seq < s) {
                    next = Some((i, seq));
                }
            }
            let Some((i, seq)) = next else { return Ok(()) };
            let (name, records) = &mut sides[i];
            let Some(Ok((_, v))) = records.next() else { continue };
            f(WalSequence(seq), &v).map_err(|e| Error::Corrupt {
                file: self.path.join(*name),
                offset: seq,
                reason: format!("WAL record {seq}, byte {}: {}", e.offset, e.reason),
            })?;
        }
    }

    /// Sends new WAL records to the other column family. A persist calls it as it freezes the
    /// buffer, so that the records written while it runs are not in the column family it
    /// flushes after its truncation.
    pub(crate) fn switch_wal(&self) {
        self.wal_side.fetch_xor(1, Ordering::SeqCst);
    }

    /// Flushes every column family into SST files, so the next open replays no RocksDB log.
    pub(crate) fn flush(&self) -> Result<()> {
        let cfs: Vec<_> = COLUMN_FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    /// Flushes the WAL column family that no longer takes new records after a truncation, so
    /// RocksDB can drop the log files that held the persisted records instead of keeping them
    /// until its memtable fills. The truncation deleted almost all of it: only records
    /// committed while the persist switched sides are written to an SST file.
    pub(crate) fn flush_wal(&self) -> Result<()> {
        let cf = self.cf(CF_WALS[self.wal_side.load(Ordering::SeqCst) ^ 1]);
        self.db.flush_cf(cf)?;
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Every rollup's entry by rollup table, and every window marked for recomputation.
    pub(crate) fn rollups(&self) -> Result<StoredRollups> {
        let (mut entries, mut dirty) = (Vec::new(), Vec::new());
        for item in self.db.iterator_cf(self.cf(CF_ROLLUPS), IteratorMode::Start) {
            let (k, v) = item?;
            let bad = |reason: String| Error::Corrupt { file: self.path.join(CF_ROLLUPS), offset: 0, reason };
            match k.first() {
                Some(&ROLLUP_ENTRY) => {
                    let id = <[u8; 4]>::try_from(&k[1..])
                        .map(u32::from_be_bytes)
                        .map_err(|_| bad(format!("rollup key of {} bytes", k.len())))?;
                    let entry = RollupEntry::decode(&v).map_err(|e| self.corrupt(CF_ROLLUPS, u64::from(id), e))?;
                    entries.push((TableId(id), entry));
                }
                Some(&ROLLUP_DIRTY) => {
                    let key = DirtyKey::decode(&k).ok_or_else(|| bad(format!("dirty window key of {} bytes", k.len())))?;
                    let late = <[u8; 8]>::try_from(&v[..]).map(u64::from_be_bytes).map_err(|_| bad("dirty window value".into()))?;
                    dirty.push((key, late));
                }
                _ => return Err(bad(format!("unknown rollup key {:?}", k.first()))),
            }
        }
        Ok((entries, dirty))
    }

    /// A chunk's newest row of each series, as persist or compaction stored them; `None` for
    /// a chunk written before isobar kept them.
    pub(crate) fn chunk_latest(&self, id: ChunkId) -> Result<Option<Vec<TableRows>>> {
        let Some(bytes) = self.db.get_cf(self.cf(CF_LATEST), id.0.to_be_bytes())? else { return Ok(None) };
        crate::wal::decode(&bytes).map(Some).map_err(|e| self.corrupt(CF_LATEST, id.0, e))
    }

    pub(crate) fn position(&self, source: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_POSITIONS), source.as_bytes())?)
    }

    pub(crate) fn positions(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.scan(CF_POSITIONS, |k, v| Ok((String::from_utf8_lossy(k).into_owned(), v.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(store: &CatalogStore) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .replay_wal(|seq, bytes| {
                out.push((seq.0, bytes.to_vec()));
                Ok(())
            })
            .expect("replays");
        out
    }

    /// Records written to either column family replay in sequence order, a truncation deletes
    /// them from both, and a reopened store (which starts on the first side) reads the same.
    #[test]
    fn wal_records_on_both_sides_replay_in_sequence_order_and_truncate_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog");
        let wal = |seq: u64| Op::Wal(WalSequence(seq), vec![seq as u8; 3]);
        {
            let store = CatalogStore::open(&path, 1 << 20).expect("opens");
            store.commit(&[wal(1), wal(2)], true).expect("commits");
            store.switch_wal();
            store.commit(&[wal(3)], true).expect("commits");
            store.switch_wal();
            store.commit(&[wal(4), wal(5)], true).expect("commits");
            let seqs: Vec<u64> = replayed(&store).into_iter().map(|(s, _)| s).collect();
            assert_eq!(seqs, [1, 2, 3, 4, 5]);
            store.switch_wal();
            store.commit(&[Op::TruncateWal(WalSequence(4)), wal(6)], true).expect("commits");
            store.flush_wal().expect("flushes");
            assert_eq!(replayed(&store), [(5, vec![5; 3]), (6, vec![6; 3])]);
        }
        let store = CatalogStore::open(&path, 1 << 20).expect("reopens");
        store.commit(&[wal(7)], true).expect("commits");
        let seqs: Vec<u64> = replayed(&store).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [5, 6, 7]);
    }
}
