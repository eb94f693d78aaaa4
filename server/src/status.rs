//! The status tables the server adds to schema `system` from the state ingest keeps:
//! `system.kinesis_shards`, one row per shard of every consumed Kinesis stream.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use isobar_ingest::kinesis::{KinesisStatus, ShardStatus};
use isobar_query::QueryEngine;

/// Registers every status table with `engine`.
pub(crate) fn register(engine: &QueryEngine, kinesis: KinesisStatus) {
    engine.register_status_table("kinesis_shards", Arc::new(move || kinesis_shards(&kinesis)));
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
