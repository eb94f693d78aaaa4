//! The HTTP listener: `GET /health` and `GET /metrics` (Prometheus text format).
//!
//! Hand-written HTTP/1.1 for two read-only endpoints: one request per connection, a bounded
//! request head (`http/request.rs`), a timeout, and a cap on connections served at once, so a
//! slow or hostile client costs one small task. With users configured (required beyond
//! loopback), every request carries basic auth of one of them.

mod request;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use isobar_ingest::Users;
use isobar_query::QueryEngine;
use isobar_storage::Health;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{IngestMetrics, QueryMetrics, render};
use request::{HeadError, REQUEST_HEAD_BYTES_MAX, head_end, parse_head};

/// Time a client has to send its request head.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// What every request shares.
#[derive(Debug, Clone)]
pub(crate) struct HttpContext {
    pub(crate) engine: QueryEngine,
    pub(crate) queries: Arc<QueryMetrics>,
    pub(crate) ingest: Arc<IngestMetrics>,
    pub(crate) users: Arc<Users>,
}

/// Serves until the task is dropped, at most `connections_max` connections at once; a client
/// past the cap gets 503 at once.
pub(crate) async fn serve(listener: TcpListener, cx: HttpContext, connections_max: usize) {
    let slots = Arc::new(Semaphore::new(connections_max));
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { continue };
        let cx = cx.clone();
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let busy = respond(&mut socket, "503 Service Unavailable", "text/plain", "too many connections\n");
                let _ = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), busy).await;
            });
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), handle(socket, &cx)).await;
            drop(slot);
        });
    }
}

async fn handle(mut socket: TcpStream, cx: &HttpContext) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head_end(&head).is_none() {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return respond(&mut socket, "431 Request Header Fields Too Large", "text/plain", "request head too large\n").await;
        }
    }
    let request = match parse_head(&head[..head_end(&head).unwrap_or(head.len())]) {
        Ok(request) => request,
        Err(HeadError::TooLarge) => {
            return respond(&mut socket, "431 Request Header Fields Too Large", "text/plain", "request head too large\n").await;
        }
        Err(HeadError::Malformed) => return respond(&mut socket, "400 Bad Request", "text/plain", "not an HTTP/1.1 request\n").await,
    };
    if !admitted(&cx.users, request.header("authorization")) {
        let head =
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"isobar\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        socket.write_all(head.as_bytes()).await?;
        return socket.shutdown().await;
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => match cx.engine.storage().health() {
            // Writes and queries work; chunks set aside at start-up are named for the operator.
            Health::Ok => {
                let quarantined = cx.engine.storage().quarantined();
                let body = match quarantined.is_empty() {
                    true => "ok\n".to_owned(),
                    false => {
                        format!("ok; chunks quarantined at start-up, their rows missing until restored:\n{}\n", quarantined.join("\n"))
                    }
                };
                respond(&mut socket, "200 OK", "text/plain", &body).await
            }
            Health::BackgroundFailing(e) => {
                respond(&mut socket, "503 Service Unavailable", "text/plain", &format!("background work failing, retried: {e}\n")).await
            }
            Health::WritesRefused(e) => {
                respond(&mut socket, "503 Service Unavailable", "text/plain", &format!("writes refused until restart: {e}\n")).await
            }
            Health::DiskFull(e) => {
                respond(&mut socket, "503 Service Unavailable", "text/plain", &format!("writes refused until space is freed: {e}\n")).await
            }
        },
        ("GET", "/metrics") => {
            respond(&mut socket, "200 OK", "text/plain; version=0.0.4", &render(&cx.engine, &cx.queries, &cx.ingest)).await
        }
        ("GET", _) => respond(&mut socket, "404 Not Found", "text/plain", "not found\n").await,
        _ => respond(&mut socket, "405 Method Not Allowed", "text/plain", "only GET\n").await,
    }
}

/// Whether a request's `Authorization` header names a configured user (any request, when
/// none are configured).
fn admitted(users: &Users, authorization: Option<&str>) -> bool {
    if users.is_empty() {
        return true;
    }
    let credentials = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((name, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else { return false };
    users.admits(Some(name), Some(password.as_bytes()))
}

async fn respond(socket: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}
