//! The chunk header, footer and trailer, byte for byte.
//!
//! ```text
//! file    := header | block* | footer | trailer
//! header  := "ISOBRCHK" | format_version u16 = 1 | reserved u16 = 0
//! trailer := footer_len u32 | footer_crc32c u32 | "ISOBREND"
//! ```

use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;
use crate::model::{ColumnId, FieldType, SeriesId, TableId};

pub(crate) const HEADER_MAGIC: &[u8; 8] = b"ISOBRCHK";
pub(crate) const TRAILER_MAGIC: &[u8; 8] = b"ISOBREND";
pub(crate) const FORMAT_VERSION: u16 = 1;
pub(crate) const HEADER_BYTES: u64 = 12;
pub(crate) const TRAILER_BYTES: u64 = 16;

/// Where a block is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// Minimum and maximum of a numeric column's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stats {
    None,
    F64 { min: f64, max: f64 },
    I64 { min: i64, max: i64 },
}

/// A field column stored in the chunk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnMeta {
    pub(crate) id: ColumnId,
    pub(crate) ty: FieldType,
    pub(crate) name: String,
    pub(crate) null_count: u64,
    pub(crate) stats: Stats,
}

/// A run of rows with its blocks, one per column in [`Footer::columns`] order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowGroupMeta {
    pub(crate) row_start: u64,
    pub(crate) rows: u32,
    pub(crate) time_min: i64,
    pub(crate) time_max: i64,
    pub(crate) time_block: BlockRef,
    pub(crate) column_blocks: Vec<BlockRef>,
}

/// One series' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesMeta {
    pub(crate) series: SeriesId,
    pub(crate) row_start: u64,
    pub(crate) rows: u32,
    pub(crate) time_min: i64,
    pub(crate) time_max: i64,
}

/// Everything a reader needs to find rows without decoding blocks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Footer {
    pub(crate) table: TableId,
    pub(crate) partition_start_ns: i64,
    /// Newest WAL sequence whose rows the chunk may hold; orders chunks for last-write-wins.
    pub(crate) generation: u64,
    pub(crate) row_count: u64,
    pub(crate) time_min: i64,
    pub(crate) time_max: i64,
    pub(crate) columns: Vec<ColumnMeta>,
    pub(crate) row_groups: Vec<RowGroupMeta>,
    /// Sorted by series id.
    pub(crate) series: Vec<SeriesMeta>,
}

fn write_block(w: &mut Writer, b: &BlockRef) {
    w.u64(b.offset);
    w.u32(b.len);
    w.u32(b.crc);
}

fn read_block(r: &mut Reader<'_>) -> Result<BlockRef, DecodeError> {
    Ok(BlockRef { offset: r.u64()?, len: r.u32()?, crc: r.u32()? })
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.table.0);
        w.i64(self.partition_start_ns);
        w.u64(self.generation);
        w.u64(self.row_count);
        w.i64(self.time_min);
        w.i64(self.time_max);
        w.u16(u16::try_from(self.columns.len()).expect("columns are limited below 65536"));
        for c in &self.columns {
            w.u16(c.id.0);
            w.u8(c.ty.code());
            w.str(&c.name);
            w.u64(c.null_count);
            match c.stats {
                Stats::None => w.u8(0),
                Stats::F64 { min, max } => {
                    w.u8(1);
                    w.f64(min);
                    w.f64(max);
                }
                Stats::I64 { min, max } => {
                    w.u8(2);
                    w.i64(min);
                    w.i64(max);
                }
            }
        }
        w.u32(u32::try_from(self.row_groups.len()).expect("row groups fit u32"));
        for g in &self.row_groups {
            w.u64(g.row_start);
            w.u32(g.rows);
            w.i64(g.time_min);
            w.i64(g.time_max);
            write_block(&mut w, &g.time_block);
            g.column_blocks.iter().for_each(|b| write_block(&mut w, b));
        }
        w.u32(u32::try_from(self.series.len()).expect("series per chunk fit u32"));
        for s in &self.series {
            w.u64(s.series.0);
            w.u64(s.row_start);
            w.u32(s.rows);
            w.i64(s.time_min);
            w.i64(s.time_max);
        }
        w.into_inner()
    }

    /// Decodes a footer and checks that its row groups and series cover the rows exactly and
    /// its blocks lie between header and footer (`blocks_end` is where the footer starts).
    pub(crate) fn decode(bytes: &[u8], blocks_end: u64) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let table = TableId(r.u32()?);
        let partition_start_ns = r.i64()?;
        let generation = r.u64()?;
        let row_count = r.u64()?;
        let time_min = r.i64()?;
        let time_max = r.i64()?;
        let column_count = r.u16()?;
        let mut columns: Vec<ColumnMeta> = Vec::with_capacity(usize::from(column_count));
        for _ in 0..column_count {
            let id = ColumnId(r.u16()?);
            if columns.last().is_some_and(|c| c.id >= id) {
                return Err(r.err("columns out of order"));
            }
            let code = r.u8()?;
            let ty = FieldType::from_code(code).ok_or_else(|| r.err(format!("unknown column type {code}")))?;
            let name = r.str()?.to_owned();
            let null_count = r.u64()?;
            let stats = match r.u8()? {
                0 => Stats::None,
                1 => Stats::F64 { min: r.f64()?, max: r.f64()? },
                2 => Stats::I64 { min: r.i64()?, max: r.i64()? },
                s => return Err(r.err(format!("unknown stats kind {s}"))),
            };
            columns.push(ColumnMeta { id, ty, name, null_count, stats });
        }
        let group_count = r.len_u32(36 + 16 * columns.len())?;
        let mut row_groups = Vec::with_capacity(group_count);
        let mut next_row = 0u64;
        for _ in 0..group_count {
            let row_start = r.u64()?;
            let rows = r.u32()?;
            let (gmin, gmax) = (r.i64()?, r.i64()?);
            if row_start != next_row || rows == 0 || gmin > gmax {
                return Err(r.err(format!("row group at row {row_start} of {rows} rows does not follow row {next_row}")));
            }
            next_row += u64::from(rows);
            let time_block = read_block(&mut r)?;
            let column_blocks = (0..columns.len()).map(|_| read_block(&mut r)).collect::<Result<Vec<_>, _>>()?;
            for b in std::iter::once(&time_block).chain(&column_blocks) {
                let end = b.offset.checked_add(u64::from(b.len));
                if b.offset < HEADER_BYTES || end.is_none_or(|end| end > blocks_end) {
                    return Err(r.err(format!("block at {} of {} bytes lies outside the data", b.offset, b.len)));
                }
            }
            row_groups.push(RowGroupMeta { row_start, rows, time_min: gmin, time_max: gmax, time_block, column_blocks });
        }
        if next_row != row_count {
            return Err(r.err(format!("row groups hold {next_row} rows, footer says {row_count}")));
        }
        let series_count = r.len_u32(36)?;
        let mut series: Vec<SeriesMeta> = Vec::with_capacity(series_count);
        let mut next_row = 0u64;
        for _ in 0..series_count {
            let s = SeriesMeta { series: SeriesId(r.u64()?), row_start: r.u64()?, rows: r.u32()?, time_min: r.i64()?, time_max: r.i64()? };
            if s.row_start != next_row || s.rows == 0 || series.last().is_some_and(|p| p.series >= s.series) {
                return Err(r.err(format!("series {} at row {} is out of order", s.series.0, s.row_start)));
            }
            next_row += u64::from(s.rows);
            series.push(s);
        }
        if next_row != row_count {
            return Err(r.err(format!("series hold {next_row} rows, footer says {row_count}")));
        }
        r.finish()?;
        Ok(Self { table, partition_start_ns, generation, row_count, time_min, time_max, columns, row_groups, series })
    }
}
