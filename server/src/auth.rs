//! Who may connect over the Postgres wire protocol.
//!
//! With users in the configuration, every client authenticates with SCRAM-SHA-256 (what
//! libpq, psycopg, JDBC and pgx speak by default); passwords are salted and hashed once at
//! start-up and only the hashes are kept. With no users, isobar trusts every client, which
//! it allows only on a loopback listener (checked at start-up). With `require_tls`, a client
//! that did not negotiate TLS is refused before it authenticates.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::{Sink, SinkExt};

use crate::config::PostgresConfig;
use crate::error::{Error, Result};

/// The PostgreSQL version isobar reports; drivers pick catalog queries by it.
pub(crate) const SERVER_VERSION: &str = "16.6";

/// Salted SCRAM hashes of the configured users' passwords.
#[derive(Debug)]
struct Users {
    by_name: HashMap<String, SaltedHash>,
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.by_name.get(user) {
            Some((salt, hash)) => Ok(Password::new(Some(salt.clone()), hash.clone())),
            None => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!("password authentication failed for user \"{user}\""),
            )))),
        }
    }
}

/// A password's salt, and its SCRAM salted hash.
pub(crate) type SaltedHash = (Vec<u8>, Vec<u8>);

/// Each of `postgres.users` with a fresh salt and the SCRAM salted hash of its password (what
/// the Postgres and Flight SQL listeners check against); an empty password is refused.
pub(crate) fn salted_passwords(users: &[crate::config::UserConfig]) -> Result<HashMap<String, SaltedHash>> {
    let mut by_name = HashMap::new();
    for user in users {
        if user.password.is_empty() {
            return Err(Error::Config(format!("postgres.users: user {} has an empty password", user.name)));
        }
        let salt: [u8; 16] = rand::random();
        by_name.insert(user.name.clone(), (salt.to_vec(), gen_salted_password(&user.password, &salt, SCRAM_ITERATIONS)));
    }
    Ok(by_name)
}

/// The passwords of `postgres.users`, salted and hashed, for listeners that take a user and
/// password in clear over their own channel (Flight SQL's Basic header, the HTTP API's login).
/// With no users every caller is trusted, which isobar allows only on loopback listeners.
#[derive(Debug)]
pub(crate) struct Passwords(Option<HashMap<String, SaltedHash>>);

impl Passwords {
    pub(crate) fn new(users: &[crate::config::UserConfig]) -> Result<Self> {
        match users.is_empty() {
            true => Ok(Self(None)),
            false => salted_passwords(users).map(|by_name| Self(Some(by_name))),
        }
    }

    /// Whether every caller is trusted (no users configured).
    pub(crate) fn trust(&self) -> bool {
        self.0.is_none()
    }

    /// Whether `password` is `user`'s (always, when every caller is trusted).
    pub(crate) fn admits(&self, user: &str, password: &str) -> bool {
        let Some(by_name) = &self.0 else { return true };
        by_name.get(user).is_some_and(|(salt, hash)| constant_time_eq(&gen_salted_password(password, salt, SCRAM_ITERATIONS), hash))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Makes each connection's startup handler.
#[derive(Debug)]
pub(crate) struct Authenticator {
    users: Option<Arc<Users>>,
    connections: Arc<ConnectionManager>,
    require_tls: bool,
}

impl Authenticator {
    /// Hashes the configured users' passwords.
    pub(crate) fn new(config: &PostgresConfig, connections: Arc<ConnectionManager>) -> Result<Self> {
        // Config::parse refused trust beyond loopback, and require_tls without a certificate.
        let require_tls = config.require_tls;
        if config.users.is_empty() {
            return Ok(Self { users: None, connections, require_tls });
        }
        Ok(Self { users: Some(Arc::new(Users { by_name: salted_passwords(&config.users)? })), connections, require_tls })
    }

    /// A fresh handler for one connection (SCRAM keeps per-connection state).
    pub(crate) fn handler(&self) -> Startup {
        let method = match &self.users {
            None => Method::Trust(Trust { connections: Arc::clone(&self.connections) }),
            Some(users) => {
                let scram = ScramAuth::new(Arc::clone(users) as Arc<dyn AuthSource>);
                Method::Scram(
                    SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                        .with_scram(scram)
                        .with_connection_manager(Arc::clone(&self.connections)),
                )
            }
        };
        Startup { method, require_tls: self.require_tls }
    }
}

/// What isobar tells clients about itself at startup.
fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = SERVER_VERSION.to_owned();
    p
}

/// One connection's startup: trusted, or SCRAM; over TLS only when it is required.
pub(crate) struct Startup {
    method: Method,
    require_tls: bool,
}

enum Method {
    Trust(Trust),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this isobar listener requires TLS: connect with sslmode=require".into(),
            ))));
        }
        match &self.method {
            Method::Trust(t) => t.on_startup(client, message).await,
            Method::Scram(s) => s.on_startup(client, message).await,
        }
    }
}

/// Accepts every client: only on loopback, with no users configured.
pub(crate) struct Trust {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }

    /// pgwire's trusting handler reports its own version string; isobar's follows it, and
    /// clients keep the last value they are sent for a parameter.
    async fn post_startup<C>(&self, client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new("server_version".into(), SERVER_VERSION.into()))).await?;
        Ok(())
    }
}
