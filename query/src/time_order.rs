//! The newest (or oldest) readings without reading the rest: an optimizer rule for
//! `ORDER BY time [DESC] LIMIT n` over a storage table.
//!
//! Storage keeps rows in time partitions, and every row of a partition is newer than every row
//! of the partitions before it. A scan that reads partitions newest first and begins no new one
//! once it has read `n` rows has read the `n` newest rows, ties in `time` included (a partition
//! holds every row of its times); a sort with a fetch of `n` on top picks them. The rule applies
//! when the sort's first key is `time` and nothing between the sort and the table drops rows
//! the scan read: only projections of bare columns, aliases of the table, and filters storage
//! applies exactly (time bounds, tag equalities), pushed into the scan. Its EXPLAIN shows
//! `read=rows newest first until n are read`.

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use isobar_storage::TIME_COLUMN;

use crate::plan_chain::with_table;
use crate::pushdown::Pushdown;
use crate::table::StorageTable;

/// Reads partitions in the sort's time order under `ORDER BY time [DESC] LIMIT n`.
#[derive(Debug, Default)]
pub(crate) struct FirstRowsInTimeOrder;

impl OptimizerRule for FirstRowsInTimeOrder {
    fn name(&self) -> &str {
        "isobar_first_rows_in_time_order"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Sort(sort) = &plan else { return Ok(Transformed::no(plan)) };
        let (Some(rows_wanted), Some(first)) = (sort.fetch, sort.expr.first()) else { return Ok(Transformed::no(plan)) };
        let by_time = matches!(&first.expr, Expr::Column(c) if c.name == TIME_COLUMN);
        if !by_time || !reads_every_row_exactly(&sort.input) {
            return Ok(Transformed::no(plan));
        }
        let newest_first = !first.asc;
        let input = with_table(&sort.input, &|table| table.in_time_order(newest_first, rows_wanted as u64))?;
        Ok(Transformed::yes(plan.with_new_exprs(plan.expressions(), vec![input])?))
    }
}

/// Whether `plan` is a scan of a storage table that reads every row its filters select and
/// applies them all itself, under projections of bare columns and aliases only.
fn reads_every_row_exactly(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let Ok(provider) = source_as_provider(&scan.source) else { return false };
            let Some(table) = provider.downcast_ref::<StorageTable>() else { return false };
            scan.fetch.is_none()
                && table.fast_paths()
                && table.reads_every_row()
                && scan.filters.iter().all(|f| Pushdown::applies_exactly(f, |c| table.is_tag(c)))
        }
        LogicalPlan::Projection(projection) if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            reads_every_row_exactly(&projection.input)
        }
        LogicalPlan::SubqueryAlias(alias) => reads_every_row_exactly(&alias.input),
        _ => false,
    }
}
