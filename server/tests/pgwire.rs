//! End-to-end tests over the Postgres wire protocol against a started `isobar serve`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Server;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

const WEATHER: &str = "CREATE TABLE weather (time TIMESTAMPTZ NOT NULL, station_id TEXT, sensor_id TEXT, \
                       sensor_value DOUBLE PRECISION, direction BIGINT, ok BOOLEAN, note TEXT, \
                       PRIMARY KEY (station_id, sensor_id, time))";

/// A started server with the `weather` table, its data folder and a client. The folder is
/// first so that it is dropped last.
async fn weather_server() -> (tempfile::TempDir, Server, tokio_postgres::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    client.batch_execute(WEATHER).await.expect("create table");
    (dir, server, client)
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_insert_and_select_with_both_query_protocols() {
    let (_dir, _server, client) = weather_server().await;
    let inserted = client
        .execute(
            "INSERT INTO weather (time, station_id, sensor_id, sensor_value, direction, ok, note) VALUES \
             ('2024-01-01T00:00:00Z', 'st-1', 'temp-1', 20.5, 1, true, 'first'), \
             ('2024-01-01T00:00:01Z', 'st-1', 'temp-1', 20.75, -1, false, NULL), \
             ('2024-01-01T00:00:00Z', 'st-2', 'temp-2', 11.0, 1, NULL, NULL)",
            &[],
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 3);

    // Extended protocol with typed parameters and binary results.
    let rows = client
        .query(
            "SELECT time, station_id, sensor_value, direction, ok, note FROM weather WHERE sensor_id = $1 AND time >= $2 ORDER BY time",
            &[&"temp-1", &at(1_704_067_200)],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, SystemTime>(0), at(1_704_067_200));
    assert_eq!(rows[0].get::<_, &str>(1), "st-1");
    assert_eq!(rows[0].get::<_, f64>(2), 20.5);
    assert_eq!(rows[0].get::<_, i64>(3), 1);
    assert_eq!(rows[0].get::<_, Option<bool>>(4), Some(true));
    assert_eq!(rows[1].get::<_, Option<&str>>(5), None);
    let types: Vec<u32> = rows[0].columns().iter().map(|c| c.type_().oid()).collect();
    assert_eq!(types, [1184, 25, 701, 20, 16, 25], "timestamptz, text, float8, int8, bool, text");

    // Simple protocol: text results and the SELECT tag.
    let messages = client.simple_query("SELECT count(*) AS n, max(sensor_value) AS top FROM weather").await.expect("simple");
    let row = messages.iter().find_map(|m| if let SimpleQueryMessage::Row(r) = m { Some(r) } else { None }).expect("a row");
    assert_eq!((row.get("n"), row.get("top")), (Some("3"), Some("20.75")));
    assert!(messages.iter().any(|m| matches!(m, SimpleQueryMessage::CommandComplete(1))));

    // Last write wins on (series, time).
    client
        .execute(
            "INSERT INTO weather (time, station_id, sensor_id, sensor_value) VALUES ('2024-01-01T00:00:00Z', 'st-1', 'temp-1', 99.0)",
            &[],
        )
        .await
        .expect("overwrite");
    let rows = client.query("SELECT sensor_value FROM weather WHERE station_id = 'st-1' ORDER BY time", &[]).await.expect("select");
    assert_eq!(rows.iter().map(|r| r.get::<_, f64>(0)).collect::<Vec<_>>(), [99.0, 20.75]);

    // time_bucket is date_bin.
    let rows = client
        .query("SELECT time_bucket(INTERVAL '1 minute', time) AS minute, count(*) FROM weather GROUP BY 1", &[])
        .await
        .expect("time_bucket");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(1), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_reach_the_servers_files_are_refused_and_the_session_goes_on() {
    let (dir, _server, client) = weather_server().await;
    let target = dir.path().join("stolen.csv");
    for sql in [
        format!("COPY weather TO '{}'", target.display()),
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        format!("COPY weather FROM '{}'", target.display()),
        format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'", dir.path().display()),
        "SET datafusion.runtime.memory_limit = '100G'".to_owned(),
    ] {
        let err = client.simple_query(&sql).await.expect_err(&sql);
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        // DataFusion's own syntax (CREATE EXTERNAL TABLE) does not even parse as Postgres SQL.
        let refused = db.code() == &SqlState::INSUFFICIENT_PRIVILEGE && db.message().contains("refused");
        assert!(refused || db.message().contains("sql parser error"), "{sql}: {} {}", db.code().code(), db.message());
    }
    assert!(!target.exists(), "nothing was written");
    let err = client.batch_execute(WEATHER).await.expect_err("exists");
    assert_eq!(err.as_db_error().map(|e| e.code().clone()), Some(SqlState::DUPLICATE_TABLE));
    client.batch_execute(&WEATHER.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")).await.expect("if not exists");
    let rows = client.query("SELECT 1::BIGINT", &[]).await.expect("the session still works");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

/// Mistakes get PostgreSQL's SQLSTATE (which drivers map to their error classes, psycopg's
/// `UndefinedTable` say), in both query protocols, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_postgres_sqlstates() {
    let (_dir, _server, client) = weather_server().await;
    for (sql, want) in [
        ("SELECT * FROM no_such_table", SqlState::UNDEFINED_TABLE),
        ("SELECT no_such_column FROM weather", SqlState::UNDEFINED_COLUMN),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        ("SELECT CAST('abc' AS INT)", SqlState::INVALID_TEXT_REPRESENTATION),
    ] {
        let simple = client.simple_query(sql).await.expect_err(sql);
        let extended = client.query(sql, &[]).await.expect_err(sql);
        for err in [simple, extended] {
            assert_eq!(err.code(), Some(&want), "{sql}: {err}");
        }
    }
    assert_eq!(client.query("SELECT 1::BIGINT", &[]).await.expect("the session goes on")[0].get::<_, i64>(0), 1);
}

async fn seed_rows(server: &Server, rows: u64) {
    let client = server.client().await;
    client.batch_execute(WEATHER).await.expect("create table");
    let statement = client
        .prepare("INSERT INTO weather (time, station_id, sensor_id, sensor_value) VALUES ($1, 'st-1', $2, $3)")
        .await
        .expect("prepare");
    for i in 0..rows {
        let n = client.execute(&statement, &[&at(1_700_000_000 + i), &format!("s-{}", i % 3), &(i as f64)]).await.expect("insert");
        assert_eq!(n, 1);
    }
}

async fn count_rows(server: &Server) -> i64 {
    let client = server.client().await;
    client.query_one("SELECT count(*) FROM weather", &[]).await.expect("count").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_persists_and_exits_zero_and_a_restart_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    seed_rows(&server, 50).await;
    assert_eq!(server.signal("TERM"), Some(0));
    assert!(server.output().iter().any(|l| l == "isobar stopped"));
    let server = Server::start(&data);
    assert_eq!(count_rows(&server).await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_acknowledged_before_a_kill_9_survive_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    seed_rows(&server, 200).await;
    assert_eq!(server.signal("KILL"), None, "killed by the signal");
    let server = Server::start(&data);
    assert_eq!(count_rows(&server).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    seed_rows(&server, 5).await;
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    assert!(get("/health").starts_with("HTTP/1.1 200 OK"));
    let metrics = get("/metrics");
    assert!(metrics.contains("\nisobar_rows_written_total 5\n"), "{metrics}");
    // CREATE TABLE, the prepared INSERT five times (seed_rows), and the statements below.
    let _ = server.client().await.simple_query("SELECT nope").await;
    let metrics = get("/metrics");
    let value = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse::<f64>().ok());
    assert!(value("isobar_queries_total") >= Some(7.0), "{metrics}");
    assert_eq!(value("isobar_query_errors_total"), Some(1.0), "{metrics}");
    assert!(value("isobar_query_duration_seconds_sum") > Some(0.0), "{metrics}");
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_startup_packet_gets_dropped_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.pg_port)).await.expect("connect");
    raw.write_all(&[0xff; 64]).await.expect("send garbage");
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf)).await;
    let client = server.client().await;
    let rows = client.query("SELECT 2::BIGINT", &[]).await.expect("others are served");
    assert_eq!(rows[0].get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_bulk_loads_text_and_csv() {
    use futures::SinkExt;
    let (dir, server, client) = weather_server().await;

    // Text format through the extended protocol (tokio-postgres), split across messages,
    // more rows than one write takes.
    let sink = client.copy_in("COPY weather (time, station_id, sensor_id, sensor_value) FROM STDIN").await.expect("copy in");
    futures::pin_mut!(sink);
    let rows = 25_000u64;
    let mut text = String::new();
    for i in 0..rows {
        text += &format!("{}\tst-{}\ts\\t{}\t{}\n", timestamp(1_700_000_000 + i), i % 7, i % 3, i as f64 / 4.0);
    }
    for piece in text.as_bytes().chunks(4099) {
        sink.send(bytes::Bytes::copy_from_slice(piece)).await.expect("send");
    }
    assert_eq!(sink.finish().await.expect("copy done"), rows);
    let total: f64 = client.query_one("SELECT sum(sensor_value) FROM weather", &[]).await.expect("sum").get(0);
    assert_eq!(total, (0..rows).map(|i| i as f64 / 4.0).sum::<f64>());
    let tab: i64 = client.query_one("SELECT count(*) FROM weather WHERE sensor_id = 's\t1'", &[]).await.expect("escaped tab").get(0);
    assert_eq!(tab, (0..rows).filter(|i| i % 3 == 1).count() as i64);

    // isobar's own tables take no rows from clients, however the name is spelled.
    let Err(refused) = client.copy_in::<_, bytes::Bytes>("COPY \"system.ingest_errors\" FROM STDIN").await else {
        panic!("a COPY into a system table started")
    };
    assert!(format!("{refused:?}").contains("only isobar writes"), "{refused:?}");

    // CSV with a header, quotes and NULLs through psql's \copy (the simple protocol).
    let csv = dir.path().join("readings.csv");
    std::fs::write(
        &csv,
        "time,station_id,sensor_id,note,sensor_value\n2024-01-01T00:00:00Z,\"st,9\",x,\"said \"\"hi\"\"\",1.5\n2024-01-01T00:00:01Z,st-9,x,,2.5\n",
    )
    .expect("write csv");
    let out = psql(
        &server,
        &format!(
            "\\copy weather (time, station_id, sensor_id, note, sensor_value) FROM '{}' WITH (FORMAT csv, HEADER true)",
            csv.display()
        ),
    );
    assert_eq!(out.trim(), "COPY 2");
    let rows = client.query("SELECT station_id, note FROM weather WHERE sensor_id = 'x' ORDER BY time", &[]).await.expect("select");
    assert_eq!(rows[0].get::<_, &str>(0), "st,9");
    assert_eq!(rows[0].get::<_, Option<&str>>(1), Some("said \"hi\""));
    assert_eq!(rows[1].get::<_, Option<&str>>(1), None);

    // A bad value fails the COPY with its line; the rows before it are written, none after
    // it, and the session goes on.
    std::fs::write(&csv, "2024-01-02T00:00:00Z,a,b,,1\n2024-01-02T00:00:01Z,a,b,,not-a-number\n2024-01-02T00:00:02Z,a,b,,3\n")
        .expect("write csv");
    let err = psql_err(&server, &format!("\\copy weather (time, station_id, sensor_id, note, sensor_value) FROM '{}' CSV", csv.display()));
    assert!(err.contains("line 2: column sensor_value") && err.contains("not-a-number") && err.contains("1 rows before it"), "{err}");
    let n: i64 = client.query_one("SELECT count(*) FROM weather", &[]).await.expect("count").get(0);
    assert_eq!(n, rows.len() as i64 + 25_000 + 1);
    let from_file: i64 = client.query_one("SELECT count(*) FROM weather WHERE station_id = 'a'", &[]).await.expect("count").get(0);
    assert_eq!(from_file, 1, "the line before the bad one, nothing after it");
}

/// A row storage refuses (here: decades ahead of the clock) ends a COPY longer than one write
/// with its line, however much data follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_storage_refuses_ends_a_long_copy() {
    use futures::SinkExt;
    let (_dir, _server, client) = weather_server().await;
    let copy = async {
        let sink = client.copy_in("COPY weather (time, station_id, sensor_id, sensor_value) FROM STDIN").await?;
        futures::pin_mut!(sink);
        let mut text = String::new();
        for i in 0..60_000u64 {
            let time = if i == 100 { "2200-01-01 00:00:00+00".to_owned() } else { timestamp(1_700_000_000 + i) };
            text += &format!("{time}\tst-1\ts-1\t{i}\n");
        }
        for piece in text.as_bytes().chunks(8192) {
            sink.send(bytes::Bytes::copy_from_slice(piece)).await?;
        }
        sink.finish().await
    };
    let ended = tokio::time::timeout(std::time::Duration::from_secs(120), copy).await.expect("the COPY ends");
    let err = format!("{:?}", ended.expect_err("the COPY fails"));
    assert!(err.contains("line 101") && err.contains("ahead of the server's clock"), "{err}");
    let n: i64 = client.query_one("SELECT count(*) FROM weather", &[]).await.expect("the session goes on").get(0);
    assert!(n < 60_000, "{n} rows written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_loads_every_column_type() {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let (_dir, _server, client) = weather_server().await;
    let sink = client
        .copy_in("COPY weather (time, station_id, sensor_id, sensor_value, direction, ok, note) FROM STDIN (FORMAT binary)")
        .await
        .expect("copy in");
    let types = [Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT, Type::FLOAT8, Type::INT8, Type::BOOL, Type::TEXT];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let rows = 20_000u64;
    for i in 0..rows {
        let time = chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 123_456_000).expect("in range");
        let note = (i % 2 == 0).then(|| format!("n{i}"));
        let values: [&(dyn ToSql + Sync); 7] =
            [&time, &format!("st-{}", i % 5), &"s-1", &(i as f64 / 2.0), &(i as i64 - 7), &(i % 3 == 0), &note];
        writer.as_mut().write(&values).await.expect("write row");
    }
    assert_eq!(writer.finish().await.expect("copy done"), rows);
    let row = client
        .query_one("SELECT count(*), sum(sensor_value), sum(direction), count(ok) FILTER (WHERE ok), count(note) FROM weather", &[])
        .await
        .expect("sums");
    assert_eq!(row.get::<_, i64>(0), rows as i64);
    assert_eq!(row.get::<_, f64>(1), (0..rows).map(|i| i as f64 / 2.0).sum::<f64>());
    assert_eq!(row.get::<_, i64>(2), (0..rows).map(|i| i as i64 - 7).sum::<i64>());
    assert_eq!(row.get::<_, i64>(3), (0..rows).filter(|i| i % 3 == 0).count() as i64);
    assert_eq!(row.get::<_, i64>(4), (0..rows).filter(|i| i % 2 == 0).count() as i64);
    let first: chrono::DateTime<chrono::Utc> = client.query_one("SELECT min(time) FROM weather", &[]).await.expect("min").get(0);
    assert_eq!(first.timestamp_micros(), 1_700_000_000_123_456, "microseconds from 2000-01-01 arrive exactly");

    // A value in the wrong binary type fails the COPY naming its row and column.
    let sink = client.copy_in("COPY weather (time, station_id, sensor_value) FROM STDIN BINARY").await.expect("copy in");
    let writer = BinaryCopyInWriter::new(sink, &[Type::TIMESTAMPTZ, Type::TEXT, Type::FLOAT4]);
    futures::pin_mut!(writer);
    let time = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("in range");
    writer.as_mut().write(&[&time, &"st-9", &1.5f32]).await.expect("write row");
    let err = writer.finish().await.expect_err("a float4 for a double column");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("row 1: column sensor_value: 4 bytes are not a binary double precision"), "{err:?}");
}

fn timestamp(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0).expect("in range").to_rfc3339()
}

fn psql_command(server: &Server, command: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &server.pg_port.to_string(),
            "-U",
            "isobar",
            "-d",
            "isobar",
            "-c",
            command,
        ])
        .output()
        .expect("psql runs (scripts/setup installs it)")
}

/// psql's output of a command that must succeed.
fn psql(server: &Server, command: &str) -> String {
    let out = psql_command(server, command);
    assert!(out.status.success(), "psql -c {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// psql's error output of a command that must fail.
fn psql_err(server: &Server, command: &str) -> String {
    let out = psql_command(server, command);
    assert!(!out.status.success(), "psql -c {command} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    server.client().await.batch_execute(WEATHER).await.expect("create table");
    let tables = psql(&server, "\\dt");
    assert!(tables.contains("weather"), "{tables}");
    // Only the tables on the search path, as PostgreSQL lists them; the system tables by name.
    assert!(!tables.contains("system") && !tables.contains("chunks"), "{tables}");
    let system = psql(&server, "\\dt system.*");
    assert!(system.contains("chunks") && system.contains("ingest_errors") && !system.contains("weather"), "{system}");
    let described = psql(&server, "\\d weather");
    for column in ["time", "station_id", "sensor_value", "direction"] {
        assert!(described.contains(column), "{column} missing from:\n{described}");
    }
    let answer = psql(&server, "SELECT 40 + 2 AS answer");
    assert!(answer.contains("42"), "{answer}");
    // The version psql (and JDBC) take from the startup's ParameterStatus, with no password.
    let version = psql(&server, "\\echo :SERVER_VERSION_NAME");
    assert_eq!(version.trim(), "16.6");
    // And what drivers `SHOW`, in the extended protocol too.
    let shown = server.client().await.query_one("SHOW server_version", &[]).await.expect("show");
    assert_eq!(shown.get::<_, String>(0), "16.6");
}

/// The SQLSTATE of a statement's error.
fn sql_state(err: &tokio_postgres::Error) -> String {
    err.as_db_error().map(|e| e.code().code().to_owned()).unwrap_or_else(|| format!("not a server error: {err}"))
}

/// The server's message of a statement's error.
fn db_message(err: &tokio_postgres::Error) -> String {
    err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_else(|| format!("not a server error: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_truncate_and_alter_work_on_every_path_and_survive_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    seed_rows(&server, 30).await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE other (time TIMESTAMPTZ, s TEXT, v DOUBLE PRECISION, PRIMARY KEY (s, time))").await.expect("create");
    client.execute("INSERT INTO other VALUES ('2024-01-01T00:00:00Z', 'a', 1.5)", &[]).await.expect("insert");

    // TRUNCATE in the simple protocol: no rows, the same columns, writable at once.
    client.simple_query("TRUNCATE weather").await.expect("truncate");
    assert_eq!(count_rows(&server).await, 0);
    let insert = "INSERT INTO weather (time, station_id, sensor_id, sensor_value) VALUES ($1, 'st-9', 's', 2.5)";
    assert_eq!(client.execute(insert, &[&at(1_700_000_000)]).await.expect("insert after truncate"), 1);
    assert_eq!(count_rows(&server).await, 1);

    // Writes are refused in a read-only transaction, as INSERT is.
    client.batch_execute("BEGIN READ ONLY").await.expect("begin");
    for sql in ["DROP TABLE weather", "TRUNCATE weather"] {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sql_state(&err), "25006", "{sql}: {err}");
        // One query string ends the aborted block and opens another, as in PostgreSQL.
        client.batch_execute("ROLLBACK; BEGIN READ ONLY").await.expect("again");
    }
    client.batch_execute("ROLLBACK").await.expect("rollback");
    // isobar's own tables are not the client's to drop.
    for sql in ["DROP TABLE system.ingest_errors", "TRUNCATE \"system.ingest_errors\""] {
        assert_eq!(sql_state(&client.simple_query(sql).await.expect_err(sql)), "42501", "{sql}");
    }

    // DROP TABLE in the extended protocol; a second one names the missing table (42P01).
    client.execute("DROP TABLE weather", &[]).await.expect("drop");
    let err = client.execute("DROP TABLE weather", &[]).await.expect_err("gone");
    assert_eq!(sql_state(&err), "42P01", "{err}");
    assert!(db_message(&err).contains("weather does not exist"), "{err:?}");
    client.execute("DROP TABLE IF EXISTS weather", &[]).await.expect("if exists");
    assert!(client.query("SELECT count(*) FROM weather", &[]).await.is_err(), "weather is gone");
    // psql's tags, and its table list.
    assert!(psql(&server, "CREATE TABLE weather (time TIMESTAMPTZ, s TEXT, PRIMARY KEY (s, time))").contains("CREATE TABLE"));
    assert!(psql(&server, "TRUNCATE TABLE weather").contains("TRUNCATE TABLE"));
    assert!(psql(&server, "DROP TABLE weather").contains("DROP TABLE"));
    let tables = psql(&server, "\\dt");
    assert!(tables.contains("other") && !tables.contains("weather"), "{tables}");
    assert!(psql_err(&server, "DROP TABLE weather").contains("does not exist"));

    // ALTER TABLE, in both protocols and psql, as psql's \d then shows it.
    client.batch_execute("ALTER TABLE other ADD COLUMN gust DOUBLE PRECISION, RENAME COLUMN v TO value").await.expect("simple");
    client.execute("ALTER TABLE other RENAME TO readings", &[]).await.expect("extended");
    assert!(psql(&server, "ALTER TABLE readings ADD COLUMN note TEXT").contains("ALTER TABLE"));
    client
        .execute("INSERT INTO readings (time, s, value, gust, note) VALUES ('2024-01-01T00:00:01Z', 'a', 2.5, 9.0, 'n')", &[])
        .await
        .expect("insert");
    let described = psql(&server, "\\d readings");
    for column in ["value", "gust", "note", "double precision", "text"] {
        assert!(described.contains(column), "{column} missing from:\n{described}");
    }
    assert!(!described.contains(" v "), "{described}");
    client.execute("ALTER TABLE readings DROP COLUMN gust", &[]).await.expect("drop column");
    let err = client.execute("ALTER TABLE readings DROP COLUMN s", &[]).await.expect_err("a tag");
    assert!(db_message(&err).contains("is a tag"), "{err:?}");
    let err = client.execute("ALTER TABLE nope ADD COLUMN x TEXT", &[]).await.expect_err("no table");
    assert_eq!(sql_state(&err), "42P01");
    client.execute("ALTER TABLE IF EXISTS nope ADD COLUMN x TEXT", &[]).await.expect("if exists");

    // Durable: what was dropped stays dropped after a kill -9, and the rest is there.
    assert_eq!(server.signal("KILL"), None, "killed by the signal");
    let server = Server::start(&data);
    let client = server.client().await;
    assert!(client.query("SELECT count(*) FROM weather", &[]).await.is_err(), "weather stays dropped");
    let rows = client.query("SELECT value, note FROM readings ORDER BY time", &[]).await.expect("readings");
    let rows: Vec<(f64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [(1.5, None), (2.5, Some("n".to_owned()))]);
    assert!(client.query("SELECT gust FROM readings", &[]).await.is_err(), "gust was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_are_planned_again_after_their_tables_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    let create = |ty: &str| format!("CREATE TABLE p (time TIMESTAMPTZ, s TEXT, v {ty}, PRIMARY KEY (s, time))");
    client.batch_execute(&create("DOUBLE PRECISION")).await.expect("create");
    client.batch_execute("INSERT INTO p VALUES ('2024-01-01T00:00:00Z', 'a', 1.5)").await.expect("insert");
    let all = client.prepare("SELECT s, v FROM p").await.expect("prepare");
    let just_v = client.prepare("SELECT v FROM p").await.expect("prepare");
    let count = client.prepare("SELECT count(*) FROM information_schema.tables WHERE table_name = $1").await.expect("prepare");
    let rows = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1))).collect::<Vec<_>>();
    assert_eq!(rows(client.query(&all, &[]).await.expect("run")), [("a".to_owned(), 1.5)]);
    assert_eq!(client.query_one(&count, &[&"q"]).await.expect("count").get::<_, i64>(0), 0);

    // The table is dropped and made again: the prepared query reads the new one.
    client
        .batch_execute(&format!(
            "DROP TABLE p; {}; CREATE TABLE q (time TIMESTAMPTZ, s TEXT, PRIMARY KEY (s, time))",
            create("DOUBLE PRECISION")
        ))
        .await
        .expect("again");
    client.batch_execute("INSERT INTO p VALUES ('2024-01-01T00:00:00Z', 'b', 2.5)").await.expect("insert");
    assert_eq!(rows(client.query(&all, &[]).await.expect("run")), [("b".to_owned(), 2.5)]);
    assert_eq!(client.query_one(&count, &[&"q"]).await.expect("count").get::<_, i64>(0), 1, "the new table is listed");

    // A renamed column: the query no longer plans, as in PostgreSQL.
    client.batch_execute("ALTER TABLE p RENAME COLUMN v TO w").await.expect("rename");
    let err = client.query(&just_v, &[]).await.expect_err("v is gone");
    assert!(db_message(&err).contains('v'), "{err:?}");
    // Another type for the same column: refused as PostgreSQL refuses it.
    client.batch_execute(&format!("DROP TABLE p; {}", create("BIGINT"))).await.expect("again");
    let err = client.query(&all, &[]).await.expect_err("v is a bigint now");
    assert_eq!(sql_state(&err), "0A000");
    assert_eq!(db_message(&err), "cached plan must not change result type");
}
