//! Session tokens: what a client that authenticated once carries on its later calls (Flight
//! SQL's bearer token; the HTTP query API's cookie or bearer token), each with the SQL session
//! it keeps, so that `SET` in one call holds for the later ones, as on one Postgres connection.
//!
//! A token is 32 random bytes, URL-safe base64, valid for a fixed lifetime. At most
//! [`TOKENS_MAX`] are kept; past it, expired ones go, then the ones that expire first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use isobar_query::SessionState;
use parking_lot::Mutex;

/// Tokens kept at most.
const TOKENS_MAX: usize = 100_000;

/// Why a token is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Expired,
    Unknown,
}

impl Refused {
    /// What the client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refused::Expired => "the session token has expired: authenticate again",
            Refused::Unknown => "the session token is not valid: authenticate again",
        }
    }
}

/// A token handed out: whose, until when, and the settings of its session.
#[derive(Debug)]
struct Token {
    user: Arc<str>,
    expires: Instant,
    session: Option<SessionState>,
}

/// The tokens one listener handed out.
#[derive(Debug)]
pub(crate) struct Tokens {
    tokens: Mutex<HashMap<String, Token>>,
    lifetime: Duration,
}

impl Tokens {
    pub(crate) fn new(lifetime_ms: u64) -> Self {
        Self { tokens: Mutex::default(), lifetime: Duration::from_millis(lifetime_ms) }
    }

    /// How long a token is valid.
    pub(crate) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new token for `user`.
    pub(crate) fn issue(&self, user: &Arc<str>) -> String {
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        if tokens.len() >= TOKENS_MAX {
            tokens.retain(|_, t| t.expires > now);
        }
        if tokens.len() >= TOKENS_MAX {
            let mut by_expiry: Vec<(Instant, String)> = tokens.iter().map(|(name, t)| (t.expires, name.clone())).collect();
            by_expiry.sort_unstable();
            for (_, token) in by_expiry.into_iter().take(TOKENS_MAX / 10) {
                tokens.remove(&token);
            }
        }
        tokens.insert(token.clone(), Token { user: Arc::clone(user), expires: now + self.lifetime, session: None });
        token
    }

    /// The user `token` was handed out to, while it is valid.
    pub(crate) fn user(&self, token: &str) -> Result<Arc<str>, Refused> {
        match self.tokens.lock().get(token) {
            Some(t) if t.expires > Instant::now() => Ok(Arc::clone(&t.user)),
            Some(_) => Err(Refused::Expired),
            None => Err(Refused::Unknown),
        }
    }

    /// The settings of `token`'s session, once a call kept some.
    pub(crate) fn session(&self, token: &str) -> Option<SessionState> {
        self.tokens.lock().get(token).and_then(|t| t.session.clone())
    }

    /// Keeps `state` as `token`'s session.
    pub(crate) fn keep_session(&self, token: &str, state: SessionState) {
        if let Some(t) = self.tokens.lock().get_mut(token) {
            t.session = Some(state);
        }
    }

    /// Forgets `token` (a logout).
    pub(crate) fn revoke(&self, token: &str) {
        self.tokens.lock().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_until_it_expires_or_is_revoked() {
        let tokens = Tokens::new(60_000);
        let token = tokens.issue(&Arc::from("ab"));
        assert_eq!(tokens.user(&token).as_deref(), Ok("ab"));
        assert_eq!(tokens.user("made-up"), Err(Refused::Unknown));
        tokens.revoke(&token);
        assert_eq!(tokens.user(&token), Err(Refused::Unknown));
        let expired = Tokens::new(0);
        let token = expired.issue(&Arc::from("ab"));
        assert_eq!(expired.user(&token), Err(Refused::Expired));
    }
}
