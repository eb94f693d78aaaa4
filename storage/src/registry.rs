//! The in-memory catalog: tables and series by name and id, and the preparation of a write
//! batch into a WAL record plus the catalog changes it brings.
//!
//! Preparation runs under one lock, which also hands out WAL sequence numbers, so records
//! reach the committer in sequence order.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::fxhash::{FxHashMap, FxHasher};

use crate::catalog::{Op, SeriesEntry};
use crate::config::StorageConfig;
use crate::error::{Error, Result};
use crate::model::{ColumnId, RejectedPoint, SeriesId, TableId, WalSequence, WriteBatch, WriteReceipt};
use crate::schema::{ColumnKind, TableSchema, check_table_name};
use crate::wal::{self, Row, TableRows};

/// Tables and series known to the engine.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    tables: HashMap<String, TableSchema>,
    table_names: HashMap<TableId, String>,
    /// Series by the hash of their table and tags; entries of one hash are told apart by tags.
    series_ids: FxHashMap<u64, Vec<SeriesId>>,
    series: FxHashMap<SeriesId, SeriesEntry>,
    series_per_table: HashMap<TableId, usize>,
    next_table: u32,
    next_series: u64,
    pub(crate) next_sequence: u64,
}

/// A batch ready for the committer.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) sequence: WalSequence,
    pub(crate) ops: Vec<Op>,
    pub(crate) tables: Vec<TableRows>,
    pub(crate) receipt: WriteReceipt,
}

impl Registry {
    pub(crate) fn load(tables: Vec<TableSchema>, series: Vec<SeriesEntry>) -> Self {
        let mut r = Self::default();
        for t in tables {
            r.next_table = r.next_table.max(t.id.0 + 1);
            r.table_names.insert(t.id, t.name.clone());
            r.tables.insert(t.name.clone(), t);
        }
        for s in series {
            r.insert_series(s);
        }
        r
    }

    fn insert_series(&mut self, s: SeriesEntry) {
        self.next_series = self.next_series.max(s.id.0 + 1);
        *self.series_per_table.entry(s.table).or_default() += 1;
        let tags: Vec<(ColumnId, &str)> = s.tags.iter().map(|(c, v)| (*c, v.as_str())).collect();
        self.series_ids.entry(series_hash(s.table, &tags)).or_default().push(s.id);
        self.series.insert(s.id, s);
    }

    pub(crate) fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.get(name)
    }

    pub(crate) fn table_by_id(&self, id: TableId) -> Option<&TableSchema> {
        self.table_names.get(&id).and_then(|n| self.tables.get(n))
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = &TableSchema> {
        self.tables.values()
    }

    /// Series of `table`, in id order.
    pub(crate) fn series_of(&self, table: TableId) -> Vec<&SeriesEntry> {
        let mut out: Vec<&SeriesEntry> = self.series.values().filter(|s| s.table == table).collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Checks that logged rows name known tables, series and columns of the right types, so
    /// that a WAL record that decodes but disagrees with the catalog stops recovery.
    pub(crate) fn check_logged(&self, tables: &[TableRows]) -> Result<(), String> {
        for t in tables {
            let schema = self.table_by_id(t.table).ok_or_else(|| format!("unknown table {}", t.table.0))?;
            for row in &t.rows {
                match self.series.get(&row.series) {
                    Some(s) if s.table == t.table => {}
                    _ => return Err(format!("series {} is not in table {}", row.series.0, schema.name)),
                }
                for (id, value) in row.fields.iter() {
                    let kind = schema.column_by_id(*id).map(|c| c.kind);
                    if kind != Some(ColumnKind::Field(value.field_type())) {
                        return Err(format!("column {} of table {} is not a {} field", id.0, schema.name, value.field_type()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `batch` against the schemas, assigning ids to new tables and series, and stages
    /// the WAL record and catalog changes. Points that cannot be written are listed in the
    /// receipt; the rest go ahead.
    pub(crate) fn prepare(&mut self, batch: &WriteBatch, config: &StorageConfig) -> Result<Prepared> {
        let limits = config.point_limits();
        let mut ops = Vec::new();
        let mut tables = Vec::new();
        let mut receipt = WriteReceipt::default();
        for (name, points) in &batch.tables {
            if let Err(reason) = check_table_name(name, &limits) {
                let rejected = (0..points.len()).map(|index| RejectedPoint { table: name.clone(), index, reason: reason.clone() });
                receipt.rejected.extend(rejected);
                continue;
            }
            let mut schema = match self.tables.get(name) {
                Some(s) => s.clone(),
                None => TableSchema::new(TableId(self.next_table), name),
            };
            let mut schema_changed = !self.tables.contains_key(name);
            let mut rows = Vec::with_capacity(points.len());
            for (index, point) in points.iter().enumerate() {
                let resolved = schema.resolve(point, &limits).and_then(|(resolved, changed)| {
                    let series = self.series_for(schema.id, resolved.tags, config, &mut ops)?;
                    Ok((Row { series, time: resolved.time, fields: resolved.fields.into_boxed_slice() }, changed))
                });
                match resolved {
                    Ok((row, changed)) => {
                        schema_changed |= changed;
                        rows.push(row);
                    }
                    Err(reason) => receipt.rejected.push(RejectedPoint { table: name.clone(), index, reason }),
                }
            }
            if schema_changed && !rows.is_empty() {
                ops.push(Op::Table(schema.id, schema.encode()));
                if !self.tables.contains_key(name) {
                    self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
                    self.table_names.insert(schema.id, name.clone());
                }
                self.tables.insert(name.clone(), schema.clone());
            }
            if !rows.is_empty() {
                receipt.rows_written += rows.len() as u64;
                tables.push(TableRows { table: schema.id, rows });
            }
        }
        ops.extend(batch.positions.iter().map(|p| Op::Position(p.source.clone(), p.position.clone())));
        let sequence = WalSequence(self.next_sequence);
        if !tables.is_empty() || !batch.positions.is_empty() {
            self.next_sequence += 1;
            ops.push(Op::Wal(sequence, wal::encode(&tables)));
            receipt.sequence = Some(sequence);
        }
        Ok(Prepared { sequence, ops, tables, receipt })
    }

    /// Stages a new table with declared tag and field columns, in their order.
    pub(crate) fn define_table(&mut self, name: &str, columns: &[(String, ColumnKind)], config: &StorageConfig) -> Result<Prepared> {
        let limits = config.point_limits();
        check_table_name(name, &limits).map_err(Error::InvalidRequest)?;
        if self.tables.contains_key(name) {
            return Err(Error::TableExists(name.to_owned()));
        }
        let mut schema = TableSchema::new(TableId(self.next_table), name);
        schema.define(columns, &limits).map_err(Error::InvalidRequest)?;
        self.next_table = schema.id.0.checked_add(1).ok_or_else(|| Error::LimitExceeded("table ids".into()))?;
        // An empty WAL record keeps the table's catalog entry in WAL sequence order.
        let sequence = WalSequence(self.next_sequence);
        self.next_sequence += 1;
        let ops = vec![Op::Table(schema.id, schema.encode()), Op::Wal(sequence, wal::encode(&[]))];
        self.table_names.insert(schema.id, name.to_owned());
        self.tables.insert(name.to_owned(), schema);
        Ok(Prepared { sequence, ops, tables: Vec::new(), receipt: WriteReceipt { sequence: Some(sequence), ..WriteReceipt::default() } })
    }

    /// The id of the series with `tags` in `table`, creating it (and staging its catalog entry).
    fn series_for(
        &mut self,
        table: TableId,
        tags: Vec<(ColumnId, &str)>,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Result<SeriesId, String> {
        let same = |s: &SeriesEntry| s.table == table && s.tags.iter().map(|(c, v)| (*c, v.as_str())).eq(tags.iter().copied());
        if let Some(ids) = self.series_ids.get(&series_hash(table, &tags)) {
            if let Some(id) = ids.iter().find(|id| self.series.get(id).is_some_and(same)) {
                return Ok(*id);
            }
        }
        if self.series_per_table.get(&table).copied().unwrap_or(0) >= config.series_per_table_max {
            return Err(format!("table has {} series, the limit", config.series_per_table_max));
        }
        let id = SeriesId(self.next_series);
        let entry = SeriesEntry { id, table, tags: tags.into_iter().map(|(c, v)| (c, v.to_owned())).collect() };
        ops.push(Op::Series(id, entry.encode()));
        self.insert_series(entry);
        Ok(id)
    }
}

fn series_hash(table: TableId, tags: &[(ColumnId, &str)]) -> u64 {
    let mut h = FxHasher::default();
    table.hash(&mut h);
    tags.hash(&mut h);
    h.finish()
}
