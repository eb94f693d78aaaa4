//! The local cache of cold chunks' bytes: blocks (and footers) fetched from the cold store,
//! one file each under `<data_dir>/cold-cache`, named `<chunk id>-<offset>` in hex, at most
//! a configured number of bytes, the least recently used going first.
//!
//! It survives restarts: open lists the directory, and files keep their order of last use by
//! their modification times. A file is written under a temporary name and renamed, so a crash
//! leaves whole files or none (temporaries are deleted at open); every read is checked by its
//! caller (blocks against their CRC-32C), and a file that fails is dropped and fetched again.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Result, io_err};
use crate::model::ChunkId;

#[derive(Debug)]
struct Entry {
    len: u64,
    last_use: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<(u64, u64), Entry>,
    bytes: u64,
    tick: u64,
}

/// Blocks of cold chunks kept on local disk.
#[derive(Debug)]
pub(crate) struct BlockCache {
    dir: PathBuf,
    bytes_max: u64,
    index: Mutex<Index>,
}

impl BlockCache {
    /// The cache in `dir`, with what earlier runs left there.
    pub(crate) fn open(dir: &Path, bytes_max: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = parse_name(&name) else {
                let _ = fs::remove_file(entry.path());
                continue;
            };
            let meta = entry.metadata().map_err(io_err("stat", entry.path()))?;
            found.push((meta.modified().ok(), key, meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, key, len) in found {
            index.tick += 1;
            index.bytes += len;
            index.entries.insert(key, Entry { len, last_use: index.tick });
        }
        let cache = Self { dir: dir.to_owned(), bytes_max, index: Mutex::new(index) };
        cache.evict();
        Ok(cache)
    }

    fn path(&self, (chunk, offset): (u64, u64)) -> PathBuf {
        self.dir.join(format!("{chunk:016x}-{offset:016x}"))
    }

    /// The cached bytes of chunk `chunk` at `offset`, if they are `len` bytes.
    pub(crate) fn get(&self, chunk: ChunkId, offset: u64, len: u64) -> Option<Vec<u8>> {
        let key = (chunk.0, offset);
        {
            let mut index = self.index.lock();
            index.tick += 1;
            let tick = index.tick;
            let entry = index.entries.get_mut(&key).filter(|e| e.len == len)?;
            entry.last_use = tick;
        }
        match fs::read(self.path(key)) {
            Ok(bytes) if bytes.len() as u64 == len => Some(bytes),
            _ => {
                self.remove(chunk, offset);
                None
            }
        }
    }

    /// Keeps `bytes` of chunk `chunk` at `offset`; a failure to write only loses the entry.
    pub(crate) fn put(&self, chunk: ChunkId, offset: u64, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if len > self.bytes_max {
            return;
        }
        let key = (chunk.0, offset);
        let path = self.path(key);
        let temporary = path.with_extension("part");
        if fs::write(&temporary, bytes).and_then(|()| fs::rename(&temporary, &path)).is_err() {
            let _ = fs::remove_file(&temporary);
            return;
        }
        let mut index = self.index.lock();
        index.tick += 1;
        let tick = index.tick;
        if let Some(old) = index.entries.insert(key, Entry { len, last_use: tick }) {
            index.bytes -= old.len;
        }
        index.bytes += len;
        drop(index);
        self.evict();
    }

    /// Drops one entry (a damaged file).
    pub(crate) fn remove(&self, chunk: ChunkId, offset: u64) {
        let key = (chunk.0, offset);
        let mut index = self.index.lock();
        if let Some(old) = index.entries.remove(&key) {
            index.bytes -= old.len;
        }
        drop(index);
        let _ = fs::remove_file(self.path(key));
    }

    /// Drops every entry of chunk `chunk` (it was deleted).
    pub(crate) fn forget_chunk(&self, chunk: ChunkId) {
        let keys: Vec<(u64, u64)> = self.index.lock().entries.keys().filter(|(c, _)| *c == chunk.0).copied().collect();
        for (_, offset) in keys {
            self.remove(chunk, offset);
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.index.lock().bytes
    }

    /// Deletes least recently used entries until the rest fit.
    fn evict(&self) {
        let mut gone = Vec::new();
        {
            let mut index = self.index.lock();
            if index.bytes <= self.bytes_max {
                return;
            }
            let mut by_age: Vec<((u64, u64), u64, u64)> = index.entries.iter().map(|(k, e)| (*k, e.last_use, e.len)).collect();
            by_age.sort_by_key(|(_, last_use, _)| *last_use);
            for (key, _, len) in by_age {
                if index.bytes <= self.bytes_max {
                    break;
                }
                index.entries.remove(&key);
                index.bytes -= len;
                gone.push(key);
            }
        }
        for key in gone {
            let _ = fs::remove_file(self.path(key));
        }
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (chunk, offset) = name.split_once('-')?;
    if chunk.len() != 16 || offset.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(chunk, 16).ok()?, u64::from_str_radix(offset, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_the_rest_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BlockCache::open(dir.path(), 250).expect("open");
        for offset in 0..3u64 {
            cache.put(ChunkId(1), offset, &[offset as u8; 100]);
        }
        // Two fit: the first put went when the third came.
        assert_eq!(cache.get(ChunkId(1), 0, 100), None);
        assert_eq!(cache.get(ChunkId(1), 1, 100), Some(vec![1; 100]));
        assert_eq!(cache.get(ChunkId(1), 2, 99), None, "a length that does not match is a miss");
        cache.put(ChunkId(2), 0, &[7; 100]);
        assert_eq!(cache.get(ChunkId(1), 2, 100), None, "2 was used less recently than 1");
        assert_eq!(cache.bytes(), 200);
        drop(cache);
        std::fs::write(dir.path().join("junk"), b"x").expect("write");
        let cache = BlockCache::open(dir.path(), 250).expect("reopen");
        assert_eq!(cache.get(ChunkId(1), 1, 100), Some(vec![1; 100]));
        assert_eq!(cache.get(ChunkId(2), 0, 100), Some(vec![7; 100]));
        assert!(!dir.path().join("junk").exists(), "files that are no entry are deleted");
        cache.forget_chunk(ChunkId(1));
        assert_eq!(cache.get(ChunkId(1), 1, 100), None);
        assert_eq!(cache.bytes(), 100);
    }
}
