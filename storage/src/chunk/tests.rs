//! Chunk round trips under random selections, and flipped bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::write::{ChunkIdentity, encode_chunk};
use super::{ChunkOptions, ChunkReader};
use crate::batch::Row;
use crate::codec::CodecOptions;
use crate::model::{ColumnId, FieldType, FieldValue, Point, SeriesId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::schema::{PointLimits, TableSchema};

fn schema() -> TableSchema {
    let mut s = TableSchema::new(TableId(1), "t");
    let limits = PointLimits { tags_per_series_max: 8, columns_per_table_max: 8, name_bytes_max: 64, string_bytes_max: 64 };
    let p = Point::new(0)
        .field("f", FieldValue::F64(0.0))
        .field("i", FieldValue::I64(0))
        .field("b", FieldValue::Bool(false))
        .field("s", FieldValue::String(Arc::from("")));
    s.resolve(&p, &limits).expect("valid");
    s
}

fn types() -> BTreeMap<ColumnId, FieldType> {
    BTreeMap::from([
        (ColumnId(0), FieldType::F64),
        (ColumnId(1), FieldType::I64),
        (ColumnId(2), FieldType::Bool),
        (ColumnId(3), FieldType::String),
    ])
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    rows_of(6, 150)
}

/// Up to `rows_max` rows of series `0..series`.
fn rows_of(series: u64, rows_max: usize) -> impl Strategy<Value = Vec<Row>> {
    let field = |id: u16| -> BoxedStrategy<Option<(ColumnId, FieldValue)>> {
        let value: BoxedStrategy<FieldValue> = match id {
            0 => (-500i64..500).prop_map(|v| FieldValue::F64(v as f64 / 4.0)).boxed(),
            1 => any::<i64>().prop_map(FieldValue::I64).boxed(),
            2 => any::<bool>().prop_map(FieldValue::Bool).boxed(),
            _ => "[ab]{0,3}".prop_map(|s| FieldValue::String(Arc::from(s))).boxed(),
        };
        prop::option::of(value.prop_map(move |v| (ColumnId(id), v))).boxed()
    };
    let row = (0u64..series, 0i64..200, field(0), field(1), field(2), field(3)).prop_map(|(s, t, a, b, c, d)| Row {
        series: SeriesId(s),
        time: t,
        fields: [a, b, c, d].into_iter().flatten().collect(),
    });
    prop::collection::vec(row, 1..rows_max)
}

fn open(bytes: &[u8]) -> (tempfile::TempDir, crate::Result<ChunkReader>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.chunk");
    std::fs::write(&path, bytes).expect("write");
    let reader = ChunkReader::open(&path);
    (dir, reader)
}

fn opts() -> ChunkOptions {
    ChunkOptions { row_group_rows_max: 16, codec: CodecOptions { pco_level: 2, zstd_level: 1 } }
}

const IDENTITY: ChunkIdentity = ChunkIdentity { table: TableId(1), partition_start_ns: 0, generation: 9 };

proptest! {
    #[test]
    fn chunks_read_back_what_the_selection_wants(
        rows in rows(),
        series in prop::option::of(prop::collection::btree_set(0u64..6, 0..4)),
        (lo, hi) in (0i64..200, 0i64..200),
        columns in prop::option::of(prop::collection::btree_set(0u16..4, 0..4)),
    ) {
        let set = RowSet::from_rows(&rows, &types());
        let (bytes, _) = encode_chunk(IDENTITY, &set, &schema(), &opts());
        let (_dir, reader) = open(&bytes);
        let reader = reader.expect("opens");
        let series: Option<Vec<SeriesId>> = series.map(|s| s.into_iter().map(SeriesId).collect());
        let columns: Option<Vec<ColumnId>> = columns.map(|c| c.into_iter().map(ColumnId).collect());
        let selection = Selection { series: series.as_deref(), time_min: lo.min(hi), time_max: lo.max(hi), columns: columns.as_deref() };
        let got = reader.read(&selection).expect("reads");
        let mut expected = set.select(&selection);
        expected.columns.retain(|c| selection.wants_column(c.id));
        prop_assert_eq!(got.to_rows(), expected.to_rows());
        if !expected.is_empty() {
            prop_assert!(reader.may_match(&selection), "the footer must not rule out matching rows");
        }
    }
}

proptest! {
    /// A selection of a few of a chunk's many series looks them up in the footer instead of
    /// filtering every entry; both give the same entries, and reads the same rows.
    #[test]
    fn a_few_series_of_many_are_looked_up_as_they_are_filtered(
        rows in rows_of(400, 600),
        series in prop::collection::btree_set(0u64..420, 0..12),
        (lo, hi) in (0i64..200, 0i64..200),
    ) {
        let set = RowSet::from_rows(&rows, &types());
        let (bytes, _) = encode_chunk(IDENTITY, &set, &schema(), &opts());
        let (_dir, reader) = open(&bytes);
        let reader = reader.expect("opens");
        let series: Vec<SeriesId> = series.into_iter().map(SeriesId).collect();
        let selection = Selection { series: Some(&series), time_min: lo.min(hi), time_max: lo.max(hi), columns: None };
        let looked_up: Vec<_> = reader.selected_series(&selection).map(|s| s.series).collect();
        let filtered: Vec<_> = reader
            .footer
            .series
            .iter()
            .filter(|s| selection.wants_series(s.series) && selection.overlaps(s.time_min, s.time_max))
            .map(|s| s.series)
            .collect();
        prop_assert_eq!(looked_up, filtered);
        prop_assert_eq!(reader.read(&selection).expect("reads").to_rows(), set.select(&selection).to_rows());
    }
}

/// Every flipped byte of a chunk is an error at open or read, or the rows come back unchanged.
#[test]
fn every_flipped_byte_is_detected() {
    let rows: Vec<Row> = (0..60)
        .map(|i| Row {
            series: SeriesId(i % 3),
            time: i as i64 * 7,
            fields: [
                (ColumnId(0), FieldValue::F64(i as f64 * 0.5)),
                (ColumnId(3), FieldValue::String(Arc::from(["x", "y"][i as usize % 2]))),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    let set = RowSet::from_rows(&rows, &types());
    let (bytes, _) = encode_chunk(IDENTITY, &set, &schema(), &opts());
    let all = Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None };
    let expected = set.to_rows();
    let mut errors = 0;
    for i in 0..bytes.len() {
        for bit in [0u8, 5] {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1 << bit;
            let (_dir, reader) = open(&damaged);
            match reader.and_then(|r| r.read(&all)) {
                Err(crate::Error::Corrupt { .. }) => errors += 1,
                Err(e) => panic!("byte {i}: unexpected error {e}"),
                Ok(got) => assert_eq!(got.to_rows(), expected, "byte {i} bit {bit} changed the rows"),
            }
        }
    }
    assert_eq!(errors, bytes.len() * 2, "every flip is caught by a checksum or a format check");
}

/// Found by the `chunk_footer` fuzz target: a block whose offset plus length overflows u64.
#[test]
fn a_block_reference_past_u64_is_an_error() {
    let hex = [
        "0a9c0000020000d300000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000001000000000000000000000000000024ffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "ffffffffffffffffffffffffffffffffffffffffff00313100013131003635313131313563310019000000ffffffff00",
        "00000000000027000a",
    ]
    .concat();
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    let blocks_end = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    assert!(super::Footer::decode(&bytes[8..], blocks_end).is_err());
}
