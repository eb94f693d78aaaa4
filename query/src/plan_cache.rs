//! Optimized plans kept for queries that run again: a dashboard refreshing its panels, a
//! client executing a prepared statement, run the same logical plan (its parameters bound)
//! many times, and DataFusion's analyzer and optimizer would make the same optimized plan from
//! it each time, which for a query of one series' hour costs more than reading its rows.
//!
//! The key is the logical plan as planned from the statement, parameters replaced by their
//! values. An entry is used only while what isobar's optimizer rules read from storage is as it
//! was: [`Storage::plan_generation`] (tables, columns, series, rollups and their frontiers) and, for a
//! table with rollups, its retention cutoff and its rollups', to each rollup's window. Rows
//! are not part of it: scans read them when the plan runs, and so does `count(*)` from chunk
//! footers, which the physical plan (made anew each time) takes. Plans that call a function
//! that is not immutable (`now()`, `random()`) are not kept, since the optimizer turns `now()`
//! into the time the query started; nor are plans that are not queries, or that read anything
//! but isobar's tables (a table function's arguments are not in its scan's key).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use isobar_storage::Storage;
use parking_lot::Mutex;

use crate::table::StorageTable;

/// Optimized plans kept at most; the least recently used goes first.
const ENTRIES_MAX: usize = 256;

/// Optimized plans by the logical plan they were made from.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Entries>,
    /// Queries that used a kept plan, and queries whose plan was made anew.
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    by_plan: HashMap<LogicalPlan, Entry>,
    /// Counts lookups, to find the least recently used entry.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    inputs: Inputs,
    optimized: LogicalPlan,
    used: u64,
}

/// What isobar's optimizer rules read from storage, as they read it for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inputs {
    generation: u64,
    /// For each table the plan reads and each of its rollups: the raw table's and the rollup's
    /// retention cutoffs, as rollup windows.
    cutoffs: Vec<(Option<i64>, Option<i64>)>,
}

impl Inputs {
    /// Storage as `plan` is optimized against now; `None` when the optimized plan must not be
    /// kept.
    pub(crate) fn of(storage: &Storage, plan: &LogicalPlan) -> Option<Self> {
        let generation = storage.plan_generation();
        let mut cutoffs = Vec::new();
        let mut keep = is_query(plan);
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                // A scan's key is its table's name: the arguments of a table function
                // (`generate_series(1, 10)`) and what a catalog table lists are not in it.
                keep &= source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<StorageTable>().is_some());
                for rollup in storage.rollup_chain(scan.table_name.table()) {
                    let window = |cutoff: Option<i64>| cutoff.map(|t| t.div_euclid(rollup.interval_ns));
                    let table = storage.retention_cutoff_ns(scan.table_name.table());
                    cutoffs.push((window(table), window(storage.retention_cutoff_ns(&rollup.table))));
                }
            }
            node.apply_expressions(|e| {
                e.apply(|e| {
                    keep &= !matches!(e, Expr::Placeholder(_)) && immutable(e);
                    Ok(if keep { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
                })
            })?;
            Ok(if keep { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
        });
        keep.then_some(Self { generation, cutoffs })
    }
}

/// Whether `plan` reads rows without changing anything (not DDL, DML, `EXPLAIN` or a
/// statement about the session).
fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    )
}

/// Whether `e` gives the same value whenever it is evaluated on the same rows.
fn immutable(e: &Expr) -> bool {
    match e {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        _ => true,
    }
}

impl PlanCache {
    /// The optimized plan kept for `plan`, if it was made with storage as `inputs` says.
    pub(crate) fn get(&self, plan: &LogicalPlan, inputs: &Inputs) -> Option<LogicalPlan> {
        let mut entries = self.entries.lock();
        entries.clock += 1;
        let clock = entries.clock;
        let found = match entries.by_plan.get_mut(plan) {
            Some(entry) if entry.inputs == *inputs => {
                entry.used = clock;
                Some(entry.optimized.clone())
            }
            _ => None,
        };
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `optimized`, made from `plan` with storage as `inputs` says.
    pub(crate) fn put(&self, plan: LogicalPlan, inputs: Inputs, optimized: LogicalPlan) {
        let mut entries = self.entries.lock();
        if entries.by_plan.len() >= ENTRIES_MAX && !entries.by_plan.contains_key(&plan) {
            let oldest = entries.by_plan.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.by_plan.remove(&oldest);
            }
        }
        let used = entries.clock;
        entries.by_plan.insert(plan, Entry { inputs, optimized, used });
    }

    /// Queries that used a kept plan, and queries whose plan was made anew, since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}
