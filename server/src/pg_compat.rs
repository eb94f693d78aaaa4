//! Catalog queries of Postgres drivers that DataFusion cannot plan, answered with SQL of
//! isobar's own that gives what PostgreSQL would.
//!
//! pgJDBC's `DatabaseMetaData.getPrimaryKeys` (DBeaver, Metabase, Superset and Tableau call it
//! to reflect a table) expands `pg_index.indkey` with the set-returning
//! `information_schema._pg_expandarray`. isobar's tables have no `pg_index` rows; their key is
//! their tags and `time` (one row per series and time), named `<table>_pkey` as PostgreSQL
//! names a primary key, in the order PostgreSQL would list `PRIMARY KEY (tags..., time)`.
//!
//! SQLAlchemy 2.1's column reflection asks, in `CASE` expressions, for a column's identity
//! sequence and collation through correlated subqueries DataFusion cannot run there. isobar's
//! columns have neither, so in a catalog query a subquery inside a `CASE` is NULL, which is
//! what PostgreSQL answers for them.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use isobar_query::QueryEngine;
use isobar_storage::{ColumnKind, TIME_COLUMN};

/// The SQL to run instead of `sql`, if it is a driver query isobar answers itself.
pub(crate) fn rewrite(engine: &QueryEngine, sql: &str) -> Option<String> {
    if !sql.contains("pg_catalog") {
        return None;
    }
    if sql.contains("_pg_expandarray(i.indkey)") && sql.contains("indisprimary") {
        return Some(primary_keys(engine, literal_after(sql, "n.nspname =").as_deref(), literal_after(sql, "ct.relname =").as_deref()));
    }
    if sql.contains("json_build_object") {
        return null_case_subqueries(sql);
    }
    None
}

/// `sql` with every subquery inside a `CASE` made NULL; `None` when it has none (or does not
/// parse: planning reports that).
fn null_case_subqueries(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    let _ = visit_expressions_mut(&mut statements, |expr| {
        if let Expr::Case { .. } = expr {
            let _ = visit_expressions_mut(expr, |inner| {
                if let Expr::Subquery(_) = inner {
                    *inner = Expr::value(Value::Null);
                    changed = true;
                }
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::<()>::Continue(())
    });
    changed.then(|| statements.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

/// pgJDBC's `getPrimaryKeys` answer for the tables `schema` and `table` name (all when not
/// given).
fn primary_keys(engine: &QueryEngine, schema: Option<&str>, table: Option<&str>) -> String {
    let mut rows = Vec::new();
    if schema.is_none_or(|s| s == isobar_query::DEFAULT_SCHEMA) {
        let mut tables = engine.storage().tables();
        tables.retain(|t| table.is_none_or(|name| name == t.name));
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tables {
            let tags = t.columns.iter().filter(|c| c.kind == ColumnKind::Tag).map(|c| c.name.as_str());
            for (i, column) in tags.chain(std::iter::once(TIME_COLUMN)).enumerate() {
                rows.push(format!("({}, {}, {}, {})", quote(&t.name), quote(column), i + 1, quote(&format!("{}_pkey", t.name))));
            }
        }
    }
    let (values, filter) = match rows.is_empty() {
        true => ("('', '', 0, '')".to_owned(), " WHERE false"),
        false => (rows.join(", "), ""),
    };
    format!(
        "SELECT CAST(NULL AS TEXT) AS table_cat, '{}' AS table_schem, t AS table_name, c AS column_name, \
         CAST(k AS SMALLINT) AS key_seq, pk AS pk_name FROM (VALUES {values}) AS keys(t, c, k, pk){filter} \
         ORDER BY table_name, pk_name, key_seq",
        isobar_query::DEFAULT_SCHEMA
    )
}

/// The string literal (`'x'` or `E'x'`) after `marker` in `sql`.
fn literal_after(sql: &str, marker: &str) -> Option<String> {
    let rest = sql[sql.find(marker)? + marker.len()..].trim_start();
    let rest = rest.strip_prefix('E').unwrap_or(rest).strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                value.push('\'');
            }
            '\'' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// `s` as an SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::literal_after;

    #[test]
    fn subqueries_inside_case_become_null_and_the_rest_stays() {
        let sql = "SELECT a.attname, CASE WHEN (a.attidentity != '' AND (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) = 1) \
                   THEN (SELECT json_build_object('x', s.seqstart) FROM pg_catalog.pg_sequence s) ELSE NULL END AS identity \
                   FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1";
        let rewritten = super::null_case_subqueries(sql).expect("rewritten");
        assert!(!rewritten.contains("json_build_object") && !rewritten.contains("pg_type"), "{rewritten}");
        assert!(rewritten.contains("CASE WHEN (a.attidentity <> '' AND NULL = 1) THEN NULL ELSE NULL END"), "{rewritten}");
        assert!(rewritten.contains("a.attrelid = $1"), "{rewritten}");
        assert_eq!(super::null_case_subqueries("SELECT CASE WHEN x THEN 1 END FROM pg_catalog.pg_class"), None);
    }

    #[test]
    fn literals_are_read_as_pgjdbc_escapes_them() {
        let sql = "WHERE true AND n.nspname = E'public' AND ct.relname = E'it''s\\\\x' AND i.indisprimary";
        assert_eq!(literal_after(sql, "n.nspname =").as_deref(), Some("public"));
        assert_eq!(literal_after(sql, "ct.relname =").as_deref(), Some("it's\\x"));
        assert_eq!(literal_after("AND ct.relname = 'plain'", "ct.relname =").as_deref(), Some("plain"));
        assert_eq!(literal_after("WHERE true AND i.indisprimary", "ct.relname ="), None);
    }
}
