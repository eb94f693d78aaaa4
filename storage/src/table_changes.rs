//! Changing whole tables by hand: `DROP TABLE`, `TRUNCATE` and `ALTER TABLE`, each one synced
//! catalog commit, so a crash leaves every table it names as before or as after.
//!
//! A drop deletes the tables' schemas (a raw table's rollup tables go with it), series, chunk
//! entries and rollup state and marks their ids dropped; the chunk files are deleted after
//! the commit (any left behind are orphans, deleted at the next open). Rows still in the write
//! buffer or the WAL under a dropped id belong to no table: persists skip them and WAL replay
//! leaves them out (`registry/drop.rs`). `TRUNCATE` drops the table and defines it again with
//! the same columns under a new id. `ALTER TABLE` changes only schemas
//! (`registry/alter.rs`).

use crate::engine::Storage;
use crate::error::{Error, Result};
use crate::model::TableId;
use crate::registry::{DropMode, TableAlteration};

impl Storage {
    /// Changes table `name` (and its rollup tables with it) as `changes` say, all or none, and
    /// returns once the change is durable.
    pub fn alter_table(&self, name: &str, changes: &[TableAlteration]) -> Result<()> {
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        // No rollup round writes rows by the columns as they were meanwhile.
        let _rollups = self.shared.rollup_maintenance.lock();
        self.commit(|registry| registry.prepare_alter(name, changes, &self.shared.config))?;
        Ok(())
    }

    /// Drops the tables `names`, each with its rollup tables, atomically, and returns the
    /// names of every table dropped. A name that is no table is an error, unless `if_exists`
    /// (then it is skipped); so is a rollup table, which goes with its source.
    pub fn drop_tables(&self, names: &[String], if_exists: bool) -> Result<Vec<String>> {
        self.drop_or_truncate(names, DropMode::Drop, if_exists)
    }

    /// Empties the tables `names` and their rollup tables atomically: every row is gone, the
    /// columns stay. Returns the names of every table emptied.
    pub fn truncate_tables(&self, names: &[String]) -> Result<Vec<String>> {
        self.drop_or_truncate(names, DropMode::Truncate, false)
    }

    fn drop_or_truncate(&self, names: &[String], mode: DropMode, if_exists: bool) -> Result<Vec<String>> {
        let shared = &self.shared;
        if let Some(reason) = shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        // No rollup round writes rows of the tables, and no persist, compaction or expiry
        // changes their chunks, while they go.
        let _rollups = shared.rollup_maintenance.lock();
        let _maintenance = shared.maintenance.lock();
        // The catalog's chunk entries, quarantined chunks' included (which the state lacks).
        let entries = shared.store.chunks()?;
        let mut gone: Vec<(TableId, String)> = Vec::new();
        self.commit(|registry| {
            for name in names {
                if registry.table(name).is_none() && !if_exists {
                    return Err(Error::NoSuchTable(name.clone()));
                }
            }
            let (mut prepared, tables) = registry.prepare_drop(names, mode)?;
            gone = tables;
            let chunks = entries.iter().filter(|e| gone.iter().any(|(id, _)| *id == e.table));
            prepared.ops.extend(chunks.map(|e| crate::catalog::Op::DeleteChunk(e.id)));
            Ok(prepared)
        })?;
        let removed: Vec<_> = {
            let mut state = shared.state.write();
            for (id, _) in &gone {
                state.latest.remove_table(*id);
            }
            let chunks: Vec<_> = state.chunks.values().filter(|c| gone.iter().any(|(id, _)| *id == c.table())).cloned().collect();
            for chunk in &chunks {
                state.chunks.remove(&chunk.id);
            }
            chunks
        };
        // Scans still reading the chunks keep their open files.
        crate::persist::remove_chunks(shared, &removed);
        for (id, _) in &gone {
            let _ = std::fs::remove_dir(shared.chunk_dir.join(id.0.to_string()));
        }
        Ok(gone.into_iter().map(|(_, name)| name).collect())
    }
}
