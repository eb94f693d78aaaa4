//! Arrow Flight SQL against a started `isobar serve`, with arrow-flight's own client: what
//! Grafana's FlightSQL data source sends (`compat-checklist.md` 2.2), authentication, the
//! catalog calls JDBC's `DatabaseMetaData` makes, prepared statements with parameters, and the
//! limits: statement timeout, message size, and `CancelFlightInfo`; and TLS.
//! ADBC's Python driver is tested in `python.rs`.

mod common;

use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::{Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo};
use common::Server;
use datafusion::arrow::array::{AsArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

async fn client(port: u16) -> Client {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri").connect().await.expect("connect");
    FlightSqlServiceClient::new(channel)
}

/// Every batch of `info`'s endpoints; Grafana insists on exactly one.
async fn fetch(client: &mut Client, info: FlightInfo) -> Result<Vec<RecordBatch>, FlightError> {
    assert_eq!(info.endpoint.len(), 1, "Grafana's data source takes exactly one endpoint");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    client.do_get(ticket).await?.try_collect().await
}

async fn query(client: &mut Client, sql: &str) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.execute(sql.to_owned(), None).await?;
    fetch(client, info).await
}

fn code(e: FlightError) -> tonic::Code {
    match e {
        FlightError::Tonic(status) => status.code(),
        other => panic!("not a status: {other}"),
    }
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let values = batch.column_by_name(column).expect("column");
        let values = datafusion::arrow::compute::cast(values, &DataType::Utf8).expect("text");
        out.extend(values.as_string::<i32>().iter().map(|v| v.unwrap_or("NULL").to_owned()));
    }
    out
}

/// One reading a minute for two hours from two stations (60 rows each per hour).
async fn load_readings(client: &mut Client) {
    client
        .execute_update(
            "CREATE TABLE readings (time TIMESTAMPTZ NOT NULL, station TEXT, value DOUBLE PRECISION, PRIMARY KEY (station, time))".into(),
            None,
        )
        .await
        .expect("create");
    let mut rows = Vec::new();
    for minute in 0..120 {
        for (station, base) in [("s1", 10.0), ("s2", 20.0)] {
            rows.push(format!("('2026-03-01T{:02}:{:02}:00Z', '{station}', {})", minute / 60, minute % 60, base + f64::from(minute)));
        }
    }
    let written = client.execute_update(format!("INSERT INTO readings VALUES {}", rows.join(", ")), None).await.expect("insert");
    assert_eq!(written, 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_flightsql_data_source_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("data"), "users = [{ name = \"grafana\", password = \"s3cret\" }]");
    let mut grafana = client(server.flight_port).await;
    // GF1: username and password become a Basic handshake; the bearer token comes back.
    grafana.handshake("grafana", "s3cret").await.expect("handshake");
    assert!(grafana.token().is_some(), "the handshake's authorization header carries the token");
    // GF1: user-defined metadata travels on every call.
    grafana.set_header("database", "iot");
    load_readings(&mut grafana).await;

    // GF2: the health check.
    let one = query(&mut grafana, "select 1").await.expect("select 1");
    assert_eq!(one[0].column(0).as_primitive::<Int64Type>().value(0), 1);

    // GF4: the table picker asks for BASE TABLEs.
    let request = CommandGetTables { table_types: vec!["BASE TABLE".into()], ..Default::default() };
    let info = grafana.get_tables(request).await.expect("tables");
    let tables = fetch(&mut grafana, info).await.expect("tables");
    let names = strings(&tables, "table_name");
    assert!(names.contains(&"readings".to_owned()) && names.contains(&"readings_1m".to_owned()), "{names:?}");
    assert!(strings(&tables, "db_schema_name").iter().all(|s| s == "public"), "system tables are not BASE TABLEs");

    // GF5: the column picker decodes the first row's table_schema.
    let request = CommandGetTables { table_name_filter_pattern: Some("readings".into()), include_schema: true, ..Default::default() };
    let info = grafana.get_tables(request).await.expect("tables");
    let tables = fetch(&mut grafana, info).await.expect("tables");
    assert_eq!(strings(&tables, "table_name"), ["readings"]);
    let ipc = tables[0].column_by_name("table_schema").expect("table_schema").as_binary::<i32>().value(0).to_vec();
    let schema = try_schema_from_ipc_buffer(&ipc).expect("an IPC schema");
    let columns: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    assert_eq!(
        columns,
        [
            ("time", &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))),
            ("station", &DataType::Utf8),
            ("value", &DataType::Float64)
        ]
    );

    // GF6: every SQL info.
    let info = grafana.get_sql_info(Vec::new()).await.expect("sql info");
    let infos = fetch(&mut grafana, info).await.expect("sql info");
    let ids: Vec<u32> =
        infos.iter().flat_map(|b| b.column(0).as_primitive::<datafusion::arrow::datatypes::UInt32Type>().values().to_vec()).collect();
    for id in [
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerVersion,
        SqlInfo::FlightSqlServerTransaction,
        SqlInfo::SqlIdentifierQuoteChar,
    ] {
        assert!(ids.contains(&(id as u32)), "{id:?} in {ids:?}");
    }

    // GF7: a panel query as the plugin expands $__timeFilter (RFC 3339, seconds) and $__dateBin.
    let panel = "SELECT date_bin(interval '3600 second', time, timestamp '1970-01-01T00:00:00Z') AS time_binned, station, avg(value) AS avg \
                 FROM readings WHERE time >= '2026-03-01T00:30:00Z' AND time <= '2026-03-01T01:29:59Z' \
                 GROUP BY time_binned, station ORDER BY time_binned, station";
    let rows = query(&mut grafana, panel).await.expect("panel query");
    let bins: Vec<i64> = rows
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().values().to_vec())
        .collect();
    let avgs: Vec<f64> = rows.iter().flat_map(|b| b.column(2).as_primitive::<Float64Type>().values().to_vec()).collect();
    let hour0 = 1_772_323_200_000_000_000i64; // 2026-03-01T00:00:00Z
    assert_eq!(bins, [hour0, hour0, hour0 + 3_600_000_000_000, hour0 + 3_600_000_000_000]);
    // Minutes 30..59 average 44.5 above the base, minutes 60..89 74.5.
    assert_eq!(avgs, [10.0 + 44.5, 20.0 + 44.5, 10.0 + 74.5, 20.0 + 74.5]);
    // $__timeFrom / $__timeTo on the rollup.
    let rollup = query(
        &mut grafana,
        "SELECT count(*) AS n FROM readings_1m WHERE time >= '2026-03-01T00:00:00Z' AND time <= '2026-03-01T00:59:59Z'",
    )
    .await
    .expect("rollup");
    assert_eq!(rollup[0].column(0).as_primitive::<Int64Type>().value(0), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_valid_credentials_are_unauthenticated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("data"), "users = [{ name = \"grafana\", password = \"s3cret\" }]");
    let mut anonymous = client(server.flight_port).await;
    assert_eq!(query(&mut anonymous, "SELECT 1").await.map(|_| ()).map_err(code), Err(tonic::Code::Unauthenticated));
    let mut wrong = client(server.flight_port).await;
    let refused = wrong.handshake("grafana", "guess").await.expect_err("a wrong password");
    assert!(refused.to_string().contains("password authentication failed for user"), "{refused}");
    let mut forged = client(server.flight_port).await;
    forged.set_token("made-up".into());
    assert_eq!(query(&mut forged, "SELECT 1").await.map(|_| ()).map_err(code), Err(tonic::Code::Unauthenticated));
    // A static token, as Grafana's token setting sends it: Basic credentials on every call.
    let mut basic = client(server.flight_port).await;
    basic.set_header("authorization", "Basic Z3JhZmFuYTpzM2NyZXQ"); // grafana:s3cret, unpadded
    query(&mut basic, "SELECT 1").await.expect("Basic credentials on the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_prepared_statements_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, "", "");
    let toml = std::fs::read_to_string(&config).expect("config").replace("[flight]\n", "[flight]\nmessage_bytes_max = 65536\n");
    std::fs::write(&config, toml).expect("config");
    let server = Server::start_config(&data, &config);
    let mut c = client(server.flight_port).await;
    c.handshake("isobar", "").await.expect("handshake");
    load_readings(&mut c).await;

    // JDBC's getPrimaryKeys: the tags, then time.
    let request = CommandGetPrimaryKeys { catalog: None, db_schema: None, table: "readings".into() };
    let info = c.get_primary_keys(request).await.expect("primary keys");
    let keys = fetch(&mut c, info).await.expect("primary keys");
    assert_eq!(strings(&keys, "column_name"), ["station", "time"]);
    assert_eq!(strings(&keys, "key_sequence"), ["1", "2"]);
    for info in [c.get_catalogs().await, c.get_table_types().await, c.get_xdbc_type_info(Default::default()).await] {
        let batches = fetch(&mut c, info.expect("info")).await.expect("rows");
        assert!(batches.iter().map(RecordBatch::num_rows).sum::<usize>() > 0);
    }

    // A prepared statement with `?` parameters, bound and run again with others.
    let mut prepared = c.prepare("SELECT count(*) AS n FROM readings WHERE station = ? AND value > ?".into(), None).await.expect("prepare");
    let parameters = prepared.parameter_schema().expect("parameters").clone();
    assert_eq!(parameters.fields().len(), 2, "one field per placeholder: {parameters:?}");
    for (station, above, expected) in [("s1", 100.0, 29), ("s2", 100.0, 39), ("s3", 0.0, 0)] {
        let schema = Arc::new(Schema::new(vec![Field::new("0", DataType::Utf8, true), Field::new("1", DataType::Float64, true)]));
        let params =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![station])), Arc::new(Float64Array::from(vec![above]))])
                .expect("params");
        prepared.set_parameters(params).expect("bind");
        let info = prepared.execute().await.expect("execute");
        let rows = fetch(&mut c, info).await.expect("rows");
        assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), expected, "{station} {above}");
    }
    prepared.close().await.expect("close");
    // A prepared INSERT run once per row of parameters.
    let mut insert = c.prepare("INSERT INTO readings (time, station, value) VALUES ($1, $2, $3)".into(), None).await.expect("prepare");
    let schema = Arc::new(Schema::new(vec![
        Field::new("0", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
        Field::new("1", DataType::Utf8, true),
        Field::new("2", DataType::Float64, true),
    ]));
    let params = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![1_780_000_000_000_000_000, 1_780_000_060_000_000_000]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["s9", "s9"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    )
    .expect("params");
    insert.set_parameters(params).expect("bind");
    assert_eq!(insert.execute_update().await.expect("insert"), 2);
    let sum = query(&mut c, "SELECT sum(value) FROM readings WHERE station = 's9'").await.expect("sum");
    assert_eq!(sum[0].column(0).as_primitive::<Float64Type>().value(0), 3.0);

    // A message past flight.message_bytes_max is refused, and nothing of it is written.
    let big: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
    let schema = Arc::new(Schema::new(vec![Field::new("0", DataType::Utf8, true)]));
    let mut count = c.prepare("SELECT count(*) FROM readings WHERE station = ?".into(), None).await.expect("prepare");
    count.set_parameters(RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(big))]).expect("params")).expect("bind");
    let refused = count.execute().await.expect_err("too large");
    assert!(refused.to_string().contains("message length too large") || refused.to_string().contains("OutOfRange"), "{refused}");

    // The session's statement timeout, set in one call, ends a later long query.
    c.execute_update("SET statement_timeout = '200ms'".into(), None).await.expect("set");
    let long = query(&mut c, "SELECT count(*) FROM generate_series(1, 100000000000)").await.map(|_| ()).map_err(code);
    assert_eq!(long, Err(tonic::Code::DeadlineExceeded));
    c.execute_update("RESET statement_timeout".into(), None).await.expect("reset");

    // CancelFlightInfo stops a query whose rows are streaming; it ends with CANCELLED.
    let info = c.execute("SELECT value FROM generate_series(1, 100000000000) AS t(value)".into(), None).await.expect("long query");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut rows = c.do_get(ticket).await.expect("do_get");
    rows.next().await.expect("a first batch").expect("rows");
    let body = CancelFlightInfoRequest::new(info).encode_to_vec();
    let mut reply = c.do_action(Action::new("CancelFlightInfo", body)).await.expect("cancel");
    let result = CancelFlightInfoResult::decode(reply.next().await.expect("a result").expect("result").body.as_ref()).expect("decode");
    assert_eq!(result.status(), CancelStatus::Cancelled);
    let mut ended = None;
    while let Some(item) = rows.next().await {
        if let Err(e) = item {
            ended = Some(code(e));
            break;
        }
    }
    assert_eq!(ended, Some(tonic::Code::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = common::tls::make_certs(&dir.path().join("certs"));
    let data = dir.path().join("data");
    let config = Server::config(&data, "", "users = [{ name = \"grafana\", password = \"s3cret\" }]");
    let tls =
        format!("[flight]\ntls_cert_path = {:?}\ntls_key_path = {:?}\n", certs.cert.display().to_string(), certs.key.display().to_string());
    let toml = std::fs::read_to_string(&config).expect("config").replace("[flight]\n", &tls);
    std::fs::write(&config, toml).expect("config");
    let server = Server::start_config(&data, &config);

    // A plaintext client gets nowhere.
    let mut plain = client(server.flight_port).await;
    assert!(plain.handshake("grafana", "s3cret").await.is_err(), "plaintext against a TLS listener");

    let ca = std::fs::read(&certs.ca).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca)).domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", server.flight_port))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("a TLS connection");
    let mut secure = FlightSqlServiceClient::new(channel);
    secure.handshake("grafana", "s3cret").await.expect("handshake over TLS");
    let one = query(&mut secure, "SELECT 1").await.expect("a query over TLS");
    assert_eq!(one[0].column(0).as_primitive::<Int64Type>().value(0), 1);
}
