//! SQL golden tests: every `tests/slt/*.slt` file runs four times, in-process against
//! `QueryEngine`, and over the Postgres wire protocol, Arrow Flight SQL and the HTTP query API
//! (JSON) against a started `isobar serve`, and must give the same answers every way.
//!
//! Values are compared in one canonical text form per type (RFC 3339 UTC timestamps,
//! `true`/`false`, Rust's shortest float form, `NULL`), so the files say what a value is, not
//! how one protocol spells it.

mod common;

use std::path::{Path, PathBuf};

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use isobar_query::{Output, QueryConfig, QueryEngine, Session};
use isobar_storage::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use isobar_storage::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use isobar_storage::arrow::util::display::{ArrayFormatter, FormatOptions};
use isobar_storage::{Storage, StorageConfig};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// Shortest round-trip form, exponent for large magnitudes, no trailing `.0`.
fn float(v: f64) -> String {
    let s = format!("{v:?}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn timestamp(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Statements whose answer is rows.
fn returns_rows(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or_default().to_uppercase();
    matches!(first.as_str(), "SELECT" | "WITH" | "VALUES" | "SHOW" | "EXPLAIN")
}

/// One client's session in process, as a connection is one over the wire.
struct InProcess {
    session: Session,
}

fn cell(column: &ArrayRef, row: usize) -> Result<String, Failure> {
    if column.is_null(row) {
        return Ok("NULL".into());
    }
    Ok(match column.data_type() {
        DataType::Boolean => column.as_boolean().value(row).to_string(),
        DataType::Float64 => float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            timestamp(column.as_primitive::<isobar_storage::arrow::datatypes::TimestampNanosecondType>().value(row))
        }
        _ => {
            let f = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()).map_err(|e| Failure(e.to_string()))?;
            f.value(row).to_string()
        }
    })
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Failure> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push(batch.columns().iter().map(|c| cell(c, row)).collect::<Result<_, _>>()?);
        }
    }
    Ok(out)
}

#[async_trait]
impl AsyncDB for InProcess {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn shutdown(&mut self) {}

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        let outputs = self.session.execute(sql).await.map_err(|e| Failure(e.to_string()))?;
        match outputs.into_iter().last() {
            Some(Output::Rows(batches)) if returns_rows(sql) => {
                let width = batches.first().map_or(0, RecordBatch::num_columns);
                Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows: rows(&batches)? })
            }
            Some(Output::Rows(batches)) => {
                // DML answers with one `count` row.
                let count = batches.first().filter(|b| b.num_rows() > 0).map(|b| cell(b.column(0), 0)).transpose()?;
                Ok(DBOutput::StatementComplete(count.and_then(|c| c.parse().ok()).unwrap_or(0)))
            }
            Some(Output::Command(_, n)) => Ok(DBOutput::StatementComplete(n)),
            None => Ok(DBOutput::StatementComplete(0)),
        }
    }
}

struct OverPgwire {
    client: tokio_postgres::Client,
}

fn pg_cell(row: &tokio_postgres::Row, i: usize) -> Result<String, Failure> {
    use tokio_postgres::types::Type;
    let err = |e: tokio_postgres::Error| Failure(e.to_string());
    let text = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
    Ok(match *row.columns()[i].type_() {
        Type::BOOL => text(row.try_get::<_, Option<bool>>(i).map_err(err)?.map(|v| v.to_string())),
        Type::FLOAT8 => text(row.try_get::<_, Option<f64>>(i).map_err(err)?.map(float)),
        Type::INT8 => text(row.try_get::<_, Option<i64>>(i).map_err(err)?.map(|v| v.to_string())),
        Type::TIMESTAMPTZ => {
            text(row.try_get::<_, Option<DateTime<Utc>>>(i).map_err(err)?.map(|v| timestamp(v.timestamp_nanos_opt().unwrap_or_default())))
        }
        Type::TEXT | Type::VARCHAR | Type::NAME => text(row.try_get::<_, Option<String>>(i).map_err(err)?),
        ref other => return Err(Failure(format!("column {i}: the slt runner does not compare type {other} yet"))),
    })
}

#[async_trait]
impl AsyncDB for OverPgwire {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn shutdown(&mut self) {}

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        let message = |e: tokio_postgres::Error| Failure(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()));
        if returns_rows(sql) {
            let result = self.client.query(sql, &[]).await.map_err(message)?;
            let width = result.first().map_or(0, |r| r.columns().len());
            let rows = result.iter().map(|r| (0..r.columns().len()).map(|i| pg_cell(r, i)).collect()).collect::<Result<_, _>>()?;
            Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows })
        } else {
            Ok(DBOutput::StatementComplete(self.client.execute(sql, &[]).await.map_err(message)?))
        }
    }
}

/// A Flight SQL client with a session: the bearer token of a handshake, so that `SET` holds
/// for the statements after it, as on one Postgres connection.
struct OverFlight {
    client: FlightSqlServiceClient<tonic::transport::Channel>,
}

impl OverFlight {
    async fn connect(port: u16) -> Self {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the flight listener");
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake("isobar", "").await.expect("handshake");
        Self { client }
    }
}

/// A Flight error as the server worded it.
fn flight_message(e: FlightError) -> Failure {
    match e {
        FlightError::Tonic(status) => Failure(status.message().to_owned()),
        other => Failure(other.to_string()),
    }
}

#[async_trait]
impl AsyncDB for OverFlight {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn shutdown(&mut self) {}

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        if !returns_rows(sql) {
            let count = self.client.execute_update(sql.to_owned(), None).await.map_err(flight_message)?;
            return Ok(DBOutput::StatementComplete(u64::try_from(count).unwrap_or(0)));
        }
        let info = self.client.execute(sql.to_owned(), None).await.map_err(flight_message)?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| Failure("an endpoint without a ticket".into()))?;
            let stream = self.client.do_get(ticket).await.map_err(flight_message)?;
            batches.extend(stream.try_collect::<Vec<_>>().await.map_err(flight_message)?);
        }
        let width = batches.first().map_or(0, RecordBatch::num_columns);
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows: rows(&batches)? })
    }
}

/// The HTTP query API, in JSON, in the session a login's cookie names.
struct OverHttp {
    port: u16,
    cookie: String,
}

impl OverHttp {
    async fn login(port: u16) -> Self {
        let answer = tokio::task::spawn_blocking(move || common::http_post(port, "/api/v1/login", "application/json", "", b"{}"))
            .await
            .expect("login");
        assert_eq!(answer.status, 200, "login: {}", String::from_utf8_lossy(&answer.body));
        let cookie = answer
            .head
            .lines()
            .find_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
            .and_then(|value| value.split(';').next())
            .expect("a session cookie")
            .to_owned();
        Self { port, cookie }
    }
}

/// A JSON value as the canonical text of a column of `sql_type`.
fn json_cell(value: &serde_json::Value, sql_type: &str) -> Result<String, Failure> {
    use serde_json::Value as J;
    Ok(match (value, sql_type) {
        (J::Null, _) => "NULL".into(),
        (J::Number(n), "double precision" | "real") => float(n.as_f64().ok_or_else(|| Failure(format!("{n} is not a float")))?),
        (J::String(s), "timestamp with time zone") => {
            let at = DateTime::parse_from_rfc3339(s).map_err(|e| Failure(format!("{s}: {e}")))?;
            timestamp(at.timestamp_nanos_opt().unwrap_or_default())
        }
        (J::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    })
}

#[async_trait]
impl AsyncDB for OverHttp {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn shutdown(&mut self) {}

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        let (port, cookie) = (self.port, format!("Cookie: {}\r\n", self.cookie));
        let body = serde_json::json!({ "sql": sql }).to_string();
        let answer =
            tokio::task::spawn_blocking(move || common::http_post(port, "/api/v1/query", "application/json", &cookie, body.as_bytes()))
                .await
                .map_err(|e| Failure(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| Failure(format!("{e}: {}", String::from_utf8_lossy(&answer.body))))?;
        if let Some(error) = value.get("error") {
            return Err(Failure(error["message"].as_str().unwrap_or_default().to_owned()));
        }
        if value.get("command").is_some() {
            return Ok(DBOutput::StatementComplete(value.get("rows").and_then(serde_json::Value::as_u64).unwrap_or(0)));
        }
        let types: Vec<&str> = value["columns"].as_array().into_iter().flatten().map(|c| c["type"].as_str().unwrap_or_default()).collect();
        let rows = value["rows"].as_array().ok_or_else(|| Failure(format!("no rows in {value}")))?;
        let rows = rows
            .iter()
            .map(|row| row.as_array().into_iter().flatten().zip(&types).map(|(v, t)| json_cell(v, t)).collect())
            .collect::<Result<Vec<Vec<String>>, _>>()?;
        if !returns_rows(sql) {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; types.len()], rows })
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_files_in_process() {
    for file in slt_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open storage");
        let engine = QueryEngine::new(storage, QueryConfig::default()).expect("engine");
        let mut runner = Runner::new(move || {
            let engine = engine.clone();
            async move { Ok(InProcess { session: engine.session() }) }
        });
        runner.with_column_validator(|_, _| true);
        runner.run_file_async(&file).await.unwrap_or_else(|e| panic!("{} (in process): {e}", file.display()));
    }
}

/// Runs every golden file against a fresh `isobar serve`, each connection `connect` made to the
/// port `port` picks; `how` names the way in failures.
async fn golden_files_over<D, F>(how: &str, port: fn(&common::Server) -> u16, connect: fn(u16) -> F)
where
    D: AsyncDB<Error = Failure, ColumnType = DefaultColumnType> + 'static,
    F: std::future::Future<Output = D> + Send + 'static,
{
    for file in slt_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = common::Server::start(&dir.path().join("data"));
        let port = port(&server);
        let mut runner = Runner::new(move || {
            let connection = connect(port);
            async move { Ok(connection.await) }
        });
        runner.with_column_validator(|_, _| true);
        runner.run_file_async(&file).await.unwrap_or_else(|e| panic!("{} ({how}): {e}", file.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_files_over_pgwire() {
    golden_files_over("over pgwire", |s| s.pg_port, |port| async move { OverPgwire { client: common::connect(port).await } }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_files_over_flight_sql() {
    golden_files_over("over flight sql", |s| s.flight_port, OverFlight::connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_files_over_the_http_query_api() {
    golden_files_over("over the http query api", |s| s.http_port, OverHttp::login).await;
}
