//! isobar's configuration: one TOML file, every key optional, defaults for running embedded
//! on one machine. `docs/configuration.md` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Where isobar keeps its data (catalog, WAL and chunks).
    pub(crate) data_dir: PathBuf,
    /// IoT rules mapping MQTT messages to table rows.
    pub(crate) rules: Vec<isobar_ingest::RuleSpec>,
    /// External brokers to subscribe to; their messages go through the same rules.
    pub(crate) subscriptions: Vec<isobar_ingest::mqtt_subscriber::SubscriptionSpec>,
    /// Amazon Kinesis streams consumed into tables, each through its own rules.
    pub(crate) kinesis: Vec<isobar_ingest::kinesis::KinesisSpec>,
    /// Final rollup windows published as JSON to the MQTT listener's subscribers.
    pub(crate) emit: Vec<isobar_ingest::emit::EmitSpec>,
    /// Conditions on rollup windows that notify when a series breaches them.
    pub(crate) alerts: Vec<crate::alerts::AlertSpec>,
    /// Where alerts send their notifications.
    pub(crate) notifiers: Vec<crate::alerts::NotifierSpec>,
    pub(crate) postgres: PostgresConfig,
    pub(crate) flight: FlightConfig,
    pub(crate) mqtt: MqttConfig,
    pub(crate) http: HttpConfig,
    pub(crate) query: QuerySection,
    pub(crate) storage: StorageSection,
}

/// The Postgres wire protocol listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PostgresConfig {
    pub(crate) listen: SocketAddr,
    /// Connections served at once; more wait in the listen backlog.
    pub(crate) connections_max: usize,
    /// Users who may connect (SCRAM-SHA-256). None: every client is trusted, which isobar
    /// allows only on a loopback listener.
    pub(crate) users: Vec<UserConfig>,
    /// PEM certificate chain for TLS; TLS is on when this and `tls_key_path` are set.
    pub(crate) tls_cert_path: Option<PathBuf>,
    /// PEM private key for TLS.
    pub(crate) tls_key_path: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS (needs the certificate and key).
    pub(crate) require_tls: bool,
}

/// The Arrow Flight SQL listener. Its users are the Postgres listener's (`postgres.users`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FlightConfig {
    pub(crate) listen: SocketAddr,
    /// Calls served at once on one connection; more wait.
    pub(crate) calls_max: usize,
    /// Largest message a client may send (a batch of parameters or of rows to load), in bytes.
    pub(crate) message_bytes_max: usize,
    /// How long a bearer token from the handshake stays valid, in milliseconds.
    pub(crate) token_lifetime_ms: u64,
    /// Prepared statements kept open over all clients; past it, the least recently used close.
    pub(crate) prepared_statements_max: usize,
    /// PEM certificate chain for TLS; TLS is on when this and `tls_key_path` are set.
    pub(crate) tls_cert_path: Option<PathBuf>,
    /// PEM private key for TLS.
    pub(crate) tls_key_path: Option<PathBuf>,
}

/// One user of a listener (Postgres or MQTT).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserConfig {
    pub(crate) name: String,
    pub(crate) password: String,
}

/// The MQTT listener devices publish to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MqttConfig {
    pub(crate) listen: SocketAddr,
    /// Devices that may connect, by user name and password, with what each may publish and
    /// subscribe to; none: any device, on loopback only.
    pub(crate) users: Vec<MqttUserConfig>,
    /// Connections served at once; more are refused at CONNECT.
    pub(crate) connections_max: usize,
    /// Topic filters one connection may subscribe to.
    pub(crate) subscriptions_per_client_max: usize,
    /// Topics with a retained message.
    pub(crate) retained_messages_max: usize,
    /// Payload bytes of all retained messages.
    pub(crate) retained_bytes_max: usize,
    /// Payload bytes queued for one subscriber before it is disconnected as too slow.
    pub(crate) subscriber_queue_bytes_max: usize,
    /// How long a client that asked for no keep-alive may stay silent, in milliseconds.
    pub(crate) idle_timeout_ms: u64,
    /// PEM certificate chain; with `tls_key_path`, the listener speaks only MQTT over TLS.
    pub(crate) tls_cert_path: Option<PathBuf>,
    /// PEM private key for TLS.
    pub(crate) tls_key_path: Option<PathBuf>,
}

/// One MQTT user, with its access lists.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttUserConfig {
    pub(crate) name: String,
    pub(crate) password: String,
    /// Topic filters it may publish to (`%u`: its name, `%c`: its client id); unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) publish: Option<Vec<String>>,
    /// Topic filters it may subscribe within; unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subscribe: Option<Vec<String>>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        let (listener, broker) =
            (isobar_ingest::mqtt_listener::ListenerLimits::default(), isobar_ingest::mqtt_broker::BrokerLimits::default());
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            users: Vec::new(),
            connections_max: listener.connections_max,
            subscriptions_per_client_max: broker.subscriptions_per_client_max,
            retained_messages_max: broker.retained_messages_max,
            retained_bytes_max: broker.retained_bytes_max,
            subscriber_queue_bytes_max: broker.subscriber_queue_bytes_max,
            idle_timeout_ms: listener.idle_timeout_ms,
            tls_cert_path: None,
            tls_key_path: None,
        }
    }
}

impl MqttConfig {
    /// The listener's users, with their access lists; `reserved` are the topics isobar
    /// publishes itself.
    pub(crate) fn users(&self, reserved: Vec<isobar_ingest::topic::TopicFilter>) -> isobar_ingest::Users {
        let users = self.users.iter().map(|u| isobar_ingest::users::User {
            name: u.name.clone(),
            password: u.password.clone(),
            publish: u.publish.clone(),
            subscribe: u.subscribe.clone(),
        });
        isobar_ingest::Users::new(users, reserved)
    }

    /// The listener's limits.
    pub(crate) fn listener_limits(&self) -> isobar_ingest::mqtt_listener::ListenerLimits {
        isobar_ingest::mqtt_listener::ListenerLimits { connections_max: self.connections_max, idle_timeout_ms: self.idle_timeout_ms }
    }

    /// The broker's limits.
    pub(crate) fn broker_limits(&self) -> isobar_ingest::mqtt_broker::BrokerLimits {
        isobar_ingest::mqtt_broker::BrokerLimits {
            subscriptions_per_client_max: self.subscriptions_per_client_max,
            subscriber_queue_bytes_max: self.subscriber_queue_bytes_max,
            retained_messages_max: self.retained_messages_max,
            retained_bytes_max: self.retained_bytes_max,
        }
    }
}

/// The HTTP listener (`/health`, `/metrics`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpConfig {
    pub(crate) listen: SocketAddr,
    /// Connections served at once; a client past the cap gets 503.
    pub(crate) connections_max: usize,
    /// Users whose basic auth a request must carry; none: any client, on loopback only. (The
    /// query API, `/api/v1/`, takes `postgres.users` instead.)
    pub(crate) users: Vec<UserConfig>,
    /// How long a query API session (its login cookie) stays valid, in milliseconds.
    pub(crate) session_lifetime_ms: u64,
}

/// Limits on queries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QuerySection {
    /// Memory one query may hold, in bytes.
    pub(crate) memory_limit_bytes: usize,
    /// Memory all running queries together may hold, in bytes.
    pub(crate) memory_pool_bytes: usize,
    /// Time one query may run, in milliseconds.
    pub(crate) timeout_ms: u64,
    /// Worker threads of the query runtime; 0: one per core.
    pub(crate) threads: usize,
    /// How much lower than ingest's the query threads' CPU priority is, as a nice increment
    /// (0 to 19; 0: the same priority).
    pub(crate) nice: i32,
}

/// Storage engine settings that operators tune.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageSection {
    /// Longest a write waits for writes being prepared to share its fsync, in microseconds.
    pub(crate) group_commit_window_us: u64,
    /// Memory the write buffer may use; at the limit, writers wait for a persist.
    pub(crate) write_buffer_bytes_max: u64,
    /// Buffered bytes that start a persist into chunks.
    pub(crate) persist_buffer_bytes: u64,
    /// Oldest age of unpersisted data before a persist starts anyway, in milliseconds.
    pub(crate) persist_interval_ms: u64,
    /// Width of a time partition (every chunk covers one), in milliseconds.
    pub(crate) partition_duration_ms: u64,
    /// Distinct tag sets one table may hold.
    pub(crate) series_per_table_max: usize,
    /// Bytes of one string value (tag or field).
    pub(crate) string_bytes_max: usize,
    /// Window of every table's rollup table, in milliseconds; 0 turns rollups off.
    pub(crate) rollup_interval_ms: u64,
    /// Coarser rollups of every table, each built from the one before, in milliseconds.
    pub(crate) rollup_coarser_intervals_ms: Vec<u64>,
    /// Per table, its own chain of rollup intervals (finest first) in place of the above.
    pub(crate) rollup_table_intervals_ms: std::collections::BTreeMap<String, Vec<u64>>,
    /// How far behind the newest event time a rollup window still takes rows before it is final.
    pub(crate) rollup_lateness_ms: u64,
    /// How long raw tables keep rows, in milliseconds; 0 keeps them forever.
    pub(crate) retention_ms: u64,
    /// How long rollup tables keep windows, in milliseconds; 0 keeps them forever.
    pub(crate) rollup_retention_ms: u64,
    /// Per table, its own retention in milliseconds in place of the two above.
    pub(crate) table_retention_ms: std::collections::BTreeMap<String, u64>,
    /// How far ahead of the wall clock a reading's time may be, in milliseconds; 0: no limit.
    pub(crate) future_tolerance_ms: u64,
    /// Writes are refused while the data directory's disk has less free space; 0: no check.
    pub(crate) disk_free_min_bytes: u64,
    /// Age after which raw tables' chunks move to the cold store, in milliseconds; 0: never.
    pub(crate) cold_after_ms: u64,
    /// The same for rollup tables.
    pub(crate) rollup_cold_after_ms: u64,
    /// Per table, its own age in place of the two above.
    pub(crate) table_cold_after_ms: std::collections::BTreeMap<String, u64>,
    /// Local disk for cold chunks' blocks read recently, in bytes.
    pub(crate) cold_cache_bytes_max: u64,
    /// Tables whose closed days are written as Parquet to the cold store's `lake/` prefix.
    pub(crate) lake_tables: Vec<String>,
    /// How long after a day ends (by its table's clock) it is written to the lake, in ms.
    pub(crate) lake_delay_ms: u64,
    /// Where cold chunks go.
    pub(crate) cold: ColdSection,
}

/// The cold store: a local directory, or an S3 bucket when `bucket` is set. Empty strings are
/// unset.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ColdSection {
    /// A directory; empty: `<data_dir>/cold`.
    pub(crate) dir: String,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) region: String,
    /// A server other than AWS's, e.g. `http://127.0.0.1:5000`.
    pub(crate) endpoint: String,
    /// Credentials; empty: from the environment (`AWS_ACCESS_KEY_ID`, ..., instance roles).
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    /// Plain HTTP to `endpoint`.
    pub(crate) allow_http: bool,
}

impl ColdSection {
    fn store(&self) -> isobar_storage::ColdStoreConfig {
        let set = |s: &String| (!s.is_empty()).then(|| s.clone());
        if self.bucket.is_empty() {
            return isobar_storage::ColdStoreConfig::Local(set(&self.dir).map(PathBuf::from));
        }
        isobar_storage::ColdStoreConfig::S3(isobar_storage::S3Config {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: set(&self.region),
            endpoint: set(&self.endpoint),
            access_key_id: set(&self.access_key_id),
            secret_access_key: set(&self.secret_access_key),
            allow_http: self.allow_http,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./isobar-data"),
            rules: Vec::new(),
            subscriptions: Vec::new(),
            kinesis: Vec::new(),
            emit: Vec::new(),
            alerts: Vec::new(),
            notifiers: Vec::new(),
            postgres: PostgresConfig::default(),
            flight: FlightConfig::default(),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            query: QuerySection::default(),
            storage: StorageSection::default(),
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            connections_max: 256,
            users: Vec::new(),
            tls_cert_path: None,
            tls_key_path: None,
            require_tls: false,
        }
    }
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8815)),
            calls_max: 256,
            message_bytes_max: 64 << 20,
            token_lifetime_ms: 24 * 3_600_000,
            prepared_statements_max: 4_096,
            tls_cert_path: None,
            tls_key_path: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8086)),
            connections_max: 64,
            users: Vec::new(),
            session_lifetime_ms: 12 * 3_600_000,
        }
    }
}

impl Default for QuerySection {
    fn default() -> Self {
        let q = isobar_query::QueryConfig::default();
        Self {
            memory_limit_bytes: q.memory_limit_bytes,
            memory_pool_bytes: q.memory_pool_bytes,
            timeout_ms: q.timeout_ms,
            threads: 0,
            nice: 10,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        let s = isobar_storage::StorageConfig::new(".");
        Self {
            group_commit_window_us: s.group_commit_window_us,
            write_buffer_bytes_max: s.write_buffer_bytes_max,
            persist_buffer_bytes: s.persist_buffer_bytes,
            persist_interval_ms: s.persist_interval_ms,
            partition_duration_ms: s.partition_duration_ms,
            series_per_table_max: s.series_per_table_max,
            string_bytes_max: s.string_bytes_max,
            rollup_interval_ms: s.rollup_interval_ms,
            rollup_coarser_intervals_ms: s.rollup_coarser_intervals_ms,
            rollup_table_intervals_ms: s.rollup_table_intervals_ms,
            rollup_lateness_ms: s.rollup_lateness_ms,
            retention_ms: s.retention_ms,
            rollup_retention_ms: s.rollup_retention_ms,
            table_retention_ms: s.table_retention_ms,
            future_tolerance_ms: s.future_tolerance_ms,
            disk_free_min_bytes: s.disk_free_min_bytes,
            cold_after_ms: s.cold_after_ms,
            rollup_cold_after_ms: s.rollup_cold_after_ms,
            table_cold_after_ms: s.table_cold_after_ms,
            cold_cache_bytes_max: s.cold_cache_bytes_max,
            lake_tables: s.lake_tables,
            lake_delay_ms: s.lake_delay_ms,
            cold: ColdSection::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when there is none.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses a configuration file's text, and refuses settings that cannot work together.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                format!("line {line}, column {column} ({source}): ")
            });
            format!("{}{}", at.unwrap_or_default(), e.message().trim())
        })?;
        for spec in &config.subscriptions {
            spec.check().map_err(|e| e.to_string())?;
        }
        for spec in &config.emit {
            spec.check().map_err(|e| e.to_string())?;
        }
        for spec in &config.kinesis {
            spec.router().map_err(|e| e.to_string())?;
        }
        crate::alerts::check(&config.alerts, &config.notifiers)?;
        let pg = &config.postgres;
        if pg.users.is_empty() && !pg.listen.ip().is_loopback() {
            return Err(format!(
                "postgres.listen = {} accepts clients from other machines, but no postgres.users are configured; \
                 isobar trusts clients without a password only on loopback",
                pg.listen
            ));
        }
        if pg.require_tls && (pg.tls_cert_path.is_none() || pg.tls_key_path.is_none()) {
            return Err("postgres.require_tls needs postgres.tls_cert_path and tls_key_path".into());
        }
        if pg.users.is_empty() && !config.flight.listen.ip().is_loopback() {
            return Err(format!(
                "flight.listen = {} accepts clients from other machines, but no postgres.users are configured; \
                 isobar trusts clients without a password only on loopback",
                config.flight.listen
            ));
        }
        if config.flight.tls_cert_path.is_some() != config.flight.tls_key_path.is_some() {
            return Err("flight: TLS needs both tls_cert_path and tls_key_path".into());
        }
        for (name, value) in [
            ("calls_max", config.flight.calls_max),
            ("message_bytes_max", config.flight.message_bytes_max),
            ("prepared_statements_max", config.flight.prepared_statements_max),
        ] {
            if value == 0 {
                return Err(format!("flight.{name} must be above 0"));
            }
        }
        if config.http.users.is_empty() && !config.http.listen.ip().is_loopback() {
            return Err(format!(
                "http: listening on {} needs users under [http]; isobar answers requests without a password only on loopback",
                config.http.listen
            ));
        }
        if !(0..=19).contains(&config.query.nice) {
            return Err(format!("query.nice = {} must be 0 to 19", config.query.nice));
        }
        if config.http.connections_max == 0 {
            return Err("http.connections_max must be above 0".into());
        }
        for (name, value) in
            [("connections_max", config.mqtt.connections_max), ("subscriptions_per_client_max", config.mqtt.subscriptions_per_client_max)]
        {
            if value == 0 {
                return Err(format!("mqtt.{name} must be above 0"));
            }
        }
        for user in &config.mqtt.users {
            for filter in user.publish.iter().chain(&user.subscribe).flatten() {
                isobar_ingest::topic::TopicFilter::parse(&filter.replace("%u", "u").replace("%c", "c"))
                    .map_err(|e| format!("mqtt.users {}: {e}", user.name))?;
            }
        }
        if config.mqtt.users.is_empty() && !config.mqtt.listen.ip().is_loopback() {
            return Err(format!(
                "mqtt: listening on {} needs users under [mqtt]; isobar admits devices without a password only on loopback",
                config.mqtt.listen
            ));
        }
        Ok(config)
    }

    /// The storage engine's configuration.
    pub(crate) fn storage_config(&self) -> isobar_storage::StorageConfig {
        let mut c = isobar_storage::StorageConfig::new(&self.data_dir);
        let s = &self.storage;
        c.group_commit_window_us = s.group_commit_window_us;
        c.write_buffer_bytes_max = s.write_buffer_bytes_max;
        c.persist_buffer_bytes = s.persist_buffer_bytes;
        c.persist_interval_ms = s.persist_interval_ms;
        c.partition_duration_ms = s.partition_duration_ms;
        c.series_per_table_max = s.series_per_table_max;
        c.rollup_interval_ms = s.rollup_interval_ms;
        c.rollup_coarser_intervals_ms = s.rollup_coarser_intervals_ms.clone();
        c.rollup_table_intervals_ms = s.rollup_table_intervals_ms.clone();
        c.rollup_lateness_ms = s.rollup_lateness_ms;
        c.retention_ms = s.retention_ms;
        c.rollup_retention_ms = s.rollup_retention_ms;
        c.table_retention_ms = s.table_retention_ms.clone();
        c.string_bytes_max = s.string_bytes_max;
        c.future_tolerance_ms = s.future_tolerance_ms;
        c.disk_free_min_bytes = s.disk_free_min_bytes;
        c.cold_after_ms = s.cold_after_ms;
        c.rollup_cold_after_ms = s.rollup_cold_after_ms;
        c.table_cold_after_ms = s.table_cold_after_ms.clone();
        c.cold_cache_bytes_max = s.cold_cache_bytes_max;
        c.lake_tables = s.lake_tables.clone();
        c.lake_delay_ms = s.lake_delay_ms;
        c.cold_store = s.cold.store();
        c
    }

    /// The query engine's configuration.
    pub(crate) fn query_config(&self) -> isobar_query::QueryConfig {
        isobar_query::QueryConfig {
            memory_limit_bytes: self.query.memory_limit_bytes,
            memory_pool_bytes: self.query.memory_pool_bytes,
            timeout_ms: self.query.timeout_ms,
            threads: self.query.threads,
            ..isobar_query::QueryConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML example in `docs/configuration.md`.
    fn documented_example() -> String {
        let doc = include_str!("../../docs/configuration.md");
        let start = doc.find("```toml\n").expect("the doc has a toml example") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("the example ends");
        doc[start..end].to_owned()
    }

    /// Every key, as dotted paths.
    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(t) => keys(t, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_documented_example_parses_and_names_every_key() {
        let example = documented_example();
        let parsed = Config::parse(&example).expect("the documented example parses");
        assert_eq!(parsed.postgres.listen, Config::default().postgres.listen);
        let (mut documented, mut known) = (Vec::new(), Vec::new());
        keys(&toml::from_str(&example).expect("toml"), "", &mut documented);
        keys(&toml::Table::try_from(Config::default()).expect("serializes"), "", &mut known);
        documented.sort();
        known.sort();
        assert_eq!(documented, known, "docs/configuration.md and Config disagree");
        let defaults = toml::to_string(&Config::default()).expect("serializes");
        assert_eq!(
            toml::from_str::<toml::Table>(&defaults).ok(),
            toml::from_str::<toml::Table>(&example).ok(),
            "the example shows the defaults"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_them() {
        let err = Config::parse("[postgres]\nlisen = \"127.0.0.1:1\"\n").expect_err("misspelt key");
        assert!(err.contains("lisen"), "{err}");
        let err = Config::parse("[query]\ntimeout_ms = \"soon\"\n").expect_err("wrong type");
        assert!(err.contains("timeout_ms"), "{err}");
        assert_eq!(Config::parse("").expect("empty is all defaults").data_dir, PathBuf::from("./isobar-data"));
    }

    #[test]
    fn settings_that_cannot_work_together_are_refused() {
        let err = Config::parse("[http]\nlisten = \"0.0.0.0:8086\"\n").expect_err("open http listener without users");
        assert!(err.contains("needs users under [http]"), "{err}");
        Config::parse("[http]\nlisten = \"0.0.0.0:8086\"\nusers = [{ name = \"p\", password = \"s\" }]\n").expect("with users");
        let err = Config::parse("[mqtt]\nlisten = \"0.0.0.0:1883\"\n").expect_err("open listener without users");
        assert!(err.contains("needs users under [mqtt]"), "{err}");
        Config::parse("[mqtt]\nlisten = \"0.0.0.0:1883\"\nusers = [{ name = \"d\", password = \"p\" }]\n").expect("with users");
        let err = Config::parse("[flight]\nlisten = \"0.0.0.0:8815\"\n").expect_err("open flight listener without users");
        assert!(err.contains("flight.listen = 0.0.0.0:8815 accepts clients from other machines"), "{err}");
        Config::parse("[postgres]\nusers = [{ name = \"a\", password = \"s\" }]\n[flight]\nlisten = \"0.0.0.0:8815\"\n")
            .expect("with users");
        let err = Config::parse("[flight]\ntls_cert_path = \"/c.pem\"\n").expect_err("a certificate without its key");
        assert!(err.contains("tls_cert_path and tls_key_path"), "{err}");
        assert!(Config::parse("[flight]\nmessage_bytes_max = 0\n").expect_err("no messages").contains("flight.message_bytes_max"));
        for nice in [-1, 20] {
            let err = Config::parse(&format!("[query]\nnice = {nice}\n")).expect_err("a nice value Linux has not");
            assert!(err.contains("must be 0 to 19"), "{err}");
        }
        Config::parse("[query]\nnice = 19\n").expect("the lowest priority");
        let subscription =
            |broker: &str, topics: &str| format!("[[subscriptions]]\nbroker = \"{broker}\"\nclient_id = \"isobar-1\"\ntopics = {topics}\n");
        assert!(Config::parse(&subscription("http://x:1", "[\"a/#\"]")).expect_err("not mqtt").contains("mqtt://HOST:PORT"));
        assert!(Config::parse(&subscription("mqtt://x:1", "[]")).expect_err("no topics").contains("topics"));
        Config::parse(&subscription("mqtt://broker.local:1883", "[\"$share/isobar/weather/#\"]")).expect("a shared subscription");
        let kinesis = |extra: &str, from: &str| {
            format!(
                "[[kinesis]]\nstream = \"arn:aws:kinesis:eu-west-1:123456789012:stream/weather\"\n{extra}\n\
                 [[kinesis.rules]]\nname = \"r\"\nsql = \"SELECT v FROM '{from}'\"\ntable = \"t\"\n"
            )
        };
        Config::parse(&kinesis("", "weather")).expect("a stream by its ARN, the rule naming it");
        assert!(Config::parse(&kinesis("", "other")).expect_err("rule on another stream").contains("does not name the stream weather"));
        assert!(Config::parse(&kinesis("start = \"at_timestamp\"", "weather")).expect_err("no timestamp").contains("start_timestamp"));
        assert!(Config::parse(&kinesis("idle_poll_ms = 50", "weather")).expect_err("too often").contains("at least 200"));
        assert!(Config::parse(&kinesis("records_per_call = 20000", "weather")).expect_err("over the API's").contains("1 to 10000"));
    }
}
