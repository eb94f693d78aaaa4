//! Catalog queries of Postgres drivers that DataFusion cannot plan, answered with SQL of
//! isobar's own that gives what PostgreSQL would.
//!
//! pgJDBC's `DatabaseMetaData.getPrimaryKeys` (DBeaver, Metabase, Superset and Tableau call it
//! to reflect a table) expands `pg_index.indkey` with the set-returning
//! `information_schema._pg_expandarray`. isobar's tables have no `pg_index` rows; their key is
//! their tags and `time` (one row per series and time), named `<table>_pkey` as PostgreSQL
//! names a primary key, in the order PostgreSQL would list `PRIMARY KEY (tags..., time)`.
//!
//! SQLAlchemy's primary-key and unique-constraint reflection expands `pg_index.indkey` too, with
//! `unnest` and `generate_subscripts`; isobar answers it from the same key columns, keeping the
//! query's filter on the constraint type and table oids. Its index reflection asks for indexes
//! other than the primary key, and isobar's tables have none.
//!
//! SQLAlchemy 2.1's column reflection asks, in `CASE` expressions, for a column's identity
//! sequence and collation through correlated subqueries DataFusion cannot run there. isobar's
//! columns have neither, so in a catalog query a subquery inside a `CASE` is NULL, which is
//! what PostgreSQL answers for them.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Select, SelectItem, SetExpr, Statement, TableFactor, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use isobar_query::QueryEngine;
use isobar_storage::{ColumnKind, TIME_COLUMN};

/// The SQL to run instead of `sql`, if it is a driver query isobar answers itself.
pub(crate) fn rewrite(engine: &QueryEngine, sql: &str) -> Option<String> {
    if !sql.contains("pg_catalog") {
        return None;
    }
    let visible = if sql.contains("pg_table_is_visible") { search_path_visibility(sql) } else { None };
    let sql = visible.as_deref().unwrap_or(sql);
    if sql.contains("_pg_expandarray(i.indkey)") && sql.contains("indisprimary") {
        return Some(primary_keys(engine, literal_after(sql, "n.nspname =").as_deref(), literal_after(sql, "ct.relname =").as_deref()));
    }
    let rewritten = if sql.contains("generate_subscripts(pg_catalog.pg_index.indkey")
        && sql.contains("FROM pg_catalog.pg_constraint JOIN pg_catalog.pg_index")
    {
        sqlalchemy_constraints(engine, sql)
    } else if sql.contains("unnest(pg_catalog.pg_index.indkey)") && sql.contains("NOT pg_catalog.pg_index.indisprimary") {
        no_rows_like(sql)
    } else if sql.contains("json_build_object") {
        null_case_subqueries(sql)
    } else if sql.contains("pg_catalog.pg_class.reloptions") {
        without_reloptions(sql)
    } else {
        None
    };
    rewritten.or(visible)
}

/// The schemas on isobar's search path: a table elsewhere (`system.*`, `information_schema.*`)
/// is named with its schema.
const SEARCH_PATH: &str = "'public', 'pg_catalog'";

/// `sql` with `pg_table_is_visible(<pg_class>.oid)` asked of the table's schema: whether it is
/// on the search path, as PostgreSQL answers (datafusion-postgres says every table is visible,
/// so psql's `\dt` listed the system tables). `None` when there is no such call.
fn search_path_visibility(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    let _ = visit_expressions_mut(&mut statements, |expr| {
        if let Expr::Function(function) = expr {
            let call = function.to_string();
            let argument = ["pg_catalog.pg_table_is_visible(", "pg_table_is_visible("].iter().find_map(|name| call.strip_prefix(name));
            if let Some(relation) = argument.and_then(|a| a.strip_suffix(".oid)")) {
                let visible = format!(
                    "{relation}.relnamespace IN (SELECT visible.oid FROM pg_catalog.pg_namespace AS visible WHERE visible.nspname IN ({SEARCH_PATH}))"
                );
                if let Some(replacement) = parse_expr(&visible) {
                    *expr = replacement;
                    changed = true;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed.then(|| statements.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

/// `sql` with `pg_class.reloptions` selected as NULL: isobar's catalog has no storage
/// parameters, and SQLAlchemy 2.1's table reflection asks for them.
fn without_reloptions(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(query)] = statements.as_mut_slice() else { return None };
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let mut changed = false;
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item
            && parts.iter().map(|p| p.value.as_str()).eq(["pg_catalog", "pg_class", "reloptions"])
        {
            *item = SelectItem::ExprWithAlias { expr: parse_expr("CAST(NULL AS TEXT[])")?, alias: parts[2].clone() };
            changed = true;
        }
    }
    changed.then(|| statements[0].to_string())
}

/// SQLAlchemy's primary-key and unique-constraint reflection (`_constraint_query`), which
/// expands `pg_index.indkey` with `unnest` and `generate_subscripts`: one row per constraint
/// with its columns in order. isobar's tables have one constraint, their key; the answer keeps
/// the query's own filter on `pg_constraint` (its `contype` and table oids, bound as
/// parameters).
fn sqlalchemy_constraints(engine: &QueryEngine, sql: &str) -> Option<String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(query)] = statements.as_slice() else { return None };
    let con = find_select(query, &|select: &Select| {
        let from = select.from.first();
        from.is_some_and(|f| {
            is_table(&f.relation, "pg_catalog.pg_constraint") && f.joins.iter().any(|j| is_table(&j.relation, "pg_catalog.pg_index"))
        })
    })?;
    let filter = con.selection.as_ref()?;
    Some(format!(
        "SELECT pg_constraint.conrelid, array_agg(pg_constraint.attname ORDER BY pg_constraint.ord) AS cols, pg_constraint.conname, \
         CAST(NULL AS TEXT) AS description, CAST(count(*) AS SMALLINT) AS indnkeyatts, false AS indnullsnotdistinct \
         FROM (SELECT c.oid AS conrelid, 'p' AS contype, keys.pk_name AS conname, keys.column_name AS attname, keys.key_seq AS ord \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN {} ON keys.table_name = c.relname \
         WHERE n.nspname = '{}') AS pg_constraint WHERE {filter} \
         GROUP BY pg_constraint.conrelid, pg_constraint.conname ORDER BY pg_constraint.conrelid, pg_constraint.conname",
        key_columns(engine, None, None),
        isobar_query::DEFAULT_SCHEMA,
    ))
}

/// A query with the output columns of `sql` and no rows: SQLAlchemy's index reflection asks
/// for the indexes other than the primary key, and isobar's tables have none.
fn no_rows_like(sql: &str) -> Option<String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(query)] = statements.as_slice() else { return None };
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let columns = select.projection.iter().map(|item| match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(|p| p.value.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(id.value.clone()),
        _ => None,
    });
    let columns =
        columns.map(|c| c.map(|name| format!("CAST(NULL AS TEXT) AS \"{}\"", name.replace('"', "\"\"")))).collect::<Option<Vec<_>>>()?;
    Some(format!("SELECT {} WHERE false", columns.join(", ")))
}

/// The first `SELECT` of `query` or of the subqueries in its `FROM`s, outermost first, that
/// `wanted` picks. (sqlparser's visitor has stack frames too large for a query thread in debug
/// builds.)
fn find_select<'a>(query: &'a Query, wanted: &impl Fn(&Select) -> bool) -> Option<&'a Select> {
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    if wanted(select) {
        return Some(select);
    }
    let factors = select.from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    factors
        .filter_map(|factor| match factor {
            TableFactor::Derived { subquery, .. } => find_select(subquery, wanted),
            _ => None,
        })
        .next()
}

/// Whether `factor` is the table `name` (as written, schema included).
fn is_table(factor: &TableFactor, name: &str) -> bool {
    matches!(factor, TableFactor::Table { name: table, .. } if table.to_string() == name)
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

/// The key columns of isobar's tables that `schema` and `table` name (all when not given), as
/// the relation `keys(table_name, column_name, key_seq, pk_name)`.
fn key_columns(engine: &QueryEngine, schema: Option<&str>, table: Option<&str>) -> String {
    let mut rows = Vec::new();
    if schema.is_none_or(|s| s == isobar_query::DEFAULT_SCHEMA) {
        for t in engine.storage().tables().into_iter().filter(|t| table.is_none_or(|name| name == t.name)) {
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
    format!("(SELECT * FROM (VALUES {values}) AS k(table_name, column_name, key_seq, pk_name){filter}) AS keys")
}

/// pgJDBC's `getPrimaryKeys` answer for the tables `schema` and `table` name (all when not
/// given).
fn primary_keys(engine: &QueryEngine, schema: Option<&str>, table: Option<&str>) -> String {
    format!(
        "SELECT CAST(NULL AS TEXT) AS table_cat, '{}' AS table_schem, table_name, column_name, \
         CAST(key_seq AS SMALLINT) AS key_seq, pk_name FROM {} ORDER BY table_name, pk_name, key_seq",
        isobar_query::DEFAULT_SCHEMA,
        key_columns(engine, schema, table)
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

/// The expression `sql`.
fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()
}

/// `s` as an SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::{Select, Statement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

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
    fn only_tables_in_the_search_path_are_visible() {
        let sql =
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', '') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1";
        let rewritten = super::search_path_visibility(sql).expect("rewritten");
        assert!(
            rewritten.contains("c.relnamespace IN (SELECT visible.oid FROM pg_catalog.pg_namespace AS visible WHERE visible.nspname IN ('public', 'pg_catalog'))"),
            "{rewritten}"
        );
        assert!(!rewritten.contains("pg_table_is_visible") && rewritten.ends_with("ORDER BY 1"), "{rewritten}");
        assert_eq!(super::search_path_visibility("SELECT pg_table_is_visible(42)"), None, "only a pg_class oid is asked of its schema");
    }

    #[test]
    fn sqlalchemy_table_options_and_indexes_are_answered_without_the_catalog_isobar_lacks() {
        let options = "SELECT pg_catalog.pg_class.oid, pg_catalog.pg_class.relname, pg_catalog.pg_class.reloptions, NULL AS relhasoids \
                       FROM pg_catalog.pg_class WHERE pg_catalog.pg_class.relname IN ($1)";
        let rewritten = super::without_reloptions(options).expect("rewritten");
        assert!(rewritten.contains("CAST(NULL AS TEXT[]) AS reloptions, NULL AS relhasoids"), "{rewritten}");
        assert!(rewritten.contains("relname IN ($1)"), "{rewritten}");

        let indexes = "SELECT pg_catalog.pg_index.indrelid, pg_catalog.pg_class.relname, idx_cols.elements, \
                       pg_catalog.pg_constraint.conrelid IS NOT NULL AS has_constraint FROM pg_catalog.pg_index \
                       JOIN pg_catalog.pg_class ON pg_catalog.pg_index.indexrelid = pg_catalog.pg_class.oid \
                       WHERE pg_catalog.pg_index.indrelid IN ($1) AND NOT pg_catalog.pg_index.indisprimary";
        assert_eq!(
            super::no_rows_like(indexes).as_deref(),
            Some(
                "SELECT CAST(NULL AS TEXT) AS \"indrelid\", CAST(NULL AS TEXT) AS \"relname\", CAST(NULL AS TEXT) AS \"elements\", \
                 CAST(NULL AS TEXT) AS \"has_constraint\" WHERE false"
            )
        );
    }

    #[test]
    fn the_constraint_subquery_is_found_in_the_from_of_another() {
        let sql = "SELECT attr.conname FROM (SELECT con.conname FROM pg_catalog.pg_attribute JOIN (SELECT pg_catalog.pg_constraint.conname \
                   FROM pg_catalog.pg_constraint JOIN pg_catalog.pg_index ON pg_catalog.pg_constraint.conindid = pg_catalog.pg_index.indexrelid \
                   WHERE pg_catalog.pg_constraint.contype = $3 AND pg_catalog.pg_constraint.conrelid IN ($4)) AS con ON true) AS attr";
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        let [Statement::Query(query)] = statements.as_slice() else { panic!("one query") };
        let found = super::find_select(query, &|select: &Select| {
            select.from.first().is_some_and(|f| super::is_table(&f.relation, "pg_catalog.pg_constraint"))
        });
        let filter = found.and_then(|select| select.selection.as_ref()).map(ToString::to_string);
        assert_eq!(filter.as_deref(), Some("pg_catalog.pg_constraint.contype = $3 AND pg_catalog.pg_constraint.conrelid IN ($4)"));
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
