//! What SQL a client may run: an allow-list of statement kinds, checked before DataFusion sees
//! a statement.
//!
//! Allowed: queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `DESCRIBE`), isobar's own DDL and
//! DML (`CREATE TABLE`, `DROP TABLE`, `TRUNCATE`, `ALTER TABLE`, `INSERT`, `COPY ... FROM STDIN`), statements about the session
//! (`SET`/`SHOW`/`RESET` of the settings in `session.rs`, `DISCARD ALL`, transactions,
//! savepoints, `DEALLOCATE` of the session's prepared statements) and cursors (`DECLARE`,
//! `FETCH`, `CLOSE`). Everything else is refused with the reason: DataFusion's own catalog DDL
//! (schemas, views, external tables, functions, `SELECT INTO`), `PREPARE`/`EXECUTE` in SQL
//! (DataFusion would keep them in the session all clients share), anything that would reach
//! the server's files, and statements isobar does not support yet (`DELETE`, `UPDATE`, ...).
//! Tables in schema `system` are isobar's own: no statement writes to them.

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CopySource, CopyTarget, FromTable, ObjectName, ObjectType, RenameTableNameKind, SetExpr, Statement, TableFactor,
};
use isobar_storage::SYSTEM_TABLE_PREFIX;

use crate::catalog::SYSTEM_SCHEMA;
use crate::error::{Error, Result};

/// Refuses a statement DataFusion's parser produced that is not on the allow-list.
pub fn check_df_statement(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(s) => check_statement(s),
        DfStatement::CreateExternalTable(_) => Err(refused_external_table()),
        DfStatement::CopyTo(_) => Err(refused_copy_to()),
        DfStatement::Explain(explain) => check_df_statement(&explain.statement),
        DfStatement::Reset(_) => Ok(()),
    }
}

/// Refuses a statement that is not on the allow-list, saying why.
pub fn check_statement(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(query) => check_query(query),
        Statement::Insert(insert) => match insert.overwrite {
            true => Err(unsupported("INSERT OVERWRITE")),
            false => check_writable(&insert.table.to_string()),
        },
        Statement::CreateTable(create) if create.external => Err(refused_external_table()),
        Statement::CreateTable(create) => check_writable(&create.name.to_string()),
        Statement::Copy { to: true, .. } => Err(refused_copy_to()),
        Statement::Copy { target, .. } if *target != CopyTarget::Stdin => Err(Error::Refused(
            "COPY ... FROM a file or program is refused: SQL cannot reach the server's files; use COPY ... FROM STDIN (psql's \\copy)"
                .into(),
        )),
        Statement::Copy { source: CopySource::Table { table_name, .. }, .. } => check_writable(&table_name.to_string()),
        Statement::Copy { .. } => Ok(()),
        Statement::Explain { statement, .. } => check_statement(statement),
        Statement::ExplainTable { .. } => Ok(()),
        // Answered per session by `session.rs`, which refuses what is not on its allow-list.
        Statement::Set(_) | Statement::ShowVariable { .. } | Statement::Reset(_) | Statement::Discard { .. } => Ok(()),
        Statement::StartTransaction { statements, exception, .. } if statements.is_empty() && exception.is_none() => Ok(()),
        Statement::Commit { .. } | Statement::Rollback { .. } | Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => Ok(()),
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } | Statement::Deallocate { .. } => Ok(()),
        Statement::Prepare { .. } | Statement::Execute { .. } => Err(Error::Unsupported(
            "PREPARE and EXECUTE in SQL are not supported: use the extended query protocol, as every driver's prepared statements do"
                .into(),
        )),
        Statement::Drop { object_type: ObjectType::Table, names, .. } => names.iter().try_for_each(check_table_name),
        Statement::Truncate(truncate) => truncate.table_names.iter().try_for_each(|t| check_table_name(&t.name)),
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            from.iter()
                .filter_map(|t| if let TableFactor::Table { name, .. } = &t.relation { Some(name) } else { None })
                .try_for_each(check_table_name)
        }
        Statement::Update(_) => Err(Error::Unsupported(
            "UPDATE is not supported: write the row again with INSERT; the last write of a time and series wins".into(),
        )),
        Statement::AlterTable(alter) => {
            check_table_name(&alter.name)?;
            alter.operations.iter().try_for_each(|op| match op {
                AlterTableOperation::RenameTable { table_name: RenameTableNameKind::To(name) | RenameTableNameKind::As(name) } => {
                    check_table_name(name)
                }
                _ => Ok(()),
            })
        }
        other => Err(Error::Refused(format!(
            "{} is refused: isobar runs queries, its own CREATE TABLE, INSERT and COPY FROM STDIN, and session statements",
            statement_kind(other)
        ))),
    }
}

/// Refuses queries that would create tables (`SELECT ... INTO`).
fn check_query(query: &datafusion::sql::sqlparser::ast::Query) -> Result<()> {
    if let SetExpr::Select(select) = query.body.as_ref()
        && select.into.is_some()
    {
        return Err(Error::Refused("SELECT ... INTO is refused: create tables with CREATE TABLE".into()));
    }
    Ok(())
}

/// Refuses a write to one of isobar's own tables, however the name is spelled (`system.t`,
/// `"system.t"`, `isobar.system.t`).
pub fn check_writable(name: &str) -> Result<()> {
    if is_system_name(name) {
        return Err(Error::Refused(format!("{name} is one of isobar's own tables: only isobar writes to schema {SYSTEM_SCHEMA}")));
    }
    Ok(())
}

/// Whether a possibly qualified, possibly quoted table name names one of isobar's own tables.
pub(crate) fn is_system_name(name: &str) -> bool {
    let unquoted: String = name.chars().filter(|c| *c != '"').collect::<String>().to_lowercase();
    let parts: Vec<&str> = unquoted.split('.').map(str::trim).collect();
    parts.iter().rev().skip(1).any(|p| *p == SYSTEM_SCHEMA) || unquoted.starts_with(SYSTEM_TABLE_PREFIX)
}

/// Refuses a table name in schema `system` for a table SQL would create or write.
pub(crate) fn check_table_name(name: &ObjectName) -> Result<()> {
    check_writable(&name.to_string())
}

/// The statement's leading keywords, for messages.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_')).take(3).collect();
    match words.is_empty() {
        true => "this statement".to_owned(),
        false => words.join(" ").to_uppercase(),
    }
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!("{what} is not supported by isobar yet"))
}

pub(crate) fn refused_copy_to() -> Error {
    Error::Refused(
        "COPY ... TO is refused: SQL cannot write the server's files; use psql's \\copy ... TO, which writes on the client".into(),
    )
}

pub(crate) fn refused_external_table() -> Error {
    Error::Refused("CREATE EXTERNAL TABLE is refused: SQL cannot reach the server's files".into())
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn check(sql: &str) -> Result<()> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        statements.iter().try_for_each(check_statement)
    }

    #[test]
    fn isobar_statements_and_session_statements_are_allowed() {
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
            "INSERT INTO weather (time, v) VALUES (now(), 1)",
            "CREATE TABLE t (time TIMESTAMPTZ, s TEXT, PRIMARY KEY (s, time))",
            "COPY weather FROM STDIN",
            "DROP TABLE IF EXISTS weather, t",
            "TRUNCATE weather",
            "ALTER TABLE weather RENAME COLUMN a TO b",
            "SET statement_timeout = 100",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT a",
            "RELEASE a",
            "DEALLOCATE ALL",
            "DISCARD ALL",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn catalog_ddl_files_and_prepared_sql_are_refused_with_the_reason() {
        for (sql, reason) in [
            ("CREATE SCHEMA s", "refused"),
            ("CREATE VIEW v AS SELECT 1", "refused"),
            ("CREATE DATABASE d", "refused"),
            ("DROP SCHEMA public", "refused"),
            ("DROP VIEW v", "refused"),
            ("CREATE FUNCTION f() RETURNS INT AS 'select 1' LANGUAGE SQL", "refused"),
            ("CREATE INDEX i ON t (s)", "refused"),
            ("SELECT 1 INTO t2", "SELECT ... INTO is refused"),
            ("COPY t TO '/tmp/x'", "COPY ... TO is refused"),
            ("COPY t FROM '/etc/passwd'", "cannot reach the server's files"),
            ("PREPARE p AS SELECT 1", "extended query protocol"),
            ("EXECUTE p", "extended query protocol"),
            ("UPDATE t SET v = 1", "UPDATE is not supported"),
            ("EXPLAIN CREATE VIEW v AS SELECT 1", "refused"),
        ] {
            let e = check(sql).expect_err(sql);
            assert!(e.to_string().contains(reason), "{sql}: {e}");
        }
    }

    #[test]
    fn nothing_writes_to_system_tables_however_they_are_named() {
        for sql in [
            "INSERT INTO system.ingest_errors (time) VALUES (now())",
            "INSERT INTO \"system\".\"ingest_errors\" (time) VALUES (now())",
            "INSERT INTO isobar.system.ingest_errors (time) VALUES (now())",
            "INSERT INTO \"system.ingest_errors\" (time) VALUES (now())",
            "INSERT INTO SYSTEM.INGEST_ERRORS (time) VALUES (now())",
            "COPY system.ingest_errors FROM STDIN",
            "COPY \"system.ingest_errors\" FROM STDIN",
            "CREATE TABLE system.mine (time TIMESTAMPTZ)",
            "CREATE TABLE \"system.mine\" (time TIMESTAMPTZ)",
            "DROP TABLE system.ingest_errors",
            "DROP TABLE t, \"system.ingest_errors\"",
            "TRUNCATE system.ingest_errors",
            "DELETE FROM system.ingest_errors WHERE time < now()",
            "DELETE FROM \"system.ingest_errors\"",
            "ALTER TABLE system.ingest_errors ADD COLUMN x TEXT",
            "ALTER TABLE weather RENAME TO \"system.mine\"",
        ] {
            let e = check(sql).expect_err(sql);
            assert!(e.to_string().contains("only isobar writes"), "{sql}: {e}");
        }
        check("INSERT INTO systems (time) VALUES (now())").expect("a table named like it is not it");
    }
}
