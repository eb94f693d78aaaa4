//! Who may use the query API (`/api/v1/`): the Postgres listener's users (`postgres.users`).
//!
//! `POST /api/v1/login` takes a user and password (a JSON object `{"user", "password"}`, a
//! form, or a Basic header) and answers with a session cookie, `isobar_session` (HttpOnly,
//! SameSite=Strict, for `http.session_lifetime_ms`); `POST /api/v1/logout` ends it. A query
//! that carries the cookie (or the token as `Authorization: Bearer`) runs in that session, so
//! `SET` holds for the session's later queries, as on one Postgres connection. Scripts may
//! instead send Basic credentials with each query, which then runs in a session of its own.
//!
//! With no users configured every caller is trusted, on a loopback listener only: on any other
//! address the API refuses every call until `postgres.users` are configured.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::HttpContext;
use super::query::json_response;
use crate::auth::Passwords;
use crate::tokens::Tokens;

/// The session cookie's name.
const COOKIE: &str = "isobar_session";

/// The users of the query API and their sessions.
#[derive(Debug)]
pub(crate) struct ApiAuth {
    passwords: Passwords,
    tokens: Tokens,
    /// Whether callers without credentials are trusted: no users, on a loopback listener.
    trust: bool,
}

/// Who made a call, and the session token it carries (none: a session of its own).
#[derive(Debug)]
pub(super) struct ApiCaller {
    pub(super) token: Option<String>,
}

/// A refused call: its status and why.
pub(super) type Refusal = (StatusCode, String);

impl ApiAuth {
    pub(crate) fn new(passwords: Passwords, session_lifetime_ms: u64, loopback: bool) -> Self {
        let trust = passwords.trust() && loopback;
        Self { passwords, tokens: Tokens::new(session_lifetime_ms), trust }
    }

    /// The sessions handed out.
    pub(super) fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The caller of a request, from its session cookie, bearer token or Basic credentials.
    pub(super) fn caller(&self, headers: &HeaderMap) -> Result<ApiCaller, Refusal> {
        let unauthorized = |message: &str| (StatusCode::UNAUTHORIZED, message.to_owned());
        if let Some(token) = session_token(headers) {
            return match self.tokens.user(&token) {
                Ok(_) => Ok(ApiCaller { token: Some(token) }),
                Err(refused) => Err(unauthorized(refused.message())),
            };
        }
        if let Some((user, password)) = basic(headers) {
            return match self.admits(&user, &password) {
                true => Ok(ApiCaller { token: None }),
                false => Err(unauthorized(&format!("password authentication failed for user \"{user}\""))),
            };
        }
        match self.trust {
            true => Ok(ApiCaller { token: None }),
            false => Err(unauthorized(self.why_credentials())),
        }
    }

    fn admits(&self, user: &str, password: &str) -> bool {
        match self.passwords.trust() {
            true => self.trust,
            false => self.passwords.admits(user, password),
        }
    }

    fn why_credentials(&self) -> &'static str {
        match self.passwords.trust() {
            true => "the query API takes no calls on this address until postgres.users are configured",
            false => "log in (POST /api/v1/login) or send Basic credentials",
        }
    }
}

/// A login's credentials, as JSON or a form.
#[derive(Debug, Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// `POST /api/v1/login`.
pub(super) async fn login(State(cx): State<HttpContext>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let given = if content_type.starts_with("application/json") {
        serde_json::from_slice::<Login>(&body).ok().map(|l| (l.user, l.password))
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form_login(&body)
    } else {
        basic(&headers)
    };
    let auth = &cx.api;
    let user = match given {
        Some((user, password)) if auth.admits(&user, &password) => user,
        Some((user, _)) => return refused(StatusCode::UNAUTHORIZED, &format!("password authentication failed for user \"{user}\"")),
        None if auth.trust => "isobar".to_owned(),
        None => return refused(StatusCode::UNAUTHORIZED, "a login takes a user and password"),
    };
    let token = auth.tokens.issue(&Arc::from(user.as_str()));
    let seconds = auth.tokens.lifetime().as_secs();
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={seconds}");
    let mut response = json_response(StatusCode::OK, &json!({ "user": user, "expires_in_ms": auth.tokens.lifetime().as_millis() }));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /api/v1/logout`: ends the session the cookie names.
pub(super) async fn logout(State(cx): State<HttpContext>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        cx.api.tokens.revoke(&token);
    }
    let mut response = json_response(StatusCode::OK, &json!({ "logged_out": true }));
    let expired = HeaderValue::from_static("isobar_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, expired);
    response
}

/// The user and password of a form body (`user=...&password=...`).
fn form_login(body: &[u8]) -> Option<(String, String)> {
    let uri = format!("/?{}", std::str::from_utf8(body).ok()?).parse().ok()?;
    let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    field("user").zip(field("password"))
}

/// The session token a request carries: its cookie, or an `Authorization: Bearer` header.
fn session_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Some(token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
}

/// The user and password of a `Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, password))
}

fn refused(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": { "code": "28P01", "message": message } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("header"))).collect()
    }

    #[test]
    fn without_users_only_a_loopback_listener_trusts_callers() {
        let loopback = ApiAuth::new(Passwords::new(&[]).expect("no users"), 60_000, true);
        assert!(loopback.caller(&HeaderMap::new()).is_ok());
        let open = ApiAuth::new(Passwords::new(&[]).expect("no users"), 60_000, false);
        let (status, message) = open.caller(&HeaderMap::new()).expect_err("refused");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("postgres.users"), "{message}");
        assert!(open.caller(&headers(&[(header::AUTHORIZATION, "Basic YWI6Yw==")])).is_err(), "no password is anyone's");
    }

    #[test]
    fn a_session_token_is_read_from_the_cookie_or_a_bearer_header() {
        let auth = ApiAuth::new(Passwords::new(&[UserConfig { name: "ab".into(), password: "c".into() }]).expect("users"), 60_000, true);
        let token = auth.tokens().issue(&Arc::from("ab"));
        let cookie = format!("theme=dark; {COOKIE}={token}");
        for given in [headers(&[(header::COOKIE, &cookie)]), headers(&[(header::AUTHORIZATION, &format!("Bearer {token}"))])] {
            assert_eq!(auth.caller(&given).expect("a session").token.as_deref(), Some(token.as_str()));
        }
        assert!(auth.caller(&headers(&[(header::COOKIE, &format!("{COOKIE}=made-up"))])).is_err());
        assert!(auth.caller(&headers(&[(header::AUTHORIZATION, "Basic YWI6Yw==")])).expect("ab:c").token.is_none());
        assert!(auth.caller(&headers(&[(header::AUTHORIZATION, "Basic YWI6ZA==")])).is_err(), "ab:d");
        assert!(auth.caller(&HeaderMap::new()).is_err(), "users are configured");
    }
}
