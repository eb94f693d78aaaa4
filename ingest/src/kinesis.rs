//! Consuming Amazon Kinesis Data Streams into tables, exactly once.
//!
//! Each `[[kinesis]]` source names a stream and the rules that map its records (the same rule
//! language as MQTT; a rule's `FROM` names the stream). isobar lists the stream's shards and
//! reads each one with GetRecords, through the official AWS SDK. A record's JSON payload goes
//! through the rules; a KPL aggregate (`kpl.rs`) is first taken apart into its user
//! records. The rows of one GetRecords response and the shard's checkpoint (`checkpoint.rs`) are
//! committed in one durable write, so a crash never moves a checkpoint past durable rows, and
//! what is read again after a crash replaces itself (same series and time: last write wins).
//!
//! Shards (`shard.rs`): the stream is listed at start and every `list_interval_ms` after; a
//! shard is read once every parent it names that is still listed is finished, so that per
//! partition key rows arrive in order across a split or a merge. A shard is finished when
//! GetRecords returns no next iterator, or when the listing shows it closed and the checkpoint
//! reached its ending sequence number (a local server may never return the null iterator).

mod checkpoint;
mod shard;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::router::Router;
use crate::rule::RuleSpec;
use crate::store::Ingestor;

pub use crate::kpl::{UserRecord, user_records};
pub use checkpoint::{Checkpoint, compare_sequence_numbers};

/// Records GetRecords may return at most (the API's limit).
const RECORDS_PER_CALL_MAX: i32 = 10_000;

/// Where a stream seen the first time is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest record the stream still keeps.
    #[default]
    TrimHorizon,
    /// Only records put from now on.
    Latest,
    /// Records the stream accepted at or after `start_timestamp`.
    AtTimestamp,
}

/// One stream to consume, as configured (`[[kinesis]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSpec {
    /// The stream's name, or its ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
    pub stream: String,
    /// The AWS region; unset: the one in the ARN, else the standard AWS chain (`AWS_REGION`,
    /// the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Another endpoint than AWS's, e.g. `http://127.0.0.1:4567` for a local Kinesis server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Credentials; unset: the standard AWS chain (environment, profile, web identity, ECS,
    /// instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// Where a shard without a checkpoint is read from; a child of shards isobar read is read
    /// from its start instead (for `latest`: even when isobar saw the parents closed already).
    #[serde(default)]
    pub start: StartPosition,
    /// RFC 3339 time for `start = "at_timestamp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Records asked for per GetRecords call (at most 10,000).
    #[serde(default = "default_records_per_call")]
    pub records_per_call: i32,
    /// Milliseconds between GetRecords calls on a shard that returned nothing new (at least
    /// 200: the API allows 5 calls per second per shard).
    #[serde(default = "default_idle_poll_ms")]
    pub idle_poll_ms: u64,
    /// Milliseconds between listings of the stream's shards, which find new shards after a
    /// split or merge.
    #[serde(default = "default_list_interval_ms")]
    pub list_interval_ms: u64,
    /// The rules mapping its records to rows.
    pub rules: Vec<RuleSpec>,
}

fn default_records_per_call() -> i32 {
    RECORDS_PER_CALL_MAX
}

fn default_idle_poll_ms() -> u64 {
    1000
}

fn default_list_interval_ms() -> u64 {
    30_000
}

impl KinesisSpec {
    /// The stream's name, from an ARN or as given.
    pub fn stream_name(&self) -> &str {
        match self.stream.strip_prefix("arn:") {
            Some(_) => self.stream.rsplit_once(":stream/").map_or(self.stream.as_str(), |(_, name)| name),
            None => &self.stream,
        }
    }

    /// The region in the stream's ARN.
    fn arn_region(&self) -> Option<&str> {
        self.stream.strip_prefix("arn:")?.split(':').nth(2).filter(|r| !r.is_empty())
    }

    /// The `source` of its dead letters, and the prefix of its checkpoints' sources.
    pub fn source(&self) -> String {
        format!("kinesis:{}", self.stream_name())
    }

    /// The rules, compiled; refuses a source that cannot work, naming what is wrong.
    pub fn router(&self) -> Result<Router> {
        let who = format!("kinesis stream {}", self.stream);
        let name = self.stream_name();
        if name.is_empty() || name.contains('/') {
            return Err(Error::Config(format!("{who}: stream must be a stream name or arn:aws:kinesis:REGION:ACCOUNT:stream/NAME")));
        }
        if !(1..=RECORDS_PER_CALL_MAX).contains(&self.records_per_call) {
            return Err(Error::Config(format!("{who}: records_per_call must be 1 to {RECORDS_PER_CALL_MAX}")));
        }
        if self.idle_poll_ms < shard::CALL_INTERVAL_MIN.as_millis() as u64 {
            return Err(Error::Config(format!("{who}: idle_poll_ms must be at least 200 (5 GetRecords per second per shard)")));
        }
        if self.list_interval_ms < 1000 {
            return Err(Error::Config(format!("{who}: list_interval_ms must be at least 1000")));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::Config(format!("{who}: access_key_id and secret_access_key go together")));
        }
        match (self.start, &self.start_timestamp) {
            (StartPosition::AtTimestamp, None) => {
                return Err(Error::Config(format!("{who}: start = \"at_timestamp\" needs start_timestamp")));
            }
            (StartPosition::AtTimestamp, Some(t)) => {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| Error::Config(format!("{who}: start_timestamp {t} is not an RFC 3339 time: {e}")))?;
            }
            (_, Some(_)) => return Err(Error::Config(format!("{who}: start_timestamp needs start = \"at_timestamp\""))),
            (_, None) => {}
        }
        if self.rules.is_empty() {
            return Err(Error::Config(format!("{who}: no rules map its records")));
        }
        let router = Router::new(self.rules.iter().cloned()).map_err(|e| Error::Config(format!("{who}: {e}")))?;
        for rule in router.rules() {
            if !rule.matches(name) {
                return Err(Error::Config(format!("{who}: rule {}: its FROM does not name the stream {name}", rule.spec().name)));
            }
        }
        Ok(router)
    }

    /// An SDK client for the stream's endpoint, region and credentials.
    async fn client(&self) -> Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
        if let Some(region) = self.region.as_deref().or(self.arn_region()) {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let (Some(key), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "isobar configuration"));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_kinesis::config::Builder::from(&shared);
        if shared.region().is_none() {
            // A local server takes any region; AWS itself would refuse the calls, which the
            // log then shows.
            log::warn!("kinesis stream {}: no region configured or in the AWS environment; using us-east-1", self.stream);
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        // isobar retries every failed call itself, paced per shard and counted in its metrics.
        config = config.retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled());
        Client::from_conf(config.build())
    }
}

/// HTTPS (rustls with ring, as the rest of isobar) and plain HTTP for local servers.
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Counters of every Kinesis source, for `/metrics`.
#[derive(Debug, Default)]
pub struct KinesisMetrics {
    /// Records read (an aggregate counts its user records).
    pub records: AtomicU64,
    pub rows_written: AtomicU64,
    /// Records that made no row, now dead letters.
    pub records_rejected: AtomicU64,
    /// GetRecords and GetShardIterator calls refused for throughput, retried after a backoff.
    pub throttles: AtomicU64,
    /// Other failed calls, retried after a backoff.
    pub errors: AtomicU64,
}

/// What `system.kinesis_shards` shows of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStatus {
    pub parents: Vec<String>,
    pub checkpoint: Checkpoint,
    pub state: ShardState,
    /// Records read since isobar started.
    pub records: u64,
    /// How far behind the stream's newest record the last GetRecords was.
    pub millis_behind: Option<i64>,
}

/// A shard's reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardState {
    #[default]
    WaitingForParents,
    Reading,
    Finished,
}

impl ShardState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForParents => "waiting for parents",
            Self::Reading => "reading",
            Self::Finished => "finished",
        }
    }
}

/// Every consumed shard's status, by stream and shard id.
#[derive(Debug, Clone, Default)]
pub struct KinesisStatus {
    shards: Arc<Mutex<BTreeMap<(String, String), ShardStatus>>>,
}

impl KinesisStatus {
    /// A copy of every shard's status.
    pub fn shards(&self) -> Vec<((String, String), ShardStatus)> {
        self.shards.lock().map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    fn update(&self, stream: &str, shard: &str, f: impl FnOnce(&mut ShardStatus)) {
        if let Ok(mut shards) = self.shards.lock() {
            f(shards.entry((stream.to_owned(), shard.to_owned())).or_default());
        }
    }
}

/// Consumes `spec`'s stream until the task is aborted.
pub async fn run(spec: KinesisSpec, router: Router, ingestor: Ingestor, metrics: Arc<KinesisMetrics>, status: KinesisStatus) {
    let stream = Arc::new(shard::Stream {
        client: spec.client().await,
        name: spec.stream_name().to_owned(),
        source: spec.source(),
        router: Arc::new(router),
        ingestor,
        metrics,
        status,
        closed: Mutex::new(HashMap::new()),
        spec,
    });
    let mut readers = JoinSet::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut backoff = shard::Backoff::new();
    loop {
        match stream.list_shards().await {
            Ok(shards) => {
                backoff.reset();
                let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
                for s in &shards {
                    if started.contains(&s.id) {
                        continue;
                    }
                    let parents: Vec<String> = s.parents.iter().filter(|p| listed.contains(p.as_str())).cloned().collect();
                    stream.status.update(&stream.name, &s.id, |st| st.parents.clone_from(&s.parents));
                    let checkpoint = match stream.checkpoint(&s.id) {
                        Ok(c) => c,
                        Err(e) => {
                            log::error!("kinesis stream {}: checkpoint of {}: {e}", stream.name, s.id);
                            continue;
                        }
                    };
                    if checkpoint.finished {
                        finished.insert(s.id.clone());
                    }
                    let parents_done = parents.iter().all(|p| finished.contains(p));
                    if checkpoint.finished || parents_done {
                        started.insert(s.id.clone());
                        // A child of shards read here is read from its start.
                        let from_start = !parents.is_empty();
                        readers.spawn(Arc::clone(&stream).read(s.id.clone(), checkpoint, from_start));
                    }
                }
            }
            Err(e) => {
                log::warn!("kinesis stream {}: listing its shards: {e}", stream.name);
                backoff.wait().await;
                continue;
            }
        }
        // Relist after the interval, or at once when a shard finished (its children may start).
        let relist = tokio::time::sleep(Duration::from_millis(stream.spec.list_interval_ms));
        tokio::pin!(relist);
        loop {
            tokio::select! {
                _ = &mut relist => break,
                Some(done) = readers.join_next() => {
                    if let Ok(shard_id) = done {
                        finished.insert(shard_id);
                        break;
                    }
                }
            }
        }
    }
}
