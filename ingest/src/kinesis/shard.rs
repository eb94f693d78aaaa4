//! Listing a stream's shards and reading one shard: GetShardIterator from the checkpoint,
//! GetRecords at most 5 times a second, each response's rows stored with the new checkpoint,
//! backoff with jitter on throttling and failures, and the end of a closed shard found.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::{Checkpoint, KinesisMetrics, KinesisSpec, KinesisStatus, ShardState, StartPosition, compare_sequence_numbers, user_records};
use crate::router::Router;
use crate::rule::{Message, StreamRecord};
use crate::store::Ingestor;

/// The least time between two GetRecords calls on one shard (the API allows 5 per second).
pub(super) const CALL_INTERVAL_MIN: Duration = Duration::from_millis(200);
/// Empty reads in a row after which a shard the listing shows closed counts as finished when
/// its ending sequence number cannot be compared (a local server that never ends a shard).
const EMPTY_READS_TO_END: u32 = 3;

/// One consumed stream, shared by its shards' readers.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) client: Client,
    pub(super) name: String,
    pub(super) source: String,
    pub(super) router: Arc<Router>,
    pub(super) ingestor: Ingestor,
    pub(super) metrics: Arc<KinesisMetrics>,
    pub(super) status: KinesisStatus,
    /// Shards the last listing showed closed, with their ending sequence numbers.
    pub(super) closed: Mutex<HashMap<String, String>>,
    pub(super) spec: KinesisSpec,
}

/// A listed shard.
#[derive(Debug)]
pub(super) struct ShardInfo {
    pub(super) id: String,
    /// Its parent and adjacent parent (after a merge), as listed.
    pub(super) parents: Vec<String>,
}

/// Why a call failed, for what to do next.
enum Failure {
    /// Refused for throughput: wait, then call again with the same iterator.
    Throttled,
    /// Anything else (an expired or invalid iterator, a network error, a server error): wait,
    /// then read on from the checkpoint with a new iterator.
    Other(String),
}

fn failure<E: ProvideErrorMetadata + std::error::Error + 'static>(e: SdkError<E, HttpResponse>) -> Failure {
    match e.code() {
        Some("ProvisionedThroughputExceededException" | "KMSThrottlingException" | "LimitExceededException" | "ThrottlingException") => {
            Failure::Throttled
        }
        _ => Failure::Other(describe(&e)),
    }
}

/// A failed call in one line: the AWS error's code and message, or the HTTP status of a
/// response that is not an AWS error (moto answers an unknown iterator with an HTML page), or
/// what kept the call from an answer.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    match (e.code(), e.raw_response()) {
        (Some(code), _) => format!("{code}: {}", e.message().unwrap_or_default()),
        (None, Some(raw)) => format!("HTTP {}", raw.status()),
        (None, None) => DisplayErrorContext(e).to_string(),
    }
}

impl Stream {
    /// Every shard ListShards returns, page after page; notes the closed ones.
    pub(super) async fn list_shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut closed = HashMap::new();
        let mut next_token: Option<String> = None;
        loop {
            // A page after the first names only its token (Kinesis refuses both); moto needs
            // the stream's name with it, so a token it does not place is sent again with both.
            let page = match &next_token {
                None => self.client.list_shards().stream_name(&self.name).send().await,
                Some(token) => match self.client.list_shards().next_token(token).send().await {
                    Err(e) if e.code() == Some("ResourceNotFoundException") => {
                        self.client.list_shards().stream_name(&self.name).next_token(token).send().await
                    }
                    page => page,
                },
            };
            let page = page.map_err(|e| describe(&e))?;
            for shard in page.shards() {
                let parents = shard.parent_shard_id().into_iter().chain(shard.adjacent_parent_shard_id()).map(str::to_owned).collect();
                if let Some(end) = shard.sequence_number_range().and_then(|r| r.ending_sequence_number()) {
                    closed.insert(shard.shard_id().to_owned(), end.to_owned());
                }
                shards.push(ShardInfo { id: shard.shard_id().to_owned(), parents });
            }
            match page.next_token() {
                Some(token) if !page.shards().is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        if let Ok(mut known) = self.closed.lock() {
            *known = closed;
        }
        Ok(shards)
    }

    /// The shard's committed checkpoint, or a fresh one.
    pub(super) fn checkpoint(&self, shard_id: &str) -> crate::Result<Checkpoint> {
        let source = Checkpoint::source(&self.name, shard_id);
        Ok(match self.ingestor.position(&source)? {
            None => Checkpoint::default(),
            Some(bytes) => Checkpoint::decode(&bytes).unwrap_or_else(|| {
                log::error!("kinesis: the checkpoint of {source} does not decode; reading the shard afresh");
                Checkpoint::default()
            }),
        })
    }

    /// Reads the shard until it is finished (returning its id) or the task is aborted.
    /// `from_start`: a shard without a checkpoint is read from its start, not from the
    /// configured start position (a child of shards that were read).
    pub(super) async fn read(self: Arc<Self>, shard_id: String, mut checkpoint: Checkpoint, from_start: bool) -> String {
        let update = |f: &dyn Fn(&mut super::ShardStatus)| self.status.update(&self.name, &shard_id, f);
        let state = if checkpoint.finished { ShardState::Finished } else { ShardState::Reading };
        update(&|s| {
            s.state = state;
            s.checkpoint = checkpoint.clone();
        });
        if checkpoint.finished {
            return shard_id;
        }
        let mut iterator: Option<String> = None;
        let mut backoff = Backoff::new();
        let mut pace = Pace::default();
        let mut empty_reads = 0;
        loop {
            let current = match iterator.take() {
                Some(it) => it,
                None => {
                    pace.wait().await;
                    match self.shard_iterator(&shard_id, &checkpoint, from_start).await {
                        Ok(it) => it,
                        Err(failure) => {
                            self.failed(&shard_id, "GetShardIterator", failure);
                            backoff.wait().await;
                            continue;
                        }
                    }
                }
            };
            pace.wait().await;
            let out = match self.client.get_records().shard_iterator(&current).limit(self.spec.records_per_call).send().await {
                Ok(out) => out,
                Err(e) => {
                    let failure = failure(e);
                    if matches!(failure, Failure::Throttled) {
                        iterator = Some(current);
                    }
                    self.failed(&shard_id, "GetRecords", failure);
                    backoff.wait().await;
                    continue;
                }
            };
            backoff.reset();
            let records = out.records();
            if !records.is_empty() {
                empty_reads = 0;
                if let Err(e) = self.store(&shard_id, records, &mut checkpoint).await {
                    // Nothing of the response is stored: read it again from the checkpoint.
                    log::error!("kinesis stream {} shard {shard_id}: storing records: {e}", self.name);
                    self.metrics.errors.fetch_add(1, Relaxed);
                    backoff.wait().await;
                    continue;
                }
            } else {
                empty_reads += 1;
            }
            let millis_behind = out.millis_behind_latest();
            let read = records.len() as u64;
            update(&|s| {
                s.checkpoint = checkpoint.clone();
                s.records += read;
                s.millis_behind = millis_behind;
            });
            let at_end = match out.next_shard_iterator() {
                None => true,
                Some(next) => {
                    iterator = Some(next.to_owned());
                    records.is_empty() && self.closed_and_read(&shard_id, &checkpoint, empty_reads)
                }
            };
            if at_end {
                checkpoint.finished = true;
                match self.ingestor.store_position(Checkpoint::source(&self.name, &shard_id), checkpoint.encode()).await {
                    Ok(()) => {
                        log::info!("kinesis stream {} shard {shard_id}: read to its end", self.name);
                        update(&|s| {
                            s.state = ShardState::Finished;
                            s.checkpoint = checkpoint.clone();
                        });
                        return shard_id;
                    }
                    Err(e) => {
                        log::error!("kinesis stream {} shard {shard_id}: storing its end: {e}", self.name);
                        checkpoint.finished = false;
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(self.spec.idle_poll_ms)).await;
            }
        }
    }

    /// Whether the listing shows the shard closed and everything up to its end was read.
    fn closed_and_read(&self, shard_id: &str, checkpoint: &Checkpoint, empty_reads: u32) -> bool {
        let Some(end) = self.closed.lock().ok().and_then(|c| c.get(shard_id).cloned()) else { return false };
        match &checkpoint.sequence_number {
            Some(last) if compare_sequence_numbers(last, &end) != Ordering::Less => true,
            _ => empty_reads >= EMPTY_READS_TO_END,
        }
    }

    async fn shard_iterator(&self, shard_id: &str, checkpoint: &Checkpoint, from_start: bool) -> Result<String, Failure> {
        let call = self.client.get_shard_iterator().stream_name(&self.name).shard_id(shard_id);
        let call = match &checkpoint.sequence_number {
            Some(last) => call.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(last),
            None if from_start && self.spec.start != StartPosition::AtTimestamp => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
            None => match self.spec.start {
                StartPosition::TrimHorizon => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
                StartPosition::Latest => call.shard_iterator_type(ShardIteratorType::Latest),
                StartPosition::AtTimestamp => {
                    let at = self.spec.start_timestamp.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                    let at_ms = at.map_or(0, |t| t.timestamp_millis());
                    call.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(at_ms))
                }
            },
        };
        let out = call.send().await.map_err(failure)?;
        out.shard_iterator().map(str::to_owned).ok_or_else(|| Failure::Other("GetShardIterator returned no iterator".into()))
    }

    fn failed(&self, shard_id: &str, call: &str, failure: Failure) {
        match failure {
            Failure::Throttled => {
                self.metrics.throttles.fetch_add(1, Relaxed);
                log::debug!("kinesis stream {} shard {shard_id}: {call} throttled; backing off", self.name);
            }
            Failure::Other(e) => {
                self.metrics.errors.fetch_add(1, Relaxed);
                log::warn!("kinesis stream {} shard {shard_id}: {call}: {e}", self.name);
            }
        }
    }

    /// Stores the rows of `records` and the checkpoint after them in one durable write.
    async fn store(&self, shard_id: &str, records: &[Record], checkpoint: &mut Checkpoint) -> crate::Result<()> {
        let arrival_ns = now_ns();
        let mut users = Vec::new();
        let mut broken = Vec::new();
        for record in records {
            let arrival_ms = record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(arrival_ns / 1_000_000);
            let meta = |partition_key, sub_sequence_number| StreamRecord {
                partition_key,
                sequence_number: record.sequence_number(),
                sub_sequence_number,
                shard_id,
                arrival_ms,
            };
            match user_records(record.partition_key(), record.data().as_ref()) {
                Ok(records) => users.extend(records.into_iter().map(|u| (u.data, meta(u.partition_key, u.sub_sequence_number)))),
                Err(reason) => broken.push((record.data().as_ref(), meta(record.partition_key(), None), reason)),
            }
        }
        let message = |payload, stream| Message { topic: &self.name, payload, client_id: "", arrival_ns, stream: Some(stream) };
        let messages: Vec<Message<'_>> = users.iter().map(|(data, meta)| message(data, *meta)).collect();
        let refused: Vec<(Message<'_>, &str)> = broken.iter().map(|(data, meta, reason)| (message(data, *meta), reason.as_str())).collect();
        let last = records.last().map(|r| r.sequence_number().to_owned());
        let last_sub =
            users.last().and_then(|(_, m)| if Some(m.sequence_number) == last.as_deref() { m.sub_sequence_number } else { None });
        let next = Checkpoint { sequence_number: last, sub_sequence_number: last_sub, finished: false };
        let position = (Checkpoint::source(&self.name, shard_id), next.encode());
        let stored = self.ingestor.store_at(&self.source, &self.router, &messages, &refused, Some(position)).await?;
        self.metrics.records.fetch_add((messages.len() + refused.len()) as u64, Relaxed);
        self.metrics.rows_written.fetch_add(stored.rows_written, Relaxed);
        self.metrics.records_rejected.fetch_add(stored.messages_rejected, Relaxed);
        *checkpoint = next;
        Ok(())
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Keeps calls on one shard at least [`CALL_INTERVAL_MIN`] apart.
#[derive(Debug, Default)]
struct Pace {
    last: Option<Instant>,
}

impl Pace {
    async fn wait(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until((last + CALL_INTERVAL_MIN).into()).await;
        }
        self.last = Some(Instant::now());
    }
}

/// Exponential backoff with full jitter: a random wait up to a cap that doubles from 200 ms
/// to 10 s while calls keep failing.
#[derive(Debug)]
pub(super) struct Backoff {
    cap: Duration,
    seed: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    pub(super) fn new() -> Self {
        Self { cap: Self::MIN, seed: now_ns() as u64 | 1 }
    }

    pub(super) fn reset(&mut self) {
        self.cap = Self::MIN;
    }

    pub(super) async fn wait(&mut self) {
        // xorshift64: jitter needs no better randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let cap_ms = self.cap.as_millis() as u64;
        let wait = Duration::from_millis(Self::MIN.as_millis() as u64 / 2 + self.seed % cap_ms.max(1));
        tokio::time::sleep(wait).await;
        self.cap = (self.cap * 2).min(Self::MAX);
    }
}
