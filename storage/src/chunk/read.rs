//! Opening chunk files and scanning them.
//!
//! Opening reads and checks the header, trailer and footer. Blocks are read on demand with
//! positioned reads and checked against their CRC-32C before decoding; any damage is an
//! [`Error::Corrupt`] naming the file and the offset of the damaged block.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{BlockRef, FORMAT_VERSION, Footer, HEADER_BYTES, HEADER_MAGIC, RowGroupMeta, SeriesMeta, TRAILER_BYTES, TRAILER_MAGIC};
use crate::bytes::Reader;
use crate::codec::{self, unpack_bits};
use crate::error::{DecodeError, Error, Result, io_err};
use crate::model::FieldType;
use crate::rowset::{Column, RowSet, Selection, SeriesRun, Values};

/// An open chunk file and its footer.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    path: PathBuf,
    file: File,
    pub(crate) footer: Footer,
    /// The file's size.
    pub(crate) size_bytes: u64,
}

impl ChunkReader {
    /// Opens `path` and checks its header, trailer and footer.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let size_bytes = file.metadata().map_err(io_err("stat", path))?.len();
        let corrupt = |offset: u64, reason: String| Error::Corrupt { file: path.to_owned(), offset, reason };
        if size_bytes < HEADER_BYTES + TRAILER_BYTES {
            return Err(corrupt(0, format!("{size_bytes} bytes is too short for a chunk")));
        }
        let header = read_at(&file, path, 0, HEADER_BYTES as usize)?;
        if &header[..8] != HEADER_MAGIC {
            return Err(corrupt(0, "not an isobar chunk (bad header magic)".into()));
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != FORMAT_VERSION || header[10..12] != [0, 0] {
            return Err(corrupt(8, format!("unsupported chunk format version {version}")));
        }
        let trailer_at = size_bytes - TRAILER_BYTES;
        let trailer = read_at(&file, path, trailer_at, TRAILER_BYTES as usize)?;
        let mut r = Reader::new(&trailer);
        let footer_len = u64::from(r.u32().map_err(|e| e.in_file(path, trailer_at))?);
        let footer_crc = r.u32().map_err(|e| e.in_file(path, trailer_at))?;
        if &trailer[8..] != TRAILER_MAGIC {
            return Err(corrupt(trailer_at + 8, "bad trailer magic (file truncated or damaged)".into()));
        }
        if footer_len > trailer_at - HEADER_BYTES {
            return Err(corrupt(trailer_at, format!("footer length {footer_len} exceeds the file")));
        }
        let footer_at = trailer_at - footer_len;
        let footer_bytes = read_at(&file, path, footer_at, footer_len as usize)?;
        let actual = crc32c::crc32c(&footer_bytes);
        if actual != footer_crc {
            return Err(corrupt(footer_at, format!("footer checksum mismatch: stored {footer_crc:#010x}, computed {actual:#010x}")));
        }
        let footer = Footer::decode(&footer_bytes, footer_at).map_err(|e| e.in_file(path, footer_at))?;
        Ok(Self { path: path.to_owned(), file, footer, size_bytes })
    }

    /// Whether any row may match `selection`, judged by the footer alone.
    pub(crate) fn may_match(&self, selection: &Selection<'_>) -> bool {
        selection.overlaps(self.footer.time_min, self.footer.time_max) && self.selected_series(selection).next().is_some()
    }

    /// The footer's entries of the series `selection` wants with rows in its time range, in
    /// series order. A selection of a few series looks each up (the entries are sorted by
    /// series id), so that reading one series of a chunk of a million costs what it does in a
    /// chunk of a thousand.
    pub(crate) fn selected_series<'a>(&'a self, selection: &Selection<'a>) -> impl Iterator<Item = &'a SeriesMeta> + 'a {
        let entries = &self.footer.series;
        let (wanted, time_min, time_max) = (selection.series, selection.time_min, selection.time_max);
        let few = wanted.filter(|ids| ids.len() < entries.len() / 16);
        let looked_up = few.into_iter().flatten().filter_map(|id| entries.binary_search_by_key(id, |s| s.series).ok().map(|i| &entries[i]));
        let filtered = match few {
            Some(_) => [].iter(),
            None => entries.iter(),
        }
        .filter(move |s| wanted.is_none_or(|ids| ids.binary_search(&s.series).is_ok()));
        looked_up.chain(filtered).filter(move |s| s.time_min <= time_max && s.time_max >= time_min)
    }

    /// The rows `selection` wants, decoding only the row groups and columns it needs.
    pub(crate) fn read(&self, selection: &Selection<'_>) -> Result<RowSet> {
        // Row ranges of the wanted series, in row order (series are stored in id order).
        let runs: Vec<(u64, u64)> = self.selected_series(selection).map(|s| (s.row_start, s.row_start + u64::from(s.rows))).collect();
        let mut sets = Vec::new();
        for group in &self.footer.row_groups {
            let (start, end) = (group.row_start, group.row_start + u64::from(group.rows));
            let first_after_start = runs.partition_point(|&(_, e)| e <= start);
            let needed = runs.get(first_after_start).is_some_and(|&(s, _)| s < end);
            if needed && selection.overlaps(group.time_min, group.time_max) {
                sets.push(self.read_group(group, selection)?.select(selection));
            }
        }
        Ok(RowSet::concat(sets))
    }

    /// Reads every block and checks it, for integrity checks.
    pub(crate) fn verify(&self) -> Result<()> {
        let all = Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None };
        for group in &self.footer.row_groups {
            self.read_group(group, &all)?;
        }
        Ok(())
    }

    fn read_group(&self, group: &RowGroupMeta, selection: &Selection<'_>) -> Result<RowSet> {
        let rows = group.rows as usize;
        let times = self.decode_block(&group.time_block, |b| codec::decode_i64(b, rows))?;
        let mut columns = Vec::new();
        for (meta, block) in self.footer.columns.iter().zip(&group.column_blocks) {
            if selection.wants_column(meta.id) {
                let values = self.decode_block(block, |b| decode_column(b, meta.ty, rows))?;
                columns.push(Column { id: meta.id, values: values.0, valid: values.1 });
            }
        }
        let (g_start, g_end) = (group.row_start, group.row_start + u64::from(group.rows));
        let series = self
            .footer
            .series
            .iter()
            .filter(|s| s.row_start < g_end && s.row_start + u64::from(s.rows) > g_start)
            .map(|s| {
                let start = s.row_start.max(g_start);
                let end = (s.row_start + u64::from(s.rows)).min(g_end);
                SeriesRun { series: s.series, row_start: (start - g_start) as usize, rows: (end - start) as usize }
            })
            .collect();
        Ok(RowSet { series, times, columns })
    }

    fn decode_block<T>(&self, block: &BlockRef, decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>) -> Result<T> {
        let bytes = read_at(&self.file, &self.path, block.offset, block.len as usize)?;
        let actual = crc32c::crc32c(&bytes);
        if actual != block.crc {
            return Err(Error::Corrupt {
                file: self.path.clone(),
                offset: block.offset,
                reason: format!("block checksum mismatch: stored {:#010x}, computed {actual:#010x}", block.crc),
            });
        }
        decode(&bytes).map_err(|e| e.in_file(&self.path, block.offset))
    }
}

fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(io_err("read", path))?;
    Ok(buf)
}

/// Decodes a column block of `rows` rows into values (defaults where null) and validity.
pub(crate) fn decode_column(bytes: &[u8], ty: FieldType, rows: usize) -> Result<(Values, Vec<bool>), DecodeError> {
    let mut r = Reader::new(bytes);
    let valid = match r.u8()? {
        0 => vec![true; rows],
        1 => unpack_bits(r.take(rows.div_ceil(8))?, rows).ok_or_else(|| r.err("bad validity bitmap"))?,
        2 => {
            r.finish()?;
            return Ok((null_values(ty, rows), vec![false; rows]));
        }
        b => return Err(DecodeError::new(0, format!("unknown validity kind {b}"))),
    };
    let n = valid.iter().filter(|v| **v).count();
    let rest = r.take(r.remaining())?;
    let shift = |e: DecodeError| DecodeError::new(r.pos() - rest.len() + e.offset as usize, e.reason);
    let values = match ty {
        FieldType::F64 => Values::F64(spread(codec::decode_f64(rest, n).map_err(shift)?, &valid, 0.0)),
        FieldType::I64 => Values::I64(spread(codec::decode_i64(rest, n).map_err(shift)?, &valid, 0)),
        FieldType::Bool => Values::Bool(spread(codec::decode_bool(rest, n).map_err(shift)?, &valid, false)),
        FieldType::String => Values::String(spread(codec::decode_strings(rest, n).map_err(shift)?, &valid, "".into())),
    };
    Ok((values, valid))
}

fn null_values(ty: FieldType, rows: usize) -> Values {
    match ty {
        FieldType::F64 => Values::F64(vec![0.0; rows]),
        FieldType::I64 => Values::I64(vec![0; rows]),
        FieldType::Bool => Values::Bool(vec![false; rows]),
        FieldType::String => Values::String(vec!["".into(); rows]),
    }
}

/// Places dense values at the valid positions, `default` elsewhere.
fn spread<T: Clone>(dense: Vec<T>, valid: &[bool], default: T) -> Vec<T> {
    if dense.len() == valid.len() {
        return dense;
    }
    let mut it = dense.into_iter();
    valid.iter().map(|v| if *v { it.next().unwrap_or_else(|| default.clone()) } else { default.clone() }).collect()
}
