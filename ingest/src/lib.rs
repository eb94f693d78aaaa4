//! isobar's ingest layer: sources (MQTT, Kinesis), the IoT-rule language that maps topics and
//! JSON payloads to table rows, batching, backpressure and dead letters.
//!
//! Sources write only through `isobar_storage::Storage::write` and acknowledge a message only
//! after that call returns. The sources themselves arrive with the MQTT ingest work; until then
//! this crate holds the fleet simulator, which also drives benchmarks and the demo.

pub mod simulator;

pub use isobar_storage::{Point, WriteBatch};
