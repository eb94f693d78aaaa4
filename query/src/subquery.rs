//! Scalar subqueries as PostgreSQL runs them.
//!
//! PostgreSQL accepts a correlated scalar subquery anywhere, failing at run time if it yields
//! more than one row. DataFusion plans one only when it is aggregated, so catalog queries such
//! as SQLAlchemy's column reflection (`CASE WHEN (SELECT typcollation FROM pg_type WHERE oid =
//! atttypid) != attcollation ...`) fail to plan. isobar wraps the single output of every
//! non-aggregated scalar subquery in `max(...)`, which is the same value whenever the subquery
//! yields at most one row, the only case PostgreSQL accepts.
//!
//! PostgreSQL also names an unaliased scalar subquery's column after the subquery's own
//! column (`SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)` gives two columns
//! `count`), where DataFusion names each `(<subquery>)` and refuses two of them in one select
//! list. isobar names them as PostgreSQL does when a select list has more than one, adding `_2`,
//! `_3` to a name already given, since DataFusion's columns need names of their own.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart,
    Query, Select, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut, visit_expressions,
};

/// Aggregate functions: a subquery calling one already yields one row.
const AGGREGATES: [&str; 16] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "first",
    "last",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "stddev",
];

/// Wraps every non-aggregated scalar subquery's output in `max`; true when anything changed.
pub fn aggregate_scalar_subqueries(statement: &mut Statement) -> bool {
    let mut visitor = Aggregate::default();
    let _ = statement.visit(&mut visitor);
    visitor.changed
}

#[derive(Default)]
struct Aggregate {
    /// The subqueries of `x = ANY (SELECT ...)` and `ALL`, which yield many rows by design
    /// (by address: they are seen from their parent before themselves).
    sets: Vec<*const Query>,
    changed: bool,
}

impl VisitorMut for Aggregate {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            self.changed |= name_subquery_columns(select);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if let Expr::Subquery(query) = right.as_ref() {
                    self.sets.push(&raw const **query);
                }
            }
            Expr::Subquery(query) if !self.sets.contains(&(&raw const **query)) => {
                if let SetExpr::Select(select) = query.body.as_mut() {
                    self.changed |= wrap_in_max(select);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Gives the unaliased scalar subqueries of `select`'s list the names PostgreSQL gives them,
/// when there is more than one; true when it named any.
fn name_subquery_columns(select: &mut Select) -> bool {
    let unnamed = |item: &SelectItem| matches!(item, SelectItem::UnnamedExpr(Expr::Subquery(_)));
    if select.projection.iter().filter(|item| unnamed(item)).count() < 2 {
        return false;
    }
    let mut given: Vec<String> = Vec::new();
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(Expr::Subquery(query)) = item else { continue };
        let base = subquery_column_name(query);
        let mut name = base.clone();
        for n in 2.. {
            if !given.contains(&name) {
                break;
            }
            name = format!("{base}_{n}");
        }
        given.push(name.clone());
        let expr = std::mem::replace(item, SelectItem::Wildcard(Default::default()));
        let SelectItem::UnnamedExpr(expr) = expr else { continue };
        *item = SelectItem::ExprWithAlias { expr, alias: Ident::with_quote('"', name) };
    }
    true
}

/// The name PostgreSQL gives a scalar subquery's column: its one column's alias, column name or
/// function name, or `?column?`.
fn subquery_column_name(query: &Query) -> String {
    let SetExpr::Select(select) = query.body.as_ref() else { return "?column?".into() };
    match select.projection.as_slice() {
        [SelectItem::ExprWithAlias { alias, .. }] => alias.value.clone(),
        [SelectItem::UnnamedExpr(Expr::Identifier(ident))] => ident.value.to_lowercase(),
        [SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts))] => parts.last().map_or("?column?".into(), |i| i.value.to_lowercase()),
        [SelectItem::UnnamedExpr(Expr::Function(f))] => {
            f.name.0.last().and_then(ObjectNamePart::as_ident).map_or("?column?".into(), |i| i.value.to_lowercase())
        }
        _ => "?column?".into(),
    }
}

fn wrap_in_max(select: &mut Select) -> bool {
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let [item] = select.projection.as_mut_slice() else { return false };
    let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else { return false };
    if grouped || select.distinct.is_some() || calls_aggregate(e) {
        return false;
    }
    let inner = std::mem::replace(e, Expr::value(Value::Null));
    *e = Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier("max".into())]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    true
}

fn calls_aggregate(expr: &Expr) -> bool {
    let mut found = false;
    let _ = visit_expressions(expr, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.0.last().and_then(ObjectNamePart::as_ident).map(|i| i.value.to_lowercase()).unwrap_or_default();
            found |= AGGREGATES.contains(&name.as_str());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").remove(0);
        aggregate_scalar_subqueries(&mut statement);
        statement.to_string()
    }

    #[test]
    fn plain_scalar_subqueries_are_aggregated() {
        assert_eq!(
            rewritten("SELECT a, (SELECT b FROM u WHERE u.k = t.k) != 0 FROM t"),
            "SELECT a, (SELECT max(b) FROM u WHERE u.k = t.k) <> 0 FROM t"
        );
        assert_eq!(rewritten("SELECT (SELECT b AS c FROM u) FROM t"), "SELECT (SELECT max(b) AS c FROM u) FROM t");
    }

    #[test]
    fn several_unaliased_subqueries_are_named_as_postgresql_names_them() {
        assert_eq!(
            rewritten("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT v AS x FROM c), (SELECT 1), k FROM t"),
            "SELECT (SELECT count(*) FROM a) AS \"count\", (SELECT count(*) FROM b) AS \"count_2\", (SELECT max(v) AS x FROM c) AS \"x\", (SELECT max(1)) AS \"?column?\", k FROM t"
        );
    }

    #[test]
    fn aggregated_grouped_and_set_subqueries_are_left_alone() {
        for sql in [
            "SELECT (SELECT count(*) FROM u) FROM t",
            "SELECT (SELECT 1 + MAX(b) FROM u) FROM t",
            "SELECT (SELECT b FROM u GROUP BY b) FROM t",
            "SELECT (SELECT DISTINCT b FROM u) FROM t",
            "SELECT a FROM t WHERE a IN (SELECT b FROM u)",
            "SELECT a FROM t WHERE EXISTS (SELECT b FROM u)",
            "SELECT a FROM t WHERE a = ANY (SELECT b FROM u)",
            "SELECT a FROM t WHERE a > ALL (SELECT b FROM u)",
        ] {
            assert_eq!(rewritten(sql), Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses")[0].to_string());
        }
    }
}
