//! Building chunk files from a [`RowSet`].

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use super::format::{BlockRef, ColumnMeta, FORMAT_VERSION, Footer, HEADER_MAGIC, RowGroupMeta, SeriesMeta, Stats, TRAILER_MAGIC};
use crate::bytes::Writer;
use crate::codec::{self, CodecOptions, F64Choice, pack_bits};
use crate::error::{Result, io_err};
use crate::model::TableId;
use crate::rowset::{Column, RowSet, Values};
use crate::schema::TableSchema;

/// How chunks are cut and encoded.
#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Rows per row group, the unit a scan decodes.
    pub row_group_rows_max: u32,
    pub codec: CodecOptions,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { row_group_rows_max: 16 * 1024, codec: CodecOptions::default() }
    }
}

/// Identity of a chunk being written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkIdentity {
    pub(crate) table: TableId,
    pub(crate) partition_start_ns: i64,
    pub(crate) generation: u64,
}

/// Encodes `rows` (not empty) as a chunk file's bytes.
pub(crate) fn encode_chunk(id: ChunkIdentity, rows: &RowSet, schema: &TableSchema, opts: &ChunkOptions) -> (Vec<u8>, Footer) {
    assert!(!rows.is_empty(), "chunks hold at least one row");
    let mut w = Writer::new();
    w.bytes(HEADER_MAGIC);
    w.u16(FORMAT_VERSION);
    w.u16(0);
    let group_rows = opts.row_group_rows_max.max(1) as usize;
    let mut row_groups = Vec::new();
    // Each column's codec, chosen on one row group and reused for the next ones.
    let mut choices = vec![F64Choice::default(); rows.columns.len()];
    for start in (0..rows.len()).step_by(group_rows) {
        let end = (start + group_rows).min(rows.len());
        let times = &rows.times[start..end];
        let time_block = append_block(&mut w, &codec::encode_i64(times, &opts.codec));
        let column_blocks = rows
            .columns
            .iter()
            .zip(&mut choices)
            .map(|(c, choice)| append_block(&mut w, &encode_column(c, start..end, &opts.codec, choice)))
            .collect();
        row_groups.push(RowGroupMeta {
            row_start: start as u64,
            rows: (end - start) as u32,
            time_min: *times.iter().min().expect("row groups are not empty"),
            time_max: *times.iter().max().expect("row groups are not empty"),
            time_block,
            column_blocks,
        });
    }
    let footer = Footer {
        table: id.table,
        partition_start_ns: id.partition_start_ns,
        generation: id.generation,
        row_count: rows.len() as u64,
        time_min: row_groups.iter().map(|g| g.time_min).min().expect("at least one row group"),
        time_max: row_groups.iter().map(|g| g.time_max).max().expect("at least one row group"),
        columns: rows.columns.iter().map(|c| column_meta(c, schema)).collect(),
        row_groups,
        series: rows
            .series
            .iter()
            .map(|run| {
                let times = &rows.times[run.row_start..run.row_start + run.rows];
                SeriesMeta {
                    series: run.series,
                    row_start: run.row_start as u64,
                    rows: run.rows as u32,
                    time_min: times[0],
                    time_max: times[times.len() - 1],
                }
            })
            .collect(),
    };
    let footer_bytes = footer.encode();
    let footer_len = u32::try_from(footer_bytes.len()).expect("a footer is below 4 GiB");
    w.bytes(&footer_bytes);
    w.u32(footer_len);
    w.u32(crc32c::crc32c(&footer_bytes));
    w.bytes(TRAILER_MAGIC);
    (w.into_inner(), footer)
}

/// Writes a chunk file durably: to a temporary name, fsynced, renamed, directory fsynced.
pub(crate) fn write_chunk(
    path: &Path,
    id: ChunkIdentity,
    rows: &RowSet,
    schema: &TableSchema,
    opts: &ChunkOptions,
) -> Result<(Footer, u64)> {
    let (bytes, footer) = encode_chunk(id, rows, schema, opts);
    let dir = path.parent().expect("chunk paths have a directory");
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(&bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;
    Ok((footer, bytes.len() as u64))
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

fn append_block(w: &mut Writer, block: &[u8]) -> BlockRef {
    let offset = w.len() as u64;
    w.bytes(block);
    BlockRef { offset, len: u32::try_from(block.len()).expect("a block is below 4 GiB"), crc: crc32c::crc32c(block) }
}

/// `validity u8 (0 all valid, 1 bitmap follows, 2 all null) | bitmap? | values block?`
fn encode_column(column: &Column, range: std::ops::Range<usize>, opts: &CodecOptions, choice: &mut F64Choice) -> Vec<u8> {
    let valid = &column.valid[range.clone()];
    let valid_count = valid.iter().filter(|v| **v).count();
    let mut out = Vec::new();
    if valid_count == 0 {
        out.push(2);
        return out;
    }
    let all_valid = valid_count == valid.len();
    if all_valid {
        out.push(0);
    } else {
        out.push(1);
        out.extend_from_slice(&pack_bits(valid));
    }
    let pick = |i: &usize| all_valid || valid[*i - range.start];
    let values = match &column.values {
        Values::F64(v) => codec::encode_f64_block(&range.clone().filter(pick).map(|i| v[i]).collect::<Vec<_>>(), opts, choice),
        Values::I64(v) => codec::encode_i64(&range.clone().filter(pick).map(|i| v[i]).collect::<Vec<_>>(), opts),
        Values::Bool(v) => codec::encode_bool(&range.clone().filter(pick).map(|i| v[i]).collect::<Vec<_>>(), opts),
        Values::String(v) => codec::encode_strings(&range.clone().filter(pick).map(|i| v[i].clone()).collect::<Vec<_>>(), opts),
    };
    out.extend_from_slice(&values);
    out
}

fn column_meta(column: &Column, schema: &TableSchema) -> ColumnMeta {
    let valid = |i: &usize| column.valid[*i];
    let n = column.valid.len();
    let stats = match &column.values {
        Values::F64(v) => {
            let vals = (0..n).filter(valid).map(|i| v[i]).filter(|x| !x.is_nan());
            let (min, max) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
            if min <= max { Stats::F64 { min, max } } else { Stats::None }
        }
        Values::I64(v) => {
            let vals = (0..n).filter(valid).map(|i| v[i]);
            let (min, max) = vals.fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
            if min <= max { Stats::I64 { min, max } } else { Stats::None }
        }
        Values::Bool(_) | Values::String(_) => Stats::None,
    };
    ColumnMeta {
        id: column.id,
        ty: column.values.field_type(),
        name: schema.column_by_id(column.id).map(|c| c.name.clone()).unwrap_or_default(),
        null_count: column.null_count() as u64,
        stats,
    }
}
