//! The web console's files, served from inside the binary: `GET /` and `/console/...`.
//!
//! The console (`server/console/`) is plain HTML, CSS and JavaScript with no build step, and
//! uPlot (MIT, `console/vendor/uplot/LICENSE`) for its charts. It reads everything through the
//! query API, whose login it uses; the files themselves hold no data and are served to anyone.
//! A content security policy keeps the page to its own scripts and to this server.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Each file: its path, its content type, and its bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../../console/index.html")),
    ("/console/console.js", "text/javascript; charset=utf-8", include_bytes!("../../console/console.js")),
    ("/console/series.js", "text/javascript; charset=utf-8", include_bytes!("../../console/series.js")),
    ("/console/status.js", "text/javascript; charset=utf-8", include_bytes!("../../console/status.js")),
    ("/console/console.css", "text/css; charset=utf-8", include_bytes!("../../console/console.css")),
    (
        "/console/vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/uplot/uPlot.iife.min.js"),
    ),
    ("/console/vendor/uplot/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../console/vendor/uplot/uPlot.min.css")),
    ("/console/vendor/uplot/LICENSE", "text/plain; charset=utf-8", include_bytes!("../../console/vendor/uplot/LICENSE")),
];

const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /` and `GET /console/...`.
pub(super) async fn file(uri: Uri) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(path, _, _)| *path == uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, *content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, POLICY),
    ];
    (headers, *bytes).into_response()
}
