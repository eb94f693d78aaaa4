//! A shard's checkpoint: the last record whose rows are durable, kept as a source position that
//! storage commits in the same write as those rows.
//!
//! The position of shard `S` of stream `N` is stored under the source `kinesis:N:S` as JSON:
//! `{"sequence_number": "4959...", "sub_sequence_number": 2, "finished": false}`. A finished shard
//! (read to its end) is checkpointed once more with `finished: true`, which lets its children
//! start. `sequence_number` is absent while nothing of the shard has been stored.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Where a shard's reading stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last record stored, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    /// Its last user record stored, for a KPL aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence_number: Option<u64>,
    /// The shard was read to its end.
    #[serde(default)]
    pub finished: bool,
}

impl Checkpoint {
    /// The storage source its position is kept under.
    pub fn source(stream: &str, shard_id: &str) -> String {
        format!("kinesis:{stream}:{shard_id}")
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored position; `None` when it is not a checkpoint (then the shard starts afresh,
    /// which the caller logs).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Orders two sequence numbers: decimal strings of up to 128 bits, compared as numbers.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_bad_bytes_are_none() {
        let c = Checkpoint { sequence_number: Some("4959".into()), sub_sequence_number: Some(3), finished: true };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode(b"{}"), Some(Checkpoint::default()));
        assert_eq!(Checkpoint::decode(b"\xff"), None);
        assert_eq!(Checkpoint::source("weather", "shardId-000000000001"), "kinesis:weather:shardId-000000000001");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("49590338271490256608559692538361571095921575989136588898", "4959"), Ordering::Greater);
        assert_eq!(compare_sequence_numbers("0012", "12"), Ordering::Equal);
        assert_eq!(compare_sequence_numbers("123", "124"), Ordering::Less);
    }
}
