//! Arrow Flight SQL: isobar's SQL for Arrow clients (ADBC, the Flight SQL JDBC driver,
//! Grafana's FlightSQL data source), on the query engine the Postgres wire protocol uses.
//!
//! Results go out as Arrow record batches as the query makes them, never collected first.
//! Statements follow the same allow-list, read-only rule, memory limit and timeout as on the
//! Postgres wire. Flight SQL has no connection state: a bearer token from the handshake is the
//! session (`SET` holds for the token's later calls), and a call without one has a session of
//! its own. `service.rs` implements arrow-flight's `FlightSqlService`, `statements.rs` keeps
//! prepared statements, `metadata.rs` answers the catalog calls, `ingest.rs` loads Arrow
//! batches, `auth.rs` checks who calls and keeps the tokens' sessions, `running.rs` lets
//! `CancelFlightInfo` stop a query.

mod auth;
mod ingest;
mod metadata;
mod running;
mod service;
mod statements;

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::error::DataFusionError;
use isobar_query::{Prepared, QueryEngine};
use tokio::net::TcpListener;
use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::config::{FlightConfig, UserConfig};
use crate::error::{Error, Result};
use crate::metrics::QueryMetrics;

pub(crate) use self::auth::FlightAuth;
use self::running::Running;
use self::service::IsobarFlight;
use self::statements::Statements;

/// What every Flight SQL call shares.
#[derive(Debug)]
pub(crate) struct FlightContext {
    engine: QueryEngine,
    auth: Arc<FlightAuth>,
    statements: Statements<Prepared>,
    running: Arc<Running>,
    metrics: Arc<QueryMetrics>,
}

impl FlightContext {
    pub(crate) fn new(engine: QueryEngine, config: &FlightConfig, users: &[UserConfig], metrics: Arc<QueryMetrics>) -> Result<Self> {
        Ok(Self {
            engine,
            auth: Arc::new(FlightAuth::new(users, config.token_lifetime_ms)?),
            statements: Statements::new(config.prepared_statements_max),
            running: Arc::default(),
            metrics,
        })
    }
}

/// Serves Flight SQL on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    context: FlightContext,
    config: FlightConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let auth = Arc::clone(&context.auth);
    let service = FlightServiceServer::new(IsobarFlight::new(context))
        .max_decoding_message_size(config.message_bytes_max)
        .max_encoding_message_size(usize::MAX);
    let service = tonic::service::interceptor::InterceptedService::new(service, move |request| auth.check(request));
    let mut builder = Server::builder()
        .concurrency_limit_per_connection(config.calls_max)
        .max_concurrent_streams(u32::try_from(config.calls_max).unwrap_or(u32::MAX));
    if let (Some(cert), Some(key)) = (&config.tls_cert_path, &config.tls_key_path) {
        let read =
            |path: &std::path::PathBuf| std::fs::read(path).map_err(|e| Error::Config(format!("flight: read {}: {e}", path.display())));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity)).map_err(|e| Error::Config(format!("flight: TLS: {e}")))?;
    }
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Config(format!("flight listener {addr:?}: {e}")))
}

/// The status a Flight SQL client sees for an error of isobar's.
pub(crate) fn status(e: isobar_query::Error) -> Status {
    use isobar_query::Error as E;
    use isobar_storage::Error as S;
    let message = e.to_string();
    match &e {
        E::Refused(_) => Status::permission_denied(message),
        E::ReadOnly(_) => Status::failed_precondition(message),
        E::InvalidSetting(_) | E::InvalidRows(_) => Status::invalid_argument(message),
        E::Unsupported(_) => Status::invalid_argument(message),
        E::Timeout(_) => Status::deadline_exceeded(message),
        E::DataFusion(df) => match df.find_root() {
            DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) | DataFusionError::External(_) => Status::internal(message),
            _ => Status::invalid_argument(message),
        },
        E::Storage(S::NoSuchTable(_)) => Status::not_found(message),
        E::Storage(S::TableExists(_)) => Status::already_exists(message),
        E::Storage(S::InvalidRequest(_)) => Status::invalid_argument(message),
        E::Storage(S::LimitExceeded(_) | S::DiskFull(_)) => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

/// [`status`] of an error met while rows were streamed.
pub(crate) fn stream_status(e: DataFusionError) -> Status {
    status(isobar_query::Error::from(e))
}
