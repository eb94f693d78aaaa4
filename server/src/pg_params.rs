//! Bound parameters lined up with the placeholders a plan still has.
//!
//! pgwire's SQL front end rewrites some catalog queries before planning (SQLAlchemy's column
//! reflection loses a subquery on `pg_sequence`, say), so a plan can hold `$1`, `$3` and `$7`
//! of a statement bound with nine values. datafusion-postgres decodes the n-th value with the
//! n-th placeholder's type, which then belongs to another value: `'r'` read as a number. For
//! such a statement isobar numbers the plan's placeholders `$1..` in order and binds only
//! their values, so each value is decoded with its own placeholder's type.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::messages::extendedquery::Bind;

/// The statement type datafusion-postgres stores: the SQL and, unless empty, its plan.
pub(crate) type PgStatement = (String, Option<(datafusion::sql::sqlparser::ast::Statement, LogicalPlan)>);

fn placeholder_number(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse().ok()
}

/// The Bind format codes that give `format`.
fn format_codes(format: &Format) -> Vec<i16> {
    match format {
        Format::UnifiedText => Vec::new(),
        Format::UnifiedBinary => vec![1],
        Format::Individual(codes) => codes.clone(),
    }
}

/// A portal whose plan uses placeholders `$1..$m` bound to the values of the placeholders it
/// used before, or `None` when the plan already uses every bound value in order.
pub(crate) fn aligned(portal: &Portal<PgStatement>) -> Option<Portal<PgStatement>> {
    let (sql, Some((statement, plan))) = &portal.statement.statement else { return None };
    if portal.parameters.is_empty() {
        return None;
    }
    let mut used: Vec<usize> = plan.get_parameter_types().ok()?.keys().filter_map(|id| placeholder_number(id)).collect();
    used.sort_unstable();
    let bound = portal.parameters.len();
    if used.iter().copied().eq(1..=bound) || used.iter().any(|n| *n == 0 || *n > bound) {
        return None;
    }
    let renumbered: HashMap<usize, usize> = used.iter().enumerate().map(|(i, n)| (*n, i + 1)).collect();
    let plan = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|e| match &e {
                    Expr::Placeholder(Placeholder { id, field }) => match placeholder_number(id).and_then(|n| renumbered.get(&n)) {
                        Some(new) => Ok(Transformed::yes(Expr::Placeholder(Placeholder { id: format!("${new}"), field: field.clone() }))),
                        None => Ok(Transformed::no(e)),
                    },
                    _ => Ok(Transformed::no(e)),
                })
            })
        })
        .ok()?
        .data;
    let pick = |n: &usize| n - 1;
    let types = &portal.statement.parameter_types;
    let parameter_types = used.iter().map(|n| types.get(pick(n)).cloned().flatten()).collect();
    let parameter_formats = match &portal.parameter_format {
        Format::Individual(codes) => used.iter().map(|n| codes.get(pick(n)).copied().unwrap_or(0)).collect(),
        other => format_codes(other),
    };
    let parameters = used.iter().map(|n| portal.parameters[pick(n)].clone()).collect();
    let statement = StoredStatement::new(portal.statement.id.clone(), (sql.clone(), Some((statement.clone(), plan))), parameter_types);
    let bind = Bind::new(
        Some(portal.name.clone()),
        Some(portal.statement.id.clone()),
        parameter_formats,
        parameters,
        format_codes(&portal.result_column_format),
    );
    Portal::try_new(&bind, Arc::new(statement)).ok()
}
