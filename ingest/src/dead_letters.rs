//! Dead letters: messages isobar acknowledged but could not store.
//!
//! A message that no rule matches, that is not JSON, that a rule refuses, or whose row storage
//! refuses (a type conflict) is still acknowledged, so a device does not resend it forever;
//! instead it becomes a row of `system.ingest_errors`, written durably before the
//! acknowledgement like any other row. SQL sees it as `system.ingest_errors`:
//!
//! | column | |
//! |---|---|
//! | `time` | when isobar received the message (made unique per row) |
//! | `source` (tag) | `mqtt`, or the source that received it |
//! | `topic`, `client` | the message's topic and client id; for a stream record, the stream and `<shard id>/<sequence number>[/<sub-sequence number>]` |
//! | `reason` | why it was not stored |
//! | `payload` | its first [`PAYLOAD_BYTES_KEPT`] bytes, as UTF-8 with invalid bytes replaced |
//! | `payload_bytes` | its whole size |

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use isobar_storage::{ColumnKind, FieldType, FieldValue, Point, Storage, WriteBatch};

use crate::rule::Message;

/// The table of dead letters, as storage names it.
pub const TABLE: &str = "system.ingest_errors";
/// Bytes of a payload kept with its dead letter.
pub const PAYLOAD_BYTES_KEPT: usize = 256;
/// Bytes of a reason or topic kept: storage refuses longer strings, and a dead letter must not
/// be refused.
const TEXT_BYTES_KEPT: usize = 1024;

/// Creates `system.ingest_errors` unless it exists, so it can be queried before the first
/// dead letter.
pub fn create_table(storage: &Storage) -> isobar_storage::Result<()> {
    let text = ColumnKind::Field(FieldType::String);
    let columns: Vec<(String, ColumnKind)> = [
        ("source", ColumnKind::Tag),
        ("topic", text),
        ("client", text),
        ("reason", text),
        ("payload", text),
        ("payload_bytes", ColumnKind::Field(FieldType::I64)),
    ]
    .into_iter()
    .map(|(name, kind)| (name.to_owned(), kind))
    .collect();
    match storage.create_table(TABLE, &columns) {
        Ok(_) | Err(isobar_storage::Error::TableExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes dead-letter rows, each at its own time: rows share their series (one per source),
/// so two at the same nanosecond would replace one another.
#[derive(Debug, Default)]
pub struct DeadLetters {
    last_ns: AtomicI64,
}

impl DeadLetters {
    /// Adds to `batch` the dead letter of `message`, received by `source`, not stored because
    /// of `reason`.
    pub fn add(&self, batch: &mut WriteBatch, source: &str, message: &Message<'_>, reason: &str) {
        let time = self.unique_ns(message.arrival_ns);
        let head = &message.payload[..message.payload.len().min(PAYLOAD_BYTES_KEPT)];
        let text = |s: &str| FieldValue::String(Arc::from(truncate(s, TEXT_BYTES_KEPT)));
        let client = match &message.stream {
            None => text(message.client_id),
            Some(r) => match r.sub_sequence_number {
                None => text(&format!("{}/{}", r.shard_id, r.sequence_number)),
                Some(sub) => text(&format!("{}/{}/{sub}", r.shard_id, r.sequence_number)),
            },
        };
        let point = Point::new(time)
            .tag("source", source)
            .field("topic", text(message.topic))
            .field("client", client)
            .field("reason", text(reason))
            .field("payload", FieldValue::String(Arc::from(String::from_utf8_lossy(head).as_ref())))
            .field("payload_bytes", FieldValue::I64(i64::try_from(message.payload.len()).unwrap_or(i64::MAX)));
        batch.push(TABLE, point);
    }

    /// `arrival_ns`, or just after the last time handed out when that is not earlier.
    fn unique_ns(&self, arrival_ns: i64) -> i64 {
        let previous = self.last_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(arrival_ns.max(last.saturating_add(1))));
        let last = previous.unwrap_or_else(|last| last);
        arrival_ns.max(last.saturating_add(1))
    }
}

/// `s` cut to at most `bytes` bytes, at a character boundary.
fn truncate(s: &str, bytes: usize) -> &str {
    let mut end = s.len().min(bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dead_letter_has_its_own_time_and_bounded_text() {
        let letters = DeadLetters::default();
        let payload = [b'x'; 1000];
        let topic = "é".repeat(800);
        let message = Message { topic: &topic, payload: &payload, client_id: "c", arrival_ns: 100, stream: None };
        let mut batch = WriteBatch::new();
        for _ in 0..3 {
            letters.add(&mut batch, "mqtt", &message, "no rule matches");
        }
        let times: Vec<i64> = batch.points(TABLE).iter().map(|p| p.time.0).collect();
        assert_eq!(times, [100, 101, 102]);
        let later = Message { arrival_ns: 500, ..message };
        letters.add(&mut batch, "mqtt", &later, "again");
        assert_eq!(batch.points(TABLE)[3].time.0, 500);
        let fields = &batch.points(TABLE)[0].fields;
        let text = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert!(matches!(text("topic"), Some(FieldValue::String(s)) if s.len() == 1024 && s.chars().all(|c| c == 'é')));
        assert!(matches!(text("payload"), Some(FieldValue::String(s)) if s.len() == PAYLOAD_BYTES_KEPT));
        assert_eq!(text("payload_bytes"), Some(FieldValue::I64(1000)));
    }
}
