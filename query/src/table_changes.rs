//! Statements that change whole tables by hand: `DROP TABLE [IF EXISTS] t [, ...]`,
//! `TRUNCATE [TABLE] t [, ...]` and `ALTER TABLE [IF EXISTS] t` with `RENAME TO`,
//! `RENAME COLUMN`, `ADD COLUMN` and `DROP COLUMN`. A raw table's rollup tables follow it
//! (they are isobar's summaries of its rows, configured rather than created by SQL); naming a
//! rollup table alone is refused with the table to name instead. Each statement is one
//! durable, atomic change in storage: after a crash the tables are as before or as after.

use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, ColumnOption, ObjectName, ObjectType, RenameTableNameKind, Statement,
};
use isobar_storage::TableAlteration;

use crate::ddl::{identifier_name, sql_field_type, table_name};
use crate::engine::QueryEngine;
use crate::error::{Error, Result};

/// A change to whole tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableChange {
    Drop { names: Vec<String>, if_exists: bool },
    Truncate { names: Vec<String> },
    Alter { name: String, if_exists: bool, changes: Vec<TableAlteration> },
}

impl TableChange {
    /// The change `statement` asks for, if it is one; an error for a form isobar does not take.
    pub(crate) fn of(statement: &Statement) -> Option<Result<Self>> {
        Some(match statement {
            Statement::Drop { object_type: ObjectType::Table, if_exists, names, .. } => {
                names_of(names.iter()).map(|names| Self::Drop { names, if_exists: *if_exists })
            }
            Statement::Truncate(truncate) => match &truncate.partitions {
                Some(_) => Err(Error::Unsupported("TRUNCATE ... PARTITION is not supported: use DELETE with a time range".into())),
                None => names_of(truncate.table_names.iter().map(|t| &t.name)).map(|names| Self::Truncate { names }),
            },
            Statement::AlterTable(alter) => alteration(alter),
            _ => return None,
        })
    }

    /// The command tag a client gets.
    pub(crate) fn tag(&self) -> &'static str {
        match self {
            Self::Drop { .. } => "DROP TABLE",
            Self::Truncate { .. } => "TRUNCATE TABLE",
            Self::Alter { .. } => "ALTER TABLE",
        }
    }
}

/// The changes an `ALTER TABLE` asks for, in order.
fn alteration(alter: &AlterTable) -> Result<TableChange> {
    let unsupported = |what: String| Err(Error::Unsupported(format!("ALTER TABLE ... {what} is not supported by isobar")));
    if alter.table_type.is_some() || alter.location.is_some() || alter.on_cluster.is_some() {
        return unsupported("of this kind".into());
    }
    let mut changes = Vec::new();
    for operation in &alter.operations {
        match operation {
            AlterTableOperation::RenameTable { table_name: RenameTableNameKind::To(name) | RenameTableNameKind::As(name) } => {
                changes.push(TableAlteration::RenameTo(table_name(name)?));
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                changes.push(TableAlteration::RenameColumn { from: identifier_name(old_column_name), to: identifier_name(new_column_name) })
            }
            AlterTableOperation::AddColumn { if_not_exists, column_def, column_position: None, .. } => {
                if let Some(option) = column_def.options.iter().find(|o| !matches!(o.option, ColumnOption::Null)) {
                    return unsupported(format!("ADD COLUMN with {}: a new column is NULL in the rows already stored", option.option));
                }
                let ty = sql_field_type(&column_def.data_type).ok_or_else(|| {
                    Error::Unsupported(format!(
                        "column {}: type {} is not supported (use DOUBLE PRECISION, BIGINT, BOOLEAN or TEXT)",
                        column_def.name, column_def.data_type
                    ))
                })?;
                changes.push(TableAlteration::AddColumn { name: identifier_name(&column_def.name), ty, if_not_exists: *if_not_exists });
            }
            AlterTableOperation::DropColumn { column_names, if_exists, .. } => {
                changes
                    .extend(column_names.iter().map(|c| TableAlteration::DropColumn { name: identifier_name(c), if_exists: *if_exists }));
            }
            other => return unsupported(other.to_string()),
        }
    }
    Ok(TableChange::Alter { name: table_name(&alter.name)?, if_exists: alter.if_exists, changes })
}

fn names_of<'a>(names: impl Iterator<Item = &'a ObjectName>) -> Result<Vec<String>> {
    names.map(table_name).collect()
}

impl QueryEngine {
    /// Runs `statement` if it drops or empties tables, returning its command tag once the
    /// change is durable; `None` when it is another statement.
    pub async fn run_table_change(&self, statement: &Statement) -> Option<Result<&'static str>> {
        let change = match TableChange::of(statement)? {
            Ok(change) => change,
            Err(e) => return Some(Err(e)),
        };
        let storage = self.storage().clone();
        let tag = change.tag();
        let done = tokio::task::spawn_blocking(move || match change {
            TableChange::Drop { names, if_exists } => storage.drop_tables(&names, if_exists).map(drop),
            TableChange::Truncate { names } => storage.truncate_tables(&names).map(drop),
            TableChange::Alter { name, if_exists, changes } => match storage.alter_table(&name, &changes) {
                Err(isobar_storage::Error::NoSuchTable(_)) if if_exists => Ok(()),
                done => done,
            },
        })
        .await;
        Some(match done {
            Ok(Ok(())) => Ok(tag),
            Ok(Err(e)) => Err(Error::Storage(e)),
            Err(e) => Err(Error::DataFusion(datafusion::error::DataFusionError::External(Box::new(e)))),
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn change(sql: &str) -> Option<Result<TableChange>> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").remove(0);
        TableChange::of(&statement)
    }

    #[test]
    fn drop_and_truncate_name_their_tables_as_postgresql_folds_them() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            change("DROP TABLE IF EXISTS Weather, public.\"Odd\" CASCADE").map(Result::ok),
            Some(Some(TableChange::Drop { names: names(&["weather", "Odd"]), if_exists: true }))
        );
        assert_eq!(change("DROP TABLE t").map(Result::ok), Some(Some(TableChange::Drop { names: names(&["t"]), if_exists: false })));
        assert_eq!(change("TRUNCATE t, u").map(Result::ok), Some(Some(TableChange::Truncate { names: names(&["t", "u"]) })));
        assert_eq!(
            change("TRUNCATE TABLE ONLY t RESTART IDENTITY").map(Result::ok),
            Some(Some(TableChange::Truncate { names: names(&["t"]) }))
        );
        let alter = |sql: &str| match change(sql) {
            Some(Ok(TableChange::Alter { name, if_exists, changes })) => Ok((name, if_exists, changes)),
            Some(Err(e)) => Err(e.to_string()),
            other => Err(format!("not an ALTER: {other:?}")),
        };
        assert_eq!(alter("ALTER TABLE IF EXISTS W RENAME TO \"W2\""), Ok(("w".into(), true, vec![TableAlteration::RenameTo("W2".into())])));
        assert_eq!(
            alter(
                "ALTER TABLE w ADD COLUMN IF NOT EXISTS Gust DOUBLE PRECISION NULL, DROP COLUMN a, DROP COLUMN IF EXISTS b, RENAME COLUMN c TO d"
            ),
            Ok((
                "w".into(),
                false,
                vec![
                    TableAlteration::AddColumn { name: "gust".into(), ty: isobar_storage::FieldType::F64, if_not_exists: true },
                    TableAlteration::DropColumn { name: "a".into(), if_exists: false },
                    TableAlteration::DropColumn { name: "b".into(), if_exists: true },
                    TableAlteration::RenameColumn { from: "c".into(), to: "d".into() },
                ]
            ))
        );
        assert!(alter("ALTER TABLE w ADD COLUMN x INT DEFAULT 3").is_err_and(|e| e.contains("NULL in the rows already stored")));
        assert!(alter("ALTER TABLE w ADD COLUMN x JSON").is_err_and(|e| e.contains("type JSON")));
        assert!(alter("ALTER TABLE w ALTER COLUMN x TYPE TEXT").is_err_and(|e| e.contains("not supported")));
        assert!(change("DROP VIEW v").is_none());
        assert!(change("SELECT 1").is_none());
        assert!(matches!(change("DROP TABLE other.t"), Some(Err(Error::Unsupported(_)))));
        assert!(matches!(change("DROP TABLE system.ingest_errors"), Some(Err(Error::Refused(_)))));
    }
}
