//! The HTTP listener's limits: basic auth of a configured user on every request when users are
//! set (required beyond loopback), a cap on connections served at once, and a clear status
//! for a request that is not HTTP; kept connections closed when idle; request bodies past
//! their size refused; the console's files.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, http_get};

/// Sends `raw` (a request head) asking for the connection to close after the answer, and
/// reads the answer.
fn request(port: u16, raw: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(raw.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1).as_bytes()).expect("send");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn requests_carry_a_users_basic_auth_and_connections_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, "", "");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml = toml.replace("[http]\n", "[http]\nconnections_max = 2\nusers = [{ name = \"prometheus\", password = \"scrape-me\" }]\n");
    std::fs::write(&config, toml).expect("write config");
    let server = Server::start_config(&data, &config);
    let port = server.http_port;

    assert!(http_get(port, "/health").starts_with("HTTP/1.1 401"), "no credentials");
    let wrong = request(port, "GET /health HTTP/1.1\r\nAuthorization: Basic cHJvbWV0aGV1czpub3Bl\r\n\r\n");
    assert!(wrong.starts_with("HTTP/1.1 401"), "prometheus:nope: {wrong}");
    // prometheus:scrape-me
    let right = "GET /metrics HTTP/1.1\r\nAuthorization: Basic cHJvbWV0aGV1czpzY3JhcGUtbWU=\r\n\r\n";
    let answer = request(port, right);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("isobar_storage_health"), "{answer}");
    assert!(request(port, "HELLO\r\n\r\n").starts_with("HTTP/1.1 400"));

    // Two clients that send nothing hold both slots; a third is turned away at once.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut busy = String::new();
    while !busy.starts_with("HTTP/1.1 503") && Instant::now() < deadline {
        busy = request(port, right);
    }
    assert!(busy.contains("too many connections"), "{busy}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !request(port, right).starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "a slot frees when a client goes");
    }
}

/// A body larger than its route takes is refused with 413 before it is read: 1 MiB for the
/// query API, 64 MiB for line protocol writes; one sent in chunks is cut off at the limit.
#[test]
fn bodies_past_their_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let port = server.http_port;
    let too_large = |path: &str, bytes: usize| request(port, &format!("POST {path} HTTP/1.1\r\nContent-Length: {bytes}\r\n\r\n"));
    for (path, limit) in [("/api/v1/query", 1 << 20), ("/api/v2/write?bucket=b", 64 << 20), ("/write?db=d", 64 << 20)] {
        let answer = too_large(path, limit + 1);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }
    // Chunked, with no length to refuse up front: the write reads up to the limit and stops.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(b"POST /api/v2/write?bucket=b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").expect("head");
    let chunk = vec![b'#'; 1 << 20];
    for _ in 0..65 {
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| stream.write_all(&chunk))
            .and_then(|()| stream.write_all(b"\r\n"))
            .is_err()
        {
            break; // refused and closed before the end
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("body too large"), "{}", &answer[..answer.len().min(300)]);
    // Under the limit, a query is answered.
    let ok = request(port, "POST /api/v1/query HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nSELECT 1");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// A kept connection that sends no next request is closed once the time for a request head
/// has passed, so an idle client does not hold a slot.
#[test]
fn an_idle_kept_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let mut stream = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer).expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let start = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the server closes the connection");
    assert!(rest.is_empty() && start.elapsed() < Duration::from_secs(30), "{rest:?}");
}

/// The console's files are served from inside the binary, with their types and a content
/// security policy, to anyone: they hold no data (the query API asks for credentials).
#[test]
fn the_console_is_served_with_its_types_and_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let page = http_get(server.http_port, "/").to_ascii_lowercase();
    assert!(page.starts_with("http/1.1 200") && page.contains("content-type: text/html"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'self'") && page.contains("<script src=\"/console/console.js\">"),
        "{page}"
    );
    let script = http_get(server.http_port, "/console/vendor/uplot/uPlot.iife.min.js").to_ascii_lowercase();
    assert!(script.starts_with("http/1.1 200") && script.contains("content-type: text/javascript"), "{}", &script[..200]);
    assert!(http_get(server.http_port, "/console/nothing.js").starts_with("HTTP/1.1 404"));
}
