//! What lies between an aggregate and the storage table it reads, for the optimizer rules that
//! answer aggregates from something other than every row (`latest.rs`, `rollup_rewrite.rs`).
//!
//! They look through projections of bare columns, aliases of the table, and filters made of
//! conditions on tags (constant within a series) and bounds on `time`; anything else between
//! (a join, a field condition, a computed column) leaves the aggregate to the general path.

use std::sync::Arc;

use datafusion::common::{Result, internal_err};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use isobar_storage::TIME_COLUMN;

use crate::pushdown::Pushdown;
use crate::table::StorageTable;

/// A storage table under an aggregate, and the conditions on the way to it.
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) table: StorageTable,
    pub(crate) scan: TableScan,
    /// Bounds on `time` (each understood by [`Pushdown`]).
    pub(crate) time_filters: Vec<Expr>,
    /// Conditions on tags only.
    pub(crate) tag_filters: Vec<Expr>,
}

/// The chain from `plan` down to a storage table, if it is made only of what the module doc
/// allows; the filters pushed into the scan count as filters on the way.
pub(crate) fn chain_under(plan: &LogicalPlan) -> Option<Chain> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let table = provider.downcast_ref::<StorageTable>()?.clone();
            if scan.fetch.is_some() {
                return None;
            }
            let mut chain = Chain { table, scan: scan.clone(), time_filters: Vec::new(), tag_filters: Vec::new() };
            for filter in &scan.filters {
                chain.accept(filter)?;
            }
            Some(chain)
        }
        LogicalPlan::Projection(projection) if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            chain_under(&projection.input)
        }
        LogicalPlan::Filter(filter) => {
            let mut chain = chain_under(&filter.input)?;
            chain.accept(&filter.predicate)?;
            Some(chain)
        }
        LogicalPlan::SubqueryAlias(alias) => chain_under(&alias.input),
        _ => None,
    }
}

impl Chain {
    /// Takes a filter whose every conjunct is on tags only or a bound on `time`.
    fn accept(&mut self, filter: &Expr) -> Option<()> {
        for conjunct in split_conjunction(filter) {
            let columns = conjunct.column_refs();
            if columns.iter().all(|c| self.table.is_tag(&c.name)) {
                self.tag_filters.push(conjunct.clone());
                continue;
            }
            let on_time = columns.iter().all(|c| c.name == TIME_COLUMN);
            if !on_time || !Pushdown::understands(conjunct, |_| false) {
                return None;
            }
            self.time_filters.push(conjunct.clone());
        }
        Some(())
    }

    /// The inclusive bounds the chain puts on `time`.
    pub(crate) fn time_bounds(&self) -> (i64, i64) {
        let bounds = Pushdown::from_filters(&self.time_filters, |_| false);
        (bounds.time_min_ns, bounds.time_max_ns)
    }
}

/// `plan` with the storage table it reads (the only one, as [`chain_under`] found it) replaced
/// by `replace` of it.
pub(crate) fn with_table(plan: &LogicalPlan, replace: &impl Fn(&StorageTable) -> StorageTable) -> Result<LogicalPlan> {
    if let LogicalPlan::TableScan(scan) = plan {
        let provider = source_as_provider(&scan.source)?;
        let Some(table) = provider.downcast_ref::<StorageTable>() else {
            return internal_err!("{} is not a storage table", scan.table_name);
        };
        let source = provider_as_source(Arc::new(replace(table)));
        return Ok(LogicalPlan::TableScan(TableScan { source, ..scan.clone() }));
    }
    let inputs = plan.inputs().into_iter().map(|input| with_table(input, replace)).collect::<Result<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}
