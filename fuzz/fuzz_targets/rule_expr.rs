//! Fuzzes IoT rules: an arbitrary rule (the bytes before the first NUL, as its SQL) is
//! compiled, and it and the seed fleet's rule are applied to an arbitrary payload (the bytes
//! after it), as an MQTT message and as a Kinesis record. Compiling and evaluating give rows or errors, never a panic.
#![no_main]

use std::sync::OnceLock;

use isobar_ingest::simulator::seed_rule;
use isobar_ingest::{Message, Router, RuleSpec, StreamRecord, TimeUnit};

/// The seed fleet's rule, compiled once: compiling it for every input would be most of the work.
static SEED: OnceLock<Option<Router>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (sql, payload) = (String::from_utf8_lossy(&data[..split]), data.get(split + 1..).unwrap_or_default());
    let message =
        Message { topic: "weather/wa/seattle/st-1/temperature/t-1", payload, client_id: "fuzz", arrival_ns: 1_700_000_000_000_000_000, stream: None };
    let record = StreamRecord { partition_key: "st-1", sequence_number: "4959", sub_sequence_number: Some(1), shard_id: "shardId-0", arrival_ms: 1 };
    if let Some(router) = SEED.get_or_init(|| Router::new([seed_rule()]).ok()) {
        let _ = router.route(&[message]);
    }
    let spec = RuleSpec {
        name: "fuzz".into(),
        sql: sql.into_owned(),
        table: "t".into(),
        tags: vec!["sensor_id".into()],
        time: Some("ts".into()),
        time_unit: TimeUnit::Auto,
    };
    if let Ok(router) = Router::new([spec]) {
        let _ = router.route(&[message, Message { topic: "a/b", ..message }, Message { stream: Some(record), ..message }]);
    }
});
