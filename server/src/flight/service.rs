//! isobar's `FlightSqlService`: each Flight SQL call, run on the query engine.
//!
//! Every call has been authenticated by the interceptor in front (`auth.rs`). The handshake
//! hands the caller a bearer token. Queries reach `DoGet` through a ticket: a plain query's
//! carries its text, a prepared query's is its handle. Writes run when their `FlightInfo` is
//! asked for or when they are `DoPut`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ParamValues;
use futures::{Stream, StreamExt, TryStreamExt};
use isobar_query::{Outcome, Prepared, Session};
use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use super::auth::Caller;
use super::statements::{self, numbered_placeholders, param_rows, row_params};
use super::{FlightContext, metadata, status, stream_status};

type DoGetStream = <IsobarFlight as FlightService>::DoGetStream;

/// The Flight SQL service over one [`FlightContext`].
#[derive(Debug, Clone)]
pub(crate) struct IsobarFlight {
    context: Arc<FlightContext>,
}

impl IsobarFlight {
    pub(crate) fn new(context: FlightContext) -> Self {
        Self { context: Arc::new(context) }
    }

    /// The session of the bearer token `request` carries (a fresh one without).
    fn session<T>(&self, request: &Request<T>) -> Session {
        match self.context.auth.session(request) {
            Some(state) => self.context.engine.resume(state),
            None => self.context.engine.session(),
        }
    }

    /// Keeps what a call did to its session for the token's later calls.
    fn keep(&self, metadata: &MetadataMap, session: Session) {
        self.context.auth.keep_session(metadata, session.into_state());
    }

    /// Prepares `sql` (with `?` placeholders numbered) in `session`.
    async fn prepare(session: &Session, sql: &str) -> Result<Prepared, Status> {
        session.prepare(&numbered_placeholders(sql)).await.map_err(status)
    }

    /// Runs a prepared query with the first row of `params`, its rows streamed as Flight data
    /// and cancellable by `ticket`.
    async fn stream(
        &self,
        call: Call,
        prepared: &Prepared,
        params: Option<&RecordBatch>,
        ticket: Bytes,
    ) -> Result<Response<DoGetStream>, Status> {
        let started = Instant::now();
        let params = match param_rows(params) {
            0 => None,
            1 => params.map(|p| row_params(p, 0)).transpose()?,
            n => return Err(Status::invalid_argument(format!("a query takes one row of parameters; {n} were bound"))),
        };
        let Call { mut session, metadata } = call;
        let outcome = session.run(prepared, params.as_ref()).await;
        self.keep(&metadata, session);
        self.context.metrics.record(started, outcome.is_err());
        let rows = match outcome.map_err(status)? {
            Outcome::Rows(rows) => rows,
            Outcome::Command(..) => return Ok(Response::new(empty(Arc::new(Schema::empty())))),
        };
        let schema = rows.schema();
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(rows.map_err(|e| FlightError::Tonic(Box::new(stream_status(e)))))
            .map_err(Status::from);
        let tracked = self.context.running.track(ticket, data).map(|item| item.and_then(|data| data));
        Ok(Response::new(Box::pin(tracked)))
    }

    /// Runs a write once per row of `params` (once without), returning the rows it affected.
    async fn write(&self, call: Call, prepared: &Prepared, params: Option<&RecordBatch>) -> Result<i64, Status> {
        let started = Instant::now();
        let Call { mut session, metadata } = call;
        let result = Self::write_rows(&mut session, prepared, params).await;
        self.keep(&metadata, session);
        self.context.metrics.record(started, result.is_err());
        result
    }

    async fn write_rows(session: &mut Session, prepared: &Prepared, params: Option<&RecordBatch>) -> Result<i64, Status> {
        // Once without parameters when none are bound (a batch without rows binds none).
        let runs: Vec<Option<ParamValues>> = match (params, param_rows(params)) {
            (Some(params), rows @ 1..) => (0..rows).map(|row| row_params(params, row).map(Some)).collect::<Result<_, _>>()?,
            _ => vec![None],
        };
        let mut affected = 0u64;
        for bound in runs {
            affected += match session.run(prepared, bound.as_ref()).await.map_err(status)? {
                Outcome::Command(_, n) => n,
                Outcome::Rows(mut rows) => {
                    let mut n = 0;
                    while let Some(batch) = rows.next().await {
                        n += batch.map_err(stream_status)?.num_rows() as u64;
                    }
                    n
                }
            };
        }
        Ok(i64::try_from(affected).unwrap_or(i64::MAX))
    }

    /// Runs a statement that is not a query as its `FlightInfo` is asked for: the info of its
    /// empty result, with the rows it affected.
    async fn write_info(
        &self,
        call: Call,
        prepared: &Prepared,
        params: Option<&RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let affected = self.write(call, prepared, params).await?;
        let ticket = TicketStatementQuery { statement_handle: statements::Ticket::Done.encode() };
        Ok(info(prepared.schema(), ticket.as_any().encode_to_vec().into(), descriptor)?.with_total_records(affected))
    }

    /// The parameters a client sent in a `DoPut`: its batches as one (none when it sent none).
    async fn parameters(request: Request<PeekableFlightDataStream>) -> Result<Option<RecordBatch>, Status> {
        let batches: Vec<RecordBatch> = batches(request).try_collect().await.map_err(Status::from)?;
        let Some(first) = batches.first() else { return Ok(None) };
        let batch = datafusion::arrow::compute::concat_batches(&first.schema(), &batches).map_err(arrow_status)?;
        Ok(Some(batch))
    }
}

/// The record batches of a `DoPut`. A message with nothing but the descriptor (the first,
/// from clients that send the schema apart, or the only one when there are no parameters) is
/// not a batch.
pub(crate) fn batches(request: Request<PeekableFlightDataStream>) -> arrow_flight::decode::FlightRecordBatchStream {
    let data = request.into_inner().map_err(FlightError::from).try_filter(|data| std::future::ready(!data.data_header.is_empty()));
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data)
}

/// What a call runs in: its session, and the metadata that names the session's token.
struct Call {
    session: Session,
    metadata: MetadataMap,
}

impl Call {
    fn of<T>(service: &IsobarFlight, request: &Request<T>) -> Self {
        Self { session: service.session(request), metadata: request.metadata().clone() }
    }
}

/// The info of a result of `schema` read back with `ticket`: one endpoint, no location (the
/// client reads it from this connection).
fn info(schema: &Schema, ticket: Bytes, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    Ok(FlightInfo::new().try_with_schema(schema).map_err(arrow_status)?.with_endpoint(endpoint).with_descriptor(descriptor))
}

/// The info of a metadata command, whose ticket is the command itself.
fn command_info(command: &impl ProstMessageExt, schema: &Schema, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    info(schema, command.as_any().encode_to_vec().into(), descriptor).map(Response::new)
}

/// The info of a foreign-key call: isobar has none, so every answer is empty but typed.
fn foreign_keys_info(command: &impl ProstMessageExt, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
    command_info(command, &metadata::foreign_keys().map_err(Status::from)?.schema(), request.into_inner())
}

/// One batch as Flight data.
fn batch_stream(batch: Result<RecordBatch, FlightError>) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(Status::from)?;
    let data =
        FlightDataEncoderBuilder::new().with_schema(batch.schema()).build(futures::stream::once(async { Ok(batch) })).map_err(Status::from);
    Ok(Response::new(Box::pin(data)))
}

/// No rows, of `schema`.
fn empty(schema: SchemaRef) -> DoGetStream {
    Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(futures::stream::empty()).map_err(Status::from))
}

fn arrow_status(e: ArrowError) -> Status {
    Status::internal(e.to_string())
}

/// `schema` as the IPC bytes a prepared statement's result describes it with.
fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(arrow_status)?;
    Ok(bytes)
}

/// The parameters of a prepared statement as a schema: one field per placeholder, of the type
/// the statement gives it (text where it gives none).
fn parameter_schema(prepared: &Prepared) -> Schema {
    let fields: Vec<Field> = prepared
        .parameter_types()
        .iter()
        .enumerate()
        .map(|(i, ty)| Field::new(format!("${}", i + 1), ty.clone().unwrap_or(DataType::Utf8), true))
        .collect();
    Schema::new(fields)
}

#[tonic::async_trait]
impl FlightSqlService for IsobarFlight {
    type FlightService = IsobarFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let caller = request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("no credentials"))?;
        let token = self.context.auth.issue(&caller);
        let reply = HandshakeResponse { protocol_version: 0, payload: Bytes::from(token.clone()) };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        let header = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = Call::of(self, &request);
        let prepared = Self::prepare(&call.session, &query.query).await?;
        let descriptor = request.into_inner();
        if !prepared.returns_rows() {
            return self.write_info(call, &prepared, None, descriptor).await.map(Response::new);
        }
        let ticket = TicketStatementQuery { statement_handle: statements::Ticket::Query(numbered_placeholders(&query.query)).encode() };
        info(prepared.schema(), ticket.as_any().encode_to_vec().into(), descriptor).map(Response::new)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let entry = self.context.statements.get(&command.prepared_statement_handle)?;
        let call = Call::of(self, &request);
        let descriptor = request.into_inner();
        if !entry.prepared.returns_rows() {
            return self.write_info(call, &entry.prepared, entry.params.as_ref(), descriptor).await.map(Response::new);
        }
        info(entry.prepared.schema(), command.as_any().encode_to_vec().into(), descriptor).map(Response::new)
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        match statements::Ticket::decode(&ticket.statement_handle)? {
            statements::Ticket::Query(sql) => {
                let call = Call::of(self, &request);
                let prepared = Self::prepare(&call.session, &sql).await?;
                self.stream(call, &prepared, None, request.into_inner().ticket).await
            }
            statements::Ticket::Done => Ok(Response::new(empty(Arc::new(Schema::empty())))),
        }
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let entry = self.context.statements.get(&command.prepared_statement_handle)?;
        let call = Call::of(self, &request);
        self.stream(call, &entry.prepared, entry.params.as_ref(), request.into_inner().ticket).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let prepared = Self::prepare(&self.session(&request), &query.query).await?;
        let (dataset_schema, parameter_schema) = (ipc_schema(prepared.schema())?, ipc_schema(&parameter_schema(&prepared))?);
        let handle = self.context.statements.insert(prepared);
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: handle, dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.context.statements.remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        if let Some(params) = Self::parameters(request).await? {
            self.context.statements.bind(&handle, params)?;
        }
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let entry = self.context.statements.get(&query.prepared_statement_handle)?;
        let call = Call::of(self, &request);
        let params = Self::parameters(request).await?.or(entry.params);
        self.write(call, &entry.prepared, params.as_ref()).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let call = Call::of(self, &request);
        let prepared = Self::prepare(&call.session, &command.query).await?;
        self.write(call, &prepared, None).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        super::ingest::ingest(&self.context, command, request).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(isobar_query::CATALOG);
        batch_stream(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.clone().into_builder().schema(), request.into_inner())
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::schemas(query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.clone().into_builder().schema(), request.into_inner())
    }

    async fn do_get_tables(&self, query: CommandGetTables, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::tables(&self.context.engine, query).await)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_table_types(&self, _query: CommandGetTableTypes, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut builder = CommandGetTableTypes {}.into_builder();
        for table_type in metadata::TABLE_TYPES {
            builder.append(table_type);
        }
        batch_stream(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let infos = metadata::SQL_INFO.as_ref().map_err(|e| Status::internal(e.clone()))?;
        command_info(&query, &query.clone().into_builder(infos).schema(), request.into_inner())
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let infos = metadata::SQL_INFO.as_ref().map_err(|e| Status::internal(e.clone()))?;
        batch_stream(query.into_builder(infos).build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let types = metadata::XDBC_TYPES.as_ref().map_err(|e| Status::internal(e.clone()))?;
        command_info(&query, &query.into_builder(types).schema(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let types = metadata::XDBC_TYPES.as_ref().map_err(|e| Status::internal(e.clone()))?;
        batch_stream(query.into_builder(types).build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(&self, query: CommandGetPrimaryKeys, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::primary_keys(&self.context.engine, &query))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(&query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::foreign_keys())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(&query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::foreign_keys())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(&query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(metadata::foreign_keys())
    }

    /// `CancelFlightInfo` stops the query its info's ticket started; `CloseSession` is accepted
    /// (a token's session ends with the token).
    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            "CancelFlightInfo" => {
                let cancel = CancelFlightInfoRequest::decode(action.body).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let tickets = cancel.info.iter().flat_map(|i| &i.endpoint).filter_map(|e| e.ticket.as_ref());
                let cancelled = tickets.fold(false, |any, t| self.context.running.cancel(&t.ticket) | any);
                let status = match cancelled {
                    true => CancelStatus::Cancelled,
                    false => CancelStatus::NotCancellable,
                };
                CancelFlightInfoResult::new(status).encode_to_vec()
            }
            "CloseSession" => Vec::new(),
            other => return Err(Status::invalid_argument(format!("unknown action {other}"))),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(arrow_flight::Result { body: body.into() })]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
