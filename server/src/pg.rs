//! The Postgres wire protocol front end: datafusion-postgres's session service over
//! isobar's query engine, with `pg_catalog` for psql and drivers, and a hook that runs
//! isobar's own statements (`CREATE TABLE`, `COPY ... FROM STDIN`) and refusals before
//! DataFusion plans anything.

use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::copy::CopyHandler;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{CopyResponse, DescribePortalResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, DEFAULT_NAME, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::copy::CopyData;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::messages::extendedquery::{Close, CloseComplete, Parse, ParseComplete, TARGET_TYPE_BYTE_STATEMENT};
use datafusion_postgres::pgwire::messages::response::TransactionStatus;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, SinkExt, Stream, StreamExt};
use isobar_query::{BudgetedStream, CATALOG, QueryBudget, QueryEngine, aggregate_scalar_subqueries, check_statement, with_budget};

use crate::auth::Authenticator;
use crate::config::PostgresConfig;
use crate::copy::{self, CopySlot, IsobarCopy};
use crate::error::{Error, Result};
use crate::metrics::QueryMetrics;
use crate::pg_direct::{self, DirectParser, direct_query};
use crate::pg_session::{PgSession, reply_plan};

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
        let hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(IsobarHook { engine: engine.clone() })];
        let session = Arc::new(DfSessionService::new_with_hooks(Arc::clone(engine.context()), hooks));
        let connections = Arc::new(ConnectionManager::new());
        Ok(Self {
            auth: Authenticator::new(config, Arc::clone(&connections))?,
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
            copy: Arc::new(IsobarCopy),
            simple: Arc::new(CountedSimple { inner: Arc::clone(&session), engine: engine.clone(), metrics: Arc::clone(&metrics) }),
            extended: Arc::new(CheckedExtended {
                engine: engine.clone(),
                parser: Arc::new(DirectParser { inner: session.query_parser(), engine: engine.clone() }),
                inner: session,
                metrics,
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

/// The deadline of a statement of `session` that starts now.
fn statement_deadline(session: &PgSession) -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_millis(session.state().statement_timeout_ms())
}

/// Bounds a query's execution, not only its planning: its rows are produced under the query's
/// memory budget, rows that are not ready by the deadline end the stream with `57014`, and
/// dropping the stream stops the query. A query that runs out of memory ends with `53200`.
fn bounded(response: Response, deadline: tokio::time::Instant, budget: Arc<QueryBudget>) -> Response {
    let Response::Query(mut query) = response else { return response };
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    query.data_rows = Box::pin(Deadline {
        rows: BudgetedStream::new(rows, budget),
        deadline,
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        since_check: 0,
        ended: false,
    });
    Response::Query(query)
}

/// A query's rows until its deadline. The timer wakes a query waiting for rows; a query whose
/// rows keep coming is checked against the clock every [`Deadline::CHECK_EVERY`] rows (a timer
/// per row costs more than encoding the row).
struct Deadline<S> {
    rows: S,
    deadline: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    since_check: u32,
    ended: bool,
}

impl<S> Deadline<S> {
    const CHECK_EVERY: u32 = 256;

    fn timed_out(&mut self) -> Poll<Option<PgWireResult<DataRow>>> {
        self.ended = true;
        Poll::Ready(Some(Err(user_error("57014", "canceling statement due to statement timeout".into()))))
    }
}

impl<S: Stream<Item = PgWireResult<DataRow>> + Unpin> Stream for Deadline<S> {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rows.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(with_sqlstate(e))))
            }
            Poll::Ready(Some(row)) => {
                self.since_check += 1;
                if self.since_check >= Self::CHECK_EVERY {
                    self.since_check = 0;
                    if tokio::time::Instant::now() >= self.deadline {
                        return self.timed_out();
                    }
                }
                Poll::Ready(Some(row))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => self.timed_out(),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// An error from DataFusion with the SQLSTATE isobar gives it (`isobar_query::Error::sqlstate`),
/// as PostgreSQL would report the same mistake: `42P01 undefined_table`, `42703
/// undefined_column`, `22012 division_by_zero`, `53200 out_of_memory` for a query past its
/// memory limit, and isobar's own codes for isobar's errors that travelled through DataFusion
/// (a write storage refused: `58030 io_error` after a failed WAL write). datafusion-postgres
/// would send them all as `XX000 internal_error`.
pub(crate) fn with_sqlstate(e: PgWireError) -> PgWireError {
    let PgWireError::ApiError(inner) = e else { return e };
    let inner = match inner.downcast::<isobar_query::Error>() {
        Ok(own) => return pg_error(&own),
        Err(other) => other,
    };
    let inner = match inner.downcast::<datafusion::sql::sqlparser::parser::ParserError>() {
        Ok(syntax) => return user_error("42601", format!("sql parser error: {syntax}")), // syntax_error
        Err(other) => other,
    };
    match inner.downcast::<DataFusionError>() {
        Ok(df) => match df.find_root() {
            DataFusionError::ResourcesExhausted(message) => user_error("53200", message.clone()),
            _ => pg_error(&isobar_query::Error::from(*df)),
        },
        Err(other) => PgWireError::ApiError(other),
    }
}

/// The highest `$n` in `sql` (0 for none): the parameters a Bind must supply. Counted from
/// the tokens, since a plan does not list the placeholders inside its subqueries. `None` when
/// the text does not tokenize (planning reports that). Text without a `$` has none, and is
/// not tokenized again at every execution.
fn placeholders(sql: &str) -> Option<usize> {
    if !sql.contains('$') {
        return Some(0);
    }
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
        let rewritten = crate::pg_compat::rewrite(&self.engine, query);
        let query = rewritten.as_deref().unwrap_or(query);
        let session = PgSession::of(client, self.engine.config());
        let deadline = statement_deadline(&session);
        let budget = self.engine.budget_of(session.state().memory_limit_bytes());
        if let Some(written) = self.insert_from_text(client, query).await {
            self.metrics.record(started, written.is_err());
            return written.map_err(with_sqlstate);
        }
        let result = with_budget(Arc::clone(&budget), async {
            match direct_query(query) {
                Some(statement) => match pg_direct::plan(&self.engine, statement).await {
                    Ok(plan) => pg_direct::run(&self.engine, plan, &Format::UnifiedText, client).await.map(|r| vec![r]),
                    Err(e) => Err(e),
                },
                None => SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await,
            }
        })
        .await;
        let failed = result.as_ref().map_or(true, |responses| responses.iter().any(|r| matches!(r, Response::Error(_))));
        self.metrics.record(started, failed);
        result.map_err(with_sqlstate).map(|responses| responses.into_iter().map(|r| bounded(r, deadline, Arc::clone(&budget))).collect())
    }
}

impl CountedSimple {
    /// Runs `sql` if it is a multi-row `INSERT ... VALUES` of literals the fast path reads
    /// from its text (`isobar_query::QueryEngine::insert_text_batch`), after the checks
    /// [`IsobarHook`] makes of every statement; `None` leaves it to the general path, which
    /// also gives any error.
    async fn insert_from_text<C: ClientInfo>(&self, client: &C, sql: &str) -> Option<PgWireResult<Vec<Response>>> {
        let (statement, batch) = self.engine.insert_text_batch(sql)?;
        if client.transaction_status() == TransactionStatus::Error || check_statement(&statement).is_err() {
            return None;
        }
        PgSession::of(client, self.engine.config()).state().before(&statement).ok()?;
        Some(self.engine.write_insert(batch).await.map(|rows| vec![inserted(rows)]).map_err(|e| pg_error(&e)))
    }
}

/// The reply to an INSERT of `rows` rows.
fn inserted(rows: u64) -> Response {
    Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(usize::try_from(rows).unwrap_or(usize::MAX)))
}

/// The extended query protocol, counted, with PostgreSQL's check that a Bind supplies
/// exactly the parameters its statement has (datafusion-postgres ignores extra ones).
struct CheckedExtended {
    inner: Arc<DfSessionService>,
    engine: QueryEngine,
    parser: Arc<DirectParser<<DfSessionService as ExtendedQueryHandler>::QueryParser>>,
    metrics: Arc<QueryMetrics>,
}

#[async_trait]
impl ExtendedQueryHandler for CheckedExtended {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = DirectParser<<DfSessionService as ExtendedQueryHandler>::QueryParser>;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// As pgwire parses, with the session's named statements counted and bounded.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if name != DEFAULT_NAME {
            PgSession::of(client, self.engine.config()).add_prepared(&name)?;
        }
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client.send(PgWireBackendMessage::ParseComplete(ParseComplete::new())).await?;
        Ok(())
    }

    /// As pgwire describes, except that a cursor has its query's columns.
    async fn do_describe_portal<C>(&self, client: &mut C, portal: &Portal<Self::Statement>) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match crate::pg_cursor::cursor_columns(client, portal)? {
            Some(columns) => Ok(DescribePortalResponse::new(columns)),
            None => ExtendedQueryHandler::do_describe_portal(self.inner.as_ref(), client, portal).await,
        }
    }

    /// As pgwire closes, with the session's named statements counted.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            client.portal_store().rm_statement(name);
            PgSession::of(client, self.engine.config()).remove_prepared(name);
        } else {
            client.portal_store().rm_portal(name);
        }
        client.send(PgWireBackendMessage::CloseComplete(CloseComplete::new())).await?;
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Self::Statement>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let session = PgSession::of(client, self.engine.config());
        let deadline = statement_deadline(&session);
        if let Some(expected) = placeholders(&portal.statement.statement.0)
            && portal.parameters.len() != expected
        {
            self.metrics.record(started, true);
            return Err(user_error(
                "08P01",
                format!("bind message supplies {} parameters, but the statement requires {expected}", portal.parameters.len()),
            ));
        }
        let aligned = crate::pg_params::aligned(portal);
        client.session_extensions().insert(ResultFormat(portal.result_column_format.clone()));
        let budget = self.engine.budget_of(session.state().memory_limit_bytes());
        let query = ExtendedQueryHandler::do_query(self.inner.as_ref(), client, aligned.as_ref().unwrap_or(portal), max_rows);
        let result = with_budget(Arc::clone(&budget), query).await;
        self.metrics.record(started, result.is_err());
        result.map_err(with_sqlstate).map(|r| bounded(r, deadline, budget))
    }
}

/// The result formats the Execute being run asked for (the Bind's), for [`IsobarHook`], which
/// runs queries but is not told them.
struct ResultFormat(Format);

/// Runs isobar's statements and refusals, in both query protocols: every statement passes
/// the allow-list (`isobar_query::check_statement`) and the session's read-only check first;
/// statements about the session are answered from the connection's own session.
#[derive(Debug)]
struct IsobarHook {
    engine: QueryEngine,
}

impl IsobarHook {
    /// Runs `statement` if it is isobar's to run; `params` are the Bind's, in the extended
    /// protocol.
    async fn run(
        &self,
        statement: &Statement,
        params: Option<&ParamValues>,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let session = PgSession::of(client, self.engine.config());
        if client.transaction_status() == TransactionStatus::Error
            && !matches!(statement, Statement::Commit { .. } | Statement::Rollback { .. })
        {
            return Some(Err(user_error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block".into(),
            )));
        }
        let reply = {
            let mut state = session.state();
            if let Err(e) = check_statement(statement).and_then(|()| state.before(statement)) {
                return Some(Err(pg_error(&e)));
            }
            state.apply(statement)
        };
        if let Some(reply) = reply {
            return Some(match reply {
                Ok(reply) => session.respond(client, reply).await,
                Err(e) => Err(pg_error(&e)),
            });
        }
        match statement {
            Statement::Deallocate { name, .. } => return Some(session.deallocate(client, &name.value)),
            Statement::Declare { stmts } => return Some(crate::pg_cursor::declare(&self.engine, stmts, params, client).await),
            Statement::Fetch { name, direction, .. } => {
                let extended = params.and_then(|_| client.session_extensions().get::<ResultFormat>());
                let format = extended.map_or(Format::UnifiedText, |f| f.0.clone());
                return Some(crate::pg_cursor::fetch(&name.value, direction, &format, params.is_some(), client).await);
            }
            Statement::Close { cursor } => return Some(crate::pg_cursor::close(cursor, client)),
            _ => {}
        }
        if let Some(batch) = self.engine.insert_batch(statement, params) {
            return Some(self.engine.write_insert(batch).await.map(inserted).map_err(|e| pg_error(&e)));
        }
        if let Some(start) = copy::start(&self.engine, statement) {
            return Some(match start {
                Ok(copy_in) => {
                    let (columns, format) = (copy_in.columns(), i8::from(copy_in.binary()));
                    let slot = client.session_extensions().get_or_insert_with(CopySlot::default);
                    if let Ok(mut current) = slot.0.lock() {
                        *current = Some(copy_in);
                    }
                    Ok(Response::CopyIn(CopyResponse::new(format, columns, futures::stream::empty::<PgWireResult<CopyData>>())))
                }
                Err(reason) => Err(user_error("22023", reason)),
            });
        }
        if let Some(deleted) = self.engine.run_delete(statement, params).await {
            let rows = |n: u64| Response::Execution(Tag::new("DELETE").with_rows(usize::try_from(n).unwrap_or(usize::MAX)));
            return Some(deleted.map(rows).map_err(|e| pg_error(&e)));
        }
        if let Some(done) = self.engine.run_table_change(statement).await {
            return Some(done.map(|tag| Response::Execution(Tag::new(tag))).map_err(|e| pg_error(&e)));
        }
        if let Statement::CreateTable(create) = statement {
            return Some(
                self.engine.create_table(create).await.map(|_| Response::Execution(Tag::new("CREATE TABLE"))).map_err(|e| pg_error(&e)),
            );
        }
        None
    }

    /// The plan to run a parsed query with: the one made at parse, unless a table, column or
    /// name has changed since (`Storage::schema_generation`); then the query is planned again, as
    /// PostgreSQL re-plans a prepared statement after DDL, and refused if its result columns
    /// changed (as PostgreSQL does: `cached plan must not change result type`).
    async fn current_plan(&self, statement: &Statement, parsed: &LogicalPlan, client: &dyn HookClient) -> PgWireResult<LogicalPlan> {
        let generation = self.engine.storage().schema_generation();
        let Some(at) = client.session_extensions().get::<ParsedAt>() else { return Ok(parsed.clone()) };
        match at.get(statement) {
            Some((parsed_at, None)) if parsed_at == generation => return Ok(parsed.clone()),
            Some((planned_at, Some(plan))) if planned_at == generation => return Ok(plan),
            _ => {}
        }
        let fresh = match self.plan_own(statement).await {
            Some(planned) => planned?,
            None => pg_direct::plan(&self.engine, statement.clone()).await?,
        };
        let shape = |p: &LogicalPlan| p.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect::<Vec<_>>();
        if shape(&fresh) != shape(parsed) {
            return Err(user_error("0A000", "cached plan must not change result type".into()));
        }
        at.record(statement, generation, Some(fresh.clone()));
        Ok(fresh)
    }

    /// A plan for a user query with scalar subqueries to aggregate, which isobar plans itself.
    async fn plan_own(&self, statement: &Statement) -> Option<PgWireResult<LogicalPlan>> {
        let mut statement = statement.clone();
        if !aggregate_scalar_subqueries(&mut statement) {
            return None;
        }
        Some(pg_direct::plan(&self.engine, statement).await)
    }
}

#[async_trait]
impl QueryHook for IsobarHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(result) = self.run(statement, None, client).await {
            return Some(result);
        }
        let planned = match self.plan_own(statement).await {
            Some(planned) => planned,
            None if matches!(statement, Statement::Query(_)) => pg_direct::plan(&self.engine, statement.clone()).await,
            None => return None,
        };
        match planned {
            Ok(plan) => Some(pg_direct::run(&self.engine, plan, &Format::UnifiedText, client).await),
            Err(e) => Some(Err(e)),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Err(e) = check_statement(statement) {
            return Some(Err(pg_error(&e)));
        }
        // A session statement is described by what it would answer now, and answered when
        // it runs, from the session as it is then.
        let session = PgSession::of(client, self.engine.config());
        let reply = session.state().clone().apply(statement);
        if let Some(reply) = reply {
            return Some(reply.map_err(|e| pg_error(&e)).and_then(|r| reply_plan(&r)));
        }
        // Planned here as nothing; `handle_extended_query` runs it.
        let ours = matches!(
            statement,
            Statement::CreateTable(_)
                | Statement::Drop { .. }
                | Statement::Truncate(_)
                | Statement::AlterTable(_)
                | Statement::Copy { to: false, .. }
                | Statement::Deallocate { .. }
                | Statement::Close { .. }
        );
        match statement {
            Statement::Declare { stmts } => return Some(crate::pg_cursor::declare_plan(&self.engine, stmts).await),
            Statement::Fetch { name, .. } => return Some(crate::pg_cursor::fetch_plan(&name.value, client)),
            _ => {}
        }
        if let Some(plan) = self.engine.delete_plan(statement).await {
            return Some(plan.map_err(|e| pg_error(&e)));
        }
        if ours {
            return Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(DFSchema::empty()) })));
        }
        if matches!(statement, Statement::Query(_)) {
            let parsed = client.session_extensions().get_or_insert_with(ParsedAt::default);
            parsed.record(statement, self.engine.storage().schema_generation(), None);
        }
        self.plan_own(statement).await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(result) = self.run(statement, Some(params), client).await {
            return Some(result);
        }
        // Queries are run here so that their rows are encoded a batch at a time
        // (`pg_rows.rs`), in the formats the Bind asked for.
        let format = client.session_extensions().get::<ResultFormat>().filter(|_| matches!(statement, Statement::Query(_)))?;
        let plan = match self.current_plan(statement, plan, client).await {
            Ok(plan) => plan,
            Err(e) => return Some(Err(e)),
        };
        let plan = match plan.replace_params_with_values(params) {
            Ok(plan) => plan,
            Err(e) => return Some(Err(PgWireError::ApiError(Box::new(e)))),
        };
        Some(pg_direct::run(&self.engine, plan, &format.0, client).await)
    }
}

/// The schema generation each query of a session was last planned at, by its text, with the
/// plan made again after a change (none while the plan made at parse holds).
#[derive(Debug, Default)]
struct ParsedAt(std::sync::Mutex<std::collections::HashMap<String, (u64, Option<LogicalPlan>)>>);

impl ParsedAt {
    /// Queries remembered at most; past it, the oldest are forgotten all at once (and planned
    /// again if they run after a change).
    const QUERIES_MAX: usize = 2_048;

    fn record(&self, statement: &Statement, generation: u64, plan: Option<LogicalPlan>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= Self::QUERIES_MAX {
                map.clear();
            }
            map.insert(statement.to_string(), (generation, plan));
        }
    }

    fn get(&self, statement: &Statement) -> Option<(u64, Option<LogicalPlan>)> {
        self.0.lock().ok()?.get(&statement.to_string()).cloned()
    }
}

/// An error for the client, with its SQLSTATE.
pub(crate) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
}

/// The error a client sees, with its SQLSTATE.
pub(crate) fn pg_error(e: &isobar_query::Error) -> PgWireError {
    user_error(e.sqlstate(), e.to_string())
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
