//! Who may call the Flight SQL listener: the Postgres listener's users.
//!
//! A client sends `authorization: Basic <base64(user:password)>` on the handshake (ADBC,
//! the JDBC driver and Grafana do) and gets a bearer token back in the response's
//! `authorization` header, valid for `flight.token_lifetime_ms`; later calls carry
//! `authorization: Bearer <token>`. Basic credentials are also taken on any call, for clients
//! that send them every time. Passwords are salted and hashed as for SCRAM at start-up; only
//! the hashes are kept (`auth::Passwords`), and tokens are `tokens::Tokens`. With no users configured every call is trusted, which isobar allows
//! only on a loopback listener (checked when the configuration is read); the handshake still
//! hands out a token, since clients given credentials expect one.
//!
//! A token is also a session: `SET` in one call holds for the later calls with the same token,
//! as on one Postgres connection. Calls without a token each have a session of their own.

use std::sync::Arc;

use base64::Engine;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use isobar_query::SessionState;

use crate::auth::Passwords;
use crate::config::UserConfig;
use crate::error::Result;
use crate::tokens::Tokens;

/// The user a call was authenticated as; in each request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Arc<str>);

/// The users and the tokens handed out to them.
#[derive(Debug)]
pub(crate) struct FlightAuth {
    passwords: Passwords,
    tokens: Tokens,
}

impl FlightAuth {
    /// Hashes the users' passwords.
    pub(crate) fn new(users: &[UserConfig], token_lifetime_ms: u64) -> Result<Self> {
        Ok(Self { passwords: Passwords::new(users)?, tokens: Tokens::new(token_lifetime_ms) })
    }

    /// Checks a call's credentials, and records who made it in the request's extensions.
    pub(crate) fn check(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// A new bearer token for the caller.
    pub(crate) fn issue(&self, caller: &Caller) -> String {
        self.tokens.issue(&caller.0)
    }

    /// The settings of the session of the bearer token `request` carries, if it carries one.
    pub(crate) fn session<T>(&self, request: &Request<T>) -> Option<SessionState> {
        self.tokens.session(bearer(request.metadata())?)
    }

    /// Keeps `state` as the session of the bearer token `metadata` carries; nothing without one.
    pub(crate) fn keep_session(&self, metadata: &MetadataMap, state: SessionState) {
        if let Some(token) = bearer(metadata) {
            self.tokens.keep_session(token, state);
        }
    }

    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        // Some clients send the header twice, with the same value.
        let header = metadata.get_all("authorization").iter().find_map(|v| v.to_str().ok());
        if self.passwords.trust() {
            let name = header.and_then(|h| basic(h).ok()).map_or_else(|| "isobar".to_owned(), |(user, _)| user);
            return Ok(Caller(Arc::from(name)));
        }
        let Some(header) = header else {
            return Err(Status::unauthenticated("no credentials: authenticate with the handshake or send an authorization header"));
        };
        if let Some(token) = strip_scheme(header, "Bearer") {
            return self.tokens.user(token).map(Caller).map_err(|refused| Status::unauthenticated(refused.message()));
        }
        let (user, password) = basic(header)?;
        match self.passwords.admits(&user, &password) {
            true => Ok(Caller(Arc::from(user))),
            false => Err(Status::unauthenticated(format!("password authentication failed for user \"{user}\""))),
        }
    }
}

/// The bearer token of a call's `authorization` header.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata.get_all("authorization").iter().find_map(|v| strip_scheme(v.to_str().ok()?, "Bearer"))
}

/// `header` without its `scheme` and the space after it, if it has that scheme.
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The user and password of a `Basic` header; base64 with or without padding (ADBC leaves it
/// out).
fn basic(header: &str) -> Result<(String, String), Status> {
    let encoded = strip_scheme(header, "Basic").ok_or_else(|| Status::unauthenticated("authorization must be Basic or Bearer"))?;
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| Status::unauthenticated("Basic credentials are not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| Status::unauthenticated("Basic credentials are not UTF-8"))?;
    let (user, password) = text.split_once(':').ok_or_else(|| Status::unauthenticated("Basic credentials must be user:password"))?;
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request.metadata_mut().append("authorization", MetadataValue::try_from(value).expect("header"));
        }
        request
    }

    fn users() -> FlightAuth {
        FlightAuth::new(&[UserConfig { name: "ab".into(), password: "c".into() }], 60_000).expect("users")
    }

    #[test]
    fn basic_credentials_with_or_without_padding_are_exchanged_for_a_token() {
        let auth = users();
        // ADBC sends `ab:c` unpadded.
        for header in ["Basic YWI6Yw", "Basic YWI6Yw==", "basic YWI6Yw=="] {
            let checked = auth.check(request(Some(header))).expect("valid credentials");
            let caller = checked.extensions().get::<Caller>().expect("caller").clone();
            assert_eq!(&*caller.0, "ab");
            let token = auth.issue(&caller);
            let mut again = request(Some(&format!("Bearer {token}")));
            again.metadata_mut().append("authorization", MetadataValue::try_from(format!("Bearer {token}")).expect("header"));
            assert!(auth.check(again).is_ok(), "a repeated bearer header is taken");
        }
    }

    #[test]
    fn wrong_missing_or_unknown_credentials_are_unauthenticated() {
        let auth = users();
        let basic = |user_password: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password));
        for header in [None, Some(basic("ab:wrong")), Some(basic("nobody:c")), Some("Bearer made-up".into()), Some("Digest x".into())] {
            let status = auth.check(request(header.as_deref())).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{header:?}");
        }
    }

    #[test]
    fn an_expired_token_is_refused() {
        let auth = FlightAuth::new(&[UserConfig { name: "ab".into(), password: "c".into() }], 0).expect("users");
        let token = auth.issue(&Caller(Arc::from("ab")));
        let status = auth.check(request(Some(&format!("Bearer {token}")))).expect_err("expired");
        assert!(status.message().contains("expired"), "{}", status.message());
    }

    #[test]
    fn without_users_every_call_is_trusted() {
        let auth = FlightAuth::new(&[], 60_000).expect("no users");
        assert!(auth.check(request(None)).is_ok());
        assert!(auth.check(request(Some("Basic YWI6Yw"))).is_ok());
    }
}
