//! Dropping and emptying tables in the registry: `DROP TABLE` forgets a table, its series and
//! its rollups; `TRUNCATE` does the same and defines the table again, with its columns, under
//! a new id.
//!
//! A dropped table's id is never given again (the catalog keeps it in family `dropped`), so
//! rows still in the write buffer or the WAL under that id belong to no table: persists skip
//! them and WAL replay leaves them out, and neither a new table of the same name nor anything
//! else ever reads them.

use crate::catalog::Op;
use crate::error::{Error, Result};
use crate::model::{ColumnId, TableId, WalSequence, WriteReceipt};

use super::{Prepared, Registry};

/// What a drop does to the tables it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropMode {
    /// `DROP TABLE`: the tables are gone.
    Drop,
    /// `TRUNCATE`: the tables are empty, with the same columns.
    Truncate,
}

impl Registry {
    /// The ids of `name` and of its rollup tables, finest first; an error when `name` is a
    /// rollup table, which isobar keeps in step with its source.
    pub(crate) fn table_and_rollups(&self, name: &str) -> Result<Option<Vec<TableId>>> {
        let Some(table) = self.tables.get(name) else { return Ok(None) };
        if let Some(source) = self.rollup_sources.get(&table.id).and_then(|s| self.table_names.get(s)) {
            return Err(Error::InvalidRequest(format!(
                "table {name} is a rollup of {source}, which isobar keeps from {source}'s rows: drop, truncate or delete from {source} (its rollups follow), or change the rollups in the configuration"
            )));
        }
        let mut ids = vec![table.id];
        while let Some(rollup) = ids.last().and_then(|id| self.rollups.get(id)) {
            ids.push(rollup.table);
        }
        Ok(Some(ids))
    }

    /// Stages dropping (or emptying) the tables named, each with its rollup tables: names
    /// missing from the registry are skipped (the caller decides whether that is an error).
    /// Returns the staged change and the tables gone (for `TRUNCATE`, the ids they had), by id
    /// and name.
    pub(crate) fn prepare_drop(&mut self, names: &[String], mode: DropMode) -> Result<(Prepared, Vec<(TableId, String)>)> {
        let mut gone = Vec::new();
        let mut redefine = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let Some(ids) = self.table_and_rollups(name)?.filter(|_| !names[..i].contains(name)) else { continue };
            if mode == DropMode::Truncate
                && let Some(schema) = self.tables.get(name)
            {
                redefine.push(schema.clone());
            }
            gone.extend(ids.into_iter().filter_map(|id| Some((id, self.table_names.get(&id)?.clone()))));
        }
        let sequence = WalSequence(self.next_sequence);
        let mut ops = Vec::new();
        for (id, _) in &gone {
            self.forget_table(*id, sequence, &mut ops);
        }
        for mut schema in redefine {
            schema.id = TableId(self.next_table);
            self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
            ops.push(Op::Table(schema.id, schema.encode()));
            self.table_names.insert(schema.id, schema.name.clone());
            self.tables.insert(schema.name.clone(), schema);
        }
        // An empty WAL record keeps the change in WAL sequence order with writes.
        self.next_sequence += 1;
        let receipt = WriteReceipt { sequence: Some(sequence), ..WriteReceipt::default() };
        Ok((Prepared { sequence, ops, tables: Vec::new(), logged: true, receipt, rollups_due: false, open_rows: Vec::new() }, gone))
    }

    /// Removes table `id`, its series and its rollup state, staging their deletion.
    fn forget_table(&mut self, id: TableId, sequence: WalSequence, ops: &mut Vec<Op>) {
        ops.push(Op::DropTable(id, sequence));
        if let Some(name) = self.table_names.remove(&id) {
            self.tables.remove(&name);
        }
        for series in self.table_series.remove(&id).unwrap_or_default() {
            ops.push(Op::DeleteSeries(series));
            if let Some(entry) = self.series.remove(series) {
                let tags: Vec<(ColumnId, &str)> = entry.tags.iter().map(|(c, v)| (*c, v.as_str())).collect();
                let hash = super::series_hash(id, &tags);
                if let Some(ids) = self.series_ids.get_mut(&hash) {
                    ids.retain(|s| *s != series);
                    if ids.is_empty() {
                        self.series_ids.remove(&hash);
                    }
                }
            }
        }
        self.postings.remove_table(id);
        self.tag_set_series.remove_table(id);
        self.newest_ns.remove(&id);
        if self.rollup_sources.remove(&id).is_some() {
            ops.push(Op::DeleteRollup(id));
        }
        self.rollups.remove(&id);
        self.open_windows.lock().remove(&id);
        self.dropped.insert(id);
    }

    /// Whether table `id` was dropped: rows under it belong to no table.
    pub(crate) fn is_dropped(&self, id: TableId) -> bool {
        self.dropped.contains(&id)
    }
}
