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

/// An open chunk and its footer: a local file, or (with the engine) an object of the cold
/// store read by byte ranges.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    /// The file, or the object's URL, for messages.
    path: PathBuf,
    source: Source,
    pub(crate) footer: Footer,
    /// Where the footer starts: the footer and trailer are the chunk's last bytes from here.
    footer_at: u64,
    /// The file's size.
    pub(crate) size_bytes: u64,
}

#[derive(Debug)]
enum Source {
    File(File),
    #[cfg(feature = "engine")]
    Cold {
        store: std::sync::Arc<crate::cold::ColdStore>,
        key: object_store::path::Path,
        chunk: crate::model::ChunkId,
    },
}

/// Blocks fetched for one read of a cold chunk, by offset; for a file, blocks are read when
/// decoded.
type Fetched = std::collections::HashMap<u64, Vec<u8>>;

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
        let (footer_at, footer_crc) = parse_trailer(path, size_bytes, &trailer)?;
        let footer_bytes = read_at(&file, path, footer_at, (trailer_at - footer_at) as usize)?;
        let footer = parse_footer(path, footer_at, &footer_bytes, footer_crc)?;
        Ok(Self { path: path.to_owned(), source: Source::File(file), footer, footer_at, size_bytes })
    }

    /// The chunk's footer and trailer, its last bytes: what a cold chunk keeps on local disk.
    pub(crate) fn tail(&self) -> Result<Vec<u8>> {
        match &self.source {
            Source::File(file) => read_at(file, &self.path, self.footer_at, (self.size_bytes - self.footer_at) as usize),
            #[cfg(feature = "engine")]
            Source::Cold { store, key, .. } => store.get_range(key, self.footer_at..self.size_bytes),
        }
    }

    /// Whether the chunk is in the cold store.
    pub(crate) fn is_cold(&self) -> bool {
        !matches!(self.source, Source::File(_))
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
        let groups = self.groups(selection);
        let fetched = self.fetch(&groups, selection)?;
        let sets = groups.iter().map(|g| Ok(self.read_group(g, selection, &fetched)?.select(selection))).collect::<Result<Vec<_>>>()?;
        Ok(RowSet::concat(sets))
    }

    /// The row groups holding rows `selection` wants.
    fn groups(&self, selection: &Selection<'_>) -> Vec<&RowGroupMeta> {
        // Row ranges of the wanted series, in row order (series are stored in id order).
        let runs: Vec<(u64, u64)> = self.selected_series(selection).map(|s| (s.row_start, s.row_start + u64::from(s.rows))).collect();
        self.footer
            .row_groups
            .iter()
            .filter(|group| {
                let (start, end) = (group.row_start, group.row_start + u64::from(group.rows));
                let first_after_start = runs.partition_point(|&(_, e)| e <= start);
                runs.get(first_after_start).is_some_and(|&(s, _)| s < end) && selection.overlaps(group.time_min, group.time_max)
            })
            .collect()
    }

    /// Fetches into the cold cache, in as few GETs as it takes, every block that reads of
    /// `selection` will need, unless they would take more than `bytes_max`: for a scan about to
    /// read a cold chunk group of series by group of series. Nothing for a file.
    #[cfg(feature = "engine")]
    pub(crate) fn prefetch(&self, selection: &Selection<'_>, bytes_max: u64) -> Result<()> {
        if !self.is_cold() {
            return Ok(());
        }
        let groups = self.groups(selection);
        let blocks = groups.iter().flat_map(|g| {
            let columns = self.footer.columns.iter().zip(&g.column_blocks);
            std::iter::once(&g.time_block).chain(columns.filter(|(meta, _)| selection.wants_column(meta.id)).map(|(_, b)| b))
        });
        if blocks.map(|b| u64::from(b.len)).sum::<u64>() <= bytes_max {
            self.fetch(&groups, selection)?;
        }
        Ok(())
    }

    /// The blocks of `groups` that `selection` needs, of a cold chunk: from the local cache, and
    /// the rest in one GET per span of nearby blocks. Nothing for a file.
    #[cfg_attr(not(feature = "engine"), allow(unused_variables))]
    fn fetch(&self, groups: &[&RowGroupMeta], selection: &Selection<'_>) -> Result<Fetched> {
        match &self.source {
            Source::File(_) => Ok(Fetched::new()),
            #[cfg(feature = "engine")]
            Source::Cold { store, key, chunk } => {
                let mut wanted: Vec<&BlockRef> = Vec::new();
                for group in groups {
                    wanted.push(&group.time_block);
                    let columns = self.footer.columns.iter().zip(&group.column_blocks);
                    wanted.extend(columns.filter(|(meta, _)| selection.wants_column(meta.id)).map(|(_, block)| block));
                }
                wanted.sort_by_key(|b| b.offset);
                let mut fetched = Fetched::new();
                let mut missing = Vec::new();
                for block in wanted {
                    match store.cache.get(*chunk, block.offset, u64::from(block.len)).filter(|b| crc32c::crc32c(b) == block.crc) {
                        Some(bytes) => {
                            store.metrics.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            fetched.insert(block.offset, bytes);
                        }
                        None => missing.push(block),
                    }
                }
                let ranges: Vec<std::ops::Range<u64>> = missing.iter().map(|b| b.offset..b.offset + u64::from(b.len)).collect();
                for (block, bytes) in missing.iter().zip(store.get_ranges(key, &ranges)?) {
                    if crc32c::crc32c(&bytes) == block.crc {
                        store.cache.put(*chunk, block.offset, &bytes);
                    }
                    fetched.insert(block.offset, bytes);
                }
                Ok(fetched)
            }
        }
    }

    /// Reads every block and checks it, for integrity checks.
    pub(crate) fn verify(&self) -> Result<()> {
        let all = Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None };
        let groups: Vec<&RowGroupMeta> = self.footer.row_groups.iter().collect();
        let fetched = self.fetch(&groups, &all)?;
        for group in groups {
            self.read_group(group, &all, &fetched)?;
        }
        Ok(())
    }

    fn read_group(&self, group: &RowGroupMeta, selection: &Selection<'_>, fetched: &Fetched) -> Result<RowSet> {
        let rows = group.rows as usize;
        let times = self.decode_block(&group.time_block, fetched, |b| codec::decode_i64(b, rows))?;
        let mut columns = Vec::new();
        for (meta, block) in self.footer.columns.iter().zip(&group.column_blocks) {
            if selection.wants_column(meta.id) {
                let values = self.decode_block(block, fetched, |b| decode_column(b, meta.ty, rows))?;
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

    fn decode_block<T>(&self, block: &BlockRef, fetched: &Fetched, decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>) -> Result<T> {
        let bytes = match (&self.source, fetched.get(&block.offset)) {
            (_, Some(bytes)) => std::borrow::Cow::Borrowed(bytes.as_slice()),
            (Source::File(file), None) => std::borrow::Cow::Owned(read_at(file, &self.path, block.offset, block.len as usize)?),
            #[cfg(feature = "engine")]
            (Source::Cold { .. }, None) => {
                return Err(Error::Internal(format!("block at {} of {} not fetched", block.offset, self.path.display())));
            }
        };
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

/// What a cold chunk's open fetches first when its tail is not kept locally: enough for the
/// footers of most chunks in one GET.
#[cfg(feature = "engine")]
const TAIL_GUESS_BYTES: u64 = 64 << 10;

#[cfg(feature = "engine")]
impl ChunkReader {
    /// This chunk, read from the cold store as `key` once its bytes are there unchanged: the
    /// same footer, and no request made.
    pub(crate) fn moved(
        &self,
        store: std::sync::Arc<crate::cold::ColdStore>,
        key: object_store::path::Path,
        chunk: crate::model::ChunkId,
    ) -> Self {
        let path = store.describe(&key);
        Self {
            path,
            source: Source::Cold { store, key, chunk },
            footer: self.footer.clone(),
            footer_at: self.footer_at,
            size_bytes: self.size_bytes,
        }
    }

    /// Opens chunk `chunk` of `size_bytes` bytes, `key` in the cold store, its footer read from
    /// `tail` (its last bytes, as [`Self::tail`] gave them) or, without it, fetched.
    pub(crate) fn open_cold(
        store: std::sync::Arc<crate::cold::ColdStore>,
        key: object_store::path::Path,
        chunk: crate::model::ChunkId,
        size_bytes: u64,
        tail: Option<Vec<u8>>,
    ) -> Result<Self> {
        let path = store.describe(&key);
        if size_bytes < HEADER_BYTES + TRAILER_BYTES {
            return Err(Error::Corrupt { file: path, offset: 0, reason: format!("{size_bytes} bytes is too short for a chunk") });
        }
        let tail = match tail {
            Some(tail) if tail.len() as u64 >= TRAILER_BYTES && tail.len() as u64 <= size_bytes => tail,
            _ => store.get_range(&key, size_bytes.saturating_sub(TAIL_GUESS_BYTES)..size_bytes)?,
        };
        let tail_at = size_bytes - tail.len() as u64;
        let trailer_in_tail = tail.len() - TRAILER_BYTES as usize;
        let (footer_at, crc) = parse_trailer(&path, size_bytes, &tail[trailer_in_tail..])?;
        let footer_bytes = match footer_at.checked_sub(tail_at) {
            Some(from) => tail[from as usize..trailer_in_tail].to_vec(),
            None => store.get_range(&key, footer_at..size_bytes - TRAILER_BYTES)?,
        };
        let footer = parse_footer(&path, footer_at, &footer_bytes, crc)?;
        Ok(Self { path, source: Source::Cold { store, key, chunk }, footer, footer_at, size_bytes })
    }
}

/// Where the footer starts and its checksum, from a chunk's trailer (its last 16 bytes).
fn parse_trailer(path: &Path, size_bytes: u64, trailer: &[u8]) -> Result<(u64, u32)> {
    let trailer_at = size_bytes - TRAILER_BYTES;
    let mut r = Reader::new(trailer);
    let footer_len = u64::from(r.u32().map_err(|e| e.in_file(path, trailer_at))?);
    let footer_crc = r.u32().map_err(|e| e.in_file(path, trailer_at))?;
    if trailer.get(8..) != Some(TRAILER_MAGIC.as_slice()) {
        return Err(Error::Corrupt {
            file: path.to_owned(),
            offset: trailer_at + 8,
            reason: "bad trailer magic (file truncated or damaged)".into(),
        });
    }
    if footer_len > trailer_at - HEADER_BYTES {
        return Err(Error::Corrupt {
            file: path.to_owned(),
            offset: trailer_at,
            reason: format!("footer length {footer_len} exceeds the file"),
        });
    }
    Ok((trailer_at - footer_len, footer_crc))
}

/// The footer, checked against its checksum.
fn parse_footer(path: &Path, footer_at: u64, bytes: &[u8], crc: u32) -> Result<Footer> {
    let actual = crc32c::crc32c(bytes);
    if actual != crc {
        let reason = format!("footer checksum mismatch: stored {crc:#010x}, computed {actual:#010x}");
        return Err(Error::Corrupt { file: path.to_owned(), offset: footer_at, reason });
    }
    Footer::decode(bytes, footer_at).map_err(|e| e.in_file(path, footer_at))
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
