//! Storing a batch of messages, whatever source received them: rules, one durable write, dead
//! letters for what could not be stored. A source acknowledges the batch once [`Ingestor::store`]
//! returns `Ok`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

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
    /// The cores isobar has: a body of line protocol written alone is cut into as many pieces.
    cores: usize,
    /// Bodies of line protocol being parsed and prepared (not those only waiting to be durable).
    line_bodies: Arc<AtomicUsize>,
}

impl Ingestor {
    /// Routes messages through `router` into `storage`; creates the dead letters' table.
    pub fn new(storage: Storage, router: Arc<Router>) -> Result<Self> {
        dead_letters::create_table(&storage)?;
        Ok(Self {
            storage,
            router,
            dead_letters: Arc::new(DeadLetters::default()),
            line_keys: Arc::new(KeyCache::default()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            line_bodies: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Routes `messages` (received by `source`, e.g. `mqtt`) and writes their rows and the
    /// dead letters of those that made none, and of `refused`, which the source could not
    /// take (with the reason); returns once all of it is durable.
    pub async fn store(&self, source: &str, messages: &[Message<'_>], refused: &[(Message<'_>, &str)]) -> Result<Stored> {
        self.store_at(source, &self.router, messages, refused, None).await
    }

    /// As [`Ingestor::store`], through `router`, with the source's `position` (storage source,
    /// bytes) committed in the same durable write as the rows.
    pub async fn store_at(
        &self,
        source: &str,
        router: &Router,
        messages: &[Message<'_>],
        refused: &[(Message<'_>, &str)],
        position: Option<(String, Vec<u8>)>,
    ) -> Result<Stored> {
        let mut routed = router.route(messages);
        let rejected = routed.rejected.iter().map(|(i, reason)| (&messages[*i], reason.as_str()));
        let mut dead_letters_written = 0;
        for (message, reason) in rejected.chain(refused.iter().map(|(m, reason)| (m, *reason))) {
            self.dead_letter(&mut routed.batch, source, message, reason);
            dead_letters_written += 1;
        }
        if let Some((position_source, position)) = position {
            routed.batch.set_position(&position_source, position);
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
    ///
    /// A large body is cut at line ends into pieces, to use the cores other bodies being parsed
    /// and prepared leave idle (one piece per core when no other body is; a body only waiting
    /// for its fsync leaves its core idle), each parsed on a thread of its own. Each piece is
    /// written once the one before it has its place in the commit order, so the pieces commit in body order and a later line wins over an earlier
    /// one of the same series and time, as in one write. Each piece is durable on its own: when
    /// one fails, the pieces before it may have been written (a retry of the body rewrites the
    /// same rows). Bodies are not cut while others keep every core busy: each piece costs a
    /// write's lookups of its series and a commit.
    pub async fn write_lines(&self, body: String, precision: Precision, now_ns: i64) -> Result<LinesWritten> {
        let busy = Busy::enter(&self.line_bodies);
        let pieces = pieces(&body, self.cores / busy.count);
        let (count, body, mut busy) = (pieces.len(), Arc::new(body), Some(busy));
        let mut turn: Option<Receiver<()>> = None;
        let mut tasks = Vec::new();
        for (i, piece) in pieces.into_iter().enumerate() {
            let (storage, keys, body) = (self.storage.clone(), self.line_keys.clone(), body.clone());
            let (pass, next) = crossbeam_channel::bounded::<()>(1);
            let wait = turn.replace(next);
            // The last piece's turn, passed once it is prepared, ends the body's busy time.
            let busy = if i + 1 == count { busy.take() } else { None };
            let turn = Turn { wait, pass, busy };
            tasks.push(tokio::task::spawn_blocking(move || {
                write_lines(&storage, &body[piece.bytes], piece.lines_before, precision, now_ns, &keys, turn)
            }));
        }
        let mut written = LinesWritten::default();
        for task in tasks {
            let piece = task.await.map_err(|e| isobar_storage::Error::Internal(format!("line protocol write task: {e}")))??;
            written.points_written += piece.points_written;
            written.errors.extend(piece.errors);
        }
        Ok(written)
    }

    /// The last position committed for `source`.
    pub fn position(&self, source: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.storage.position(source)?)
    }

    /// Commits `position` for `source` durably, with no rows.
    pub async fn store_position(&self, source: String, position: Vec<u8>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.set_position(&source, position);
        self.write(batch).await.map(|_| ())
    }

    /// Logs why `message` is not stored and adds its dead letter to `batch`.
    fn dead_letter(&self, batch: &mut WriteBatch, source: &str, message: &Message<'_>, reason: &str) {
        match &message.stream {
            Some(r) => log::warn!("{source} record {} of {} not stored: {reason}", r.sequence_number, r.shard_id),
            None => log::warn!("{source} message on {} from {} not stored: {reason}", message.topic, message.client_id),
        }
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

/// Counts a body in [`Ingestor::line_bodies`] until dropped.
struct Busy {
    counter: Arc<AtomicUsize>,
    /// Bodies busy when this one entered, itself included.
    count: usize,
}

impl Busy {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        Self { counter: Arc::clone(counter), count: counter.fetch_add(1, Ordering::Relaxed) + 1 }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lines a piece of a body holds at least: a body of fewer is written whole.
const PIECE_LINES_MIN: usize = 1_000;

/// A piece of a body of line protocol: its bytes, which end at a line end, and the lines before it.
struct Piece {
    bytes: Range<usize>,
    lines_before: usize,
}

/// `body` cut at line ends into at most `count` pieces of about equal size and at least
/// [`PIECE_LINES_MIN`] lines; one piece when the body is smaller.
fn pieces(body: &str, count: usize) -> Vec<Piece> {
    let bytes = body.as_bytes();
    let lines = memchr::memchr_iter(b'\n', bytes).count();
    let count = count.min(lines / PIECE_LINES_MIN).max(1);
    let mut out = Vec::with_capacity(count);
    let (mut start, mut lines_before) = (0, 0);
    for k in 1..=count {
        let end = match k == count {
            true => bytes.len(),
            // The end of the line holding the k-th cut.
            false => {
                let cut = (bytes.len() * k / count).max(start);
                memchr::memchr(b'\n', &bytes[cut..]).map_or(bytes.len(), |n| cut + n + 1)
            }
        };
        if end > start {
            out.push(Piece { bytes: start..end, lines_before });
            lines_before += memchr::memchr_iter(b'\n', &bytes[start..end]).count();
            start = end;
        }
    }
    out
}

/// A piece's turn to be written: it waits for the piece before it to be prepared (or to have
/// failed or written nothing), then passes the turn on once it is prepared itself. Dropping
/// `pass` passes it too. The last piece of a body also holds the body's [`Busy`] count.
struct Turn {
    wait: Option<Receiver<()>>,
    pass: Sender<()>,
    busy: Option<Busy>,
}

/// Parses `body` (a piece of a body, after `lines_before` lines) and writes its points, in its
/// `turn`, waiting for them to be durable. Line numbers count from the whole body's start.
fn write_lines(
    storage: &Storage,
    body: &str,
    lines_before: usize,
    precision: Precision,
    now_ns: i64,
    keys: &KeyCache,
    turn: Turn,
) -> Result<LinesWritten> {
    let parsed = line_protocol::parse_columns(body, precision, now_ns, keys);
    let mut written = LinesWritten { points_written: 0, errors: parsed.errors };
    let mut batch = WriteBatch::new();
    // The line of each row, by table.
    let mut lines: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (table, columns, numbers) in parsed.tables {
        batch.push_columns(&table, columns);
        lines.insert(table, numbers);
    }
    // A disconnected turn is one the piece before gave up: it has nothing left to prepare.
    if let Some(wait) = turn.wait {
        let _ = wait.recv();
    }
    if !batch.is_empty() {
        let (pass, busy) = (turn.pass, turn.busy);
        let receipt = storage.write_then(&batch, move || drop((pass, busy)))?;
        written.points_written = receipt.rows_written;
        // Where each line starts, found once: a body may have a refused row on every line.
        let line_starts: Vec<usize> = match receipt.rejected.is_empty() {
            true => Vec::new(),
            false => std::iter::once(0).chain(memchr::memchr_iter(b'\n', body.as_bytes()).map(|n| n + 1)).collect(),
        };
        for r in receipt.rejected {
            if let Some(&line_number) = lines.get(&r.table).and_then(|l| l.get(r.index)) {
                let line = line_starts
                    .get(line_number.saturating_sub(1))
                    .map_or_else(String::new, |&start| line_protocol::line_text(&body[start..], 1));
                written.errors.push(LineError { line_number, line, reason: r.reason });
            }
        }
    }
    written.errors.sort_by_key(|e| e.line_number);
    for e in &mut written.errors {
        e.line_number += lines_before;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isobar_storage::{ScanRequest, StorageConfig};

    /// `lines` lines of series `s0`..`s99`, each at second `line / 100`, with value `value`.
    fn lines(count: usize, value: f64) -> String {
        (0..count).map(|i| format!("m,s=s{} v={value} {}\n", i % 100, i / 100)).collect()
    }

    /// The value of every row of `m`, by (series, time).
    fn values(storage: &Storage) -> BTreeMap<(String, i64), f64> {
        use arrow::array::{AsArray, RecordBatch};
        use arrow::datatypes::{Float64Type, TimestampNanosecondType};
        let mut out = BTreeMap::new();
        for batch in storage.scan(&ScanRequest::all("m")).expect("scan") {
            let batch: RecordBatch = batch.expect("batch");
            let times = batch.column_by_name("time").expect("time").as_primitive::<TimestampNanosecondType>().clone();
            let series = batch.column_by_name("s").expect("s").as_string::<i32>().clone();
            let v = batch.column_by_name("v").expect("v").as_primitive::<Float64Type>().clone();
            for i in 0..batch.num_rows() {
                out.insert((series.value(i).to_owned(), times.value(i)), v.value(i));
            }
        }
        out
    }

    #[test]
    fn pieces_cut_a_body_at_line_ends_and_count_the_lines_before_each() {
        let body = lines(3 * PIECE_LINES_MIN + 10, 1.0) + "m,s=last v=1 1";
        for count in [1, 2, 3, 4, 8] {
            let pieces = pieces(&body, count);
            assert_eq!(pieces.len(), count.min(3), "{count} pieces asked for");
            let mut start = 0;
            for piece in &pieces {
                assert_eq!(piece.bytes.start, start, "pieces follow each other");
                assert_eq!(piece.lines_before, body[..start].matches('\n').count());
                start = piece.bytes.end;
                assert!(start == body.len() || body.as_bytes()[start - 1] == b'\n', "a piece ends at a line end");
            }
            assert_eq!(start, body.len(), "the pieces cover the body");
        }
        assert_eq!(pieces(&lines(PIECE_LINES_MIN + 1, 1.0), 8).len(), 1, "a small body is one piece");
        assert_eq!(pieces("", 8).len(), 0, "an empty body has no piece");
    }

    /// A piece waits for the piece before it to be prepared: the later piece of a body wins a
    /// series and time both write, though it is written first.
    #[test]
    fn a_later_piece_waits_its_turn_and_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let keys = KeyCache::default();
        let earlier = lines(5_000, 1.0) + "m,s=s0 v=\n";
        let later = lines(100, 2.0) + "m,s=s1 v=\n";
        let (pass, wait) = crossbeam_channel::bounded(1);
        let (last_pass, _) = crossbeam_channel::bounded(1);
        let written = std::thread::scope(|s| {
            let later = s.spawn(|| {
                let turn = Turn { wait: Some(wait), pass: last_pass, busy: None };
                write_lines(&storage, &later, 5_001, Precision::Seconds, 0, &keys, turn).expect("later piece")
            });
            let earlier = write_lines(&storage, &earlier, 0, Precision::Seconds, 0, &keys, Turn { wait: None, pass, busy: None })
                .expect("earlier piece");
            (earlier, later.join().expect("later piece's thread"))
        });
        assert_eq!((written.0.points_written, written.1.points_written), (5_000, 100));
        let numbers = |w: &LinesWritten| w.errors.iter().map(|e| e.line_number).collect::<Vec<_>>();
        assert_eq!((numbers(&written.0), numbers(&written.1)), (vec![5_001], vec![5_102]), "line numbers count from the body's start");
        let values = values(&storage);
        assert_eq!(values.len(), 5_000);
        for ((series, time_ns), v) in values {
            let expected = if time_ns == 0 { 2.0 } else { 1.0 };
            assert_eq!(v, expected, "{series} at {time_ns} ns");
        }
    }

    /// Every row storage refuses is reported with its own line's number and text, wherever
    /// the line is in the body (the last one without a newline too).
    #[test]
    fn refused_rows_are_reported_with_their_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let keys = KeyCache::default();
        let body: String = (0..298)
            .map(|i| match i % 7 == 3 {
                true => format!("m,s=s{i} v=\"t{i}\" {i}"),
                false => format!("m,s=s{i} v={i} {i}"),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let turn = Turn { wait: None, pass: crossbeam_channel::bounded(1).0, busy: None };
        let written = write_lines(&storage, &body, 10, Precision::Seconds, 0, &keys, turn).expect("write");
        let refused: Vec<usize> = (0..298).filter(|i| i % 7 == 3).collect();
        assert_eq!(written.points_written as usize, 298 - refused.len());
        let expected: Vec<(usize, String)> = refused.iter().map(|i| (i + 11, format!("m,s=s{i} v=\"t{i}\" {i}"))).collect();
        let got: Vec<(usize, String)> = written.errors.iter().map(|e| (e.line_number, e.line.clone())).collect();
        assert_eq!(got, expected);
    }
}
