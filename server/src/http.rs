//! The HTTP listener: `GET /health` and `GET /metrics` (Prometheus text format).
//!
//! Hand-written HTTP/1.1 for two read-only endpoints: one request per connection, a bounded
//! request head, and a timeout, so a slow or hostile client costs one small task.

use std::sync::Arc;
use std::time::Duration;

use isobar_storage::{Health, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{IngestMetrics, QueryMetrics, render};

/// Largest request head read; longer requests get 431.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time a client has to send its request head.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Serves until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, storage: Storage, queries: Arc<QueryMetrics>, ingest: Arc<IngestMetrics>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let (storage, queries, ingest) = (storage.clone(), Arc::clone(&queries), Arc::clone(&ingest));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), handle(socket, &storage, &queries, &ingest)).await;
        });
    }
}

async fn handle(mut socket: TcpStream, storage: &Storage, queries: &QueryMetrics, ingest: &IngestMetrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return respond(&mut socket, "431 Request Header Fields Too Large", "text/plain", "request head too large\n").await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    match (method, path) {
        (b"GET", b"/health") => match storage.health() {
            Health::Ok => respond(&mut socket, "200 OK", "text/plain", "ok\n").await,
            Health::BackgroundFailing(e) => {
                respond(&mut socket, "503 Service Unavailable", "text/plain", &format!("background work failing, retried: {e}\n")).await
            }
            Health::WritesRefused(e) => {
                respond(&mut socket, "503 Service Unavailable", "text/plain", &format!("writes refused until restart: {e}\n")).await
            }
        },
        (b"GET", b"/metrics") => respond(&mut socket, "200 OK", "text/plain; version=0.0.4", &render(storage, queries, ingest)).await,
        (b"GET", _) => respond(&mut socket, "404 Not Found", "text/plain", "not found\n").await,
        _ => respond(&mut socket, "405 Method Not Allowed", "text/plain", "only GET\n").await,
    }
}

async fn respond(socket: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}
