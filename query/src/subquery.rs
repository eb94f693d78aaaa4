//! Scalar subqueries as PostgreSQL runs them.
//!
//! PostgreSQL accepts a correlated scalar subquery anywhere, failing at run time if it yields
//! more than one row. DataFusion plans one only when it is aggregated, so catalog queries such
//! as SQLAlchemy's column reflection (`CASE WHEN (SELECT typcollation FROM pg_type WHERE oid =
//! atttypid) != attcollation ...`) fail to plan. isobar wraps the single output of every
//! non-aggregated scalar subquery in `max(...)`, which is the same value whenever the subquery
//! yields at most one row, the only case PostgreSQL accepts.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, ObjectName, ObjectNamePart, Query,
    Select, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut, visit_expressions,
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
