//! The counters `/metrics` exposes, in Prometheus text format: storage's (rows, fsyncs,
//! persists), the query front end's (statements, errors, time to answer), the MQTT
//! listener's (connections, messages, messages not stored) and the line protocol writes'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use isobar_ingest::kinesis::{KinesisMetrics, KinesisStatus};
use isobar_ingest::mqtt_listener::MqttMetrics;
use isobar_storage::LatencyHistogram;

/// Ingest's counters: the MQTT listener's, the broker subscriptions', the HTTP line protocol
/// writes'; and the emitter's.
#[derive(Debug, Default)]
pub(crate) struct IngestMetrics {
    pub(crate) mqtt: Arc<MqttMetrics>,
    pub(crate) subscriptions: Arc<MqttMetrics>,
    /// Every Kinesis source's counters, and each shard's status.
    pub(crate) kinesis: Arc<KinesisMetrics>,
    pub(crate) kinesis_status: KinesisStatus,
    /// Final rollup windows an external broker's full outbox could not take.
    pub(crate) emit_dropped: Arc<AtomicU64>,
    /// The alerts' judge and deliverer.
    pub(crate) alerts: Arc<crate::alerts::AlertMetrics>,
    /// Line protocol write requests over HTTP.
    pub(crate) line_writes: AtomicU64,
    /// Points those requests wrote durably.
    pub(crate) line_points_written: AtomicU64,
    /// Lines those requests could not write (did not parse, or storage refused the point).
    pub(crate) line_lines_rejected: AtomicU64,
}
use isobar_query::QueryEngine;

/// Statements run over the Postgres wire protocol.
#[derive(Debug, Default)]
pub(crate) struct QueryMetrics {
    queries: AtomicU64,
    errors: AtomicU64,
    /// Time from a statement's arrival to its answer starting, summed, in microseconds.
    duration_us: AtomicU64,
}

impl QueryMetrics {
    /// Counts one statement that arrived at `started`.
    pub(crate) fn record(&self, started: Instant, failed: bool) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(u64::from(failed), Ordering::Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.duration_us.fetch_add(us, Ordering::Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    *out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
}

/// A histogram of durations, in seconds.
fn histogram(out: &mut String, name: &str, help: &str, histogram: &LatencyHistogram) {
    let snapshot = histogram.snapshot();
    *out += &format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
    for (le_us, count) in &snapshot.cumulative {
        *out += &format!("{name}_bucket{{le=\"{}\"}} {count}\n", *le_us as f64 / 1e6);
    }
    *out += &format!("{name}_bucket{{le=\"+Inf\"}} {}\n", snapshot.count);
    *out += &format!("{name}_sum {}\n{name}_count {}\n", snapshot.sum_us as f64 / 1e6, snapshot.count);
}

/// The Prometheus exposition of every counter.
pub(crate) fn render(engine: &QueryEngine, queries: &QueryMetrics, ingest: &IngestMetrics) -> String {
    let storage = engine.storage();
    let (mqtt, subs) = (&ingest.mqtt, &ingest.subscriptions);
    let m = storage.metrics();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let health = storage.health();
    out += "# HELP isobar_storage_health Whether the engine is in this state (1) or not (0): ok; background_failing \
            (persists or other background work fail and are retried); writes_refused (a WAL write or fsync failed); disk_full \
            (free space below storage.disk_free_min_bytes, writes refused until it is freed).\n";
    out += "# TYPE isobar_storage_health gauge\n";
    for state in ["ok", "background_failing", "writes_refused", "disk_full"] {
        out += &format!("isobar_storage_health{{state=\"{state}\"}} {}\n", u8::from(health.name() == state));
    }
    out += "# HELP isobar_chunks_quarantined Chunks left out at start-up because they failed their checks.\n";
    out += &format!("# TYPE isobar_chunks_quarantined gauge\nisobar_chunks_quarantined {}\n", storage.quarantined().len());
    counter(&mut out, "isobar_rows_written_total", "Rows written durably.", load(&m.rows_written));
    counter(&mut out, "isobar_rows_rejected_total", "Rows rejected, with a reason, by schema checks or limits.", load(&m.rows_rejected));
    counter(&mut out, "isobar_wal_fsyncs_total", "Synced WAL writes (one per commit group).", load(&m.wal_fsyncs));
    counter(&mut out, "isobar_persists_total", "Write buffer persists into chunks.", load(&m.persists));
    counter(&mut out, "isobar_compactions_total", "Chunk compactions.", load(&m.compactions));
    counter(
        &mut out,
        "isobar_background_failures_total",
        "Persists, compactions or rollup rounds that failed.",
        load(&m.background_failures),
    );
    counter(&mut out, "isobar_writer_waits_total", "Writes that waited for the write buffer to drain.", load(&m.writer_waits));
    counter(
        &mut out,
        "isobar_rollup_windows_final_total",
        "Rollup windows written final, and again after late rows.",
        load(&m.rollup_windows_final),
    );
    counter(
        &mut out,
        "isobar_rollup_windows_unpublished_total",
        "Final rollup windows not published because the emit queue was full.",
        load(&m.rollup_windows_unwatched),
    );
    counter(
        &mut out,
        "isobar_emit_windows_dropped_total",
        "Final rollup windows not published because an external broker was away long enough to fill its outbox.",
        load(&ingest.emit_dropped),
    );
    let alerts = &ingest.alerts;
    for (name, help, value) in [
        ("isobar_alert_windows_judged_total", "Series windows alerts judged.", &alerts.windows_judged),
        ("isobar_alert_judge_errors_total", "Alert judgements whose query failed (retried a second later).", &alerts.judge_errors),
        ("isobar_alert_notifications_sent_total", "Alert notifications delivered.", &alerts.notifications_sent),
        (
            "isobar_alert_notification_failures_total",
            "Attempts at delivering an alert notification that failed.",
            &alerts.notification_failures,
        ),
        (
            "isobar_alert_notifications_given_up_total",
            "Alert notifications given up after their attempts or to keep the outbox bounded.",
            &alerts.notifications_given_up,
        ),
    ] {
        counter(&mut out, name, help, load(value));
    }
    counter(
        &mut out,
        "isobar_latest_reads_total",
        "Table reads answered from the newest row of each series instead of every row.",
        load(&m.latest_reads),
    );
    if let Some(cold) = storage.cold_metrics() {
        let backlog = storage.cold_backlog_chunks();
        out += "# HELP isobar_cold_backlog_chunks Chunks due to move to the cold store that have not yet.
";
        out += &format!("# TYPE isobar_cold_backlog_chunks gauge\nisobar_cold_backlog_chunks {backlog}\n");
        counter(&mut out, "isobar_cold_chunks_moved_total", "Chunks moved to the cold store.", load(&cold.chunks_moved));
        counter(&mut out, "isobar_cold_gets_total", "GET requests to the cold store.", load(&cold.gets));
        counter(&mut out, "isobar_cold_get_bytes_total", "Bytes fetched from the cold store.", load(&cold.bytes_fetched));
        counter(&mut out, "isobar_cold_puts_total", "Chunk uploads to the cold store.", load(&cold.puts));
        counter(&mut out, "isobar_cold_put_bytes_total", "Bytes uploaded to the cold store.", load(&cold.bytes_uploaded));
        counter(&mut out, "isobar_cold_cache_hits_total", "Cold blocks read from the local cache.", load(&cold.cache_hits));
    }
    counter(&mut out, "isobar_queries_total", "SQL statements received over the Postgres wire protocol.", load(&queries.queries));
    counter(&mut out, "isobar_query_errors_total", "SQL statements answered with an error.", load(&queries.errors));
    let (reused, planned) = engine.plans_reused();
    counter(
        &mut out,
        "isobar_query_plans_reused_total",
        "Queries that ran an optimized plan kept from an earlier run of the same plan.",
        reused,
    );
    counter(&mut out, "isobar_query_plans_made_total", "Queries whose optimized plan could be kept and was made anew.", planned);
    let seconds = load(&queries.duration_us) as f64 / 1e6;
    out += "# HELP isobar_query_duration_seconds Time from a statement's arrival to its answer starting.\n";
    out += &format!("# TYPE isobar_query_duration_seconds summary\nisobar_query_duration_seconds_sum {seconds}\n");
    out += &format!("isobar_query_duration_seconds_count {}\n", load(&queries.queries));
    histogram(
        &mut out,
        "isobar_write_duration_seconds",
        "Time a write took in storage, from its preparation until its rows were durable and readable.",
        &m.write_latency,
    );
    histogram(
        &mut out,
        "isobar_mqtt_ack_duration_seconds",
        "Time from reading MQTT publishes off a connection to sending their acknowledgements.",
        &mqtt.ack_latency,
    );
    counter(&mut out, "isobar_mqtt_connections_total", "MQTT connections accepted.", load(&mqtt.connections));
    counter(&mut out, "isobar_mqtt_messages_total", "MQTT publishes received.", load(&mqtt.messages));
    counter(
        &mut out,
        "isobar_mqtt_rows_written_total",
        "Rows the rules made from MQTT publishes, written durably.",
        load(&mqtt.rows_written),
    );
    counter(
        &mut out,
        "isobar_mqtt_messages_rejected_total",
        "MQTT publishes no rule could store (dead letters).",
        load(&mqtt.messages_rejected),
    );
    counter(
        &mut out,
        "isobar_mqtt_denied_total",
        "MQTT publishes and subscriptions a client's access list does not allow.",
        load(&mqtt.denied),
    );
    counter(
        &mut out,
        "isobar_mqtt_connections_refused_total",
        "MQTT connections refused because the listener served its most.",
        load(&mqtt.connections_refused),
    );
    counter(&mut out, "isobar_line_writes_total", "Line protocol write requests over HTTP.", load(&ingest.line_writes));
    counter(&mut out, "isobar_line_points_written_total", "Points line protocol writes wrote durably.", load(&ingest.line_points_written));
    counter(
        &mut out,
        "isobar_line_lines_rejected_total",
        "Lines of line protocol writes that did not parse or that storage refused.",
        load(&ingest.line_lines_rejected),
    );
    counter(&mut out, "isobar_subscription_connects_total", "Connections to external brokers accepted.", load(&subs.connections));
    counter(&mut out, "isobar_subscription_messages_total", "Messages delivered by external brokers.", load(&subs.messages));
    counter(
        &mut out,
        "isobar_subscription_rows_written_total",
        "Rows the rules made from delivered messages, written durably.",
        load(&subs.rows_written),
    );
    counter(
        &mut out,
        "isobar_subscription_messages_rejected_total",
        "Delivered messages no rule could store (dead letters).",
        load(&subs.messages_rejected),
    );
    let kinesis = &ingest.kinesis;
    counter(
        &mut out,
        "isobar_kinesis_records_total",
        "Kinesis records read (a KPL aggregate counts its user records).",
        load(&kinesis.records),
    );
    counter(
        &mut out,
        "isobar_kinesis_rows_written_total",
        "Rows the rules made from Kinesis records, written durably.",
        load(&kinesis.rows_written),
    );
    counter(
        &mut out,
        "isobar_kinesis_records_rejected_total",
        "Kinesis records no rule could store (dead letters).",
        load(&kinesis.records_rejected),
    );
    counter(
        &mut out,
        "isobar_kinesis_throttles_total",
        "Kinesis calls refused for throughput and retried after a backoff.",
        load(&kinesis.throttles),
    );
    counter(&mut out, "isobar_kinesis_errors_total", "Kinesis calls and stores that failed and were retried.", load(&kinesis.errors));
    out += "# HELP isobar_kinesis_millis_behind_latest How far each shard being read is behind its stream's newest record.\n";
    out += "# TYPE isobar_kinesis_millis_behind_latest gauge\n";
    for ((stream, shard), status) in ingest.kinesis_status.shards() {
        if let (Some(behind), isobar_ingest::kinesis::ShardState::Reading) = (status.millis_behind, status.state) {
            out += &format!("isobar_kinesis_millis_behind_latest{{stream=\"{stream}\",shard=\"{shard}\"}} {behind}\n");
        }
    }
    out
}
