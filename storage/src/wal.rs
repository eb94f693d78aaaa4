//! The write-ahead log record format.
//!
//! WAL records live in the catalog's RocksDB instance (column family `wal`, keyed by
//! [`WalSequence`]) and are written with `sync = true`, grouped by the committer. Each record is
//! versioned and carries a CRC-32C of its payload, so a record damaged on disk is detected when
//! the WAL is replayed, independently of RocksDB's own checks.
//!
//! ```text
//! record  := magic 0x57 'W' | version u8 = 1 | crc32c u32 (of payload) | payload_len u32 | payload
//! payload := table_count u16 | table*
//! table   := table_id u32 | row_count u32 | row*
//! row     := series_id u64 | time_ns i64 | field_count u16 | (column_id u16 | value)*
//! value   := type u8 (1 f64, 2 i64, 3 bool, 4 string) | f64 | i64 | u8 | u32 length + UTF-8 bytes
//! ```

use std::sync::Arc;

use crate::batch::{RowBatch, TableRows};
use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;
use crate::model::{ColumnId, FieldType, FieldValue, SeriesId, TableId};

const MAGIC: u8 = b'W';
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 10;

/// Encodes one WAL record.
pub(crate) fn encode(tables: &[(TableId, RowBatch)]) -> Vec<u8> {
    // Room for rows of numbers, so the record is not copied as it grows.
    let values: usize = tables.iter().map(|(_, rows)| rows.value_count()).sum();
    let rows: usize = tables.iter().map(|(_, rows)| rows.len()).sum();
    let mut w = Writer { buf: Vec::with_capacity(HEADER_BYTES + 2 + tables.len() * 8 + rows * 18 + values * 11) };
    w.bytes(&[MAGIC, VERSION, 0, 0, 0, 0, 0, 0, 0, 0]);
    w.u16(u16::try_from(tables.len()).expect("a batch holds fewer than 65536 tables"));
    for (table, rows) in tables {
        w.u32(table.0);
        w.u32(u32::try_from(rows.len()).expect("a batch holds fewer than 2^32 rows"));
        for row in rows.iter() {
            w.u64(row.series.0);
            w.i64(row.time);
            w.u16(u16::try_from(row.fields.len()).expect("columns are limited below 65536"));
            for (id, value) in row.fields.iter() {
                w.u16(id.0);
                encode_value(&mut w, value);
            }
        }
    }
    let mut buf = w.into_inner();
    let payload_len = u32::try_from(buf.len() - HEADER_BYTES).expect("a WAL record is below 4 GiB");
    let crc = crc32c::crc32c(&buf[HEADER_BYTES..]);
    buf[2..6].copy_from_slice(&crc.to_le_bytes());
    buf[6..10].copy_from_slice(&payload_len.to_le_bytes());
    buf
}

pub(crate) fn encode_value(w: &mut Writer, value: &FieldValue) {
    w.u8(value.field_type().code());
    match value {
        FieldValue::F64(v) => w.f64(*v),
        FieldValue::I64(v) => w.i64(*v),
        FieldValue::Bool(v) => w.u8(u8::from(*v)),
        FieldValue::String(s) => w.str(s),
    }
}

pub(crate) fn decode_value(r: &mut Reader<'_>) -> Result<FieldValue, DecodeError> {
    let code = r.u8()?;
    Ok(match FieldType::from_code(code) {
        Some(FieldType::F64) => FieldValue::F64(r.f64()?),
        Some(FieldType::I64) => FieldValue::I64(r.i64()?),
        Some(FieldType::Bool) => match r.u8()? {
            0 => FieldValue::Bool(false),
            1 => FieldValue::Bool(true),
            b => return Err(r.err(format!("bool byte {b}"))),
        },
        Some(FieldType::String) => FieldValue::String(Arc::from(r.str()?)),
        None => return Err(r.err(format!("unknown value type {code}"))),
    })
}

/// Decodes one WAL record; any damage is an error naming the offset within the record.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<TableRows>, DecodeError> {
    let mut r = Reader::new(bytes);
    let magic = r.u8()?;
    if magic != MAGIC {
        return Err(DecodeError::new(0, format!("bad magic byte {magic:#04x}")));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::new(1, format!("unknown WAL record version {version}")));
    }
    let crc = r.u32()?;
    let payload_len = r.u32()? as usize;
    if payload_len != r.remaining() {
        return Err(DecodeError::new(6, format!("payload length {payload_len}, record holds {}", r.remaining())));
    }
    let actual = crc32c::crc32c(&bytes[HEADER_BYTES..]);
    if actual != crc {
        return Err(DecodeError::new(2, format!("checksum mismatch: stored {crc:#010x}, computed {actual:#010x}")));
    }
    let table_count = r.u16()?;
    let mut tables = Vec::with_capacity(usize::from(table_count).min(r.remaining()));
    for _ in 0..table_count {
        let table = TableId(r.u32()?);
        let row_count = r.len_u32(18)?;
        let mut rows = RowBatch::with_capacity(row_count, row_count);
        let mut fields = Vec::new();
        for _ in 0..row_count {
            let series = SeriesId(r.u64()?);
            let time = r.i64()?;
            let field_count = r.u16()?;
            fields.clear();
            for _ in 0..field_count {
                let id = ColumnId(r.u16()?);
                if fields.last().is_some_and(|(last, _): &(ColumnId, FieldValue)| *last >= id) {
                    return Err(r.err("field columns out of order"));
                }
                fields.push((id, decode_value(&mut r)?));
            }
            rows.push(series, time, fields.drain(..));
        }
        tables.push(TableRows::new(table, rows));
    }
    r.finish()?;
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::Row;

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<f64>().prop_map(FieldValue::F64),
            any::<i64>().prop_map(FieldValue::I64),
            any::<bool>().prop_map(FieldValue::Bool),
            ".{0,12}".prop_map(|s| FieldValue::String(Arc::from(s))),
        ]
    }

    fn row() -> impl Strategy<Value = Row> {
        (any::<u64>(), any::<i64>(), prop::collection::btree_map(any::<u16>(), value(), 1..5)).prop_map(|(s, t, f)| Row {
            series: SeriesId(s),
            time: t,
            fields: f.into_iter().map(|(k, v)| (ColumnId(k), v)).collect(),
        })
    }

    fn record() -> impl Strategy<Value = Vec<(TableId, RowBatch)>> {
        prop::collection::vec((any::<u32>(), prop::collection::vec(row(), 0..8)).prop_map(|(t, rows)| (TableId(t), rows.into())), 0..4)
    }

    fn same(a: &[(TableId, RowBatch)], b: &[TableRows]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((table, rows), y)| {
                *table == y.table && rows.len() == y.rows.len() && rows.iter().zip(y.rows.iter()).all(|(p, q)| p.to_row().same(&q.to_row()))
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(tables in record()) {
            let decoded = decode(&encode(&tables)).expect("decodes");
            prop_assert!(same(&tables, &decoded));
        }

        #[test]
        fn truncated_records_are_errors(tables in record(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&tables);
            let n = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..n]).is_err());
        }
    }

    /// Every single flipped bit in a record is detected.
    #[test]
    fn every_flipped_bit_is_an_error() {
        let rows = vec![
            Row { series: SeriesId(1), time: 5, fields: Box::new([(ColumnId(0), FieldValue::F64(1.5))]) },
            Row { series: SeriesId(2), time: 6, fields: Box::new([(ColumnId(1), FieldValue::String(Arc::from("ok")))]) },
        ];
        let tables = vec![(TableId(3), rows.into())];
        let bytes = encode(&tables);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(decode(&damaged).is_err(), "byte {i} bit {bit}");
            }
        }
    }
}
