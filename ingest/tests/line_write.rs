//! A body of line protocol written through the ingestor: every good line durable in one write
//! and readable at once, each bad line (one that does not parse, one whose field type conflicts
//! with its table) reported with its number, and neither affecting its neighbours.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use isobar_ingest::line_protocol::Precision;
use isobar_ingest::{Ingestor, Router};
use isobar_storage::{ScanRequest, Storage, StorageConfig};

fn rows(storage: &Storage, table: &str) -> Vec<(i64, String, Option<f64>, Option<i64>)> {
    let mut out = Vec::new();
    for batch in storage.scan(&ScanRequest::all(table)).expect("scan") {
        let batch: RecordBatch = batch.expect("batch");
        let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
        let times = column("time").as_primitive::<TimestampNanosecondType>();
        let stations = column("station").as_string::<i32>();
        let v = batch.column_by_name("v").map(|c| c.as_primitive::<Float64Type>().clone());
        let n = batch.column_by_name("n").map(|c| c.as_primitive::<Int64Type>().clone());
        for i in 0..batch.num_rows() {
            let v = v.as_ref().and_then(|c| c.is_valid(i).then(|| c.value(i)));
            let n = n.as_ref().and_then(|c| c.is_valid(i).then(|| c.value(i)));
            out.push((times.value(i), stations.value(i).to_owned(), v, n));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

#[test]
fn good_lines_are_written_and_bad_ones_reported_by_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
    let ingestor = Ingestor::new(storage.clone(), Arc::new(Router::new(Vec::new()).expect("no rules"))).expect("ingestor");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let body = "# weather\n\
                weather,station=a v=1.5,n=1i 1000\n\
                weather,station=b v= 2\n\
                weather,station=b v=2.5 2000\n\
                weather,station=c v=\"text\" 3000\n\
                other,station=a n=7i 4000\n\
                weather,station=c n=3i\n";
    let written = runtime.block_on(ingestor.write_lines(body.to_owned(), Precision::Nanoseconds, 9_000)).expect("write");
    assert_eq!(written.points_written, 4);
    let numbers: Vec<usize> = written.errors.iter().map(|e| e.line_number).collect();
    assert_eq!(numbers, [3, 5], "{:?}", written.errors);
    assert!(written.errors[0].reason.contains("missing value"), "{:?}", written.errors[0]);
    assert_eq!(written.errors[1].line, "weather,station=c v=\"text\" 3000");
    assert!(written.errors[1].reason.contains("f64"), "a type conflict names the column's type: {:?}", written.errors[1]);
    assert_eq!(
        rows(&storage, "weather"),
        [(1000, "a".to_owned(), Some(1.5), Some(1)), (2000, "b".to_owned(), Some(2.5), None), (9_000, "c".to_owned(), None, Some(3)),]
    );
    assert_eq!(rows(&storage, "other"), [(4000, "a".to_owned(), None, Some(7))]);
    // Seconds, and nothing but bad lines: nothing written, each reported.
    let written =
        runtime.block_on(ingestor.write_lines("weather,station=d v=1 5\nweather v=\n".to_owned(), Precision::Seconds, 0)).expect("write");
    assert_eq!((written.points_written, written.errors.len()), (1, 1));
    assert_eq!(rows(&storage, "weather").last(), Some(&(5_000_000_000, "d".to_owned(), Some(1.0), None)));
}
