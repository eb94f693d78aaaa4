//! `ALTER TABLE` in the registry: renaming a table or a column, adding a field column, and
//! dropping one. Only schemas change: column ids stay (a renamed column keeps its values), and
//! a dropped column's id is never given again, so its values, left in chunks until they are
//! merged, are never read. The rollup tables follow their raw table: `RENAME TO` renames
//! `weather_1m` with `weather`, and a renamed, added or dropped numeric field renames, adds
//! or drops its `_count`, `_sum`, `_min`, `_max` and `_avg` columns.

use crate::catalog::Op;
use crate::config::StorageConfig;
use crate::error::{Error, Result};
use crate::model::{FieldType, WalSequence, WriteReceipt};
use crate::rollup::{aggregate_column_names, rollup_table_name, sync_schema};
use crate::schema::{ColumnKind, PointLimits, SYSTEM_TABLE_PREFIX, TIME_COLUMN, TableSchema, check_name, check_table_name};

use super::{Prepared, Registry};

/// One change of `ALTER TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAlteration {
    /// `RENAME TO`: the table, and its rollup tables with it.
    RenameTo(String),
    /// `RENAME COLUMN from TO to`.
    RenameColumn { from: String, to: String },
    /// `ADD COLUMN`: a field (tags come from `CREATE TABLE`'s key, or from writes).
    AddColumn { name: String, ty: FieldType, if_not_exists: bool },
    /// `DROP COLUMN`: a field; a tag is part of its series' identity and cannot be dropped.
    DropColumn { name: String, if_exists: bool },
}

impl Registry {
    /// Stages `changes` to table `name` and its rollup tables, all or none: on an error nothing
    /// has changed.
    pub(crate) fn prepare_alter(&mut self, name: &str, changes: &[TableAlteration], config: &StorageConfig) -> Result<Prepared> {
        let chain = self.table_and_rollups(name)?.ok_or_else(|| Error::NoSuchTable(name.to_owned()))?;
        let mut schemas: Vec<TableSchema> = chain.iter().filter_map(|id| self.table_by_id(*id).cloned()).collect();
        if schemas.len() != chain.len() {
            return Err(Error::Internal(format!("a rollup of {name} has no schema")));
        }
        let limits = config.point_limits();
        for change in changes {
            self.alter(&mut schemas, change, &limits)?;
        }
        let mut ops = Vec::new();
        for schema in &schemas {
            if self.table_by_id(schema.id) == Some(schema) {
                continue;
            }
            ops.push(Op::Table(schema.id, schema.encode()));
            if let Some(old) = self.table_names.insert(schema.id, schema.name.clone()) {
                self.tables.remove(&old);
            }
        }
        for schema in &schemas {
            self.tables.insert(schema.name.clone(), schema.clone());
        }
        for pair in schemas.windows(2) {
            if let Some(rollup) = self.rollups.get_mut(&pair[0].id) {
                rollup.resolve_columns(&pair[0], &pair[1]);
            }
        }
        // An empty WAL record keeps the change in WAL sequence order with writes.
        let sequence = WalSequence(self.next_sequence);
        self.next_sequence += 1;
        let receipt = WriteReceipt { sequence: Some(sequence), ..WriteReceipt::default() };
        Ok(Prepared { sequence, ops, tables: Vec::new(), logged: true, receipt, rollups_due: false, open_rows: Vec::new() })
    }

    /// Applies one change to `schemas` (the raw table's, then its rollups', finest first).
    fn alter(&self, schemas: &mut [TableSchema], change: &TableAlteration, limits: &PointLimits) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidRequest(reason));
        let table = schemas[0].name.clone();
        match change {
            TableAlteration::RenameTo(new) => {
                check_table_name(new, limits).map_err(Error::InvalidRequest)?;
                if new.starts_with(SYSTEM_TABLE_PREFIX) {
                    return invalid(format!("{new} would be one of isobar's own tables"));
                }
                for i in 0..schemas.len() {
                    let renamed = match i {
                        0 => new.clone(),
                        _ => {
                            let interval_ns = self.rollups.get(&schemas[i - 1].id).map_or(0, |r| r.entry.interval_ns);
                            rollup_table_name(new, interval_ns)
                        }
                    };
                    if self.tables.get(&renamed).is_some_and(|t| !schemas.iter().any(|s| s.id == t.id)) {
                        return Err(Error::TableExists(renamed));
                    }
                    schemas[i].name = renamed;
                }
            }
            TableAlteration::RenameColumn { from, to } => {
                if from == TIME_COLUMN {
                    return invalid(format!("column {TIME_COLUMN} of table {table} cannot be renamed"));
                }
                check_name(&table, to, limits).map_err(Error::InvalidRequest)?;
                let Some(column) = schemas[0].column(from).cloned() else {
                    return invalid(format!("column {from} of table {table} does not exist"));
                };
                if schemas[0].column(to).is_some() {
                    return invalid(format!("column {to} of table {table} already exists"));
                }
                let pairs: Vec<(String, String)> = match column.kind {
                    ColumnKind::Tag => vec![(from.clone(), to.clone())],
                    ColumnKind::Field(FieldType::F64 | FieldType::I64) => {
                        aggregate_column_names(from).into_iter().zip(aggregate_column_names(to)).collect()
                    }
                    ColumnKind::Field(_) => Vec::new(),
                };
                for rollup in schemas.iter_mut().skip(1) {
                    for (old, new) in &pairs {
                        if rollup.column(old).is_some() && !rollup.rename_column(old, new) {
                            return invalid(format!("rollup table {} already has a column {new}", rollup.name));
                        }
                    }
                }
                schemas[0].rename_column(from, to);
            }
            TableAlteration::AddColumn { name, ty, if_not_exists } => {
                if schemas[0].column(name).is_some() {
                    return match if_not_exists {
                        true => Ok(()),
                        false => invalid(format!("column {name} of table {table} already exists")),
                    };
                }
                check_name(&table, name, limits).map_err(Error::InvalidRequest)?;
                schemas[0].check_column_count(1, limits).map_err(Error::InvalidRequest)?;
                schemas[0].add_column(name, ColumnKind::Field(*ty));
                for i in 1..schemas.len() {
                    let (finer, rest) = schemas.split_at_mut(i);
                    sync_schema(&finer[i - 1], &mut rest[0], i > 1);
                }
            }
            TableAlteration::DropColumn { name, if_exists } => {
                if name == TIME_COLUMN {
                    return invalid(format!("column {TIME_COLUMN} of table {table} cannot be dropped"));
                }
                let Some(column) = schemas[0].column(name).cloned() else {
                    return match if_exists {
                        true => Ok(()),
                        false => invalid(format!("column {name} of table {table} does not exist")),
                    };
                };
                if column.kind == ColumnKind::Tag {
                    return invalid(format!(
                        "column {name} of table {table} is a tag, part of each series' identity: isobar does not drop tags"
                    ));
                }
                schemas[0].drop_column(name);
                if matches!(column.kind, ColumnKind::Field(FieldType::F64 | FieldType::I64)) {
                    for rollup in schemas.iter_mut().skip(1) {
                        for aggregate in aggregate_column_names(name) {
                            rollup.drop_column(&aggregate);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
