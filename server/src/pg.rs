//! The Postgres wire protocol front end: datafusion-postgres's session service over
//! isobar's query engine, with `pg_catalog` for psql and drivers, and a hook that runs
//! isobar's own statements (`CREATE TABLE`, `COPY ... FROM STDIN`) and refusals before
//! DataFusion plans anything.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Ident, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::copy::CopyHandler;
use datafusion_postgres::pgwire::api::results::{CopyResponse, Response, Tag};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::copy::CopyData;
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use futures::{Sink, StreamExt};
use datafusion_postgres::{DfSessionService, QueryHook};
use isobar_query::{BudgetedStream, CATALOG, QueryBudget, QueryEngine, aggregate_scalar_subqueries, check_statement, with_budget};

use crate::auth::Authenticator;
use crate::config::PostgresConfig;
use crate::copy::{self, CopySlot, IsobarCopy};
use crate::error::{Error, Result};
use crate::metrics::QueryMetrics;
use crate::pg_direct::{self, DirectParser, direct_query};

/// Everything one Postgres connection needs; shared by all connections.
pub(crate) struct PgHandlers {
    auth: Authenticator,
    cancel: Arc<DefaultCancelHandler>,
    copy: Arc<IsobarCopy>,
    simple: Arc<CountedSimple>,
    extended: Arc<CheckedExtended>,
}

impl PgHandlers {
    pub(crate) async fn new(engine: &QueryEngine, config: &PostgresConfig, metrics: Arc<QueryMetrics>) -> Result<Self> {
        setup_pg_catalog(engine.context(), CATALOG, EmptyContextProvider).map_err(|e| Error::Catalog(e.to_string()))?;
        crate::pg_functions::register(engine.context()).await.map_err(|e| Error::Catalog(e.to_string()))?;
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(IsobarHook { engine: engine.clone() }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let session = Arc::new(DfSessionService::new_with_hooks(Arc::clone(engine.context()), hooks));
        let connections = Arc::new(ConnectionManager::new());
        let timeout_ms = engine.config().timeout_ms;
        Ok(Self {
            auth: Authenticator::new(config, Arc::clone(&connections))?,
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
            copy: Arc::new(IsobarCopy::new(engine.clone())),
            simple: Arc::new(CountedSimple { inner: Arc::clone(&session), engine: engine.clone(), metrics: Arc::clone(&metrics), timeout_ms }),
            extended: Arc::new(CheckedExtended {
                engine: engine.clone(),
                parser: Arc::new(DirectParser { inner: session.query_parser(), engine: engine.clone() }),
                inner: session,
                metrics,
                timeout_ms,
            }),
        })
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.simple)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.extended)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.auth.handler())
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.copy)
    }
}

/// Where a session's statement timeout lives (datafusion-postgres reads it for planning).
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// Gives a session the configured statement timeout until it sets its own, and returns the
/// deadline of a statement that starts now (`None`: no limit, `SET statement_timeout = 0`).
fn statement_deadline<C: ClientInfo>(client: &mut C, timeout_ms: u64) -> Option<tokio::time::Instant> {
    let ms = client.metadata_mut().entry(STATEMENT_TIMEOUT_KEY.to_owned()).or_insert_with(|| timeout_ms.to_string());
    let ms: u64 = ms.parse().unwrap_or(timeout_ms);
    (ms > 0).then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
}

/// Bounds a query's execution, not only its planning: its rows are produced under the query's
/// memory budget, rows that are not ready by the deadline end the stream with `57014`, and
/// dropping the stream stops the query. A query that runs out of memory ends with `53200`.
fn bounded(response: Response, deadline: Option<tokio::time::Instant>, budget: Arc<QueryBudget>) -> Response {
    let Response::Query(mut query) = response else { return response };
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    let rows = BudgetedStream::new(rows, budget);
    let bounded = futures::stream::unfold(Some(rows), move |rows| async move {
        let mut rows = rows?;
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, rows.next()).await,
            None => Ok(rows.next().await),
        };
        match next {
            Ok(Some(Err(e))) => Some((Err(out_of_memory(e)), None)),
            Ok(Some(row)) => Some((row, Some(rows))),
            Ok(None) => None,
            Err(_) => Some((Err(user_error("57014", "canceling statement due to statement timeout".into())), None)),
        }
    });
    query.data_rows = Box::pin(bounded);
    Response::Query(query)
}

/// PostgreSQL's `53200 out_of_memory` for a query past its memory limit; other errors as they
/// are.
fn out_of_memory(e: PgWireError) -> PgWireError {
    if let PgWireError::ApiError(inner) = &e {
        if let Some(DataFusionError::ResourcesExhausted(message)) = inner.downcast_ref::<DataFusionError>().map(DataFusionError::find_root) {
            return user_error("53200", message.clone());
        }
    }
    e
}

/// The highest `$n` in `sql` (0 for none): the parameters a Bind must supply. Counted from
/// the tokens, since a plan does not list the placeholders inside its subqueries. `None` when
/// the text does not tokenize (planning reports that).
fn placeholders(sql: &str) -> Option<usize> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let numbers = tokens.iter().filter_map(|t| match t {
        Token::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok(),
        _ => None,
    });
    Some(numbers.max().unwrap_or(0))
}

/// The simple query protocol, counted.
struct CountedSimple {
    inner: Arc<DfSessionService>,
    engine: QueryEngine,
    metrics: Arc<QueryMetrics>,
    timeout_ms: u64,
}

#[async_trait]
impl SimpleQueryHandler for CountedSimple {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let deadline = statement_deadline(client, self.timeout_ms);
        let budget = self.engine.budget();
        let result = with_budget(Arc::clone(&budget), async {
            match direct_query(query) {
                Some(statement) => match pg_direct::plan(&self.engine, statement).await {
                    Ok(plan) => pg_direct::run(&self.engine, plan, client).await.map(|r| vec![r]),
                    Err(e) => Err(e),
                },
                None => SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await,
            }
        })
        .await;
        let failed = result.as_ref().map_or(true, |responses| responses.iter().any(|r| matches!(r, Response::Error(_))));
        self.metrics.record(started, failed);
        result.map(|responses| responses.into_iter().map(|r| bounded(r, deadline, Arc::clone(&budget))).collect())
    }
}

/// The extended query protocol, counted, with PostgreSQL's check that a Bind supplies
/// exactly the parameters its statement has (datafusion-postgres ignores extra ones).
struct CheckedExtended {
    inner: Arc<DfSessionService>,
    engine: QueryEngine,
    parser: Arc<DirectParser<<DfSessionService as ExtendedQueryHandler>::QueryParser>>,
    metrics: Arc<QueryMetrics>,
    timeout_ms: u64,
}

#[async_trait]
impl ExtendedQueryHandler for CheckedExtended {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = DirectParser<<DfSessionService as ExtendedQueryHandler>::QueryParser>;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Self::Statement>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let deadline = statement_deadline(client, self.timeout_ms);
        if let Some(expected) = placeholders(&portal.statement.statement.0) {
            if portal.parameters.len() != expected {
                self.metrics.record(started, true);
                return Err(user_error(
                    "08P01",
                    format!("bind message supplies {} parameters, but the statement requires {expected}", portal.parameters.len()),
                ));
            }
        }
        let aligned = crate::pg_params::aligned(portal);
        let budget = self.engine.budget();
        let query = ExtendedQueryHandler::do_query(self.inner.as_ref(), client, aligned.as_ref().unwrap_or(portal), max_rows);
        let result = with_budget(Arc::clone(&budget), query).await;
        self.metrics.record(started, result.is_err());
        result.map(|r| bounded(r, deadline, budget))
    }
}

/// Runs isobar's statements and refusals, in both query protocols.
#[derive(Debug)]
struct IsobarHook {
    engine: QueryEngine,
}

impl IsobarHook {
    async fn run(&self, statement: &Statement, client: &(dyn ClientInfo + Send + Sync)) -> Option<PgWireResult<Response>> {
        if let Err(e) = check_statement(statement) {
            return Some(Err(pg_error(&e)));
        }
        if let Some(start) = copy::start(&self.engine, statement) {
            return Some(match start {
                Ok(copy_in) => {
                    let columns = copy_in.columns.len();
                    let slot = client.session_extensions().get_or_insert_with(CopySlot::default);
                    if let Ok(mut current) = slot.0.lock() {
                        *current = Some(copy_in);
                    }
                    Ok(Response::CopyIn(CopyResponse::new(0, columns, futures::stream::empty::<PgWireResult<CopyData>>())))
                }
                Err(reason) => Err(user_error("22023", reason)),
            });
        }
        // Every statement is durable on its own; savepoints (which psycopg and SQLAlchemy
        // wrap around work) have nothing to undo, and are acknowledged as PostgreSQL does.
        let acknowledge = |tag: &str| Some(Ok(Response::Execution(Tag::new(tag))));
        match statement {
            Statement::Savepoint { .. } => acknowledge("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => acknowledge("RELEASE"),
            Statement::Rollback { savepoint: Some(_), .. } => acknowledge("ROLLBACK"),
            Statement::CreateTable(create) => {
                Some(self.engine.create_table(create).await.map(|_| Response::Execution(Tag::new("CREATE TABLE"))).map_err(|e| pg_error(&e)))
            }
            _ => None,
        }
    }
}

impl IsobarHook {
    /// A plan for what the statement asks that isobar answers itself: a `SHOW` of the server
    /// version (from `current_setting`), or a query with scalar subqueries to aggregate.
    async fn plan_own(&self, statement: &Statement) -> Option<PgWireResult<LogicalPlan>> {
        if let Statement::ShowVariable { variable } = statement {
            if is_server_version(variable) {
                let name = variable[0].value.to_lowercase();
                let sql = format!("SELECT current_setting('{name}') AS {name}");
                return Some(self.engine.context().state().create_logical_plan(&sql).await.map_err(|e| PgWireError::ApiError(Box::new(e))));
            }
        }
        let mut statement = statement.clone();
        if !aggregate_scalar_subqueries(&mut statement) {
            return None;
        }
        Some(pg_direct::plan(&self.engine, statement).await)
    }
}

/// `server_version` and `server_version_num`: the settings drivers `SHOW` to learn the version.
fn is_server_version(variable: &[Ident]) -> bool {
    matches!(variable, [v] if v.value.eq_ignore_ascii_case("server_version") || v.value.eq_ignore_ascii_case("server_version_num"))
}

#[async_trait]
impl QueryHook for IsobarHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(plan) = self.plan_own(statement).await {
            return Some(match plan {
                Ok(plan) => pg_direct::run(&self.engine, plan, client).await,
                Err(e) => Err(e),
            });
        }
        self.run(statement, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Err(e) = check_statement(statement) {
            return Some(Err(pg_error(&e)));
        }
        // Planned here as nothing; `handle_extended_query` runs it.
        let ours = matches!(
            statement,
            Statement::CreateTable(_)
                | Statement::Copy { to: false, .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
                | Statement::Rollback { savepoint: Some(_), .. }
        );
        if ours {
            return Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(DFSchema::empty()) })));
        }
        self.plan_own(statement).await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Answered here, or datafusion-postgres's `SHOW` hook would name itself. The value is
        // text, whose binary form is its text form, so it suits either result format.
        if matches!(statement, Statement::ShowVariable { variable } if is_server_version(variable)) {
            return Some(pg_direct::run(&self.engine, plan.clone(), client).await);
        }
        self.run(statement, client).await
    }
}

/// An error for the client, with its SQLSTATE.
pub(crate) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
}

/// The error a client sees, with its SQLSTATE.
fn pg_error(e: &isobar_query::Error) -> PgWireError {
    let code = match e {
        isobar_query::Error::Refused(_) => "42501",     // insufficient_privilege
        isobar_query::Error::Unsupported(_) => "0A000", // feature_not_supported
        isobar_query::Error::InvalidRows(_) => "22000", // data_exception
        isobar_query::Error::Timeout(_) => "57014",     // query_canceled
        isobar_query::Error::DataFusion(e) if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) => "53200", // out_of_memory
        isobar_query::Error::Storage(isobar_storage::Error::TableExists(_)) => "42P07", // duplicate_table
        isobar_query::Error::Storage(isobar_storage::Error::InvalidRequest(_)) => "22023", // invalid_parameter_value
        isobar_query::Error::Storage(isobar_storage::Error::LimitExceeded(_)) => "54000", // program_limit_exceeded
        _ => "XX000",
    };
    user_error(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_counted_in_subqueries_but_not_in_strings_or_comments() {
        assert_eq!(placeholders("SELECT 1"), Some(0));
        assert_eq!(placeholders("SELECT $1 FROM t WHERE x IN (SELECT y FROM u WHERE z = $3) -- $9"), Some(3));
        assert_eq!(placeholders("SELECT '$7', $2"), Some(2));
    }
}
