//! An offline check of a data folder (`isobar verify`): opens the catalog read only, decodes
//! every table, series and WAL record, and reads every block of every chunk the catalog lists,
//! checking each against its checksum and its catalog entry. Nothing is written, so it may
//! run beside a server, and damage is reported, never repaired.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::catalog::CatalogStore;
use crate::chunk::ChunkReader;
use crate::error::Result;

/// What [`verify_data_dir`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub tables: usize,
    pub series: usize,
    pub wal_records: usize,
    pub chunks: usize,
    /// Chunk files no catalog entry names: left by a persist that crashed before its commit,
    /// and deleted at the next open. Not damage.
    pub orphaned_files: Vec<PathBuf>,
    /// Damage, each naming the file (and offset where known) and what is wrong.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the data folder `data_dir` of a storage engine. An error means it could not be
/// checked at all (no catalog there, or RocksDB refuses to open it); damage found while
/// checking is listed in the report.
pub fn verify_data_dir(data_dir: &Path) -> Result<VerifyReport> {
    let store = CatalogStore::open_read_only(&data_dir.join("catalog"))?;
    let mut report = VerifyReport::default();
    match store.tables() {
        Ok(tables) => report.tables = tables.len(),
        Err(e) => report.problems.push(e.to_string()),
    }
    match store.series() {
        Ok(series) => report.series = series.len(),
        Err(e) => report.problems.push(e.to_string()),
    }
    if let Err(e) = store.rollups() {
        report.problems.push(e.to_string());
    }
    let walked = store.replay_wal(|_, bytes| {
        crate::wal::decode(bytes)?;
        report.wal_records += 1;
        Ok(())
    });
    if let Err(e) = walked {
        report.problems.push(e.to_string());
    }
    let chunk_dir = data_dir.join("chunks");
    let entries = match store.chunks() {
        Ok(entries) => entries,
        Err(e) => {
            report.problems.push(e.to_string());
            Vec::new()
        }
    };
    let mut known = HashSet::new();
    for entry in &entries {
        let path = crate::engine::chunk_path(&chunk_dir, entry.table, entry.id);
        known.insert(path.clone());
        report.chunks += 1;
        let checked = ChunkReader::open(&path).and_then(|reader| {
            if reader.footer.table != entry.table || reader.footer.generation != entry.generation {
                return Err(crate::error::Error::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: "chunk does not match its catalog entry".into(),
                });
            }
            reader.verify()
        });
        if let Err(e) = checked {
            report.problems.push(e.to_string());
        }
    }
    for table_dir in std::fs::read_dir(&chunk_dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(table_dir.path()).into_iter().flatten().flatten() {
            if !known.contains(&file.path()) {
                report.orphaned_files.push(file.path());
            }
        }
    }
    Ok(report)
}
