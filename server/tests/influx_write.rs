//! InfluxDB's write API on the HTTP listener: credentials as InfluxDB 1 and 2 clients send them,
//! line protocol in any precision, gzip bodies, partial writes reported in each API's shape
//! with the other lines written, and every written row readable over SQL at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;

/// Sends one request with `headers` and `body`, the connection closed after it; the answer.
fn send(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("compress");
    encoder.finish().expect("finish")
}

#[test]
fn line_protocol_writes_are_stored_and_bad_lines_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config_with_http_user(&data);
    let server = Server::start_config(&data, &config);
    let port = server.http_port;
    let v1 = "/write?db=fleet&precision=s&u=telegraf&p=s3cret";

    let refused = send(port, "POST", "/write?db=fleet", &[], b"weather,station=z v=1 1");
    assert!(refused.starts_with("HTTP/1.1 401"), "no credentials: {refused}");
    let wrong = send(port, "POST", "/write?db=fleet&u=telegraf&p=nope", &[], b"weather,station=z v=1 1");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");

    // InfluxDB 1: the second line does not parse; the others are written.
    let body = "weather,station=a v=1.5,n=1i 1700000000\nweather,station=b v= 2\nweather,station=b v=2.5 1700000001\n";
    let partial = send(port, "POST", v1, &[], body.as_bytes());
    assert!(partial.starts_with("HTTP/1.1 400"), "{partial}");
    assert!(partial.contains(r#"{"error":"partial write: unable to parse 'weather,station=b v= 2' (line 2)"#), "{partial}");
    assert!(partial.contains("dropped=1"), "{partial}");

    // InfluxDB 2: a token, milliseconds, gzip; then a type conflict, reported in v2's shape.
    let token = [("Authorization", "Token telegraf:s3cret"), ("Content-Encoding", "gzip")];
    let v2 = "/api/v2/write?org=acme&bucket=fleet&precision=ms";
    let ok = send(port, "POST", v2, &token, &gzip("weather,station=c v=3,n=3i 1700000002000\n"));
    assert!(ok.starts_with("HTTP/1.1 204"), "{ok}");
    let conflict = send(port, "POST", v2, &token, &gzip("weather,station=d v=\"text\" 1700000003000\n"));
    assert!(
        conflict.starts_with("HTTP/1.1 400") && conflict.contains(r#"{"code":"invalid","message":"partial write has occurred"#),
        "{conflict}"
    );

    // What InfluxDB requires of a request.
    let basic = [("Authorization", "Basic dGVsZWdyYWY6czNjcmV0")];
    assert!(send(port, "POST", "/write?precision=s", &basic, b"m v=1").contains("database is required"));
    assert!(send(port, "POST", "/api/v2/write?org=acme", &basic, b"m v=1").contains("bucket is required"));
    assert!(send(port, "POST", "/write?db=fleet&precision=d", &basic, b"m v=1").contains("invalid precision"));
    let not_gzip = send(port, "POST", v2, &token, b"weather,station=e v=1");
    assert!(not_gzip.starts_with("HTTP/1.1 400") && not_gzip.contains("does not decompress"), "{not_gzip}");
    let ping = send(port, "GET", "/ping", &basic, b"");
    assert!(ping.starts_with("HTTP/1.1 204") && ping.to_ascii_lowercase().contains("x-influxdb-version"), "{ping}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let rows = runtime.block_on(async {
        let client = server.client().await;
        client.query("SELECT station, v, n, extract(epoch FROM time)::bigint FROM weather ORDER BY time", &[]).await.expect("query")
    });
    let rows: Vec<(String, f64, Option<i64>, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        rows,
        [
            ("a".to_owned(), 1.5, Some(1), 1_700_000_000),
            ("b".to_owned(), 2.5, None, 1_700_000_001),
            ("c".to_owned(), 3.0, Some(3), 1_700_000_002),
        ]
    );
}

/// A client keeps its connection for many writes, as Telegraf and the InfluxDB clients do.
#[test]
fn one_connection_carries_many_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let mut stream = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    for i in 0..3 {
        let body = format!("kept,station=a v={i} {i}");
        let head = format!("POST /write?db=x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(body.as_bytes()).expect("body");
        let mut answer = [0u8; 1024];
        let n = stream.read(&mut answer).expect("answer");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 204"), "write {i}: {answer}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let count: i64 = runtime.block_on(async {
        let client = server.client().await;
        client.query_one("SELECT count(*) FROM kept", &[]).await.expect("count").get(0)
    });
    assert_eq!(count, 3);
}

/// What Telegraf's `outputs.influxdb` sends: `CREATE DATABASE` as a form to `/query`, then each
/// batch gzipped in a chunked body with its headers; and `outputs.influxdb_v2`'s token writes.
#[test]
fn telegraf_requests_are_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config_with_http_user(&data);
    let server = Server::start_config(&data, &config);
    let port = server.http_port;
    let basic = ("Authorization", "Basic dGVsZWdyYWY6czNjcmV0");
    let agent = ("User-Agent", "Telegraf/1.32.0 Go/1.23.2");

    let form = [basic, agent, ("Content-Type", "application/x-www-form-urlencoded")];
    let created = send(port, "POST", "/query", &form, b"q=CREATE+DATABASE+%22telegraf%22");
    assert!(created.starts_with("HTTP/1.1 200") && created.ends_with(r#"{"results":[{"statement_id":0}]}"#), "{created}");
    let created = send(port, "GET", "/query?q=create%20database%20fleet%3B%20CREATE%20DATABASE%20%22x%22", &[basic], b"");
    assert!(created.ends_with(r#"{"results":[{"statement_id":0},{"statement_id":1}]}"#), "{created}");
    let refused = send(port, "POST", "/query?q=SELECT%20*%20FROM%20cpu", &[basic], b"");
    assert!(refused.starts_with("HTTP/1.1 400") && refused.contains("SQL over the Postgres wire protocol"), "{refused}");
    assert!(send(port, "POST", "/query", &form, b"q=CREATE+DATABASE+%22telegraf%22").starts_with("HTTP/1.1 200"));
    assert!(send(port, "POST", "/query", &[agent], b"").starts_with("HTTP/1.1 401"), "/query needs credentials too");

    // A gzipped batch in two chunks, as Go's client sends a body of unknown length.
    let batch = "cpu,cpu=cpu0,host=edge-1 usage_idle=97.5,usage_user=1.25 1700000000000000000\n\
                 cpu,cpu=cpu1,host=edge-1 usage_idle=88,usage_user=9.5 1700000000000000000\n\
                 mem,host=edge-1 used=1073741824i,used_percent=12.5 1700000000000000000\n";
    let gz = gzip(batch);
    let (first, second) = gz.split_at(gz.len() / 2);
    let mut chunked = Vec::new();
    for chunk in [first, second] {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = "POST /write?db=telegraf&rp=autogen&consistency=any HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                User-Agent: Telegraf/1.32.0 Go/1.23.2\r\nAuthorization: Basic dGVsZWdyYWY6czNjcmV0\r\n\
                Content-Type: text/plain; charset=utf-8\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&chunked).expect("body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");

    // outputs.influxdb_v2: a token, gzip, a Content-Length body.
    let v2 =
        [("Authorization", "Token telegraf:s3cret"), agent, ("Content-Type", "text/plain; charset=utf-8"), ("Content-Encoding", "gzip")];
    let ok = send(
        port,
        "POST",
        "/api/v2/write?bucket=telegraf&org=edge",
        &v2,
        &gzip("cpu,cpu=cpu0,host=edge-2 usage_idle=50 1700000001000000000\n"),
    );
    assert!(ok.starts_with("HTTP/1.1 204"), "{ok}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (cpu, mem) = runtime.block_on(async {
        let client = server.client().await;
        let cpu = client.query("SELECT host, cpu, usage_idle FROM cpu ORDER BY time, cpu", &[]).await.expect("cpu");
        let mem = client.query_one("SELECT used, used_percent FROM mem", &[]).await.expect("mem");
        (cpu, mem)
    });
    let cpu: Vec<(String, String, f64)> = cpu.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let expected = [("edge-1", "cpu0", 97.5), ("edge-1", "cpu1", 88.0), ("edge-2", "cpu0", 50.0)];
    assert_eq!(cpu, expected.map(|(h, c, v)| (h.to_owned(), c.to_owned(), v)));
    assert_eq!((mem.get::<_, i64>(0), mem.get::<_, f64>(1)), (1_073_741_824, 12.5));
    let metrics = send(port, "GET", "/metrics", &[basic], b"");
    assert!(metrics.contains("isobar_line_writes_total 2\n") && metrics.contains("isobar_line_points_written_total 4\n"), "{metrics}");
}
