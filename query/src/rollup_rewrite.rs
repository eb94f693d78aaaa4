//! Aggregation by windows: an optimizer rule that answers an aggregate over a raw table from
//! partial aggregates per series and time window, from its rollup table (`weather_1m`) where
//! that holds them and from storage's windowed scan of raw rows elsewhere, with the same answer.
//!
//! An aggregate qualifies when it groups by tags and at most one time bucket
//! (`date_trunc('minute', time)`, `date_bin(interval, time[, origin])`, `time_bucket`), and
//! each aggregate is `count`, `sum`, `min`, `max` or `avg` of a numeric field. Between the
//! aggregate and the table the chain of `plan_chain.rs` is allowed. When the bucket's width is
//! a multiple of the rollup's interval and its origin aligned to it, the rule splits the
//! query's time range at window boundaries: whole final windows come from the rollup table
//! (whose scan of them is exact at any instant, late rows and windows being rewritten
//! included); the partial windows at either end, the open windows (provisional while a value in
//! them may have been replaced) and rows before the rollup's retention come from raw rows.
//! Raw rows are read as storage's partials per series and bucket ([`Windows`]; per series when
//! there is no bucket), computed as they are decoded: no tag strings per row and no hash
//! table of the query's groups over every row. Both give partial aggregates (a count, sum, min
//! and max per field) that one aggregate combines by the original groups, since every window
//! lies inside one bucket. `EXPLAIN` shows the rollup table's scan and the windowed scans.
//!
//! With a chain of rollups (`weather_1m`, `weather_1h`), each part of the range comes from the
//! coarsest rollup that fits the bucket and has it final: an hour bucket over a year reads
//! `weather_1h` for all but the last hours, which `weather_1m` and raw rows serve, since a
//! coarser rollup takes windows only once the finer ones are final.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use isobar_storage::{ColumnKind, FieldType, PARTIAL_AGGREGATES, TIME_COLUMN, TableSchema, Windows, partial_name};

use crate::plan_chain::{Chain, chain_under};
use crate::pushdown::{string, timestamp_ns};
use crate::table::StorageTable;

/// Answers qualifying aggregates over raw tables from partials per window.
#[derive(Debug, Default)]
pub(crate) struct RollupAggregates;

impl OptimizerRule for RollupAggregates {
    fn name(&self) -> &str {
        "isobar_rollup_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else { return Ok(Transformed::no(plan)) };
        match from_rollup(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// A time bucket: `floor((time - origin) / width) * width + origin`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    width_ns: i64,
    origin_ns: i64,
}

/// The rollup table's scan and windowed raw rows, combined as `aggregate` asks; `None` when
/// the aggregate does not qualify.
fn from_rollup(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let Some(chain) = chain_under(&aggregate.input) else { return Ok(None) };
    if !chain.table.fast_paths() || !chain.table.reads_every_row() {
        return Ok(None);
    }
    let raw = chain.table.schema_of_table();
    let mut bucket = None;
    for e in &aggregate.group_expr {
        let e = strip_alias(e);
        if matches!(e, Expr::GroupingSet(_)) {
            return Ok(None);
        }
        if e.column_refs().iter().all(|c| chain.table.is_tag(&c.name)) {
            continue;
        }
        match (bucket, time_bucket(e)) {
            (None, Some(b)) => bucket = Some(b),
            _ => return Ok(None),
        }
    }
    let Some(wanted) = aggregate.aggr_expr.iter().map(|e| wanted(e, raw)).collect::<Option<Vec<_>>>() else { return Ok(None) };
    if wanted.is_empty() {
        return Ok(None);
    }
    let fields: BTreeSet<&str> = wanted.iter().map(|(_, f)| f.as_str()).collect();
    let tags: Vec<String> = raw.tags().map(|c| c.name.clone()).collect();
    let Some(qualifier) = aggregate.input.schema().qualified_field(0).0.cloned() else { return Ok(None) };
    let windows = match bucket {
        Some(b) => Windows::Every { width_ns: b.width_ns, origin_ns: b.origin_ns },
        None => Windows::PerSeries,
    };
    let (mut branches, intervals_ns) = match rollup_branches(&chain, bucket, windows, &tags, &fields)? {
        Some(Branches { plans, intervals_ns }) => (plans, intervals_ns),
        None => {
            let (time_min, time_max) = chain.time_bounds();
            (vec![windows_branch(&chain, windows, &tags, &fields, time_min, time_max)?], BTreeSet::new())
        }
    };
    // Raw rows come as one row per series, bucket and time partition (a scan reads each
    // partition apart), and rollups whose interval is the bucket as one row per series and
    // bucket; when no bucket straddles a partition and the groups tell series apart, each group
    // is then one row, and the partials are the answer without combining them. Without a
    // bucket, a series' rows come as one partial per partition, which must be combined.
    let one_row_per_window = match bucket {
        Some(b) => intervals_ns.iter().all(|i| *i == b.width_ns) && within_partitions(b, chain.table.storage().partition_ns()),
        None => false,
    };
    let one_row_per_group = one_row_per_window && groups_tell_series_apart(&aggregate.group_expr, &chain);
    let mut builder = LogicalPlanBuilder::from(branches.remove(0));
    for branch in branches {
        builder = builder.union(branch)?;
    }
    builder = builder.alias(qualifier)?;
    if let Some(tag_filter) = conjunction(chain.tag_filters.iter().cloned().map(unnormalize_col)) {
        builder = builder.filter(tag_filter)?;
    }
    let groups: Vec<Expr> = if one_row_per_group {
        let named = aggregate.group_expr.iter().enumerate().map(|(i, e)| {
            let (qualifier, field) = aggregate.schema.qualified_field(i);
            strip_alias(e).clone().alias_qualified(qualifier.cloned(), field.name())
        });
        named.collect()
    } else {
        let partials = fields.iter().flat_map(|f| {
            [
                sum(col(partial_name(f, "count"))).alias(partial_name(f, "count")),
                sum(col(partial_name(f, "sum"))).alias(partial_name(f, "sum")),
                min(col(partial_name(f, "min"))).alias(partial_name(f, "min")),
                max(col(partial_name(f, "max"))).alias(partial_name(f, "max")),
            ]
        });
        builder = LogicalPlanBuilder::from(builder.aggregate(aggregate.group_expr.clone(), partials.collect::<Vec<_>>())?.build()?);
        let combined = builder.schema();
        (0..aggregate.group_expr.len()).map(|i| Expr::Column(Column::from(combined.qualified_field(i)))).collect()
    };
    let finals = wanted.iter().zip(aggregate.schema.fields().iter().skip(aggregate.group_expr.len())).map(|((kind, f), out)| {
        let value = match kind {
            Kind::Count => col(partial_name(f, "count")),
            Kind::Sum => col(partial_name(f, "sum")),
            Kind::Min => col(partial_name(f, "min")),
            Kind::Max => col(partial_name(f, "max")),
            Kind::Avg => cast(col(partial_name(f, "sum")), DataType::Float64) / cast(col(partial_name(f, "count")), DataType::Float64),
        };
        value.alias(out.name())
    });
    let plan = builder.project(groups.into_iter().chain(finals))?.build()?;
    // Anything DataFusion would type differently leaves the query to the general path.
    let same = plan.schema().fields().len() == aggregate.schema.fields().len()
        && plan
            .schema()
            .fields()
            .iter()
            .zip(aggregate.schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    Ok(same.then_some(plan))
}

/// A rollup that can serve the query: its bucket is a multiple of the rollup's interval and
/// the rollup keeps the fields.
struct Level {
    table: StorageTable,
    interval_ns: i64,
    /// Windows starting before this are final.
    frontier_ns: i64,
    /// The rollup table's retention cutoff; `i64::MIN` when it keeps every window.
    cutoff_ns: i64,
}

/// Whether every bucket lies inside one time partition (partitions start at multiples of
/// `partition_ns`).
fn within_partitions(bucket: Bucket, partition_ns: i64) -> bool {
    partition_ns % bucket.width_ns == 0 && bucket.origin_ns.rem_euclid(bucket.width_ns) == 0
}

/// Whether grouping by `groups` puts each series in groups of its own: they hold every tag
/// of the table, or one that each series has a value of its own for.
fn groups_tell_series_apart(groups: &[Expr], chain: &Chain) -> bool {
    let columns: Vec<&str> = groups
        .iter()
        .filter_map(|e| match strip_alias(e) {
            Expr::Column(c) => Some(c.name.as_str()),
            _ => None,
        })
        .collect();
    let table = chain.table.schema_of_table();
    table.tags().all(|t| columns.contains(&t.name.as_str()))
        || columns.iter().any(|c| chain.table.is_tag(c) && chain.table.storage().tag_is_key(&table.name, c))
}

/// The branches of a query and the intervals of the rollups that serve them.
#[derive(Default)]
struct Branches {
    plans: Vec<LogicalPlan>,
    intervals_ns: BTreeSet<i64>,
}

/// Partials of the query's range within the raw table's retention: whole final windows of the
/// coarsest rollup that has them, the rest from finer rollups, and the rest from raw rows;
/// `None` when no rollup serves any of it.
fn rollup_branches(
    chain: &Chain,
    bucket: Option<Bucket>,
    windows: Windows,
    tags: &[String],
    fields: &BTreeSet<&str>,
) -> Result<Option<Branches>> {
    let raw = chain.table.schema_of_table();
    let storage = chain.table.storage();
    let levels: Vec<Level> = storage
        .rollup_chain(&raw.name)
        .into_iter()
        .rev()
        .filter_map(|rollup| {
            let schema = storage.table(&rollup.table)?;
            let interval_ns = rollup.interval_ns;
            let fits = bucket.is_none_or(|b| b.width_ns % interval_ns == 0 && b.origin_ns.rem_euclid(interval_ns) == 0);
            let keeps = fields.iter().all(|f| schema.column(&format!("{f}_count")).is_some());
            let cutoff_ns = storage.retention_cutoff_ns(&rollup.table).unwrap_or(i64::MIN);
            let level =
                Level { table: StorageTable::new(storage.clone(), schema, true), interval_ns, frontier_ns: rollup.frontier_ns?, cutoff_ns };
            (fits && keeps).then_some(level)
        })
        .collect();
    let (time_min, time_max) = chain.time_bounds();
    let raw_min = time_min.max(storage.retention_cutoff_ns(&raw.name).unwrap_or(i64::MIN));
    let cover = Cover { chain, windows, tags, fields };
    let mut branches = Branches::default();
    Ok(cover.range(&levels, raw_min, time_max, &mut branches)?.then_some(branches))
}

/// What the branches of one query share.
struct Cover<'a> {
    chain: &'a Chain,
    windows: Windows,
    tags: &'a [String],
    fields: &'a BTreeSet<&'a str>,
}

impl Cover<'_> {
    /// Adds to `out` the branches covering `lo..=hi`: the whole final windows of `levels[0]`
    /// (the coarsest left) within its retention, and the rest from the finer levels and raw
    /// rows. Open windows may hold values since replaced (provisional until final), so raw rows
    /// serve them. Returns whether a rollup served any part.
    fn range(&self, levels: &[Level], lo: i64, hi: i64, out: &mut Branches) -> Result<bool> {
        if lo > hi {
            return Ok(false);
        }
        let Some((level, finer)) = levels.split_first() else {
            out.plans.push(windows_branch(self.chain, self.windows, self.tags, self.fields, lo, hi)?);
            return Ok(false);
        };
        let interval = level.interval_ns;
        let start = match lo.max(level.cutoff_ns) {
            i64::MIN => Some(i64::MIN),
            t => align_up(t, interval),
        };
        // Exclusive.
        let end = match hi {
            i64::MAX => Some(i64::MAX),
            t => t.checked_add(1).map(|t| t.div_euclid(interval) * interval),
        };
        let (Some(start), Some(end)) = (start, end.map(|end| end.min(level.frontier_ns))) else {
            return self.range(finer, lo, hi, out);
        };
        if start >= end {
            return self.range(finer, lo, hi, out);
        }
        out.plans.push(rollup_branch(&level.table, self.tags, self.fields, start, end - 1)?);
        out.intervals_ns.insert(interval);
        if start > lo {
            self.range(finer, lo, start - 1, out)?;
        }
        if end <= hi {
            self.range(finer, end, hi, out)?;
        }
        Ok(true)
    }
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(alias) => strip_alias(&alias.expr),
        e => e,
    }
}

/// `count`, `sum`, `min`, `max` or `avg` of a numeric field of `raw`.
fn wanted(e: &Expr, raw: &TableSchema) -> Option<(Kind, String)> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = strip_alias(e) else { return None };
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
        return None;
    }
    // `avg` of an integer field reads it cast to a float, which the partial sums do at the end.
    let c = match params.args.as_slice() {
        [Expr::Column(c)] => c,
        [Expr::Cast(cast)] if cast.field.data_type() == &DataType::Float64 => match cast.expr.as_ref() {
            Expr::Column(c) => c,
            _ => return None,
        },
        _ => return None,
    };
    let numeric = matches!(raw.column(&c.name)?.kind, ColumnKind::Field(FieldType::F64 | FieldType::I64));
    let kind = match func.name() {
        "count" => Kind::Count,
        "sum" => Kind::Sum,
        "min" => Kind::Min,
        "max" => Kind::Max,
        "avg" => Kind::Avg,
        _ => return None,
    };
    numeric.then(|| (kind, c.name.clone()))
}

/// The bucket a group expression puts `time` in, if it is one.
fn time_bucket(e: &Expr) -> Option<Bucket> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else { return None };
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == TIME_COLUMN);
    match (func.name(), args.as_slice()) {
        ("date_trunc", [Expr::Literal(unit, _), t]) if is_time(t) => {
            let width_ns = match string(unit)?.to_ascii_lowercase().as_str() {
                "microsecond" => 1_000,
                "millisecond" => 1_000_000,
                "second" => 1_000_000_000,
                "minute" => 60_000_000_000,
                "hour" => 3_600_000_000_000,
                "day" => 86_400_000_000_000,
                _ => return None,
            };
            Some(Bucket { width_ns, origin_ns: 0 })
        }
        ("date_bin", [Expr::Literal(stride, _), t, rest @ ..]) if is_time(t) => {
            let origin_ns = match rest {
                [] => 0,
                [Expr::Literal(origin, _)] => timestamp_ns(origin)?,
                _ => return None,
            };
            let width_ns = interval_ns(stride)?;
            (width_ns > 0).then_some(Bucket { width_ns, origin_ns })
        }
        _ => None,
    }
}

fn interval_ns(v: &ScalarValue) -> Option<i64> {
    const DAY_NS: i64 = 86_400_000_000_000;
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => i64::from(i.days).checked_mul(DAY_NS)?.checked_add(i.nanoseconds),
        ScalarValue::IntervalDayTime(Some(i)) => {
            i64::from(i.days).checked_mul(DAY_NS)?.checked_add(i64::from(i.milliseconds).checked_mul(1_000_000)?)
        }
        ScalarValue::DurationNanosecond(Some(n)) => Some(*n),
        ScalarValue::DurationMicrosecond(Some(n)) => n.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(n)) => n.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(n)) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The first multiple of `interval` at or after `t`.
fn align_up(t: i64, interval: i64) -> Option<i64> {
    let down = t.div_euclid(interval) * interval;
    if down == t { Some(t) } else { down.checked_add(interval) }
}

fn time_literal(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())))
}

/// `time` within `min..=max`, leaving out the bounds at the ends of time.
fn time_within(min: i64, max: i64) -> Option<Expr> {
    let lower = (min != i64::MIN).then(|| col(TIME_COLUMN).gt_eq(time_literal(min)));
    let upper = (max != i64::MAX).then(|| col(TIME_COLUMN).lt_eq(time_literal(max)));
    conjunction(lower.into_iter().chain(upper))
}

/// The rollup table's windows starting within `min..=max`, as partials.
fn rollup_branch(rollup: &StorageTable, tags: &[String], fields: &BTreeSet<&str>, min: i64, max: i64) -> Result<LogicalPlan> {
    let name = rollup.schema_of_table().name.clone();
    let mut builder = LogicalPlanBuilder::scan(TableReference::bare(name), provider_as_source(Arc::new(rollup.clone())), None)?;
    if let Some(filter) = time_within(min, max) {
        builder = builder.filter(filter)?;
    }
    let columns = fields
        .iter()
        .flat_map(|f| PARTIAL_AGGREGATES.map(|what| col(Column::new_unqualified(format!("{f}_{what}"))).alias(partial_name(f, what))));
    builder.project(keys(tags).chain(columns))?.build()
}

/// Raw rows within `min..=max`, as partials per series and window, computed by storage.
fn windows_branch(chain: &Chain, windows: Windows, tags: &[String], fields: &BTreeSet<&str>, min: i64, max: i64) -> Result<LogicalPlan> {
    let table = chain.table.in_windows(windows, min, max);
    let builder = LogicalPlanBuilder::scan(chain.scan.table_name.clone(), provider_as_source(Arc::new(table)), None)?;
    let columns = fields.iter().flat_map(|f| PARTIAL_AGGREGATES.map(|what| col(Column::new_unqualified(partial_name(f, what)))));
    builder.project(keys(tags).chain(columns))?.build()
}

/// The tags and `time`, by name.
fn keys(tags: &[String]) -> impl Iterator<Item = Expr> + '_ {
    tags.iter().map(|t| col(Column::new_unqualified(t))).chain([col(TIME_COLUMN)])
}
