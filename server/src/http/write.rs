//! InfluxDB's write API, for Telegraf, Node-RED, Home Assistant and the InfluxDB clients:
//! `POST /write` (v1: `db`, `precision`, `u`, `p`) and `POST /api/v2/write` (`bucket`, `org`,
//! `precision`), bodies of line protocol, gzip when `Content-Encoding: gzip` says so. The
//! measurement is the table and tags the series key; `db` and `bucket` are required, as
//! InfluxDB requires them, and name no separate store: every table is in isobar's one database.
//! A write answers 204 once every point is durable; a body with lines that did not parse or
//! that storage refused answers 400 naming them (the other lines are written, as InfluxDB
//! reports a partial write), in each API's error shape.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use isobar_ingest::LinesWritten;
use isobar_ingest::line_protocol::Precision;
use serde_json::json;

use super::HttpContext;

/// The largest write body, as sent and once decompressed.
pub(super) const BODY_BYTES_MAX: usize = 64 << 20;
/// Lines an error response names at most.
const ERRORS_SHOWN_MAX: usize = 10;
/// What `/ping` says it is: the InfluxDB version whose write API isobar speaks.
const INFLUXDB_VERSION: &str = "1.8.10 (isobar)";

/// Which API a write came through, for the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

impl Api {
    fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Api::V1 => json!({ "error": message }),
            Api::V2 => {
                let code = match status {
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                    StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                    _ => "invalid",
                };
                json!({ "code": code, "message": message })
            }
        };
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// `GET /ping` and `HEAD /ping`: what InfluxDB 1 clients and Telegraf check before writing.
pub(super) async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("X-Influxdb-Version", INFLUXDB_VERSION), ("X-Influxdb-Build", "OSS")]).into_response()
}

pub(super) async fn v1(
    State(cx): State<HttpContext>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if params.get("db").is_none_or(|db| db.is_empty()) {
        return Api::V1.error(StatusCode::BAD_REQUEST, "database is required");
    }
    write(&cx, Api::V1, params.get("precision").map(String::as_str), &headers, body).await
}

pub(super) async fn v2(
    State(cx): State<HttpContext>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if params.get("bucket").is_none_or(|bucket| bucket.is_empty()) {
        return Api::V2.error(StatusCode::BAD_REQUEST, "bucket is required");
    }
    write(&cx, Api::V2, params.get("precision").map(String::as_str), &headers, body).await
}

async fn write(cx: &HttpContext, api: Api, precision: Option<&str>, headers: &HeaderMap, body: Body) -> Response {
    let Some(precision) = Precision::parse(precision.unwrap_or("ns")) else {
        return api.error(StatusCode::BAD_REQUEST, &format!("invalid precision {:?}", precision.unwrap_or_default()));
    };
    // The body's size and time limits are the router's layers.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let (status, message) = super::body_error(&e);
            return api.error(status, &format!("{message} (at most {BODY_BYTES_MAX} bytes)"));
        }
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let text = match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" => match gunzip(&bytes) {
            Ok(text) => text,
            Err(response) => return api.error(response.0, &response.1),
        },
        // The body's own buffer when nothing else holds it: no copy.
        "" | "identity" => Vec::from(bytes),
        other => return api.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("content encoding {other:?}: isobar takes gzip or none")),
    };
    let Ok(text) = String::from_utf8(text) else { return api.error(StatusCode::BAD_REQUEST, "body is not UTF-8") };
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    cx.ingest.line_writes.fetch_add(1, Ordering::Relaxed);
    let written = match cx.ingestor.write_lines(text, precision, now_ns).await {
        Ok(written) => written,
        // The pieces of a large body before the one that failed may be durable: a retry
        // rewrites the same points, which replace themselves.
        Err(e) => return api.error(StatusCode::SERVICE_UNAVAILABLE, &format!("write failed, retry it: {e}")),
    };
    cx.ingest.line_points_written.fetch_add(written.points_written, Ordering::Relaxed);
    cx.ingest.line_lines_rejected.fetch_add(u64::try_from(written.errors.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
    match written.errors.is_empty() {
        true => StatusCode::NO_CONTENT.into_response(),
        false => api.error(StatusCode::BAD_REQUEST, &partial_write(api, &written)),
    }
}

/// A gzip body, decompressed, at most [`BODY_BYTES_MAX`] bytes of it.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, (StatusCode, String)> {
    let mut out = Vec::new();
    let limit = u64::try_from(BODY_BYTES_MAX).unwrap_or(u64::MAX) + 1;
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("gzip body does not decompress: {e}")))?;
    if out.len() > BODY_BYTES_MAX {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {BODY_BYTES_MAX} bytes once decompressed")));
    }
    Ok(out)
}

/// The message of a write some of whose lines were not written, as each API words it.
fn partial_write(api: Api, written: &LinesWritten) -> String {
    let shown: Vec<String> = written.errors.iter().take(ERRORS_SHOWN_MAX).map(ToString::to_string).collect();
    let more = written.errors.len().saturating_sub(ERRORS_SHOWN_MAX);
    let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    match api {
        Api::V1 => format!("partial write: {}{more} dropped={}", shown.join("; "), written.errors.len()),
        Api::V2 => format!("partial write has occurred, errors encountered on line(s): {}{more}", shown.join("; ")),
    }
}
