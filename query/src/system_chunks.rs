//! `system.chunks`: one row per chunk file, read from storage when a query is planned (a status
//! table the query engine registers itself): table, partition, time range, rows, series, bytes,
//! the bytes of each column (as JSON text, `{"time": 812, "temperature": 2210}`), where it is
//! and when it moved there, and whether it waits to move to the cold store. What a user reads to see how well a table compresses, how many chunks a
//! partition has before compaction, and (with the cold tier) what is local and what is not.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use isobar_storage::Storage;

use crate::status_tables::{time_column, time_type};

/// The table's name in schema `system`.
pub(crate) const NAME: &str = "chunks";

/// The chunks as they are now.
pub(crate) fn rows(storage: &Storage) -> Result<RecordBatch> {
    let chunks = storage.chunks();
    let schema = Arc::new(Schema::new(vec![
        Field::new("chunk", DataType::Int64, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("partition_start", time_type(), false),
        Field::new("time_min", time_type(), false),
        Field::new("time_max", time_type(), false),
        Field::new("rows", DataType::Int64, false),
        Field::new("series", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("column_bytes", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("moved_at", time_type(), true),
        Field::new("cold_due", DataType::Boolean, false),
    ]));
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let numbers = |f: &dyn Fn(&isobar_storage::ChunkInfo) -> u64| {
        Arc::new(Int64Array::from_iter_values(chunks.iter().map(|c| count(f(c))))) as ArrayRef
    };
    let column_bytes = chunks.iter().map(|c| {
        let fields: Vec<String> = c.column_bytes.iter().map(|(name, bytes)| format!("{}: {bytes}", json_string(name))).collect();
        format!("{{{}}}", fields.join(", "))
    });
    let columns: Vec<ArrayRef> = vec![
        numbers(&|c| c.id),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.table.as_str()))),
        time_column(chunks.iter().map(|c| Some(c.partition_start_ns)).collect()),
        time_column(chunks.iter().map(|c| Some(c.time_min_ns)).collect()),
        time_column(chunks.iter().map(|c| Some(c.time_max_ns)).collect()),
        numbers(&|c| c.rows),
        numbers(&|c| c.series),
        numbers(&|c| c.bytes),
        Arc::new(StringArray::from_iter_values(column_bytes)),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| c.location))),
        time_column(chunks.iter().map(|c| c.moved_at_ns).collect()),
        Arc::new(BooleanArray::from_iter(chunks.iter().map(|c| Some(c.cold_due)))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use isobar_storage::{FieldValue, Point, Storage, StorageConfig, TableAlteration, WriteBatch};

    use crate::engine::{Output, QueryConfig, QueryEngine};

    #[test]
    fn column_names_are_json_strings() {
        assert_eq!(super::json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    /// Each persisted chunk is a row with its rows, series and bytes; the column bytes add up
    /// to less than the file, and a dropped column is not listed.
    #[test]
    fn every_chunk_is_a_row_with_its_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let engine = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        for (round, rows) in [(0i64, 100i64), (1, 50)] {
            let mut batch = WriteBatch::new();
            for i in 0..rows {
                let point = Point::new(round * 1_000_000 + i).tag("s", &format!("s{}", i % 4)).field("v", FieldValue::F64(i as f64));
                batch.push("w", point.field("n", FieldValue::I64(i)));
            }
            storage.write(&batch).expect("write");
            storage.persist().expect("persist");
        }
        let query = |sql: &str| match runtime.block_on(engine.execute(sql)).expect("query").pop() {
            Some(Output::Rows(batches)) => batches,
            other => panic!("{sql}: {other:?}"),
        };
        let batches = query("SELECT rows, series, bytes, column_bytes, location FROM system.chunks WHERE table_name = 'w' ORDER BY chunk");
        let batch = &batches[0];
        assert_eq!(batch.column(0).as_primitive::<Int64Type>(), &Int64Array::from(vec![100, 50]));
        assert_eq!(batch.column(1).as_primitive::<Int64Type>(), &Int64Array::from(vec![4, 4]));
        let bytes = batch.column(2).as_primitive::<Int64Type>();
        let columns = batch.column(3).as_string::<i32>();
        for row in 0..2 {
            let listed: Vec<(&str, i64)> = columns
                .value(row)
                .trim_matches(|c| c == '{' || c == '}')
                .split(", ")
                .map(|f| f.split_once(": ").map(|(n, b)| (n.trim_matches('"'), b.parse().expect("bytes"))).expect("name: bytes"))
                .collect();
            assert_eq!(listed.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["time", "v", "n"]);
            assert!(listed.iter().all(|(_, b)| *b > 0) && listed.iter().map(|(_, b)| b).sum::<i64>() < bytes.value(row), "{listed:?}");
            assert_eq!(batch.column(4).as_string::<i32>().value(row), "local");
        }
        storage.alter_table("w", &[TableAlteration::DropColumn { name: "n".into(), if_exists: false }]).expect("drop n");
        let batches = query("SELECT column_bytes FROM system.chunks WHERE table_name = 'w'");
        assert!(batches[0].column(0).as_string::<i32>().iter().flatten().all(|c| !c.contains("\"n\"")), "n is gone");
    }
}
