//! Flight SQL bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`): Arrow batches
//! written into a table through storage as COPY writes (`QueryEngine::bulk_load`), with the
//! same checks and per-row errors; the load's count is returned once every row is durable.
//!
//! ADBC's modes: `create` makes the table and fails if it exists; `append` needs it;
//! `create_append` makes it if it is missing; `replace` empties it first (the emptying is
//! durable on its own: a load that fails after it leaves the table empty or partly loaded).
//! A table made here takes `time`, text columns as tags and the rest as fields
//! (`QueryEngine::create_table_for`).

use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::{StreamExt, TryStreamExt};
use isobar_query::{CATALOG, DEFAULT_SCHEMA};
use tonic::{Request, Status};

use super::{FlightContext, status};

/// Loads the batches of `request` into the table `command` names; the rows written.
pub(crate) async fn ingest(
    context: &FlightContext,
    command: CommandStatementIngest,
    request: Request<PeekableFlightDataStream>,
) -> Result<i64, Status> {
    let started = std::time::Instant::now();
    let result = load(context, command, request).await;
    context.metrics.record(started, result.is_err());
    result
}

async fn load(context: &FlightContext, command: CommandStatementIngest, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
    if command.temporary {
        return Err(Status::invalid_argument("isobar has no temporary tables"));
    }
    if command.transaction_id.is_some() {
        return Err(Status::invalid_argument("isobar has no transactions: each batch is durable once written"));
    }
    if command.catalog.as_deref().is_some_and(|c| !c.is_empty() && c != CATALOG)
        || command.schema.as_deref().is_some_and(|s| !s.is_empty() && s != DEFAULT_SCHEMA)
    {
        return Err(Status::invalid_argument(format!("isobar loads into tables of {CATALOG}.{DEFAULT_SCHEMA}")));
    }
    let name = command.table;
    isobar_query::check_writable(&name).map_err(status)?;
    let options = command.table_definition_options.unwrap_or_default();
    let (if_not_exist, if_exists) = (options.if_not_exist(), options.if_exists());
    let engine = &context.engine;

    let mut batches = super::service::batches(request);
    let first = batches.try_next().await.map_err(Status::from)?;
    let schema = match (&first, batches.schema()) {
        (Some(batch), _) => batch.schema(),
        (None, Some(schema)) => schema.clone(),
        (None, None) => return Err(Status::invalid_argument("the load sent no schema")),
    };
    match (engine.storage().table(&name).is_some(), if_exists, if_not_exist) {
        (true, TableExistsOption::Append, _) => {}
        (true, TableExistsOption::Replace, _) => truncate(context, &name).await?,
        (true, _, _) => return Err(Status::already_exists(format!("table {name} exists: load it with mode append or replace"))),
        (false, _, TableNotExistOption::Create) => {
            engine.create_table_for(&name, &schema).await.map_err(status)?;
        }
        (false, _, _) => return Err(Status::not_found(format!("table {name} does not exist: load it with mode create"))),
    }
    // The next batch is decoded while the write of the last is in flight.
    let mut load = engine.bulk_load(&name, &schema).map_err(status)?;
    let mut next = first;
    while let Some(batch) = next {
        load.push(&batch).await.map_err(status)?;
        next = batches.next().await.transpose().map_err(Status::from)?;
    }
    let written = load.finish().await.map_err(status)?;
    Ok(i64::try_from(written).unwrap_or(i64::MAX))
}

/// Empties table `name` for a `replace` load.
async fn truncate(context: &FlightContext, name: &str) -> Result<(), Status> {
    let sql = format!("TRUNCATE TABLE \"{}\"", name.replace('"', "\"\""));
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .pop()
        .ok_or_else(|| Status::internal("TRUNCATE did not parse"))?;
    match context.engine.run_table_change(&statement).await {
        Some(done) => done.map(|_| ()).map_err(status),
        None => Err(Status::internal("TRUNCATE is not a table change")),
    }
}
