//! `POST /api/v1/query`: SQL over HTTP, for the web console and for scripts.
//!
//! The body is either JSON, `{"sql": "...", "params": [...], "format": "json"}`, or the SQL
//! itself (any other content type). One statement per request, run in a session of its own
//! with the server's limits (memory, statement timeout) and the same allow-list as every other
//! client. Its rows are streamed as the query makes them, in the format the request names
//! (`format` in the body or the query string, else the `Accept` header):
//!
//! - `json` (the default): `{"columns": [{"name", "type"}], "rows": [[...], ...], "row_count": n}`,
//!   timestamps as RFC 3339 text, NaN and infinities as `null`;
//! - `csv`: a header line, then one line per row;
//! - `arrow`: an Arrow IPC stream (`application/vnd.apache.arrow.stream`).
//!
//! Who may call, and sessions that keep their settings between calls, are `http/session.rs`'s.
//! The query runs on the query runtime, as Postgres and Flight SQL clients' queries do.
//!
//! A statement that returns no rows answers `{"command": "INSERT", "rows": n}` (`rows` for the
//! statements whose Postgres command tag counts rows). An error
//! before the first rows answers with an HTTP status for its kind and `{"error": {"code":
//! SQLSTATE, "message"}}`; one after rows were sent ends a JSON answer with that `error`
//! member instead of `row_count`, and cuts a CSV or Arrow answer off, so that a client never
//! takes part of an answer for all of it. A client that goes away stops its query.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt};
use isobar_query::{Outcome, Prepared, QueryEngine};
use serde::Deserialize;
use serde_json::json;

use super::HttpContext;
use super::session::{ApiAuth, ApiCaller};

/// Largest request body: the SQL and its parameters.
pub(super) const BODY_BYTES_MAX: usize = 1 << 20;

/// Parameters one request may bind.
const PARAMS_MAX: usize = 1_000;

/// The JSON form of a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
    format: Option<String>,
}

/// What the query string may say.
#[derive(Debug, Deserialize)]
pub(super) struct QueryString {
    format: Option<String>,
}

/// The formats an answer comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    fn named(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "arrow" => Some(Format::Arrow),
            _ => None,
        }
    }

    /// The format an `Accept` header asks for first, if it names one.
    fn accepted(headers: &HeaderMap) -> Option<Format> {
        let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
        accept.split(',').find_map(|media| match media.split(';').next().unwrap_or_default().trim() {
            "application/json" => Some(Format::Json),
            "text/csv" => Some(Format::Csv),
            "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
            _ => None,
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// `POST /api/v1/query`.
pub(super) async fn query(State(cx): State<HttpContext>, Query(query): Query<QueryString>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let response = match cx.api.caller(&headers) {
        Ok(caller) => run(&cx, caller, query, &headers, &body).await,
        Err((status, message)) => error(status, "28000", &message),
    };
    // A query that streams is counted when it starts; its errors later are the client's to see.
    cx.queries.record(started, !response.status().is_success());
    response
}

/// What a query answers before its rows.
enum Head {
    /// Rows: their columns, and the first batch (none when there are no rows).
    Rows(SchemaRef, Option<RecordBatch>),
    /// A statement without rows: what it did, and to how many rows.
    Command(&'static str, u64),
}

async fn run(cx: &HttpContext, caller: ApiCaller, query: QueryString, headers: &HeaderMap, body: &Bytes) -> Response {
    let request = match read_request(headers, body) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, "08P01", &message),
    };
    let named = request.format.as_deref().or(query.format.as_deref());
    let format = match named.map(|name| Format::named(name).ok_or(name)) {
        Some(Ok(format)) => format,
        Some(Err(name)) => return error(StatusCode::BAD_REQUEST, "22023", &format!("unknown format {name:?}: json, csv or arrow")),
        None => Format::accepted(headers).unwrap_or(Format::Json),
    };
    // The query runs on the query runtime, at its lower CPU priority, and hands its batches
    // over one at a time; a client that goes away drops the receivers, which stops the query,
    // also while it is still working towards its first rows.
    let (mut head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<Head, Response>>();
    let (rows_tx, rows_rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(1);
    let (engine, api) = (cx.engine.clone(), Arc::clone(&cx.api));
    cx.query_runtime.spawn(async move {
        let (head, rows) = tokio::select! {
            started = start(&engine, &api, caller.token, request) => started,
            () = head_tx.closed() => return,
        };
        if head_tx.send(head).is_err() {
            return;
        }
        let Some(mut rows) = rows else { return };
        while let Some(batch) = rows.next().await {
            if rows_tx.send(batch).await.is_err() {
                return;
            }
        }
    });
    match head_rx.await {
        Ok(Ok(Head::Rows(schema, first))) => {
            let rest = received(rows_rx);
            answer_rows(schema, futures::stream::iter(first.map(Ok)).chain(rest), format)
        }
        Ok(Ok(Head::Command(command, rows))) => {
            // Only the statements whose Postgres command tag has a row count say it.
            let counted = matches!(command, "INSERT" | "DELETE" | "UPDATE" | "COPY");
            let answer = match counted {
                true => json!({ "command": command, "rows": rows }),
                false => json!({ "command": command }),
            };
            json_response(StatusCode::OK, &answer)
        }
        Ok(Err(response)) => response,
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "XX000", "the query ended without an answer"),
    }
}

/// Runs `request` in the session of `token` (a fresh one without), keeping what it did to the
/// session; its answer up to the first rows, and the stream of the rest.
async fn start(
    engine: &QueryEngine,
    api: &ApiAuth,
    token: Option<String>,
    request: Request,
) -> (Result<Head, Response>, Option<SendableRecordBatchStream>) {
    let state = token.as_deref().and_then(|t| api.tokens().session(t));
    let mut session = state.map_or_else(|| engine.session(), |state| engine.resume(state));
    let outcome = match session.prepare(&request.sql).await {
        Ok(prepared) => match bind(&prepared, request.params) {
            Ok(params) => session.run(&prepared, params.as_ref()).await.map_err(|e| query_error(&e)),
            Err(message) => Err(error(StatusCode::BAD_REQUEST, "22023", &message)),
        },
        Err(e) => Err(query_error(&e)),
    };
    if let Some(token) = &token {
        api.tokens().keep_session(token, session.into_state());
    }
    let mut rows = match outcome {
        Ok(Outcome::Rows(rows)) => rows,
        Ok(Outcome::Command(command, n)) => return (Ok(Head::Command(command, n)), None),
        Err(response) => return (Err(response), None),
    };
    // The first batch is awaited before answering, so that an error a query meets at once gets
    // its own status.
    match rows.next().await {
        Some(Ok(batch)) => (Ok(Head::Rows(rows.schema(), Some(batch))), Some(rows)),
        Some(Err(e)) => (Err(query_error(&isobar_query::Error::from(e))), None),
        None => (Ok(Head::Rows(rows.schema(), None)), None),
    }
}

/// The batches a query's task sends, as a stream.
fn received(
    mut rows: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
) -> impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rows.poll_recv(cx))
}

/// The request's SQL and parameters: JSON when the body is a JSON object, else the SQL text.
fn read_request(headers: &HeaderMap, body: &Bytes) -> Result<Request, String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        return serde_json::from_slice(body).map_err(|e| format!("the request is not a query object ({{\"sql\": ...}}): {e}"));
    }
    let sql = std::str::from_utf8(body).map_err(|_| "the SQL is not UTF-8".to_owned())?;
    Ok(Request { sql: sql.to_owned(), params: Vec::new(), format: None })
}

/// The JSON `params`, each cast to the type its placeholder has (`$1` is the first).
fn bind(prepared: &Prepared, params: Vec<serde_json::Value>) -> Result<Option<ParamValues>, String> {
    if params.is_empty() {
        return Ok(None);
    }
    if params.len() > PARAMS_MAX {
        return Err(format!("{} parameters; a request binds at most {PARAMS_MAX}", params.len()));
    }
    let types = prepared.parameter_types();
    if params.len() != types.len() {
        return Err(format!("{} parameters given; the statement has {}", params.len(), types.len()));
    }
    let values = params.into_iter().zip(types).enumerate().map(|(i, (value, wanted))| {
        let scalar = match value {
            serde_json::Value::Null => ScalarValue::Null,
            serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(int) => ScalarValue::Int64(Some(int)),
                None => ScalarValue::Float64(n.as_f64()),
            },
            serde_json::Value::String(s) => ScalarValue::Utf8(Some(s)),
            other => return Err(format!("parameter ${}: {other} is not a number, text, boolean or null", i + 1)),
        };
        match wanted {
            Some(wanted) => scalar.cast_to(wanted).map_err(|e| format!("parameter ${}: {e}", i + 1)),
            None => Ok(scalar),
        }
    });
    Ok(Some(ParamValues::List(values.map(|v| v.map(Into::into)).collect::<Result<_, _>>()?)))
}

/// The rows of a query in `format`, as they come.
fn answer_rows(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
    format: Format,
) -> Response {
    let body = match format {
        Format::Json => Body::from_stream(json_body(schema, batches)),
        Format::Csv => Body::from_stream(csv_body(batches)),
        Format::Arrow => Body::from_stream(arrow_body(schema, batches)),
    };
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

type Chunk = Result<Bytes, std::io::Error>;

/// An error that cuts a streamed answer off.
fn cut_off(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn json_body(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
) -> impl Stream<Item = Chunk> + Send + 'static {
    let columns: Vec<_> = schema.fields().iter().map(|f| json!({ "name": f.name(), "type": type_name(f.data_type()) })).collect();
    let head = format!("{{\"columns\":{},\"rows\":[", serde_json::Value::Array(columns));
    let state = (batches.boxed(), 0usize, false);
    let rows = futures::stream::unfold(Some(state), move |state| async move {
        let (mut batches, mut count, mut ended) = state?;
        if ended {
            return None;
        }
        let chunk = match batches.next().await {
            Some(Ok(batch)) => match json_rows(&batch, count > 0) {
                Ok(bytes) => {
                    count += batch.num_rows();
                    Bytes::from(bytes)
                }
                Err(e) => {
                    ended = true;
                    Bytes::from(json_tail(Some(("XX000", e.to_string())), count))
                }
            },
            Some(Err(e)) => {
                ended = true;
                let e = isobar_query::Error::from(e);
                Bytes::from(json_tail(Some((e.sqlstate(), e.to_string())), count))
            }
            None => {
                ended = true;
                Bytes::from(json_tail(None, count))
            }
        };
        Some((Ok(chunk), Some((batches, count, ended))))
    });
    futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rows)
}

/// The end of a JSON answer: the row count, or the error (SQLSTATE, message) that ended it.
fn json_tail(error: Option<(&str, String)>, rows: usize) -> String {
    match error {
        None => format!("],\"row_count\":{rows}}}"),
        Some((code, message)) => format!("],\"error\":{}}}", json!({ "code": code, "message": message })),
    }
}

/// The rows of `batch` as JSON arrays, comma-separated (with a leading comma after earlier
/// rows).
fn json_rows(batch: &RecordBatch, after_rows: bool) -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
    let options = EncoderOptions::default();
    let fields = batch.schema().fields().clone();
    let mut encoders = fields
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| make_encoder(field, column.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * (2 + 12 * encoders.len()));
    for row in 0..batch.num_rows() {
        if after_rows || row > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (i, encoder) in encoders.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match encoder.is_null(row) {
                true => out.extend_from_slice(b"null"),
                false => encoder.encode(row, &mut out),
            }
        }
        out.push(b']');
    }
    Ok(out)
}

fn csv_body(
    batches: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
) -> impl Stream<Item = Chunk> + Send + 'static {
    batches.enumerate().map(|(i, batch)| {
        let batch = batch.map_err(cut_off)?;
        let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(i == 0).build(Vec::new());
        writer.write(&batch).map_err(cut_off)?;
        Ok(Bytes::from(writer.into_inner()))
    })
}

fn arrow_body(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
) -> impl Stream<Item = Chunk> + Send + 'static {
    let writer = StreamWriter::try_new(Vec::new(), &schema).map_err(cut_off);
    let state = Some((batches.boxed(), writer));
    futures::stream::unfold(state, |state| async move {
        let (mut batches, writer) = state?;
        let mut writer = match writer {
            Ok(writer) => writer,
            Err(e) => return Some((Err(e), None)),
        };
        let written = match batches.next().await {
            Some(Ok(batch)) => writer.write(&batch).map(|()| false),
            Some(Err(e)) => return Some((Err(cut_off(e)), None)),
            None => writer.finish().map(|()| true),
        };
        if let Err(e) = written {
            return Some((Err(cut_off(e)), None));
        }
        let finished = written.unwrap_or(true);
        let bytes = Bytes::from(std::mem::take(writer.get_mut()));
        Some((Ok(bytes), (!finished).then_some((batches, Ok(writer)))))
    })
}

/// A column type as the answer names it: the SQL name for the common types, Arrow's otherwise.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        other => other.to_string(),
    }
}

/// The answer to an error of the query layer: its status, its SQLSTATE and message.
fn query_error(e: &isobar_query::Error) -> Response {
    let code = e.sqlstate();
    let status = match code {
        "42501" | "25006" => StatusCode::FORBIDDEN,
        "42P01" => StatusCode::NOT_FOUND,
        "42P07" => StatusCode::CONFLICT,
        "57014" => StatusCode::GATEWAY_TIMEOUT,
        "53200" => StatusCode::SERVICE_UNAVAILABLE,
        "53100" => StatusCode::INSUFFICIENT_STORAGE,
        // Data exceptions, syntax and access rule violations, features isobar lacks, limits.
        _ if ["22", "42", "0A", "54"].iter().any(|class| code.starts_with(class)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, code, &e.to_string())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, &json!({ "error": { "code": code, "message": message } }))
}

/// A JSON answer of the query API.
pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_are_json_arrays_with_nulls_for_missing_and_non_finite_values() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(vec![Some(1_500_000_000), None]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![Some("a\"b"), None])),
            Arc::new(Float64Array::from(vec![f64::NAN, 2.5])),
            Arc::new(Int64Array::from(vec![Some(i64::MAX), None])),
        ];
        let fields: Vec<Field> =
            columns.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
        let text = String::from_utf8(json_rows(&batch, false).expect("encoded")).expect("utf-8");
        assert_eq!(text, r#"["1970-01-01T00:00:01.500Z","a\"b",null,9223372036854775807],[null,null,2.5,null]"#);
        assert!(json_rows(&batch, true).expect("encoded").starts_with(b",["), "rows after earlier ones");
        assert_eq!(json_tail(None, 2), r#"],"row_count":2}"#);
        assert_eq!(json_tail(Some(("57014", "too slow".into())), 2), r#"],"error":{"code":"57014","message":"too slow"}}"#);
    }

    #[test]
    fn the_format_comes_from_the_accept_header_when_not_named() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().expect("header"));
            Format::accepted(&headers)
        };
        assert_eq!(accept("text/csv"), Some(Format::Csv));
        assert_eq!(accept("text/html, application/vnd.apache.arrow.stream;q=0.9"), Some(Format::Arrow));
        assert_eq!(accept("*/*"), None);
        assert_eq!(Format::named("JSON"), Some(Format::Json));
        assert_eq!(Format::named("xml"), None);
    }
}
