//! Every Postgres connection has its own session: what one client sets, prepares or declares
//! (cursors included) never reaches another, the server's limits are maximums a client can only lower, the
//! statements a session may run are an allow-list, and `require_tls` turns clear-text clients
//! away. What clients make the server do runs on threads of lower CPU priority than ingest.

mod common;

use common::Server;
use tokio_postgres::error::SqlState;

const TABLE: &str = "CREATE TABLE m (time TIMESTAMPTZ, s TEXT, v DOUBLE PRECISION, PRIMARY KEY (s, time))";

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client.query_one(&format!("SHOW {name}"), &[]).await.unwrap_or_else(|e| panic!("SHOW {name}: {e}")).get(0)
}

fn code(e: &tokio_postgres::Error) -> SqlState {
    e.code().cloned().unwrap_or_else(|| panic!("not a server error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_client_sets_never_reaches_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let (a, b) = (server.client().await, server.client().await);
    let now_type = "SELECT arrow_typeof(now())";
    let before: String = b.query_one(now_type, &[]).await.expect("type").get(0);

    // Engine settings are refused, however spelled: DataFusion keeps them in the one session
    // every client shares.
    for sql in [
        "SET datafusion.execution.time_zone = '+05:00'",
        "SET \"DATAFUSION.EXECUTION.TIME_ZONE\" = '+05:00'",
        "SET timezone = 'Asia/Kolkata'",
        "RESET datafusion.execution.time_zone",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let e = a.simple_query(sql).await.expect_err(sql);
        assert!(matches!(code(&e), SqlState::INSUFFICIENT_PRIVILEGE | SqlState::FEATURE_NOT_SUPPORTED), "{sql}: {e}");
    }
    let after: String = b.query_one(now_type, &[]).await.expect("type").get(0);
    assert_eq!(after, before, "another client's time zone is unchanged");

    // Session settings are the client's own.
    a.batch_execute("SET statement_timeout = '1s'; SET application_name = 'dashboard'; SET extra_float_digits = 0").await.expect("set");
    assert_eq!(show(&a, "statement_timeout").await, "1000ms");
    assert_eq!(show(&a, "application_name").await, "dashboard");
    assert_eq!(show(&b, "statement_timeout").await, "300000ms");
    assert_eq!(show(&b, "application_name").await, "");
    assert_eq!(show(&b, "extra_float_digits").await, "1");

    // A read-only session refuses writes; the other still writes.
    a.batch_execute(TABLE).await.expect("create");
    a.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").await.expect("read only");
    let insert = "INSERT INTO m (time, s, v) VALUES ('2024-01-01T00:00:00Z', 'a', 1)";
    assert_eq!(code(&a.execute(insert, &[]).await.expect_err("read only")), SqlState::READ_ONLY_SQL_TRANSACTION);
    let refused = a.simple_query(insert).await.expect_err("read only, simple protocol (INSERT read from its text)");
    assert_eq!(code(&refused), SqlState::READ_ONLY_SQL_TRANSACTION);
    assert_eq!(b.execute(insert, &[]).await.expect("b writes"), 1);

    // Catalog DDL through SQL is refused, so no client's view or schema appears to another.
    for sql in ["CREATE VIEW v AS SELECT 1 AS x", "CREATE SCHEMA mine", "DROP SCHEMA public", "PREPARE p AS SELECT 1"] {
        assert!(a.simple_query(sql).await.is_err(), "{sql}");
    }
    assert!(b.simple_query("SELECT * FROM v").await.is_err());
    let rows: i64 = b.query_one("SELECT count(*) FROM public.m", &[]).await.expect("public is still there").get(0);
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_memory_limit_and_timeout_are_maximums_a_session_can_only_lower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_top(&data, "[query]\nmemory_limit_bytes = 67108864\ntimeout_ms = 20000\n");
    let (a, b) = (server.client().await, server.client().await);
    for sql in ["SET statement_timeout = 0", "SET statement_timeout = '21s'", "SET isobar.query_memory_limit = '1GB'"] {
        assert_eq!(code(&a.simple_query(sql).await.expect_err(sql)), SqlState::INSUFFICIENT_PRIVILEGE, "{sql}");
    }
    assert_eq!(show(&a, "statement_timeout").await, "20000ms");
    assert_eq!(show(&a, "isobar.query_memory_limit").await, "64MB");

    // A join whose build side needs a few MiB: within the server's 64 MiB, past a's 1 MiB.
    let join = "SELECT count(*) FROM generate_series(1, 200000) x JOIN generate_series(1, 200000) y ON x.value = y.value";
    a.batch_execute("SET isobar.query_memory_limit = '1MB'").await.expect("lower");
    assert_eq!(code(&a.query_one(join, &[]).await.expect_err("past a's limit")), SqlState::OUT_OF_MEMORY);
    let n: i64 = b.query_one(join, &[]).await.expect("within b's limit").get(0);
    assert_eq!(n, 200_000);
    a.batch_execute("RESET isobar.query_memory_limit").await.expect("reset");
    let n: i64 = a.query_one(join, &[]).await.expect("within the server's limit again").get(0);
    assert_eq!(n, 200_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scans_copy_of_buffered_rows_counts_against_the_query_memory_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Rows stay in the write buffer: no persist while the test runs.
    let server = Server::start_top(&data, "[storage]\npersist_interval_ms = 3600000\n");
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE m (time TIMESTAMPTZ, s TEXT, v DOUBLE PRECISION, PRIMARY KEY (s, time)); \
             INSERT INTO m SELECT to_timestamp(value), 's' || (value % 10), value FROM generate_series(1, 200000)",
        )
        .await
        .expect("rows");
    let scan = "SELECT time, v FROM m";
    client.batch_execute("SET isobar.query_memory_limit = '1MB'").await.expect("lower");
    let e = client.query(scan, &[]).await.expect_err("200,000 buffered rows are more than 1 MiB");
    assert_eq!(code(&e), SqlState::OUT_OF_MEMORY);
    let message = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    assert!(message.contains("scan of m"), "{message}");
    client.batch_execute("RESET isobar.query_memory_limit").await.expect("reset");
    assert_eq!(client.query(scan, &[]).await.expect("within the default limit").len(), 200_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_statements_say_what_they_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let url = format!("host=127.0.0.1 port={} user=isobar dbname=isobar", server.pg_port);
    let (client, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = notices_tx.send((notice.severity().to_owned(), notice.message().to_owned()));
            }
        }
    });
    client.batch_execute(TABLE).await.expect("create");
    client.batch_execute("BEGIN").await.expect("begin");
    let (severity, message) = notices.recv().await.expect("BEGIN says what it does");
    assert_eq!(severity, "NOTICE");
    assert!(message.contains("durable when it completes"), "{message}");
    client.batch_execute("INSERT INTO m (time, s, v) VALUES ('2024-01-01T00:00:00Z', 'a', 1)").await.expect("insert");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let (severity, message) = notices.recv().await.expect("ROLLBACK warns");
    assert_eq!(severity, "WARNING");
    assert!(message.contains("undid nothing"), "{message}");
    let rows: i64 = client.query_one("SELECT count(*) FROM m", &[]).await.expect("count").get(0);
    assert_eq!(rows, 1, "as the warning said, the row stayed");
    // An error in a block aborts it until it ends, as in PostgreSQL.
    client.batch_execute("BEGIN").await.expect("begin");
    assert!(client.batch_execute("SELECT * FROM nope").await.is_err());
    let e = client.batch_execute("SELECT 1").await.expect_err("aborted block");
    assert_eq!(code(&e), SqlState::IN_FAILED_SQL_TRANSACTION);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    client.batch_execute("SELECT 1").await.expect("the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_prepared_statements_are_bounded_and_deallocated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    // tokio-postgres names every prepared statement and keeps it until it is dropped.
    let mut kept = Vec::new();
    let mut refused = None;
    for i in 0..1_100 {
        match client.prepare(&format!("SELECT {i}::BIGINT")).await {
            Ok(statement) => kept.push(statement),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the session's prepared statements are bounded");
    assert_eq!(code(&e), SqlState::PROGRAM_LIMIT_EXCEEDED, "{e}");
    assert_eq!(kept.len(), 1_000);
    client.batch_execute("DEALLOCATE ALL").await.expect("deallocate all");
    let again = client.prepare("SELECT 7::BIGINT").await.expect("room again after DEALLOCATE ALL");
    assert_eq!(client.query_one(&again, &[]).await.expect("run").get::<_, i64>(0), 7);
    // Another client was never limited by this one.
    let other = server.client().await;
    assert_eq!(other.query_one("SELECT 8::BIGINT", &[]).await.expect("run").get::<_, i64>(0), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_page_through_a_query_with_parameters_and_are_the_sessions_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");
    let rows: Vec<String> =
        (0..2_500).map(|i| format!("('2024-01-01T00:00:00Z'::timestamptz + INTERVAL '{i} seconds', 'a', {i}.5)")).collect();
    client.batch_execute(&format!("INSERT INTO m (time, s, v) VALUES {}", rows.join(", "))).await.expect("insert");
    client.batch_execute("INSERT INTO m (time, s, v) VALUES ('2024-01-01T00:00:00Z', 'b', -1)").await.expect("insert b");

    // The extended protocol: the DECLARE's parameter bound, FETCHes described with the
    // cursor's columns and answered in binary (tokio-postgres asks for it), in pages that
    // cross the query's record batches.
    client.execute("DECLARE page CURSOR FOR SELECT time, v FROM m WHERE s = $1 ORDER BY time", &[&"a"]).await.expect("declare");
    let mut values = Vec::new();
    loop {
        let page = client.query("FETCH FORWARD 700 FROM page", &[]).await.expect("fetch");
        assert!(page.len() <= 700);
        if page.is_empty() {
            break;
        }
        values.extend(page.iter().map(|r| r.get::<_, f64>("v")));
    }
    assert_eq!(values, (0..2_500).map(|i| f64::from(i) + 0.5).collect::<Vec<_>>());
    client.batch_execute("CLOSE page").await.expect("close");
    let e = client.query("FETCH 1 FROM page", &[]).await.expect_err("a closed cursor is gone");
    assert_eq!(code(&e), SqlState::INVALID_CURSOR_NAME, "{e}");

    // The simple protocol, in text; a cursor only moves forward.
    let messages = client
        .simple_query("DECLARE c CURSOR FOR SELECT CAST(v * 2 AS BIGINT) FROM m ORDER BY v; FETCH 2 FROM c; FETCH NEXT FROM c")
        .await
        .expect("declare, fetch");
    let texts: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["-2", "1", "3"]);
    let e = client.batch_execute("FETCH BACKWARD 1 FROM c").await.expect_err("backward");
    assert_eq!(code(&e), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "{e}");
    // Another client does not see this one's cursor.
    let other = server.client().await;
    let e = other.batch_execute("FETCH 1 FROM c").await.expect_err("not the other client's cursor");
    assert_eq!(code(&e), SqlState::INVALID_CURSOR_NAME, "{e}");

    // A session's cursors are bounded; CLOSE ALL makes room.
    let mut refused = None;
    for i in 0..150 {
        if let Err(e) = client.batch_execute(&format!("DECLARE k{i} CURSOR FOR SELECT 1")).await {
            refused = Some((i, e));
            break;
        }
    }
    let (opened, e) = refused.expect("the session's cursors are bounded");
    assert_eq!(code(&e), SqlState::PROGRAM_LIMIT_EXCEEDED, "{e}");
    assert_eq!(opened, 99, "c and 99 more");
    client.batch_execute("CLOSE ALL; DECLARE again CURSOR FOR SELECT 7::BIGINT").await.expect("room after CLOSE ALL");
    assert_eq!(client.query_one("FETCH 1 FROM again", &[]).await.expect("fetch").get::<_, i64>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_turns_clear_text_clients_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let certs = common::tls::make_certs(&dir.path().join("certs"));
    let postgres = format!(
        "tls_cert_path = {:?}\ntls_key_path = {:?}\nrequire_tls = true\n",
        certs.cert.display().to_string(),
        certs.key.display().to_string()
    );
    let server = Server::start_with(&data, &postgres);
    let psql = |sslmode: &str| {
        std::process::Command::new("psql")
            .arg(format!("host=127.0.0.1 port={} user=isobar dbname=isobar sslmode={sslmode}", server.pg_port))
            .args(["-X", "-At", "-c", "SELECT 41 + 1"])
            .output()
            .expect("run psql")
    };
    let clear = psql("disable");
    assert!(!clear.status.success());
    assert!(String::from_utf8_lossy(&clear.stderr).contains("requires TLS"), "{}", String::from_utf8_lossy(&clear.stderr));
    let secure = psql("require");
    assert!(secure.status.success(), "{}", String::from_utf8_lossy(&secure.stderr));
    assert_eq!(String::from_utf8_lossy(&secure.stdout).trim(), "42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_on_threads_of_lower_priority_than_ingest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_top(&data, "[query]\nnice = 7\nthreads = 2\n");
    let client = server.client().await;
    let count: i64 = client.query_one("SELECT count(*) FROM generate_series(1, 100000000)", &[]).await.expect("count").get(0);
    assert_eq!(count, 100_000_000);
    client.batch_execute(TABLE).await.expect("create");
    client.batch_execute("INSERT INTO m VALUES (now(), 'a', 1.5)").await.expect("insert");
    assert_eq!(client.query_one("SELECT count(*) FROM m", &[]).await.expect("scan").get::<_, i64>(0), 1);

    let threads = common::threads_of(server.child.id());
    let queries: Vec<_> = threads.iter().filter(|(name, ..)| name == "isobar-query").collect();
    assert!(queries.len() >= 2, "the query runtime's workers: {threads:?}");
    assert!(queries.iter().all(|(_, nice, _)| *nice == 7), "every query thread at nice 7: {threads:?}");
    // The count took hundreds of milliseconds of CPU, all of it on the query runtime.
    let query_ticks: u64 = queries.iter().map(|(.., ticks)| ticks).sum();
    assert!(query_ticks >= 5, "query threads used {query_ticks} ticks: {threads:?}");
    let ingest = threads.iter().find(|(name, ..)| name == "isobar-commit").expect("storage's committer");
    assert_eq!(ingest.1, 0, "ingest keeps the server's priority: {threads:?}");
}
