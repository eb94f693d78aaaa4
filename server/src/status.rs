//! The status tables the server adds to schema `system` from the state ingest, storage and
//! alerts keep: `system.kinesis_shards`, one row per shard of every consumed Kinesis stream;
//! `system.ingest`, the counters of each way rows arrive; and `system.alerts`, one row per
//! series of every alert that breaches or has fired.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::error::Result;
use isobar_ingest::kinesis::{KinesisStatus, ShardStatus};
use isobar_query::QueryEngine;
use isobar_storage::Storage;

use crate::metrics::IngestMetrics;

/// Registers `system.kinesis_shards` and `system.ingest` with `engine`.
pub(crate) fn register(engine: &QueryEngine, ingest: Arc<IngestMetrics>) {
    let kinesis = ingest.kinesis_status.clone();
    engine.register_status_table("kinesis_shards", Arc::new(move || kinesis_shards(&kinesis)));
    let storage = engine.storage().clone();
    engine.register_status_table("ingest", Arc::new(move || ingest_counters(&ingest, &storage)));
}

/// Per way in (source): messages (or records, or requests) received, rows written, and messages
/// that made no row, since start. `storage` is every row written by any way, SQL included.
fn ingest_counters(ingest: &IngestMetrics, storage: &Storage) -> Result<RecordBatch> {
    let load = |c: &AtomicU64| i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let (mqtt, subs, kinesis, m) = (&ingest.mqtt, &ingest.subscriptions, &ingest.kinesis, storage.metrics());
    let rows = [
        ("mqtt_listener", load(&mqtt.messages), load(&mqtt.rows_written), load(&mqtt.messages_rejected)),
        ("mqtt_subscriptions", load(&subs.messages), load(&subs.rows_written), load(&subs.messages_rejected)),
        ("kinesis", load(&kinesis.records), load(&kinesis.rows_written), load(&kinesis.records_rejected)),
        ("line_protocol", load(&ingest.line_writes), load(&ingest.line_points_written), load(&ingest.line_lines_rejected)),
        ("storage", load(&m.rows_written), load(&m.rows_written), load(&m.rows_rejected)),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("messages", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("rejected", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Registers `system.alerts`.
pub(crate) fn register_alerts(engine: &QueryEngine, store: Arc<crate::alerts::Store>) {
    engine.register_status_table("alerts", Arc::new(move || alerts(&store.rows())));
}

/// Alert, series (its tags, `name=value` joined by `,`), state (`pending`, `firing` or
/// `resolved`), since (start of the window the state began with), the consecutive
/// breaching windows, the newest window judged, when it fired, and that window's columns as
/// JSON.
fn alerts(rows: &[crate::alerts::SeriesRow]) -> Result<RecordBatch> {
    let time = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("alert", DataType::Utf8, false),
        Field::new("series", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("since", time(), false),
        Field::new("breaching_windows", DataType::Int64, false),
        Field::new("last_window", time(), false),
        Field::new("fired", time(), true),
        Field::new("last_values", DataType::Utf8, false),
    ]));
    let text = |f: &dyn Fn(&crate::alerts::SeriesRow) -> String| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        text(&|r| r.alert.clone()),
        text(&|r| r.series.clone()),
        text(&|r| r.state.phase.as_str().to_owned()),
        utc(rows.iter().map(|r| Some(r.state.since_ns)).collect()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| i64::from(r.state.breaches)))),
        utc(rows.iter().map(|r| Some(r.state.last_window_ns)).collect()),
        utc(rows.iter().map(|r| r.state.fired_ns).collect()),
        text(&|r| serde_json::Value::Object(r.state.values.clone()).to_string()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn utc(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

/// Stream, shard, parents, checkpoint (sequence and sub-sequence number), state, records read
/// since start and milliseconds behind the stream's newest record, per shard.
fn kinesis_shards(kinesis: &KinesisStatus) -> Result<RecordBatch> {
    let shards = kinesis.shards();
    let schema = Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, false),
        Field::new("parents", DataType::Utf8, false),
        Field::new("checkpoint", DataType::Utf8, true),
        Field::new("sub_sequence_number", DataType::Int64, true),
        Field::new("state", DataType::Utf8, false),
        Field::new("records", DataType::Int64, false),
        Field::new("millis_behind", DataType::Int64, true),
    ]));
    type Row = ((String, String), ShardStatus);
    let text = |f: &dyn Fn(&Row) -> String| Arc::new(StringArray::from_iter_values(shards.iter().map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        text(&|((stream, _), _)| stream.clone()),
        text(&|((_, shard), _)| shard.clone()),
        text(&|(_, s)| s.parents.join(",")),
        Arc::new(shards.iter().map(|(_, s)| s.checkpoint.sequence_number.clone()).collect::<StringArray>()),
        Arc::new(
            shards
                .iter()
                .map(|(_, s)| s.checkpoint.sub_sequence_number.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
                .collect::<Int64Array>(),
        ),
        text(&|(_, s)| s.state.as_str().to_owned()),
        Arc::new(Int64Array::from_iter_values(shards.iter().map(|(_, s)| i64::try_from(s.records).unwrap_or(i64::MAX)))),
        Arc::new(shards.iter().map(|(_, s)| s.millis_behind).collect::<Int64Array>()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
