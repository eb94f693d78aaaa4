//! The query engine: one DataFusion session over storage, with isobar's statements (`CREATE
//! TABLE`) and refusals (anything that would reach the server's files or engine settings)
//! applied before DataFusion sees a statement.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{CopyTarget, Set, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use isobar_storage::Storage;

use crate::catalog::{SYSTEM_SCHEMA, StorageSchema};
use crate::ddl::{DEFAULT_SCHEMA, table_definition};
use crate::error::{Error, Result};
use crate::functions;
use crate::information_schema::{INFORMATION_SCHEMA, InformationSchema};
use crate::memory::{QueryBudget, QueryMemoryPool, with_budget};

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
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self { memory_limit_bytes: 512 << 20, memory_pool_bytes: 2 << 30, timeout_ms: 300_000 }
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
        let session = SessionConfig::new()
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA);
        let context = SessionContext::new_with_config_rt(session, runtime);
        let catalog: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(DEFAULT_SCHEMA, Arc::new(StorageSchema::new(storage.clone())))?;
        catalog.register_schema(SYSTEM_SCHEMA, Arc::new(StorageSchema::system(storage.clone())))?;
        let information_schema = InformationSchema::new(CATALOG, Arc::downgrade(&catalog));
        catalog.register_schema(INFORMATION_SCHEMA, Arc::new(information_schema))?;
        context.register_catalog(CATALOG, catalog);
        functions::register(&context);
        Ok(Self { storage, context: Arc::new(context), config })
    }

    /// The DataFusion session, for protocol front ends.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.context
    }

    /// The storage engine behind the tables.
    pub fn storage(&self) -> &Storage {
        &self.storage
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

    /// Runs every statement of `sql` in order and returns what each produced; stops at the
    /// first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.execute_statement(statement).await?);
        }
        Ok(outputs)
    }

    async fn execute_statement(&self, mut statement: DfStatement) -> Result<Output> {
        if let DfStatement::Statement(s) = &mut statement {
            crate::subquery::aggregate_scalar_subqueries(s);
        }
        match &statement {
            DfStatement::CreateExternalTable(_) => return Err(refused_external_table()),
            DfStatement::CopyTo(_) => return Err(refused_copy_to()),
            DfStatement::Statement(s) => {
                check_statement(s)?;
                if let Statement::CreateTable(create) = s.as_ref() {
                    let created = self.create_table(create).await?;
                    return Ok(Output::Command("CREATE TABLE", u64::from(created)));
                }
            }
            _ => {}
        }
        let query = async {
            let plan = self.context.state().statement_to_plan(statement).await?;
            let frame = self.context.execute_logical_plan(plan).await?;
            self.with_timeout(frame.collect()).await?.map_err(Error::from)
        };
        Ok(Output::Rows(with_budget(self.budget(), query).await?))
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

    /// Writes rows given as text (as `COPY ... FROM STDIN` carries them) into `columns` of
    /// `table`, converting each value to its column's type as a cast would; `None` is NULL.
    /// `row_offset` numbers the rows in errors. Returns the rows written, durable on return.
    pub async fn insert_text_rows(&self, table: &str, columns: &[String], rows: &[Vec<Option<String>>], row_offset: usize) -> Result<u64> {
        let schema = self.storage.table(table).ok_or_else(|| Error::Unsupported(format!("table {table} does not exist")))?;
        let arrow = crate::table::arrow_schema(&schema);
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            let field = arrow.field_with_name(name).map_err(|_| Error::Unsupported(format!("column {name} of table {table} does not exist")))?;
            let text: StringArray = rows.iter().map(|r| r.get(i).cloned().flatten()).collect();
            let options = CastOptions { safe: false, ..CastOptions::default() };
            let array = cast_with_options(&text, field.data_type(), &options)
                .map_err(|e| Error::InvalidRows(format!("column {name}: {e}")))?;
            fields.push(field.clone());
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(datafusion::error::DataFusionError::from)?;
        let points = crate::insert::points(&schema, &batch, row_offset)?;
        Ok(crate::insert::write_points(&self.storage, table, points, 0).await?)
    }

    /// Runs `work` under the configured query timeout.
    pub async fn with_timeout<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(Duration::from_millis(self.config.timeout_ms), work).await.map_err(|_| Error::Timeout(self.config.timeout_ms))
    }
}

/// DataFusion settings a client may change with `SET`: they change how results look, not
/// what the server may do.
const SETTABLE_ENGINE_OPTIONS: &[&str] = &["datafusion.execution.time_zone"];

/// Refuses statements that would reach the server's files or loosen its limits.
pub fn check_statement(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Copy { to: true, .. } => Err(refused_copy_to()),
        Statement::Copy { to: false, target, .. } if *target != CopyTarget::Stdin => Err(Error::Refused(
            "COPY ... FROM a file or program is refused: SQL cannot reach the server's files; use COPY ... FROM STDIN (psql's \\copy)".into(),
        )),
        Statement::CreateTable(create) if create.external => Err(refused_external_table()),
        Statement::Set(Set::SingleAssignment { variable, .. }) => check_setting(&variable.to_string()),
        Statement::Set(Set::ParenthesizedAssignments { variables, .. }) => {
            variables.iter().try_for_each(|v| check_setting(&v.to_string()))
        }
        Statement::Set(Set::MultipleAssignments { assignments }) => {
            assignments.iter().try_for_each(|a| check_setting(&a.name.to_string()))
        }
        _ => Ok(()),
    }
}

fn check_setting(name: &str) -> Result<()> {
    let name = name.to_lowercase();
    if name.starts_with("datafusion.") && !SETTABLE_ENGINE_OPTIONS.contains(&name.as_str()) {
        return Err(Error::Refused(format!("SET {name} is refused: engine settings come from isobar's configuration file")));
    }
    Ok(())
}

fn refused_copy_to() -> Error {
    Error::Refused("COPY ... TO is refused: SQL cannot write the server's files; use psql's \\copy ... TO, which writes on the client".into())
}

fn refused_external_table() -> Error {
    Error::Refused("CREATE EXTERNAL TABLE is refused: SQL cannot reach the server's files".into())
}
