//! The HTTP listener: `GET /health`, `GET /metrics` (Prometheus text format), SQL queries
//! (`POST /api/v1/query`; `http/query.rs`), the web console (`GET /`; `http/console.rs`), and
//! InfluxDB's write API (`POST /write`, `POST /api/v2/write`, `GET /ping`; `http/write.rs`) with the
//! `CREATE DATABASE` its writers send to `/query` (`http/influxql.rs`), on axum and hyper
//! (HTTP/1.1 with keep-alive).
//!
//! hyper serves each connection with a time limit on reading each request head; at most
//! `connections_max` connections are served at once, and a client past the cap gets 503 at
//! once (a connection cap is the accept loop's: tower sees requests, not connections). Tower
//! layers (tower-http) bound the rest: the size of a request body (413 past it: 64 MiB for
//! writes, 1 MiB for the query API, none elsewhere), the time to send it (408), and the time
//! to answer a request (408 after a minute; the query API's own limit is `query.timeout_ms`). With users configured (required beyond loopback), every request carries one user's
//! credentials: basic auth, `Authorization: Token <user>:<password>` (InfluxDB 2's header), or
//! InfluxDB 1's `u` and `p` query parameters.

mod console;
mod influxql;
mod query;
mod session;
mod write;

pub(crate) use session::ApiAuth;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use isobar_ingest::{Ingestor, Users};
use isobar_query::QueryEngine;
use isobar_storage::Health;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::metrics::{IngestMetrics, QueryMetrics, render};

/// Time a client has to send a request head, and to start the next one on a kept connection.
const REQUEST_HEAD_TIMEOUT_MS: u64 = 5_000;
/// Time a client has to send a request body.
const REQUEST_BODY_TIMEOUT_MS: u64 = 60_000;
/// Time isobar has to answer a request (but a query, which has its own).
const ANSWER_TIMEOUT_MS: u64 = 60_000;

/// What every request shares.
#[derive(Debug, Clone)]
pub(crate) struct HttpContext {
    pub(crate) engine: QueryEngine,
    pub(crate) ingestor: Ingestor,
    pub(crate) queries: Arc<QueryMetrics>,
    pub(crate) ingest: Arc<IngestMetrics>,
    pub(crate) users: Arc<Users>,
    /// The query API's users and sessions.
    pub(crate) api: Arc<ApiAuth>,
    /// The runtime queries run on (`query_runtime.rs`).
    pub(crate) query_runtime: tokio::runtime::Handle,
}

/// Serves until the task is dropped, at most `connections_max` connections at once; a client
/// past the cap gets 503 at once.
pub(crate) async fn serve(listener: TcpListener, cx: HttpContext, connections_max: usize) {
    let app = routes(cx);
    let slots = Arc::new(Semaphore::new(connections_max));
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { continue };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_millis(REQUEST_HEAD_TIMEOUT_MS), too_many(&mut socket)).await;
            });
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(REQUEST_HEAD_TIMEOUT_MS))
                .serve_connection(TokioIo::new(socket), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}

async fn too_many(socket: &mut TcpStream) -> std::io::Result<()> {
    let body = "too many connections\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}

fn routes(cx: HttpContext) -> Router {
    let answer_timeout = || TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(ANSWER_TIMEOUT_MS));
    // The query API authenticates its own callers (`http/session.rs`), and the console's files
    // hold no data; the rest takes `http.users`. A query's time is `query.timeout_ms`.
    let api = Router::new()
        .route("/api/v1/login", post(session::login))
        .route("/api/v1/logout", post(session::logout))
        .route("/", get(console::file))
        .route("/console/{*file}", get(console::file))
        .layer(answer_timeout())
        .route("/api/v1/query", post(query::query))
        .layer(RequestBodyLimitLayer::new(query::BODY_BYTES_MAX));
    let writes = Router::new()
        .route("/write", post(write::v1))
        .route("/api/v2/write", post(write::v2))
        .route("/query", get(influxql::query).post(influxql::query))
        .layer(RequestBodyLimitLayer::new(write::BODY_BYTES_MAX));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ping", get(write::ping).head(write::ping))
        .merge(writes)
        .layer(answer_timeout())
        .layer(middleware::from_fn_with_state(cx.clone(), authenticate))
        .merge(api)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        // The body limits are the layers above, not axum's default for extractors.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyTimeoutLayer::new(Duration::from_millis(REQUEST_BODY_TIMEOUT_MS)))
        .with_state(cx)
}

/// The status for a request body that could not be read: 413 past its limit, 408 when it
/// came too slowly, 400 when the client cut it off.
pub(super) fn body_error(e: &axum::Error) -> (StatusCode, &'static str) {
    // Each layer's body wraps the one inside it, and so does its error.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return (StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        if e.is::<tower_http::timeout::TimeoutError>() {
            return (StatusCode::REQUEST_TIMEOUT, "body not received in time");
        }
        cause = e.source();
    }
    (StatusCode::BAD_REQUEST, "body cut off")
}

async fn health(State(cx): State<HttpContext>) -> Response {
    let unavailable = |reason: String| (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    match cx.engine.storage().health() {
        // Writes and queries work; chunks set aside at start-up are named for the operator.
        Health::Ok => {
            let quarantined = cx.engine.storage().quarantined();
            match quarantined.is_empty() {
                true => "ok\n".into_response(),
                false => format!("ok; chunks quarantined at start-up, their rows missing until restored:\n{}\n", quarantined.join("\n"))
                    .into_response(),
            }
        }
        Health::BackgroundFailing(e) => unavailable(format!("background work failing, retried: {e}\n")),
        Health::WritesRefused(e) => unavailable(format!("writes refused until restart: {e}\n")),
        Health::DiskFull(e) => unavailable(format!("writes refused until space is freed: {e}\n")),
    }
}

async fn metrics(State(cx): State<HttpContext>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&cx.engine, &cx.queries, &cx.ingest)).into_response()
}

/// Lets a request through when it carries a configured user's credentials (any request when
/// none are configured).
async fn authenticate(State(cx): State<HttpContext>, request: Request<Body>, next: Next) -> Response {
    if cx.users.is_empty() || admitted(&cx.users, request.headers(), request.uri()) {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"isobar\"")], "unauthorized\n").into_response()
}

/// Whether the credentials a request carries name a user of `users`.
fn admitted(users: &Users, headers: &HeaderMap, uri: &Uri) -> bool {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let credentials = if let Some(basic) = authorization.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok().and_then(|raw| String::from_utf8(raw).ok())
    } else if let Some(token) = authorization.strip_prefix("Token ") {
        Some(token.trim().to_owned())
    } else {
        let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(uri).unwrap_or(Query(Vec::new()));
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        param("u").zip(param("p")).map(|(u, p)| format!("{u}:{p}"))
    };
    let Some((name, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else { return false };
    users.admits(Some(name), Some(password.as_bytes()))
}
