//! Cursors: `DECLARE ... CURSOR`, `FETCH`, `CLOSE`, and the columns a Describe of a cursor or
//! of a `FETCH` answers with.
//!
//! psycopg's server-side cursors (and anyone paging through a large result with SQL) send
//! `DECLARE` with bound parameters, Describe the cursor, then `FETCH FORWARD n` with a Describe
//! each, asking for text or binary rows, and read the rows by the columns they were described.
//! A cursor here is its query's record batch stream, held by the connection: it is planned as
//! isobar's other queries are (scalar subqueries aggregated, the session's settings, the Bind's
//! parameters), and each `FETCH` reads the next rows from it and encodes them in the formats
//! that `FETCH` asked for. A `FETCH` is parsed to a plan with the cursor's columns, so that a
//! Describe of it (psycopg's of the portal, tokio-postgres's and pgJDBC's of the statement)
//! answers with them. A connection holds at most [`CURSORS_MAX`] cursors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan, Projection};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{CloseCursor, Declare, DeclareType, FetchDirection, Statement, Value};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use futures::{StreamExt, TryStreamExt};
use isobar_query::{QueryEngine, aggregate_scalar_subqueries};

use crate::pg::user_error;
use crate::pg_params::PgStatement;

/// Cursors one connection may hold open at once.
pub(crate) const CURSORS_MAX: usize = 100;

/// The open cursors of one connection, in its session extensions.
#[derive(Default)]
pub(crate) struct Cursors(Mutex<HashMap<String, Arc<Cursor>>>);

/// An open cursor.
struct Cursor {
    /// The columns of its rows.
    schema: SchemaRef,
    /// The rows its query has still to give: the `FETCH` being sent holds them.
    rows: Arc<tokio::sync::Mutex<Rows>>,
}

struct Rows {
    stream: SendableRecordBatchStream,
    /// Rows read from `stream` that a `FETCH` has not given yet.
    held: Option<RecordBatch>,
}

impl Cursors {
    fn of(client: &(impl ClientInfo + ?Sized)) -> Arc<Cursors> {
        client.session_extensions().get_or_insert_with(Cursors::default)
    }

    fn open(&self) -> PgWireResult<MutexGuard<'_, HashMap<String, Arc<Cursor>>>> {
        self.0.lock().map_err(|_| user_error("XX000", "the session's cursors are unusable".into()))
    }

    fn get(&self, name: &str) -> Option<Arc<Cursor>> {
        self.open().ok()?.get(name).cloned()
    }

    fn put(&self, name: &str, stream: SendableRecordBatchStream) -> PgWireResult<()> {
        let mut cursors = self.open()?;
        if cursors.contains_key(name) {
            return Err(user_error("42P03", format!("cursor \"{name}\" already exists")));
        }
        if cursors.len() >= CURSORS_MAX {
            return Err(user_error("54000", format!("this session has {CURSORS_MAX} cursors open, the most isobar keeps; CLOSE some")));
        }
        let rows_schema = stream.schema();
        let rows = Arc::new(tokio::sync::Mutex::new(Rows { stream, held: None }));
        cursors.insert(name.to_owned(), Arc::new(Cursor { schema: rows_schema, rows }));
        Ok(())
    }
}

/// The plan a `DECLARE` is parsed to: its query's, without columns (a `DECLARE` returns
/// none), so that the types of the query's placeholders are known to the Bind.
pub(crate) async fn declare_plan(engine: &QueryEngine, declares: &[Declare]) -> PgWireResult<LogicalPlan> {
    let [declare] = declares else { return Err(user_error("42601", "DECLARE names one cursor".into())) };
    let plan = query_plan(engine, declare).await?;
    Projection::try_new(Vec::new(), Arc::new(plan)).map(LogicalPlan::Projection).map_err(api_error)
}

/// Opens the cursors `declares` name, their queries' placeholders bound to `params`.
pub(crate) async fn declare(
    engine: &QueryEngine,
    declares: &[Declare],
    params: Option<&ParamValues>,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    for declare in declares {
        let name = declare.names.first().ok_or_else(|| user_error("42601", "cursor name is required".into()))?;
        let mut plan = query_plan(engine, declare).await?;
        if let Some(params) = params {
            plan = plan.replace_params_with_values(params).map_err(api_error)?;
        }
        let rows = engine.execute_plan(plan).await.map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        Cursors::of(client).put(&name.value, rows)?;
        // A portal of the cursor's name, for a Describe of it to find.
        let query = declare.for_query.as_ref().map(ToString::to_string).unwrap_or_default();
        let statement = Arc::new(StoredStatement::new(name.value.clone(), (query, None), Vec::new()));
        client.portal_store().put_portal(Arc::new(Portal::new_cursor(name.value.clone(), statement)));
    }
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

/// The plan of the query a `DECLARE ... CURSOR FOR` names.
async fn query_plan(engine: &QueryEngine, declare: &Declare) -> PgWireResult<LogicalPlan> {
    if declare.declare_type != Some(DeclareType::Cursor) {
        return Err(user_error("42601", format!("unsupported DECLARE: {declare}")));
    }
    let query = declare.for_query.as_ref().ok_or_else(|| user_error("42601", "DECLARE CURSOR requires a FOR query".into()))?;
    let mut statement = Statement::Query(query.clone());
    aggregate_scalar_subqueries(&mut statement);
    crate::pg_direct::plan(engine, statement).await
}

/// The next rows of cursor `name`, as many as `direction` asks for, encoded in `format`.
///
/// In the extended query protocol (`streamed`) they are read from the cursor's query as the
/// client takes them, so a `FETCH ALL` of a large result is not gathered first; the cursor is
/// that `FETCH`'s until its rows are sent. In the simple protocol, whose statements are all
/// answered before any is sent (`DECLARE c ...; FETCH 2 FROM c; FETCH 2 FROM c`), the rows
/// are read before the answer.
pub(crate) async fn fetch(
    name: &str,
    direction: &FetchDirection,
    format: &Format,
    streamed: bool,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    let wanted = rows_wanted(direction)?.unwrap_or(usize::MAX);
    let cursor = Cursors::of(client).get(name).ok_or_else(|| user_error("34000", format!("cursor \"{name}\" does not exist")))?;
    // A FETCH whose rows were not all read (an Execute with a row limit) still holds them.
    let rows = Arc::clone(&cursor.rows)
        .try_lock_owned()
        .map_err(|_| user_error("55006", format!("cursor \"{name}\" is in use by a FETCH whose rows are not all read")))?;
    let batches = futures::stream::try_unfold((rows, wanted), |(mut rows, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        let batch = match rows.held.take() {
            Some(batch) => batch,
            None => match rows.stream.next().await {
                Some(batch) => batch?,
                None => return Ok(None),
            },
        };
        if batch.num_rows() > remaining {
            rows.held = Some(batch.slice(remaining, batch.num_rows() - remaining));
            return Ok(Some((batch.slice(0, remaining), (rows, 0))));
        }
        let left = remaining - batch.num_rows();
        Ok(Some((batch, (rows, left))))
    });
    let schema = Arc::clone(&cursor.schema);
    let stream: SendableRecordBatchStream = if streamed {
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    } else {
        let gathered: Vec<RecordBatch> = batches.try_collect().await.map_err(api_error)?;
        Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(gathered.into_iter().map(Ok))))
    };
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let mut response = crate::pg_rows::query_response(stream, format, options)?;
    response.set_command_tag("FETCH");
    Ok(Response::Query(response))
}

/// How many rows a `FETCH` asks for; `None` for all. Cursors only move forward.
fn rows_wanted(direction: &FetchDirection) -> PgWireResult<Option<usize>> {
    let count = |value: &Value| match value {
        Value::Number(n, _) => n.parse::<usize>().map_err(|_| user_error("22023", format!("FETCH count {n} is not a row count"))),
        other => Err(user_error("22023", format!("FETCH count {other} is not a row count"))),
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Forward { limit: Some(n) } | FetchDirection::Count { limit: n } => count(n).map(Some),
        FetchDirection::ForwardAll | FetchDirection::All => Ok(None),
        _ => Err(user_error("55000", "isobar's cursors only move forward (FETCH NEXT, FORWARD n, ALL)".into())),
    }
}

/// Closes cursor `name` (`CLOSE ALL`: every cursor).
pub(crate) fn close(cursor: &CloseCursor, client: &dyn HookClient) -> PgWireResult<Response> {
    let cursors = Cursors::of(client);
    let mut open = cursors.open()?;
    match cursor {
        CloseCursor::All => {
            for name in open.keys() {
                client.portal_store().rm_portal(name);
            }
            open.clear();
        }
        CloseCursor::Specific { name } => {
            if open.remove(&name.value).is_none() {
                return Err(user_error("34000", format!("cursor \"{}\" does not exist", name.value)));
            }
            client.portal_store().rm_portal(&name.value);
        }
    }
    Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
}

/// The plan a `FETCH` from cursor `name` is parsed to: no rows, with the cursor's columns,
/// which a Describe of the statement or of its portal then answers with. (None when there is no
/// such cursor: the `FETCH` fails when it runs.)
pub(crate) fn fetch_plan(name: &str, client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<LogicalPlan> {
    let schema = Cursors::of(client).get(name).map_or_else(|| Arc::new(Schema::empty()), |cursor| Arc::clone(&cursor.schema));
    let schema = DFSchema::try_from(schema.as_ref().clone()).map_err(api_error)?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(schema) }))
}

/// The columns a Describe of `portal` answers with when it is a cursor: the cursor's, in text,
/// as PostgreSQL describes a cursor. `None` for every other portal.
pub(crate) fn cursor_columns<C>(client: &C, portal: &Portal<PgStatement>) -> PgWireResult<Option<Vec<FieldInfo>>>
where
    C: ClientInfo,
{
    let (_, None) = &portal.statement.statement else { return Ok(None) };
    if portal.statement.id != portal.name {
        return Ok(None);
    }
    let Some(cursor) = Cursors::of(client).get(&portal.name) else { return Ok(None) };
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    arrow_schema_to_pg_fields(&cursor.schema, &Format::UnifiedText, Some(options)).map(Some)
}

fn api_error(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}
