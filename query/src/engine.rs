//! The query engine: one DataFusion session over storage, shared by every client, and
//! [`Session`], one client's view of it: its own settings (`session.rs`) and the allow-list of
//! statements (`policy.rs`) checked before DataFusion sees one, so nothing a client runs
//! changes the shared session.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::dataframe::DataFrame;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use isobar_storage::{Storage, WriteBatch};

use crate::catalog::{SYSTEM_SCHEMA, StorageSchema};
use crate::ddl::{DEFAULT_SCHEMA, table_definition};
use crate::error::{Error, Result};
use crate::functions;
use crate::information_schema::{INFORMATION_SCHEMA, InformationSchema};
use crate::memory::{QueryBudget, QueryMemoryPool};
use crate::plan_cache::{Inputs, PlanCache};
use crate::prepared::Outcome;
use crate::session::SessionState;
use crate::status_tables::{StatusFn, StatusTables};
use crate::{system_chunks, system_rollups, system_storage};

/// The catalog (database) name clients see.
pub const CATALOG: &str = "isobar";

/// Limits on queries.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may hold for sorts, joins and aggregations, in bytes.
    pub memory_limit_bytes: usize,
    /// Memory all running queries together may hold, in bytes.
    pub memory_pool_bytes: usize,
    /// Time a query may run before it is cancelled, in milliseconds.
    pub timeout_ms: u64,
    /// Whether queries storage can answer without scanning every row are answered that way:
    /// from the newest row of each series (`latest.rs`), or from chunk footers (`count(*)`,
    /// `scan_exec.rs`). Off only to compare with the general path.
    pub fast_paths: bool,
    /// Threads one query's plan is split across (scans of many rows read in as many parts,
    /// aggregations and sorts in as many partitions); 0: one per core.
    pub threads: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self { memory_limit_bytes: 512 << 20, memory_pool_bytes: 2 << 30, timeout_ms: 300_000, fast_paths: true, threads: 0 }
    }
}

/// What one statement produced.
#[derive(Debug)]
pub enum Output {
    /// Rows of a query.
    Rows(Vec<RecordBatch>),
    /// A command's tag (`CREATE TABLE`) and the rows it affected.
    Command(&'static str, u64),
}

/// SQL over one storage engine.
#[derive(Clone)]
pub struct QueryEngine {
    storage: Storage,
    context: Arc<SessionContext>,
    config: QueryConfig,
    plans: Arc<PlanCache>,
    status: StatusTables,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("storage", &self.storage).field("config", &self.config).finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session whose catalog `isobar`, schema `public`, holds storage's tables.
    pub fn new(storage: Storage, config: QueryConfig) -> Result<Self> {
        let pool = Arc::new(QueryMemoryPool::new(config.memory_pool_bytes));
        let runtime = RuntimeEnvBuilder::new().with_memory_pool(pool).build_arc()?;
        // SQL must not reach the server's files: no local file system behind any URL, so
        // `COPY ... TO`, `CREATE EXTERNAL TABLE` and file table functions find nothing to use.
        runtime.object_store_registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref())?;
        // isobar's own information_schema replaces DataFusion's, to speak PostgreSQL's type names.
        let mut session = SessionConfig::new();
        if config.threads > 0 {
            session = session.with_target_partitions(config.threads);
        }
        let session = session
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA);
        let context = SessionContext::new_with_config_rt(session, runtime);
        let catalog: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(DEFAULT_SCHEMA, Arc::new(StorageSchema::new(storage.clone(), config.fast_paths)))?;
        let status = StatusTables::default();
        let rollups_of = storage.clone();
        status.register(system_rollups::NAME, Arc::new(move || system_rollups::rows(&rollups_of)));
        let chunks_of = storage.clone();
        status.register(system_chunks::NAME, Arc::new(move || system_chunks::rows(&chunks_of)));
        let tables_of = storage.clone();
        status.register("tables", Arc::new(move || system_storage::tables(&tables_of)));
        let sizes_of = storage.clone();
        status.register("storage", Arc::new(move || system_storage::storage_sizes(&sizes_of)));
        catalog.register_schema(SYSTEM_SCHEMA, Arc::new(StorageSchema::system(storage.clone(), config.fast_paths, status.clone())))?;
        let information_schema = InformationSchema::new(CATALOG, Arc::downgrade(&catalog));
        catalog.register_schema(INFORMATION_SCHEMA, Arc::new(information_schema))?;
        context.register_catalog(CATALOG, catalog);
        functions::register(&context);
        if config.fast_paths {
            context.add_optimizer_rule(Arc::new(crate::latest::LatestRows));
            context.add_optimizer_rule(Arc::new(crate::rollup_rewrite::RollupAggregates));
            context.add_optimizer_rule(Arc::new(crate::time_order::FirstRowsInTimeOrder));
        }
        Ok(Self { storage, context: Arc::new(context), config, plans: Arc::default(), status })
    }

    /// Adds `system.<name>`, whose rows `rows` gives as they are when a query is planned: the
    /// state another part of the server keeps, such as ingest's Kinesis shards.
    pub fn register_status_table(&self, name: &str, rows: StatusFn) {
        self.status.register(name, rows);
    }

    /// The DataFusion session, for protocol front ends.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.context
    }

    /// The storage engine behind the tables.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The rows of a planned statement, as a stream. A query's optimized plan is taken from
    /// an earlier run of the same plan while storage's tables and rollups are as they were
    /// then (`plan_cache.rs`); its physical plan is made anew, so it reads the rows there are
    /// when it runs.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let state = self.context.state();
        let Some(inputs) = Inputs::of(&self.storage, &plan) else {
            return Ok(DataFrame::new(state, plan).execute_stream().await?);
        };
        let optimized = match self.plans.get(&plan, &inputs) {
            Some(optimized) => optimized,
            None => {
                let optimized = state.optimize(&plan)?;
                self.plans.put(plan, inputs, optimized.clone());
                optimized
            }
        };
        let physical = state.query_planner().create_physical_plan(&optimized, &state).await?;
        Ok(execute_stream(physical, Arc::new(TaskContext::from(&state)))?)
    }

    /// Queries that ran an optimized plan kept from an earlier run, and queries whose plan
    /// could have been kept but was made anew, since start.
    pub fn plans_reused(&self) -> (u64, u64) {
        self.plans.counts()
    }

    /// The configured limits.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// A fresh memory budget for one query, of the configured size: run the query's planning
    /// and polls under it (`with_budget`, `BudgetedStream`).
    pub fn budget(&self) -> Arc<QueryBudget> {
        QueryBudget::new(self.config.memory_limit_bytes)
    }

    /// A fresh memory budget of `limit_bytes` for one query: run the query's planning and
    /// polls under it (`with_budget`, `BudgetedStream`).
    pub fn budget_of(&self, limit_bytes: usize) -> Arc<QueryBudget> {
        QueryBudget::new(limit_bytes.min(self.config.memory_limit_bytes))
    }

    /// A new client session with its own settings, under the configured limits.
    pub fn session(&self) -> Session {
        Session { engine: self.clone(), state: SessionState::new(&self.config) }
    }

    /// A client session that goes on from `state` (kept by a protocol between a client's calls).
    pub fn resume(&self, state: SessionState) -> Session {
        Session { engine: self.clone(), state }
    }

    /// Runs every statement of `sql` in order in a session of its own and returns what each
    /// produced; stops at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        self.session().execute(sql).await
    }

    /// Creates the table a `CREATE TABLE` describes; false when it existed and the statement
    /// said `IF NOT EXISTS`.
    pub async fn create_table(&self, create: &datafusion::sql::sqlparser::ast::CreateTable) -> Result<bool> {
        let definition = table_definition(create)?;
        let storage = self.storage.clone();
        let created = tokio::task::spawn_blocking(move || match storage.create_table(&definition.name, &definition.columns) {
            Ok(_) => Ok(true),
            Err(isobar_storage::Error::TableExists(_)) if definition.if_not_exists => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::DataFusion(datafusion::error::DataFusionError::External(Box::new(e))))??;
        Ok(created)
    }

    /// The rows of `statement` as a batch to write, if it is an `INSERT ... VALUES` of
    /// literals and parameters (`params`) into an isobar table (`insert_values.rs`); `None`
    /// when it needs the general path. Nothing is written until [`QueryEngine::write_insert`].
    pub fn insert_batch(&self, statement: &Statement, params: Option<&datafusion::common::ParamValues>) -> Option<WriteBatch> {
        crate::insert_values::values_batch(&self.storage, statement, params)
    }

    /// The rows of a simple-protocol `INSERT ... VALUES` of literals read from its text, with
    /// the statement's head for the session's checks (`values_text.rs`); `None` when it needs
    /// the general path.
    pub fn insert_text_batch(&self, sql: &str) -> Option<(Statement, WriteBatch)> {
        crate::insert_values::text_batch(&self.storage, sql)
    }

    /// Writes an INSERT's batch durably: the rows written, or the rows storage refused.
    pub async fn write_insert(&self, batch: WriteBatch) -> Result<u64> {
        crate::insert::write_batch(&self.storage, batch, 0).await
    }

    /// Runs `work` under the configured query timeout.
    pub async fn with_timeout<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(Duration::from_millis(self.config.timeout_ms), work).await.map_err(|_| Error::Timeout(self.config.timeout_ms))
    }
}

/// One client's session over the engine: its own settings (`session.rs`), and the
/// allow-list of statements (`policy.rs`) checked before DataFusion sees one.
#[derive(Debug)]
pub struct Session {
    engine: QueryEngine,
    state: SessionState,
}

impl Session {
    /// Runs every statement of `sql` in order and returns what each produced; stops at the
    /// first error.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<Output>> {
        let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.execute_statement(statement).await?);
        }
        Ok(outputs)
    }

    /// The session's settings.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The session's settings, to resume it later (`QueryEngine::resume`).
    pub fn into_state(self) -> SessionState {
        self.state
    }

    /// The engine the session runs on.
    pub(crate) fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    pub(crate) fn state_mut(&mut self) -> &mut SessionState {
        &mut self.state
    }

    async fn execute_statement(&mut self, statement: DfStatement) -> Result<Output> {
        let prepared = self.prepare_statement(statement).await?;
        match self.run(&prepared, None).await? {
            Outcome::Command(tag, n) => Ok(Output::Command(tag, n)),
            Outcome::Rows(rows) => Ok(Output::Rows(collect(rows).await?)),
        }
    }
}
