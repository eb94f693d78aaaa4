//! Bad input over the wire gets an error to that client, and the server keeps serving the
//! others: wrong parameter counts and types, a 100 MB query, a client that drops mid-query.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// A frontend message: tag, length, body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(u32::try_from(body.len() + 4).expect("small")).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Reads backend messages until ReadyForQuery; returns their tags and the error texts.
fn until_ready(stream: &mut TcpStream) -> (Vec<u8>, Vec<String>) {
    let (mut tags, mut errors) = (Vec::new(), Vec::new());
    loop {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).expect("message head");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).expect("message body");
        tags.push(head[0]);
        if head[0] == b'E' {
            errors.push(String::from_utf8_lossy(&body).into_owned());
        }
        if head[0] == b'Z' {
            return (tags, errors);
        }
    }
}

/// A raw connection past startup.
fn raw_connection(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.pg_port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    body.extend(cstr("user"));
    body.extend(cstr("isobar"));
    body.push(0);
    let mut startup = (u32::try_from(body.len() + 4).expect("small")).to_be_bytes().to_vec();
    startup.extend(body);
    stream.write_all(&startup).expect("startup");
    until_ready(&mut stream);
    stream
}

#[test]
fn wrong_parameter_counts_and_types_are_errors_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let mut stream = raw_connection(&server);
    // Parse one parameter, bind two.
    let mut parse = cstr("");
    parse.extend(cstr("SELECT $1::BIGINT + 1"));
    parse.extend(0u16.to_be_bytes());
    let bind_with = |values: &[&[u8]]| {
        let mut bind = cstr("");
        bind.extend(cstr(""));
        bind.extend(0u16.to_be_bytes());
        bind.extend(u16::try_from(values.len()).expect("few").to_be_bytes());
        for v in values {
            bind.extend(u32::try_from(v.len()).expect("short").to_be_bytes());
            bind.extend_from_slice(v);
        }
        bind.extend(0u16.to_be_bytes());
        bind
    };
    let mut execute = cstr("");
    execute.extend(0u32.to_be_bytes());
    for (values, what) in
        [(&[&b"1"[..], &b"2"[..]][..], "two values for one parameter"), (&[&b"not a number"[..]][..], "text for a BIGINT")]
    {
        let mut out = message(b'P', &parse);
        out.extend(message(b'B', &bind_with(values)));
        out.extend(message(b'E', &execute));
        out.extend(message(b'S', &[]));
        stream.write_all(&out).expect("send");
        let (_, errors) = until_ready(&mut stream);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
    }
    // The same connection still answers.
    let mut out = message(b'P', &parse);
    out.extend(message(b'B', &bind_with(&[b"41"])));
    out.extend(message(b'E', &execute));
    out.extend(message(b'S', &[]));
    stream.write_all(&out).expect("send");
    let (tags, errors) = until_ready(&mut stream);
    assert!(errors.is_empty() && tags.contains(&b'D'), "{tags:?} {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_query_gets_an_answer_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let big = server.client().await;
    let query = format!("SELECT 1 AS one -- {}", "x".repeat(100 << 20));
    // An answer or an error: what matters is that it ends and nothing else is hurt.
    let _ = tokio::time::timeout(Duration::from_secs(120), big.simple_query(&query)).await.expect("the big query ends");
    let other = server.client().await;
    assert_eq!(other.query_one("SELECT 7::BIGINT", &[]).await.expect("served").get::<_, i64>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_mid_query_does_not_hurt_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let url = format!("host=127.0.0.1 port={} user=isobar dbname=isobar", server.pg_port);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let driver = tokio::spawn(connection);
    let slow = tokio::spawn(async move { client.simple_query("SELECT count(*) FROM generate_series(1, 2000000000)").await });
    // The server is counting once its query threads have spent 50 ms of CPU.
    let deadline = Instant::now() + Duration::from_secs(30);
    let query_ticks =
        || common::threads_of(server.child.id()).iter().filter(|(name, ..)| name == "isobar-query").map(|(.., ticks)| ticks).sum::<u64>();
    while query_ticks() < 5 {
        assert!(Instant::now() < deadline, "the query runs on the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    slow.abort();
    driver.abort(); // the socket closes with the query running
    let other = server.client().await;
    let answer = tokio::time::timeout(Duration::from_secs(30), other.query_one("SELECT 8::BIGINT", &[])).await.expect("answered in time");
    assert_eq!(answer.expect("served").get::<_, i64>(0), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_statement_timeout_is_cancelled_and_the_session_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    client.batch_execute("SET statement_timeout = 200").await.expect("set");
    let started = Instant::now();
    let err = client.simple_query("SELECT count(*) FROM generate_series(1, 20000000000)").await.expect_err("cancelled");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "cancelled near its deadline, not at the end");
    assert_eq!(client.query_one("SELECT 9::BIGINT", &[]).await.expect("the session goes on").get::<_, i64>(0), 9);
    // A query whose rows keep coming is cut off too, in both protocols.
    let started = Instant::now();
    let endless = "SELECT value FROM generate_series(1, 20000000000)";
    let err = client.query(endless, &[]).await.expect_err("cancelled while sending rows");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
    let err = client.simple_query(endless).await.expect_err("cancelled while sending rows");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(40), "cancelled near their deadlines, not at the end");
    assert_eq!(client.query_one("SELECT 10::BIGINT", &[]).await.expect("the session goes on").get::<_, i64>(0), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_memory_limit_fails_alone_and_the_session_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_top(&data, "[query]\nmemory_limit_bytes = 4194304\n");
    let client = server.client().await;
    // A hash join keeps its whole build side in memory: a million rows need far more than 4 MiB.
    let join =
        |rows: u32| format!("SELECT count(*) FROM generate_series(1, {rows}) a JOIN generate_series(1, {rows}) b ON a.value = b.value");
    let err = client.simple_query(&join(1_000_000)).await.expect_err("past the limit");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::OUT_OF_MEMORY), "{err}");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("query memory limit of 4.0 MiB exceeded"), "{message}");
    let err = client.query(&join(1_000_000), &[]).await.expect_err("past the limit, extended protocol");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::OUT_OF_MEMORY), "{err}");
    // The memory of the failed queries came back: a smaller join fits, on this session and
    // on another.
    let other = server.client().await;
    for client in [&client, &other] {
        assert_eq!(client.query_one(&join(10_000), &[]).await.expect("within the limit").get::<_, i64>(0), 10_000);
    }
}
