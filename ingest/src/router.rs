//! Routing a batch of messages through the rules into one write batch.
//!
//! Sources hand over messages in batches (as their network reads deliver them); each payload is
//! parsed once, every matching rule makes its row, and the rows of the whole batch go to
//! storage in one durable write. A message no rule can store is rejected with a reason and
//! its neighbours are unaffected; the source still acknowledges it, and the reason goes to the
//! dead letters.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use isobar_storage::{RejectedPoint, WriteBatch};

use crate::error::{Error, Result};
use crate::rule::{Message, Rule, RuleSpec};

/// The rules, compiled.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Rule>,
}

/// What a batch of messages became.
#[derive(Debug, Default)]
pub struct Routed {
    /// The rows, ready for one `Storage::write`.
    pub batch: WriteBatch,
    /// Messages (by index in the batch) that made no row, with the reason.
    pub rejected: Vec<(usize, String)>,
    /// For each table, the message each of its rows came from, in row order.
    origins: BTreeMap<String, Vec<usize>>,
}

impl Routed {
    /// The message a row refused by storage (a type conflict, say) came from.
    pub fn message_of(&self, rejected: &RejectedPoint) -> Option<usize> {
        self.origins.get(&rejected.table)?.get(rejected.index).copied()
    }
}

impl Router {
    /// Compiles every rule; the first that cannot work is the error.
    pub fn new(specs: impl IntoIterator<Item = RuleSpec>) -> Result<Self> {
        let rules = specs.into_iter().map(Rule::new).collect::<Result<Vec<_>>>()?;
        Ok(Self { rules })
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Runs every message through the rules matching its topic.
    pub fn route(&self, messages: &[Message<'_>]) -> Routed {
        let mut routed = Routed::default();
        for (i, message) in messages.iter().enumerate() {
            let reasons = self.route_one(i, message, &mut routed);
            if let Err(reason) = reasons {
                routed.rejected.push((i, reason));
            }
        }
        routed
    }

    /// Adds the message's rows; the reasons it made none (or why a matching rule refused it).
    fn route_one(&self, i: usize, message: &Message<'_>, routed: &mut Routed) -> Result<(), String> {
        let mut matching = self.rules.iter().filter(|r| r.matches(message.topic)).peekable();
        if matching.peek().is_none() {
            return Err(format!("no rule matches topic {}", message.topic));
        }
        let payload: Json = serde_json::from_slice(message.payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        let mut failures = Vec::new();
        for rule in matching {
            match rule.apply(message, &payload) {
                Ok(Some(point)) => {
                    let table = &rule.spec().table;
                    routed.batch.push(table, point);
                    routed.origins.entry(table.clone()).or_default().push(i);
                }
                Ok(None) => {}
                Err(Error::Rejected(reason)) => failures.push(reason),
                Err(other) => failures.push(other.to_string()),
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use isobar_storage::{ScanRequest, Storage, StorageConfig};

    use super::*;
    use crate::rule::TimeUnit;

    fn spec(name: &str, sql: &str, table: &str, tags: &[&str]) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            sql: sql.into(),
            table: table.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            time: Some("ts".into()),
            time_unit: TimeUnit::Ms,
        }
    }

    fn message<'a>(topic: &'a str, payload: &'a str) -> Message<'a> {
        Message { topic, payload: payload.as_bytes(), client_id: "c", arrival_ns: 1_700_000_100_000_000_000, stream: None }
    }

    #[test]
    fn bad_messages_are_rejected_and_their_neighbours_stored() {
        let router = Router::new([
            spec("readings", "SELECT topic(2) AS device, ts, v FROM 'dev/+/data'", "readings", &["device"]),
            spec("alerts", "SELECT topic(2) AS device, ts, v AS level FROM 'dev/+/data' WHERE v > 10", "alerts", &["device"]),
        ])
        .expect("rules compile");
        let messages = [
            message("dev/a/data", r#"{"ts": 1700000000000, "v": 1.5}"#),
            message("dev/b/data", "not json"),
            message("other/topic", r#"{"ts": 1700000000000, "v": 1}"#),
            message("dev/c/data", r#"{"v": 2}"#),
            message("dev/d/data", r#"{"ts": 1700000000000, "v": 12}"#),
            message("dev/e/data", r#"{"ts": 1700000000000, "v": "text"}"#),
        ];
        let routed = router.route(&messages);
        let rejected: Vec<usize> = routed.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, vec![1, 2, 3]);
        assert!(routed.rejected[0].1.contains("not JSON"), "{:?}", routed.rejected);
        assert!(routed.rejected[1].1.contains("no rule matches topic other/topic"), "{:?}", routed.rejected);
        assert!(routed.rejected[2].1.contains("rule readings: time ts is missing"), "{:?}", routed.rejected);

        // Storage refuses the row whose `v` is text where the column is a double; the refusal
        // leads back to its message.
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let receipt = storage.write(&routed.batch).expect("durable");
        assert_eq!(receipt.rows_written, 3, "a, d and d's alert");
        let refused: Vec<Option<usize>> = receipt.rejected.iter().map(|r| routed.message_of(r)).collect();
        assert_eq!(refused, vec![Some(5)]);
        let rows: usize = storage.scan(&ScanRequest::all("alerts")).expect("scan").map(|b| b.expect("batch").num_rows()).sum();
        assert_eq!(rows, 1);
    }
}
