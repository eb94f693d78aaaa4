//! Storing a batch of messages, whatever source received them: rules, one durable write, dead
//! letters for what could not be stored. A source acknowledges the batch once [`Ingestor::store`]
//! returns `Ok`.

use std::sync::Arc;

use std::collections::BTreeMap;

use isobar_storage::{Storage, WriteBatch, WriteReceipt};

use crate::dead_letters::{self, DeadLetters};
use crate::error::Result;
use crate::line_protocol::{self, KeyCache, LineError, Precision};
use crate::router::Router;
use crate::rule::Message;

/// What storing one batch of messages did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Rows the rules made that storage wrote.
    pub rows_written: u64,
    /// Messages that made no row, now dead letters.
    pub messages_rejected: u64,
}

/// What writing a body of line protocol did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinesWritten {
    /// Points storage wrote, durable on return.
    pub points_written: u64,
    /// The lines not written, in line order.
    pub errors: Vec<LineError>,
}

/// The rules and storage behind every source.
#[derive(Debug, Clone)]
pub struct Ingestor {
    storage: Storage,
    router: Arc<Router>,
    dead_letters: Arc<DeadLetters>,
    line_keys: Arc<KeyCache>,
}

impl Ingestor {
    /// Routes messages through `router` into `storage`; creates the dead letters' table.
    pub fn new(storage: Storage, router: Arc<Router>) -> Result<Self> {
        dead_letters::create_table(&storage)?;
        Ok(Self { storage, router, dead_letters: Arc::new(DeadLetters::default()), line_keys: Arc::new(KeyCache::default()) })
    }

    /// Routes `messages` (received by `source`, e.g. `mqtt`) and writes their rows and the
    /// dead letters of those that made none, and of `refused`, which the source could not
    /// take (with the reason); returns once all of it is durable.
    pub async fn store(&self, source: &str, messages: &[Message<'_>], refused: &[(Message<'_>, &str)]) -> Result<Stored> {
        let mut routed = self.router.route(messages);
        let rejected = routed.rejected.iter().map(|(i, reason)| (&messages[*i], reason.as_str()));
        let mut dead_letters_written = 0;
        for (message, reason) in rejected.chain(refused.iter().map(|(m, reason)| (m, *reason))) {
            self.dead_letter(&mut routed.batch, source, message, reason);
            dead_letters_written += 1;
        }
        let mut stored = Stored { rows_written: 0, messages_rejected: dead_letters_written };
        if routed.batch.is_empty() {
            return Ok(stored);
        }
        let receipt = self.write(std::mem::take(&mut routed.batch)).await?;
        // Rows storage refused (a type conflict) become dead letters too, in a second write.
        let mut late = WriteBatch::new();
        for r in &receipt.rejected {
            if r.table == dead_letters::TABLE {
                log::error!("{source} dead letter not stored: {}", r.reason);
                dead_letters_written -= 1;
                continue;
            }
            let Some(message) = routed.message_of(r).map(|i| &messages[i]) else { continue };
            self.dead_letter(&mut late, source, message, &r.reason);
            stored.messages_rejected += 1;
        }
        stored.rows_written = receipt.rows_written - dead_letters_written;
        if !late.is_empty() {
            self.write(late).await?;
        }
        Ok(stored)
    }

    /// Writes the points of a body of line protocol in one durable write and returns what
    /// was written and each line that was not, with its number: a line that does not parse,
    /// or whose point storage refuses (a type conflict, a table name it does not take). The
    /// client is told about every such line, as InfluxDB reports a partial write, so none
    /// becomes a dead letter.
    pub async fn write_lines(&self, body: String, precision: Precision, now_ns: i64) -> Result<LinesWritten> {
        let (storage, keys) = (self.storage.clone(), self.line_keys.clone());
        tokio::task::spawn_blocking(move || write_lines(&storage, &body, precision, now_ns, &keys))
            .await
            .map_err(|e| isobar_storage::Error::Internal(format!("line protocol write task: {e}")))?
    }

    /// Logs why `message` is not stored and adds its dead letter to `batch`.
    fn dead_letter(&self, batch: &mut WriteBatch, source: &str, message: &Message<'_>, reason: &str) {
        log::warn!("{source} message on {} from {} not stored: {reason}", message.topic, message.client_id);
        self.dead_letters.add(batch, source, message, reason);
    }

    /// Writes `batch` on a blocking thread, as storage waits for its fsync.
    async fn write(&self, batch: WriteBatch) -> Result<WriteReceipt> {
        let storage = self.storage.clone();
        let receipt = tokio::task::spawn_blocking(move || storage.write(&batch))
            .await
            .map_err(|e| isobar_storage::Error::Internal(format!("storage write task: {e}")))?;
        Ok(receipt?)
    }
}

/// Parses `body` and writes its points, waiting for them to be durable.
fn write_lines(storage: &Storage, body: &str, precision: Precision, now_ns: i64, keys: &KeyCache) -> Result<LinesWritten> {
    let parsed = line_protocol::parse_columns(body, precision, now_ns, keys);
    let mut written = LinesWritten { points_written: 0, errors: parsed.errors };
    let mut batch = WriteBatch::new();
    // The line of each row, by table.
    let mut lines: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (table, columns, numbers) in parsed.tables {
        batch.push_columns(&table, columns);
        lines.insert(table, numbers);
    }
    if !batch.is_empty() {
        let receipt = storage.write(&batch)?;
        written.points_written = receipt.rows_written;
        for r in receipt.rejected {
            if let Some(&line_number) = lines.get(&r.table).and_then(|l| l.get(r.index)) {
                written.errors.push(LineError { line_number, line: line_protocol::line_text(body, line_number), reason: r.reason });
            }
        }
    }
    written.errors.sort_by_key(|e| e.line_number);
    Ok(written)
}
