//! isobar's ingest layer: sources (MQTT, Kinesis), the IoT-rule language that maps topics and
//! JSON payloads to table rows, batching, backpressure and dead letters.
//!
//! Sources write only through `isobar_storage::Storage::write` and acknowledge a message only
//! after that call returns. `rule.rs` compiles IoT rules (SQL over topics and JSON payloads)
//! into rows; `router.rs` runs a batch of messages through them into one write batch;
//! `line_protocol.rs` parses InfluxDB line protocol into points; `store.rs` writes it and the dead letters (`dead_letters.rs`, table `system.ingest_errors`)
//! of the messages no rule could store; `topic.rs` matches MQTT topic filters; `mqtt_listener.rs` takes devices' publishes and serves subscribers through `mqtt_broker.rs`; `mqtt_subscriber.rs` subscribes to an external broker; `kinesis.rs` consumes Amazon Kinesis streams, `kpl.rs` takes their KPL aggregates apart; `tls.rs` loads certificates for
//! both; `emit.rs` publishes final rollup windows to the listener's subscribers; `simulator.rs` is the fleet simulator and `publisher.rs` publishes it over MQTT (`isobar simulate`),
//! which also drives benchmarks and the demo.

#[cfg(feature = "engine")]
pub mod dead_letters;
#[cfg(feature = "engine")]
pub mod emit;
mod error;
#[cfg(feature = "engine")]
pub mod kinesis;
pub mod kpl;
pub mod line_protocol;
pub mod mqtt_broker;
pub mod mqtt_codec;
#[cfg(feature = "engine")]
pub mod mqtt_listener;
#[cfg(feature = "engine")]
pub mod mqtt_subscriber;
pub mod publisher;
mod remote;
pub mod router;
pub mod rule;
pub mod simulator;
#[cfg(feature = "engine")]
mod store;
pub mod tls;
pub mod topic;
pub mod users;

pub use error::{Error, Result};
pub use router::{Routed, Router};
pub use rule::{Message, Rule, RuleSpec, StreamRecord, TimeUnit};
#[cfg(feature = "engine")]
pub use store::{Ingestor, LinesWritten, Stored};
pub use users::Users;

pub use isobar_storage::{Point, WriteBatch};
