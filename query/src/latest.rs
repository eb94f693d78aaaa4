//! Last values without a scan: an optimizer rule that answers "the latest reading of each
//! sensor" from the newest row storage keeps of every series ([`Storage::latest`]).
//!
//! An aggregate qualifies when its answer is the same over the newest row of each series as over
//! every row: it groups by expressions of tags only (constant within a series), and each aggregate
//! picks the row of the newest time in its group: `last_value(x ORDER BY [tags,] time)`,
//! `first_value(x ORDER BY [tags,] time DESC)` (what `DISTINCT ON (tags) ... ORDER BY tags, time
//! DESC` becomes), `last(x, time)` and `max(time)`; with none, the distinct tag values. Whatever
//! the group, the row that wins it is the newest row of its series, so it is among the series'
//! newest rows. The same holds for the first row of an ordering by tags and then `time` descending
//! (`ORDER BY time DESC LIMIT 1`, the latest reading of one sensor). Between the aggregate and the
//! table there may only be filters on tags (constant within a series, so they keep or drop whole
//! series) and bounds on `time` (the newest row within the bounds is what storage returns),
//! projections of bare columns and aliases of the table (`plan_chain.rs`). The rule swaps the table
//! scan for one of the newest rows and leaves the rest of the plan as it was.
//!
//! [`Storage::latest`]: isobar_storage::Storage::latest

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, SortExpr};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use isobar_storage::TIME_COLUMN;

use crate::plan_chain::{chain_under, with_table};

/// Replaces the scan under a qualifying aggregate or first-row sort with a scan of each
/// series' newest row.
#[derive(Debug, Default)]
pub(crate) struct LatestRows;

impl OptimizerRule for LatestRows {
    fn name(&self) -> &str {
        "isobar_latest_rows"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let input = match &plan {
            LogicalPlan::Aggregate(aggregate) => &aggregate.input,
            LogicalPlan::Sort(sort) if sort.fetch == Some(1) => &sort.input,
            _ => return Ok(Transformed::no(plan)),
        };
        let Some(chain) = chain_under(input) else { return Ok(Transformed::no(plan)) };
        let is_tag = |c: &Column| chain.table.is_tag(&c.name);
        let qualifies = match &plan {
            LogicalPlan::Aggregate(aggregate) => qualifies(aggregate, is_tag),
            LogicalPlan::Sort(sort) => newest_first_by(&sort.expr, true, &is_tag),
            _ => false,
        };
        if !chain.table.keeps_latest() || !qualifies {
            return Ok(Transformed::no(plan));
        }
        let (time_min_ns, time_max_ns) = chain.time_bounds();
        let input = with_table(input, &|table| table.latest_rows(time_min_ns, time_max_ns))?;
        Ok(Transformed::yes(plan.with_new_exprs(plan.expressions(), vec![input])?))
    }
}

/// Whether every group is by tags and every aggregate picks the newest row of its group.
fn qualifies(aggregate: &Aggregate, is_tag: impl Fn(&Column) -> bool) -> bool {
    let on_tags = |e: &Expr| !matches!(e, Expr::GroupingSet(_)) && e.column_refs().iter().all(|c| is_tag(c));
    aggregate.group_expr.iter().all(on_tags) && aggregate.aggr_expr.iter().all(|e| picks_newest(e, &is_tag))
}

fn picks_newest(e: &Expr, is_tag: &impl Fn(&Column) -> bool) -> bool {
    let f = match e {
        Expr::Alias(alias) => return picks_newest(&alias.expr, is_tag),
        Expr::AggregateFunction(f) => f,
        _ => return false,
    };
    let AggregateFunction { func, params } = f;
    if params.distinct || params.filter.is_some() || params.null_treatment == Some(NullTreatment::IgnoreNulls) {
        return false;
    }
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == TIME_COLUMN);
    match func.name() {
        "last_value" => newest_first_by(&params.order_by, false, is_tag),
        "first_value" => newest_first_by(&params.order_by, true, is_tag),
        "last" => params.args.get(1).is_some_and(is_time) && params.order_by.is_empty(),
        "max" => params.args.first().is_some_and(is_time),
        _ => false,
    }
}

/// Whether an ordering is by tags, then `time` in the direction that puts the newest row where
/// the aggregate takes its row from (first when `descending`, last otherwise); what follows
/// `time` only breaks ties between series.
fn newest_first_by(order_by: &[SortExpr], descending: bool, is_tag: &impl Fn(&Column) -> bool) -> bool {
    for sort in order_by {
        match &sort.expr {
            Expr::Column(c) if c.name == TIME_COLUMN => return sort.asc != descending,
            e if e.column_refs().iter().all(|c| is_tag(c)) => {}
            _ => return false,
        }
    }
    false
}
