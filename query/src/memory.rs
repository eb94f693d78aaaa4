//! Memory limits for queries: one pool for all running queries and a budget for each.
//!
//! DataFusion accounts the memory of sorts, joins and aggregations through one
//! [`MemoryPool`] per runtime, shared by every query. isobar's pool also charges each
//! reservation to the budget of the query that made it, so one heavy query fails with a clear
//! error instead of starving the others. A query's budget travels with it as a tokio
//! task-local: [`with_budget`] and [`BudgetedStream`] set it around the query's own polls, and
//! a [`JoinSetTracer`] hands it on to every task DataFusion spawns for the query (partitions,
//! spills). A reservation is bound to the budget in force when it is registered or first
//! grows, and is released to it whatever task frees it.

use std::any::Any;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::common::runtime::{JoinSetTracer, set_join_set_tracer};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};
use futures::Stream;
use futures::future::BoxFuture;

tokio::task_local! {
    static BUDGET: Arc<QueryBudget>;
}

/// The memory one query may hold, and what it holds now.
#[derive(Debug)]
pub struct QueryBudget {
    limit_bytes: usize,
    used_bytes: AtomicUsize,
}

impl QueryBudget {
    /// A budget of `limit_bytes` for one query.
    pub fn new(limit_bytes: usize) -> Arc<Self> {
        Arc::new(Self { limit_bytes, used_bytes: AtomicUsize::new(0) })
    }

    /// Bytes the query's reservations hold now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    fn try_grow(&self, additional: usize, consumer: &MemoryConsumer) -> Result<()> {
        self.used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(additional).filter(|&n| n <= self.limit_bytes))
            .map(drop)
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "query memory limit of {} exceeded: {} wanted {} more with {} held; narrow the query \
                     (a shorter time range, fewer groups) or raise [query] memory_limit_bytes",
                    mib(self.limit_bytes),
                    consumer.name(),
                    mib(additional),
                    mib(used),
                ))
            })
    }

    fn shrink(&self, bytes: usize) {
        // Saturating: a reservation bound after it first grew may give back more than it
        // charged here.
        let _ = self.used_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(bytes)));
    }
}

fn mib(bytes: usize) -> String {
    if bytes < 1 << 20 { format!("{bytes} bytes") } else { format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64) }
}

/// Runs `work` with `budget` as the budget of every reservation it and the tasks it spawns
/// make.
pub async fn with_budget<T>(budget: Arc<QueryBudget>, work: impl Future<Output = T>) -> T {
    install_tracer();
    BUDGET.scope(budget, work).await
}

/// A stream polled under a query's budget: for result streams that outlive the call that
/// planned them (rows a protocol sends as the client reads them).
#[derive(Debug)]
pub struct BudgetedStream<S> {
    inner: S,
    budget: Arc<QueryBudget>,
}

impl<S> BudgetedStream<S> {
    /// `inner`, polled with `budget` in force.
    pub fn new(inner: S, budget: Arc<QueryBudget>) -> Self {
        install_tracer();
        Self { inner, budget }
    }
}

impl<S: Stream + Unpin> Stream for BudgetedStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let budget = Arc::clone(&self.budget);
        BUDGET.sync_scope(budget, || Pin::new(&mut self.inner).poll_next(cx))
    }
}

fn current_budget() -> Option<Arc<QueryBudget>> {
    BUDGET.try_with(Arc::clone).ok()
}

/// Hands the spawning task's budget on to the tasks DataFusion spawns.
struct BudgetTracer;

impl JoinSetTracer for BudgetTracer {
    fn trace_future(&self, fut: BoxFuture<'static, Box<dyn Any + Send>>) -> BoxFuture<'static, Box<dyn Any + Send>> {
        match current_budget() {
            Some(budget) => Box::pin(BUDGET.scope(budget, fut)),
            None => fut,
        }
    }

    fn trace_block(&self, f: Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>) -> Box<dyn FnOnce() -> Box<dyn Any + Send> + Send> {
        match current_budget() {
            Some(budget) => Box::new(move || BUDGET.sync_scope(budget, f)),
            None => f,
        }
    }
}

fn install_tracer() {
    static TRACER: BudgetTracer = BudgetTracer;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    // Another tracer installed first (an embedding application's) keeps its place; budgets
    // then bind only to reservations made on the query's own task.
    INSTALLED.call_once(|| drop(set_join_set_tracer(&TRACER)));
}

/// The pool behind every query: `total` bytes for all queries together, and each reservation
/// charged to its query's budget too.
#[derive(Debug)]
pub(crate) struct QueryMemoryPool {
    total: GreedyMemoryPool,
    /// The budget of each registered consumer that has one, by consumer id.
    budgets: Mutex<HashMap<usize, Arc<QueryBudget>>>,
}

impl QueryMemoryPool {
    /// A pool of `total_bytes` for all queries.
    pub(crate) fn new(total_bytes: usize) -> Self {
        Self { total: GreedyMemoryPool::new(total_bytes), budgets: Mutex::new(HashMap::new()) }
    }

    /// The budget `consumer` is charged to, binding it to the one in force if it has none.
    fn budget(&self, consumer: &MemoryConsumer) -> Option<Arc<QueryBudget>> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(budget) = budgets.get(&consumer.id()) {
            return Some(Arc::clone(budget));
        }
        let budget = current_budget()?;
        budgets.insert(consumer.id(), Arc::clone(&budget));
        Some(budget)
    }

    fn bound_budget(&self, consumer: &MemoryConsumer) -> Option<Arc<QueryBudget>> {
        let budgets = self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        budgets.get(&consumer.id()).cloned()
    }
}

impl std::fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "isobar query memory ({} of {})", mib(self.total.reserved()), mib(self.total_bytes()))
    }
}

impl QueryMemoryPool {
    fn total_bytes(&self) -> usize {
        match self.total.memory_limit() {
            MemoryLimit::Finite(bytes) => bytes,
            _ => usize::MAX,
        }
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "isobar"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.budget(consumer);
        self.total.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        budgets.remove(&consumer.id());
        drop(budgets);
        self.total.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        if let Some(budget) = self.budget(reservation.consumer()) {
            budget.used_bytes.fetch_add(additional, Ordering::Relaxed);
        }
        self.total.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if let Some(budget) = self.bound_budget(reservation.consumer()) {
            budget.shrink(shrink);
        }
        self.total.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let budget = self.budget(reservation.consumer());
        if let Some(budget) = &budget {
            budget.try_grow(additional, reservation.consumer())?;
        }
        self.total.try_grow(reservation, additional).inspect_err(|_| {
            if let Some(budget) = &budget {
                budget.shrink(additional);
            }
        })
    }

    fn reserved(&self) -> usize {
        self.total.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.total.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(total_bytes: usize) -> Arc<dyn MemoryPool> {
        Arc::new(QueryMemoryPool::new(total_bytes))
    }

    #[tokio::test]
    async fn a_query_is_held_to_its_budget_while_the_pool_has_room() {
        let pool = pool(1000);
        let budget = QueryBudget::new(100);
        let b = Arc::clone(&budget);
        let p = Arc::clone(&pool);
        let err = with_budget(Arc::clone(&budget), async move {
            let r = MemoryConsumer::new("sort").register(&p);
            r.try_grow(60).expect("within the budget");
            assert_eq!(b.used_bytes(), 60);
            r.try_grow(60).expect_err("past the budget")
        })
        .await;
        assert!(err.to_string().contains("query memory limit of 100 bytes exceeded"), "{err}");
        assert!(err.to_string().contains("sort wanted"), "{err}");
        // Dropping the reservation returned its bytes to both.
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(pool.reserved(), 0);
    }

    #[tokio::test]
    async fn each_query_has_its_own_budget_and_all_share_the_pool() {
        let pool = pool(150);
        let (a, b) = (QueryBudget::new(100), QueryBudget::new(100));
        let pa = Arc::clone(&pool);
        let ra = with_budget(Arc::clone(&a), async move {
            let r = MemoryConsumer::new("a").register(&pa);
            r.try_grow(100).expect("a's budget");
            r
        })
        .await;
        let pb = Arc::clone(&pool);
        let rb = with_budget(Arc::clone(&b), async move {
            let r = MemoryConsumer::new("b").register(&pb);
            r.try_grow(40).expect("b's budget and the pool have room");
            let err = r.try_grow(20).expect_err("the pool is full");
            (r, err)
        })
        .await;
        assert_eq!(pool.reserved(), 140);
        assert!(!rb.1.to_string().contains("query memory limit"), "the pool, not b's budget, refused: {}", rb.1);
        // A failed grow charged nothing.
        assert_eq!(b.used_bytes(), 40);
        // Freed outside the query's task, the bytes still go back to the query's budget.
        drop(ra);
        assert_eq!(a.used_bytes(), 0);
        drop(rb);
        assert_eq!((b.used_bytes(), pool.reserved()), (0, 0));
    }

    #[tokio::test]
    async fn tasks_spawned_by_a_query_charge_its_budget() {
        let pool = pool(1000);
        let budget = QueryBudget::new(100);
        let p = Arc::clone(&pool);
        let held = with_budget(Arc::clone(&budget), async move {
            datafusion::common::runtime::SpawnedTask::spawn(async move {
                let r = MemoryConsumer::new("partition").register(&p);
                r.try_grow(80).expect("within the budget");
                let err = r.try_grow(80).expect_err("past the budget");
                (r, err)
            })
            .join()
            .await
            .expect("task ran")
        })
        .await;
        assert_eq!(budget.used_bytes(), 80);
        assert!(held.1.to_string().contains("query memory limit"), "{}", held.1);
    }

    #[tokio::test]
    async fn reservations_outside_any_query_only_meet_the_pool_limit() {
        let pool = pool(100);
        let r = MemoryConsumer::new("catalog").register(&pool);
        r.try_grow(100).expect("pool has room");
        r.try_grow(1).expect_err("pool is full");
    }
}
