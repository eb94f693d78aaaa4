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
//! scan for one of the newest rows and leaves the rest of the plan as it was; when the groups
//! are by bare tags that tell series apart (all of the table's tags, or one that each series
//! has a value of its own for, as `sensor_id` usually is), each group holds one newest row and
//! the aggregate becomes a projection of them. `SELECT DISTINCT tag` over one tag reads still
//! less: one row of a series for each value, from the series index ([`Storage::distinct_tag`]),
//! when storage applies every condition on the way exactly.
//!
//! [`Storage::latest`]: isobar_storage::Storage::latest
//! [`Storage::distinct_tag`]: isobar_storage::Storage::distinct_tag

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, SortExpr};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use isobar_storage::TIME_COLUMN;

use crate::plan_chain::{Chain, chain_under, with_table};
use crate::pushdown::Pushdown;
use crate::table::StorageTable;

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
        if let LogicalPlan::Aggregate(aggregate) = &plan
            && let Some(values) = distinct_tag(aggregate, &chain, input)?
        {
            return Ok(Transformed::yes(values));
        }
        let input = with_table(input, &|table| table.latest_rows(time_min_ns, time_max_ns))?;
        if let LogicalPlan::Aggregate(aggregate) = &plan
            && let Some(rows) = one_series_per_group(aggregate, &chain.table, &input)?
        {
            return Ok(Transformed::yes(rows));
        }
        Ok(Transformed::yes(plan.with_new_exprs(plan.expressions(), vec![input])?))
    }
}

/// When `aggregate` groups by bare tag columns that tell series apart (all the table's tags, or
/// one tag whose every series has a value of its own), each group holds one series and so one
/// of `newest` rows: the aggregate is a projection of them, each aggregate the value it
/// picks, without DataFusion's ordered aggregates over as many groups as series.
fn one_series_per_group(aggregate: &Aggregate, table: &StorageTable, newest: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let Some(groups) = aggregate.group_expr.iter().map(bare_column).collect::<Option<Vec<&Column>>>() else { return Ok(None) };
    // Without groups an aggregate answers one row, also when no row is in range.
    if groups.is_empty() {
        return Ok(None);
    }
    let schema = table.schema_of_table();
    let all_tags = schema.tags().all(|t| groups.iter().any(|c| c.name == t.name));
    if !all_tags && !groups.iter().any(|c| table.storage().tag_is_key(&schema.name, &c.name)) {
        return Ok(None);
    }
    let Some(values) = aggregate.aggr_expr.iter().map(picked_value).collect::<Option<Vec<Expr>>>() else { return Ok(None) };
    let exprs = groups.into_iter().map(|c| Expr::Column(c.clone())).chain(values);
    let named = exprs.enumerate().map(|(i, e)| {
        let (qualifier, field) = aggregate.schema.qualified_field(i);
        e.alias_qualified(qualifier.cloned(), field.name())
    });
    let projection = LogicalPlanBuilder::from(newest.clone()).project(named.collect::<Vec<_>>())?.build()?;
    // Anything DataFusion would type differently keeps the aggregate.
    let same = projection.schema().fields().iter().zip(aggregate.schema.fields()).all(|(a, b)| a.data_type() == b.data_type());
    Ok(same.then_some(projection))
}

/// `SELECT DISTINCT tag` (an aggregate of no aggregates grouped by one bare tag): one row of a
/// series for each value, from the series index, when storage applies every condition on the
/// way exactly, so that the row of a series it picks for a value meets them all.
fn distinct_tag(aggregate: &Aggregate, chain: &Chain, input: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let ([Expr::Column(tag)], true) = (aggregate.group_expr.as_slice(), aggregate.aggr_expr.is_empty()) else { return Ok(None) };
    let is_tag = |c: &str| chain.table.is_tag(c);
    if !is_tag(&tag.name) || !chain.tag_filters.iter().chain(&chain.time_filters).all(|f| Pushdown::applies_exactly(f, is_tag)) {
        return Ok(None);
    }
    // A tag that tells series apart has a value per series: the newest rows are as quick.
    let table = chain.table.schema_of_table();
    if chain.table.storage().tag_is_key(&table.name, &tag.name) {
        return Ok(None);
    }
    let (time_min_ns, time_max_ns) = chain.time_bounds();
    let values = with_table(input, &|table| table.distinct_values(&tag.name, time_min_ns, time_max_ns))?;
    let (qualifier, field) = aggregate.schema.qualified_field(0);
    let projection =
        LogicalPlanBuilder::from(values).project([Expr::Column(tag.clone()).alias_qualified(qualifier.cloned(), field.name())])?.build()?;
    let same = projection.schema().field(0).data_type() == field.data_type();
    Ok(same.then_some(projection))
}

fn bare_column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        _ => None,
    }
}

/// The value a newest-row aggregate ([`picks_newest`]) takes from a group of one row.
fn picked_value(e: &Expr) -> Option<Expr> {
    let f = match e {
        Expr::Alias(alias) => return picked_value(&alias.expr),
        Expr::AggregateFunction(f) => f,
        _ => return None,
    };
    match f.func.name() {
        "last_value" | "first_value" | "last" | "max" => f.params.args.first().cloned(),
        _ => None,
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
