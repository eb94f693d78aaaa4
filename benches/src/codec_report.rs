//! The codec report: isobar's column codecs against Parquet with zstd level 3.
//!
//! For each column it prints
//! `<file>:<column> values=<n> isobar_bits=<b> parquet_zstd_bits=<b> encode_mb_s=<x> decode_mb_s=<y>`
//! and, last, `mean isobar_bits=<b> parquet_zstd_bits=<b> ratio=<isobar/parquet>`. Bits are per
//! value; isobar encodes in blocks of a chunk's row-group size, as chunks do; Parquet's size is
//! its column chunk's compressed size. Speeds are MB of 8-byte values per second, best of
//! several runs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use isobar_storage::ChunkOptions;
use isobar_storage::codec::{self, CodecOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::input::ColumnData;

/// Measurements of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    pub name: String,
    pub values: usize,
    pub isobar_bits: f64,
    pub parquet_zstd_bits: f64,
    pub encode_mb_s: f64,
    pub decode_mb_s: f64,
}

impl std::fmt::Display for ColumnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} values={} isobar_bits={:.3} parquet_zstd_bits={:.3} encode_mb_s={:.1} decode_mb_s={:.1}",
            self.name, self.values, self.isobar_bits, self.parquet_zstd_bits, self.encode_mb_s, self.decode_mb_s
        )
    }
}

/// The closing line.
pub fn summary(reports: &[ColumnReport]) -> String {
    let n = reports.len().max(1) as f64;
    let isobar = reports.iter().map(|r| r.isobar_bits).sum::<f64>() / n;
    let parquet = reports.iter().map(|r| r.parquet_zstd_bits).sum::<f64>() / n;
    format!("mean isobar_bits={isobar:.3} parquet_zstd_bits={parquet:.3} ratio={:.3}", isobar / parquet)
}

/// Measures one column; `runs` timing repetitions (the best is kept).
pub fn report_column(name: &str, column: &ColumnData, runs: usize) -> Result<ColumnReport> {
    let opts = CodecOptions::default();
    let block = ChunkOptions::default().row_group_rows_max as usize;
    let n = column.len();
    let (encoded, encode_s) = best_of(runs, || match column {
        ColumnData::F64(v) => {
            let mut choice = codec::F64Choice::default();
            v.chunks(block).map(|c| codec::encode_f64_block(c, &opts, &mut choice)).collect::<Vec<_>>()
        }
        ColumnData::TimestampNs(v) => v.chunks(block).map(|c| codec::encode_i64(c, &opts)).collect(),
    });
    let (decoded, decode_s) = best_of(runs, || {
        let sizes = (0..n).step_by(block).map(|s| block.min(n - s));
        match column {
            ColumnData::F64(_) => {
                let out: Result<Vec<f64>, _> =
                    encoded.iter().zip(sizes).map(|(b, k)| codec::decode_f64(b, k)).collect::<Result<Vec<_>, _>>().map(|v| v.concat());
                out.map(ColumnData::F64)
            }
            ColumnData::TimestampNs(_) => {
                let out: Result<Vec<i64>, _> =
                    encoded.iter().zip(sizes).map(|(b, k)| codec::decode_i64(b, k)).collect::<Result<Vec<_>, _>>().map(|v| v.concat());
                out.map(ColumnData::TimestampNs)
            }
        }
    });
    let decoded = decoded?;
    let same = match (&decoded, column) {
        (ColumnData::F64(a), ColumnData::F64(b)) => a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
        (a, b) => a == b,
    };
    anyhow::ensure!(same && decoded.len() == n, "{name}: isobar round trip differs");
    let isobar_bytes: usize = encoded.iter().map(Vec::len).sum();
    let mb = (n * 8) as f64 / 1e6;
    Ok(ColumnReport {
        name: name.to_owned(),
        values: n,
        isobar_bits: isobar_bytes as f64 * 8.0 / n.max(1) as f64,
        parquet_zstd_bits: parquet_zstd_bytes(column)? as f64 * 8.0 / n.max(1) as f64,
        encode_mb_s: mb / encode_s,
        decode_mb_s: mb / decode_s,
    })
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, f64) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed().as_secs_f64());
        out = Some(v);
    }
    (out.expect("at least one run"), best.max(1e-9))
}

/// Compressed size of the column written by the `parquet` crate with zstd level 3.
pub fn parquet_zstd_bytes(column: &ColumnData) -> Result<u64> {
    let (field, array): (Field, ArrayRef) = match column {
        ColumnData::F64(v) => (Field::new("v", DataType::Float64, false), Arc::new(Float64Array::from(v.clone()))),
        ColumnData::TimestampNs(v) => {
            (Field::new("v", DataType::Timestamp(TimeUnit::Nanosecond, None), false), Arc::new(TimestampNanosecondArray::from(v.clone())))
        }
    };
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array])?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?)).build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))?;
    writer.write(&batch)?;
    let meta = writer.close()?;
    Ok(meta.row_groups().iter().map(|g| g.column(0).compressed_size() as u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_columns;

    /// A CSV with a regular 1 s timestamp column: the timestamps cost at most 0.1 bit each.
    #[test]
    fn regular_one_second_timestamps_cost_a_tenth_of_a_bit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("station.csv");
        let mut sensor = isobar_ingest::simulator::SeedFleet::new(1, 0, 3);
        let mut text = String::from("timestamp;temperature\n");
        for i in 0..100_000u64 {
            let (h, m, s) = (i / 3600 % 24, i / 60 % 60, i % 60);
            let value = sensor.next_reading(0).sensor_value;
            text += &format!("2024-03-{:02} {h:02}:{m:02}:{s:02};{value}\n", 1 + i / 86_400);
        }
        std::fs::write(&path, text).expect("write");
        let columns = read_columns(&std::fs::read_to_string(&path).expect("read")).expect("parse");
        assert_eq!(columns.len(), 2);
        let time = report_column("timestamp", &columns[0].1, 1).expect("report");
        assert!(matches!(columns[0].1, ColumnData::TimestampNs(_)));
        assert!(time.isobar_bits <= 0.1, "{time}");
        let temperature = report_column("temperature", &columns[1].1, 1).expect("report");
        assert!(temperature.isobar_bits < temperature.parquet_zstd_bits, "{temperature}");
        assert!(summary(&[time, temperature]).starts_with("mean isobar_bits="));
    }
}
