//! `isobar serve`: opens storage, starts the listeners, and shuts down cleanly.
//!
//! On SIGTERM or SIGINT the listeners stop accepting, connections get a grace period to
//! finish what they are doing, storage persists its buffer and closes, and the process
//! exits 0. Everything acknowledged before the signal is durable either way; the persist only
//! makes the next start faster.

use std::sync::Arc;
use std::time::Duration;

use isobar_ingest::emit;
use isobar_ingest::mqtt_broker::Broker;
use isobar_ingest::mqtt_listener::{self, MqttContext};
use isobar_ingest::publisher::{SimulateOptions, simulate};
use isobar_ingest::users::User;
use isobar_ingest::{Ingestor, Router, Users};
use isobar_ingest::{kinesis, mqtt_subscriber};
use isobar_query::QueryEngine;
use isobar_storage::Storage;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{IngestMetrics, QueryMetrics};
use crate::pg::PgHandlers;

/// Time connections get to finish after a shutdown signal, in milliseconds.
const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Final rollup windows waiting to be published; more are counted and not published.
const EMIT_QUEUE_MAX: usize = 100_000;

/// A simulated fleet publishing to the server's own MQTT listener (`isobar demo`).
#[derive(Debug, Clone)]
pub(crate) struct Demo {
    pub(crate) stations: usize,
    pub(crate) sensors_per_station: usize,
    pub(crate) rate_hz: f64,
}

/// Runs the server until a shutdown signal; with `demo`, a simulated fleet publishes to it.
/// Postgres wire connections are served on `query_runtime` (`query_runtime.rs`).
pub(crate) async fn serve(config: Config, demo: Option<Demo>, query_runtime: Handle) -> Result<()> {
    let storage_config = config.storage_config();
    let storage = tokio::task::spawn_blocking(move || Storage::open(storage_config))
        .await
        .map_err(|e| Error::Config(format!("storage open task: {e}")))??;
    for chunk in storage.quarantined() {
        tracing::error!("chunk quarantined at start-up, its rows are left out until it is restored: {chunk}");
    }
    let engine = QueryEngine::new(storage.clone(), config.query_config())?;
    let queries = Arc::new(QueryMetrics::default());
    let handlers = Arc::new(PgHandlers::new(&engine, &config.postgres, Arc::clone(&queries)).await?);
    let bind =
        |what: &'static str, addr| async move { TcpListener::bind(addr).await.map_err(|source| Error::Listen { what, addr, source }) };
    let tls = crate::tls::acceptor("postgres", config.postgres.tls_cert_path.as_ref(), config.postgres.tls_key_path.as_ref())?;
    let mqtt_tls = crate::tls::acceptor("mqtt", config.mqtt.tls_cert_path.as_ref(), config.mqtt.tls_key_path.as_ref())?;
    let router = Arc::new(Router::new(config.rules.clone()).map_err(|e| Error::Config(e.to_string()))?);
    let ingestor = Ingestor::new(storage.clone(), router)?;
    let pg = bind("postgres listener", config.postgres.listen).await?;
    let mqtt = bind("mqtt listener", config.mqtt.listen).await?;
    let http = bind("http listener", config.http.listen).await?;
    let flight = bind("flight listener", config.flight.listen).await?;
    let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    // Tests and scripts read these lines to find the ports.
    println!("isobar postgres listening on {}", local(&pg));
    println!("isobar mqtt listening on {}", local(&mqtt));
    let http_address = local(&http);
    println!("isobar http listening on {http_address}");
    println!("isobar flight sql listening on {}", local(&flight));
    println!("data in {}", config.data_dir.display());

    let ingest_metrics = Arc::new(IngestMetrics::default());
    crate::status::register(&engine, Arc::clone(&ingest_metrics));
    let http_users = Arc::new(Users::new(config.http.users.iter().map(|u| User::new(&u.name, &u.password)), Vec::new()));
    let http_context = crate::http::HttpContext {
        engine: engine.clone(),
        ingestor: ingestor.clone(),
        queries: Arc::clone(&queries),
        ingest: Arc::clone(&ingest_metrics),
        users: http_users,
        api: Arc::new(crate::http::ApiAuth::new(
            crate::auth::Passwords::new(&config.postgres.users)?,
            config.http.session_lifetime_ms,
            config.http.listen.ip().is_loopback(),
        )),
        query_runtime: query_runtime.clone(),
    };
    let http_task = tokio::spawn(crate::http::serve(http, http_context, config.http.connections_max));
    let flight_context = crate::flight::FlightContext::new(engine.clone(), &config.flight, &config.postgres.users, Arc::clone(&queries))?;
    let (flight_stop, flight_stopped) = tokio::sync::oneshot::channel::<()>();
    let flight_task = query_runtime.spawn(crate::flight::serve(flight, flight_context, config.flight.clone(), async {
        let _ = flight_stopped.await;
    }));
    let mut subscriptions = JoinSet::new();
    for spec in &config.subscriptions {
        subscriptions.spawn(mqtt_subscriber::run(spec.clone(), ingestor.clone(), Arc::clone(&ingest_metrics.subscriptions)));
    }
    for spec in &config.kinesis {
        // Checked when the configuration was read.
        let router = spec.router().map_err(|e| Error::Config(e.to_string()))?;
        let (metrics, status) = (Arc::clone(&ingest_metrics.kinesis), ingest_metrics.kinesis_status.clone());
        subscriptions.spawn(kinesis::run(spec.clone(), router, ingestor.clone(), metrics, status));
    }
    let demo_task = demo.map(|demo| start_demo(demo, local(&mqtt), local(&pg), http_address));
    let broker = Arc::new(Broker::new(config.mqtt.broker_limits()));
    if !config.emit.is_empty() {
        let targets = config
            .emit
            .iter()
            .map(|spec| match spec.broker {
                Some(_) => emit::Target::Broker(emit::broker::spawn(spec.clone())),
                None => emit::Target::Listener(Arc::clone(&broker)),
            })
            .collect();
        let (specs, windows, dropped) =
            (Arc::new(config.emit.clone()), storage.final_windows(EMIT_QUEUE_MAX), Arc::clone(&ingest_metrics.emit_dropped));
        std::thread::Builder::new()
            .name("isobar-emit".into())
            .spawn(move || emit::run(specs, targets, windows, dropped))
            .map_err(|e| Error::Config(format!("start the rollup emitter: {e}")))?;
    }
    let alert_context = crate::alerts::AlertContext {
        engine: engine.clone(),
        broker: Arc::clone(&broker),
        data_dir: config.data_dir.clone(),
        query_runtime: query_runtime.clone(),
    };
    let alert_store =
        crate::alerts::start(config.alerts.clone(), config.notifiers.clone(), alert_context, Arc::clone(&ingest_metrics.alerts))?;
    crate::status::register_alerts(&engine, alert_store);
    // Topics isobar publishes final windows and notifications to: no client may publish there.
    let reserved = config
        .emit
        .iter()
        .filter_map(emit::EmitSpec::reserved_topics)
        .chain(config.notifiers.iter().filter_map(crate::alerts::NotifierSpec::reserved_topics))
        .collect();
    let limits = config.mqtt.listener_limits();
    let context = MqttContext {
        ingestor,
        broker,
        metrics: Arc::clone(&ingest_metrics.mqtt),
        users: Arc::new(config.mqtt.users(reserved)),
        limits,
        connection_slots: Arc::new(Semaphore::new(limits.connections_max)),
    };
    let mqtt_task = tokio::spawn(mqtt_listener::serve(mqtt, context, mqtt_tls));
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Error::Config(format!("SIGTERM handler: {e}")))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Error::Config(format!("SIGINT handler: {e}")))?;
    let slots = Arc::new(Semaphore::new(config.postgres.connections_max));
    let mut connections = JoinSet::new();
    loop {
        // A connection slot first: at the limit, new clients wait in the listen backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(|e| Error::Config(e.to_string()))?,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        let accepted = tokio::select! {
            accepted = pg.accept() => accepted,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        // Registered again with the query runtime, whose threads then do all its work.
        let Ok(socket) = accepted.and_then(|(socket, _)| socket.into_std()) else { continue };
        let (handlers, tls) = (Arc::clone(&handlers), tls.clone());
        let connection = async move {
            if let Ok(socket) = TcpStream::from_std(socket) {
                let _ = datafusion_postgres::pgwire::tokio::process_socket(socket, tls, handlers).await;
            }
            drop(slot);
        };
        connections.spawn_on(connection, &query_runtime);
        while connections.try_join_next().is_some() {}
    }
    drop(pg);
    // Flight SQL stops taking calls; calls under way get the grace period below.
    let _ = flight_stop.send(());
    // Unacknowledged publishes are resent by their devices; acknowledged ones are durable.
    if let Some(task) = demo_task {
        task.abort();
    }
    subscriptions.abort_all();
    mqtt_task.abort();
    http_task.abort();
    println!("shutting down: waiting up to {SHUTDOWN_GRACE_MS} ms for {} connections", connections.len());
    let drained =
        tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        connections.abort_all();
    }
    match tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), flight_task).await {
        Ok(Ok(Err(e))) => tracing::warn!("flight listener: {e}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("flight calls still running after the grace period"),
    }
    drop(handlers);
    drop(engine);
    tokio::task::spawn_blocking(move || storage.close(true)).await.map_err(|e| Error::Config(format!("storage close task: {e}")))??;
    println!("isobar stopped");
    Ok(())
}

/// Starts the demo's fleet publishing to `mqtt` and tells the user how to look at it.
fn start_demo(demo: Demo, mqtt: String, pg: String, http: String) -> tokio::task::JoinHandle<()> {
    let sensors = demo.stations * demo.sensors_per_station;
    let port = pg.rsplit(':').next().unwrap_or("5433").to_owned();
    println!(
        "\nisobar demo: {sensors} simulated weather sensors publish to the MQTT listener ({} Hz each);\n\
         the seed rule turns them into rows of table weather. Open the console at\n\n  \
         http://{http}/\n\n\
         or look at them with psql:\n\n  \
         psql -h 127.0.0.1 -p {port} -U isobar\n\n  \
         SELECT sensor, count(*), round(avg(sensor_value), 2) AS avg FROM weather GROUP BY sensor ORDER BY sensor;\n  \
         SELECT sensor_id, last(sensor_value, time) AS latest FROM weather WHERE sensor = 'temperature' GROUP BY sensor_id ORDER BY sensor_id LIMIT 5;\n  \
         SELECT time, sensor_id, sensor_value_avg, sensor_value_count, final FROM weather_1m ORDER BY time DESC, sensor_id LIMIT 5;\n\n\
         weather_1m is the continuous 1-minute rollup of weather. Messages no rule could store are in\n  \
         system.ingest_errors. Ctrl-C stops isobar.\n",
        demo.rate_hz
    );
    let options = SimulateOptions {
        broker: mqtt,
        stations: demo.stations,
        sensors: demo.sensors_per_station,
        rate_hz: demo.rate_hz,
        duration_s: None,
        seed: 42,
        qos: 1,
        connections: 1,
        window: 1000,
        time_scale: 1.0,
    };
    tokio::spawn(async move {
        if let Err(e) = simulate(&options).await {
            tracing::warn!("demo fleet stopped: {e}");
        }
    })
}
