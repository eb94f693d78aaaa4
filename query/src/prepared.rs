//! Statements prepared once and run any number of times with parameters, their rows streamed
//! as the plan makes them: what Arrow Flight SQL serves, and what [`Session::execute`] runs.
//!
//! A query is planned when it is prepared, which gives its result columns and the types of
//! its parameters before it runs. It is planned again when it runs if a table, column or name
//! changed since (`Storage::schema_generation`), and refused if its result columns changed, as
//! PostgreSQL refuses a prepared statement whose result type changed. Every other statement is
//! checked when it is prepared and runs when it is executed: statements about the session in
//! the session, isobar's DDL and DML in isobar's code, the rest through DataFusion.
//!
//! A query's rows are produced under the session's memory limit, and a query still running at
//! the session's statement timeout ends with [`Error::Timeout`]. Dropping the stream stops it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::{DFParser, ResetStatement, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Reset, ResetStatement as SqlResetStatement, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::{Stream, StreamExt};

use crate::engine::Session;
use crate::error::{Error, Result};
use crate::memory::{BudgetedStream, QueryBudget, with_budget};
use crate::policy::check_df_statement;
use crate::session::SessionReply;
use crate::subquery::aggregate_scalar_subqueries;

/// A statement ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: DfStatement,
    kind: Kind,
    schema: SchemaRef,
    parameter_types: Vec<Option<DataType>>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A query, planned while storage's schema generation was `generation`.
    Query { plan: LogicalPlan, generation: u64 },
    /// Any other statement, run when executed.
    Command,
}

/// What running a statement produced.
pub enum Outcome {
    /// Rows, as the plan makes them.
    Rows(SendableRecordBatchStream),
    /// A command's tag (`CREATE TABLE`, `INSERT`) and the rows it affected.
    Command(&'static str, u64),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(rows) => f.debug_tuple("Rows").field(&rows.schema()).finish(),
            Self::Command(tag, n) => f.debug_tuple("Command").field(tag).field(n).finish(),
        }
    }
}

impl Prepared {
    /// The columns the statement returns; none for a command.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The types of the parameters `$1`, `$2`, ... in order; `None` where the statement does
    /// not tell.
    pub fn parameter_types(&self) -> &[Option<DataType>] {
        &self.parameter_types
    }

    /// Whether the statement answers with rows (a query, `SHOW`) rather than a count.
    pub fn returns_rows(&self) -> bool {
        matches!(self.kind, Kind::Query { .. }) || !self.schema.fields().is_empty()
    }
}

impl Session {
    /// Parses and prepares the one statement of `sql`.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
        match (statements.pop_front(), statements.len()) {
            (Some(statement), 0) => self.prepare_statement(statement).await,
            (None, _) => Err(Error::Unsupported("the statement is empty".into())),
            (Some(_), more) => Err(Error::Unsupported(format!("a prepared statement is one statement; this text has {}", more + 1))),
        }
    }

    /// Prepares a parsed statement: checks it against the allow-list, and plans it if it is a
    /// query.
    pub(crate) async fn prepare_statement(&self, mut statement: DfStatement) -> Result<Prepared> {
        check_df_statement(&statement)?;
        // DataFusion's parser reads `RESET` itself; the session answers it as the wire does.
        if let DfStatement::Reset(ResetStatement::Variable(name)) = &statement {
            let reset = match name.to_string().eq_ignore_ascii_case("all") {
                true => Reset::ALL,
                false => Reset::ConfigurationParameter(name.clone()),
            };
            statement = DfStatement::Statement(Box::new(Statement::Reset(SqlResetStatement { reset })));
        }
        if let DfStatement::Statement(s) = &mut statement {
            aggregate_scalar_subqueries(s);
        }
        let is_query = match &statement {
            DfStatement::Statement(s) => matches!(s.as_ref(), Statement::Query(_) | Statement::Explain { .. }),
            DfStatement::Explain(_) => true,
            _ => false,
        };
        if is_query {
            let generation = self.engine().storage().schema_generation();
            let plan = self.plan(statement.clone()).await?;
            let (schema, parameter_types) = (Arc::new(plan.schema().as_arrow().clone()), parameter_types(&plan)?);
            return Ok(Prepared { statement, kind: Kind::Query { plan, generation }, schema, parameter_types });
        }
        let DfStatement::Statement(s) = &statement else {
            return Ok(Prepared { statement, kind: Kind::Command, schema: Arc::new(Schema::empty()), parameter_types: Vec::new() });
        };
        // A statement about the session is described by what it would answer now.
        let (schema, parameter_types) = match self.state().clone().apply(s) {
            Some(Ok(SessionReply::Show { columns, .. })) => (text_schema(&columns), Vec::new()),
            Some(Err(e)) => return Err(e),
            Some(Ok(SessionReply::Command { .. })) => (Arc::new(Schema::empty()), Vec::new()),
            None => (Arc::new(Schema::empty()), self.command_parameters(s).await?),
        };
        Ok(Prepared { statement, kind: Kind::Command, schema, parameter_types })
    }

    /// The parameters of a command: those of an `INSERT` as DataFusion plans it, and those of a
    /// `DELETE`'s condition.
    async fn command_parameters(&self, statement: &Statement) -> Result<Vec<Option<DataType>>> {
        if let Some(plan) = self.engine().delete_plan(statement).await {
            return parameter_types(&plan?);
        }
        if matches!(statement, Statement::Insert(_)) {
            let plan = self.plan(DfStatement::Statement(Box::new(statement.clone()))).await?;
            return parameter_types(&plan);
        }
        Ok(Vec::new())
    }

    /// Runs a prepared statement with `params` bound to its placeholders.
    pub async fn run(&mut self, prepared: &Prepared, params: Option<&ParamValues>) -> Result<Outcome> {
        let budget = self.engine().budget_of(self.state().memory_limit_bytes());
        let timeout_ms = self.state().statement_timeout_ms();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let Kind::Query { plan, generation } = &prepared.kind else {
            let work = self.run_command(&prepared.statement, params, Arc::clone(&budget), deadline, timeout_ms);
            return with_budget(budget, work).await;
        };
        let plan = match *generation == self.engine().storage().schema_generation() {
            true => plan.clone(),
            false => {
                let fresh = self.plan(prepared.statement.clone()).await?;
                if fresh.schema().as_arrow().fields() != prepared.schema.fields() {
                    return Err(Error::Unsupported("cached plan must not change result type".into()));
                }
                fresh
            }
        };
        let plan = bind(plan, params)?;
        let rows = with_budget(Arc::clone(&budget), self.engine().execute_plan(plan)).await?;
        Ok(Outcome::Rows(bounded(rows, budget, deadline, timeout_ms)))
    }

    async fn run_command(
        &mut self,
        statement: &DfStatement,
        params: Option<&ParamValues>,
        budget: Arc<QueryBudget>,
        deadline: tokio::time::Instant,
        timeout_ms: u64,
    ) -> Result<Outcome> {
        let engine = self.engine().clone();
        if let DfStatement::Statement(s) = statement {
            self.state_mut().before(s)?;
            if let Some(reply) = self.state_mut().apply(s) {
                return reply.map(outcome_of);
            }
            if let Some(batch) = engine.insert_batch(s, params) {
                return Ok(Outcome::Command("INSERT", engine.write_insert(batch).await?));
            }
            if let Some(deleted) = engine.run_delete(s, params).await {
                return deleted.map(|n| Outcome::Command("DELETE", n));
            }
            if let Some(done) = engine.run_table_change(s).await {
                return done.map(|tag| Outcome::Command(tag, 0));
            }
            match s.as_ref() {
                Statement::CreateTable(create) => {
                    let created = engine.create_table(create).await?;
                    return Ok(Outcome::Command("CREATE TABLE", u64::from(created)));
                }
                Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } | Statement::Deallocate { .. } => {
                    return Err(Error::Unsupported("cursors and prepared statements belong to a Postgres wire session".into()));
                }
                Statement::Copy { .. } => {
                    return Err(Error::Unsupported(
                        "COPY ... FROM STDIN belongs to the Postgres wire protocol; Arrow clients bulk-load with Flight SQL's ingest"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        // The rest through DataFusion: `INSERT ... SELECT` and what else it plans.
        let plan = bind(self.plan(statement.clone()).await?, params)?;
        let is_insert = matches!(plan, LogicalPlan::Dml(_));
        let rows = engine.execute_plan(plan).await?;
        if !is_insert {
            return Ok(Outcome::Rows(bounded(rows, budget, deadline, timeout_ms)));
        }
        let batches = collect(bounded(rows, budget, deadline, timeout_ms)).await?;
        Ok(Outcome::Command("INSERT", inserted_rows(&batches)))
    }

    /// Plans `statement` in the engine's DataFusion session.
    async fn plan(&self, statement: DfStatement) -> Result<LogicalPlan> {
        Ok(self.engine().context().state().statement_to_plan(statement).await?)
    }
}

/// The types of `plan`'s parameters `$1`, `$2`, ... in order.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let by_name = plan.get_parameter_types()?;
    let numbered: Vec<(usize, Option<DataType>)> =
        by_name.into_iter().filter_map(|(name, ty)| Some((name.strip_prefix('$')?.parse::<usize>().ok()?, ty))).collect();
    let count = numbered.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut types = vec![None; count];
    for (n, ty) in numbered {
        if let Some(slot) = n.checked_sub(1).and_then(|i| types.get_mut(i)) {
            *slot = ty;
        }
    }
    Ok(types)
}

/// `plan` with `params` in place of its placeholders.
fn bind(plan: LogicalPlan, params: Option<&ParamValues>) -> Result<LogicalPlan> {
    match params {
        Some(params) => Ok(plan.replace_params_with_values(params)?),
        None => Ok(plan),
    }
}

/// The rows a DataFusion `INSERT` wrote, from its one `count` row.
fn inserted_rows(batches: &[RecordBatch]) -> u64 {
    let counts = batches.iter().filter_map(|b| b.columns().first()).filter_map(|c| c.as_primitive_opt::<UInt64Type>());
    counts.flat_map(|c| c.iter().flatten()).sum()
}

/// Columns of text, for `SHOW`.
fn text_schema(columns: &[String]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect::<Vec<_>>()))
}

/// A session statement's reply: `SHOW` as rows of text, the rest as a command.
fn outcome_of(reply: SessionReply) -> Outcome {
    match reply {
        SessionReply::Command { tag, .. } => Outcome::Command(tag, 0),
        SessionReply::Show { columns, rows } => {
            let schema = text_schema(&columns);
            let arrays = (0..columns.len())
                .map(|i| Arc::new(rows.iter().map(|r| r.get(i).cloned()).collect::<datafusion::arrow::array::StringArray>()) as _)
                .collect();
            let batch = RecordBatch::try_new(Arc::clone(&schema), arrays);
            let stream = batch.map_err(DataFusionError::from).and_then(|b| MemoryStream::try_new(vec![b], schema, None));
            match stream {
                Ok(stream) => Outcome::Rows(Box::pin(stream)),
                Err(e) => Outcome::Rows(Box::pin(RecordBatchStreamAdapter::new(
                    Arc::new(Schema::empty()),
                    futures::stream::once(async move { Err(e) }),
                ))),
            }
        }
    }
}

/// `rows` polled under `budget`, ending with [`Error::Timeout`] if they are not all made by
/// `deadline`.
fn bounded(
    rows: SendableRecordBatchStream,
    budget: Arc<QueryBudget>,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
) -> SendableRecordBatchStream {
    let schema = rows.schema();
    let timer = Box::pin(tokio::time::sleep_until(deadline));
    Box::pin(RecordBatchStreamAdapter::new(schema, Deadline { rows: BudgetedStream::new(rows, budget), timer, timeout_ms, ended: false }))
}

/// A query's batches until its deadline.
struct Deadline<S> {
    rows: S,
    timer: Pin<Box<tokio::time::Sleep>>,
    timeout_ms: u64,
    ended: bool,
}

impl<S: Stream<Item = datafusion::error::Result<RecordBatch>> + Unpin> Stream for Deadline<S> {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(Error::Timeout(self.timeout_ms).into())));
        }
        let next = self.rows.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        next
    }
}
