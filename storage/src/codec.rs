//! Column codecs, chosen per block by measuring.
//!
//! Every encoded block starts with one codec byte. Numbers go through pco (pcodec); f64 columns
//! whose values all have at most [`DECIMALS_MAX`] decimal digits are first scaled to integers
//! (as in ALP: `v = i / 10^k`, exactly reversible) when that is smaller; values within a few
//! ULPs of decimals (computed readings) keep the ULPs as residues (`codec/ulp.rs`). Strings use a
//! dictionary compressed with zstd. Each encoder tries its candidates and keeps the smallest,
//! with plain little-endian values (`Plain`) as the fallback. `docs/file-format.md` lists the
//! bytes of each codec.

use std::cell::OnceCell;
use std::sync::Arc;

use pco::ChunkConfig;
use pco::standalone::{simple_compress, simple_decompress_into};

use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;

mod packed;
mod ulp;

/// Most decimal digits the decimal codec scales away.
pub const DECIMALS_MAX: u8 = 12;
/// Largest integer (in magnitude) the decimal codec produces: f64 holds every integer below 2^53.
const DECIMAL_INT_MAX: f64 = 9_007_199_254_740_992.0;
/// Largest decoded size of one zstd-compressed block; bounds memory on corrupt input.
const ZSTD_RAW_BYTES_MAX: usize = 1 << 30;
/// Most bytes one byte of a zstd frame can stand for: a 4-byte RLE block holds 128 KiB.
const ZSTD_EXPANSION_MAX: usize = 32 * 1024;
/// Highest pco level.
pub const PCO_LEVEL_MAX: usize = 12;
/// Default pco level: pco's own. In blocks of a row group (16 Ki values) level 10 searches four
/// times the bins for about 0.2% fewer bytes on the seed fleet and more bytes on the shared
/// sensor series, at 2.4 times the encoding time: persisting spent half its time there.
pub const PCO_LEVEL_DEFAULT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Codec {
    Plain = 0,
    Pco = 1,
    PcoDecimal = 2,
    Dictionary = 3,
    ZstdPlain = 4,
    BitsZstd = 5,
    PcoDictionary = 6,
    PcoDecimalUlp = 7,
    PackedDecimalUlp = 8,
}

impl Codec {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Plain,
            1 => Self::Pco,
            2 => Self::PcoDecimal,
            3 => Self::Dictionary,
            4 => Self::ZstdPlain,
            5 => Self::BitsZstd,
            6 => Self::PcoDictionary,
            7 => Self::PcoDecimalUlp,
            8 => Self::PackedDecimalUlp,
            _ => return None,
        })
    }
}

/// Options for encoding.
#[derive(Debug, Clone, Copy)]
pub struct CodecOptions {
    /// pco compression level (0..=12).
    pub pco_level: usize,
    /// zstd level for strings and the fallback.
    pub zstd_level: i32,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self { pco_level: PCO_LEVEL_DEFAULT, zstd_level: 3 }
    }
}

fn smallest(candidates: impl IntoIterator<Item = Option<Vec<u8>>>) -> Vec<u8> {
    candidates.into_iter().flatten().min_by_key(Vec::len).expect("the plain candidate always exists")
}

fn with_codec(codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(codec as u8);
    out.extend_from_slice(payload);
    out
}

fn pco_config(opts: &CodecOptions) -> ChunkConfig {
    ChunkConfig::default().with_compression_level(opts.pco_level)
}

/// Values a decimal scale is chosen on (`ulp.rs`).
const SAMPLE_VALUES: usize = 8192;

/// Values a codec is chosen on: encoding a sample with every candidate and the whole block
/// with the winner costs a fraction of encoding the whole block with every candidate.
const CHOICE_SAMPLE_VALUES: usize = 2048;
/// pco level of the candidates tried on a sample: their sizes rank the same as at higher
/// levels, and pco's search for bins costs as much on a sample as on a whole block.
const CHOICE_PCO_LEVEL: usize = 4;

/// One block of f64 values, with what two candidates derive from them computed once.
struct F64Block<'a> {
    values: &'a [f64],
    residues: OnceCell<ulp::Residues>,
}

impl<'a> F64Block<'a> {
    fn new(values: &'a [f64]) -> Self {
        Self { values, residues: OnceCell::new() }
    }

    /// The block as `codec`; `None` when the codec cannot hold these values.
    fn encode(&self, codec: Codec, opts: &CodecOptions) -> Option<Vec<u8>> {
        let values = self.values;
        match codec {
            Codec::Pco => simple_compress(values, &pco_config(opts)).ok().map(|b| with_codec(Codec::Pco, &b)),
            Codec::PcoDecimal => decimal_scale(values).and_then(|(k, ints)| {
                let b = simple_compress(&ints, &pco_config(opts)).ok()?;
                Some([&[Codec::PcoDecimal as u8, k][..], &b].concat())
            }),
            Codec::PcoDictionary => f64_dictionary(values, opts),
            Codec::PcoDecimalUlp | Codec::PackedDecimalUlp => self.residues.get_or_init(|| ulp::Residues::new(values)).encode(codec, opts),
            Codec::Plain => {
                let mut w = Writer::new();
                w.u8(Codec::Plain as u8);
                values.iter().for_each(|v| w.f64(*v));
                Some(w.into_inner())
            }
            Codec::Dictionary | Codec::ZstdPlain | Codec::BitsZstd => None,
        }
    }

    /// The candidate with the lowest cost and its bytes.
    fn best(&self, opts: &CodecOptions) -> (Codec, Vec<u8>) {
        const CANDIDATES: [Codec; 6] =
            [Codec::Plain, Codec::Pco, Codec::PcoDecimal, Codec::PcoDecimalUlp, Codec::PackedDecimalUlp, Codec::PcoDictionary];
        // Full-precision readings have three candidates of about the same size: pco's float
        // modes (two entropy-coded streams per value), decimals with residues in one pco stream
        // (about twice as fast) and the same with bit-packed integers (about three times faster
        // again). Each faster one wins unless it is more than about 10% larger.
        let cost = |codec: Codec, len: usize| match codec {
            Codec::Pco => len + len / 5,
            Codec::PcoDecimalUlp => len + len / 10,
            _ => len,
        };
        CANDIDATES
            .into_iter()
            .filter_map(|codec| Some((codec, self.encode(codec, opts)?)))
            .min_by_key(|(codec, bytes)| cost(*codec, bytes.len()))
            .expect("the plain candidate always exists")
    }
}

/// Blocks of a column encoded with the codec chosen for an earlier block before the candidates
/// are tried again.
const CHOICE_REUSE_BLOCKS: u32 = 8;

/// The codec chosen for a column's last blocks, so that the next blocks of the column, which
/// hold the same kind of readings, are encoded with it rather than trying every candidate again
/// ([`encode_f64_block`]).
#[derive(Debug, Clone, Default)]
pub struct F64Choice {
    /// The codec and the bytes per value it took on the block it was chosen for.
    chosen: Option<(Codec, f64)>,
    /// Blocks encoded with it since.
    reused: u32,
}

/// Encodes one block of a column's f64 values with the codec `choice` holds from the column's
/// earlier blocks, as long as it takes within 10% of the bytes per value it took when chosen
/// (more: the values compress worse; fewer: they may have changed, say fewer decimals, and suit
/// another codec better) and has been reused fewer than [`CHOICE_REUSE_BLOCKS`] times;
/// otherwise as [`encode_f64`], whose choice is kept for the next blocks.
pub fn encode_f64_block(values: &[f64], opts: &CodecOptions, choice: &mut F64Choice) -> Vec<u8> {
    if let Some((codec, bytes_per_value)) = choice.chosen.filter(|_| choice.reused < CHOICE_REUSE_BLOCKS)
        && let Some(encoded) = F64Block::new(values).encode(codec, opts)
        && (0.9..=1.1).contains(&(encoded.len() as f64 / values.len().max(1) as f64 / bytes_per_value))
    {
        choice.reused += 1;
        return encoded;
    }
    let encoded = encode_f64(values, opts);
    let codec = encoded.first().copied().and_then(Codec::from_byte);
    *choice = F64Choice { chosen: codec.map(|c| (c, encoded.len() as f64 / values.len().max(1) as f64)), reused: 0 };
    encoded
}

/// Encodes f64 values with the candidate codec that is smallest on a sample of them.
pub fn encode_f64(values: &[f64], opts: &CodecOptions) -> Vec<u8> {
    if values.len() > 2 * CHOICE_SAMPLE_VALUES {
        let choice_opts = CodecOptions { pco_level: opts.pco_level.min(CHOICE_PCO_LEVEL), ..*opts };
        let (codec, _) = F64Block::new(&values[..CHOICE_SAMPLE_VALUES]).best(&choice_opts);
        // A sample can mislead (more decimals later, say): then every candidate gets the block.
        if let Some(encoded) = F64Block::new(values).encode(codec, opts) {
            return encoded;
        }
    }
    F64Block::new(values).best(opts).1
}

/// Values that repeat (readings quantised by their sensor, or stored as f32) cost less as
/// indexes into their sorted distinct values: the indexes move like the values do, without
/// the noise in the low bits, and pco encodes both.
/// `count u32 | dictionary_len u32 | pco(distinct values, ascending) | pco(u32 indexes)`.
fn f64_dictionary(values: &[f64], opts: &CodecOptions) -> Option<Vec<u8>> {
    let mut distinct: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    distinct.sort_unstable_by(|a, b| f64::from_bits(*a).total_cmp(&f64::from_bits(*b)));
    distinct.dedup();
    if distinct.len() > values.len() / 2 {
        return None;
    }
    let index: crate::fxhash::FxHashMap<u64, u32> = distinct.iter().enumerate().map(|(i, b)| (*b, i as u32)).collect();
    let indexes: Vec<u32> = values.iter().map(|v| index[&v.to_bits()]).collect();
    let dictionary: Vec<f64> = distinct.into_iter().map(f64::from_bits).collect();
    let dictionary_bytes = simple_compress(&dictionary, &pco_config(opts)).ok()?;
    let index_bytes = simple_compress(&indexes, &pco_config(opts)).ok()?;
    let mut w = Writer::new();
    w.u8(Codec::PcoDictionary as u8);
    w.u32(u32::try_from(dictionary.len()).ok()?);
    w.u32(u32::try_from(dictionary_bytes.len()).ok()?);
    w.bytes(&dictionary_bytes);
    w.bytes(&index_bytes);
    Some(w.into_inner())
}

/// Decodes `n` f64 values.
pub fn decode_f64(bytes: &[u8], n: usize) -> Result<Vec<f64>, DecodeError> {
    let mut r = Reader::new(bytes);
    match codec_byte(&mut r)? {
        Codec::Plain => {
            expect_len(&r, n.checked_mul(8))?;
            (0..n).map(|_| r.f64()).collect()
        }
        Codec::Pco => {
            let pos = r.pos();
            pco_decode(r.take(r.remaining())?, n, pos)
        }
        Codec::PcoDecimal => {
            let k = r.u8()?;
            if k > DECIMALS_MAX {
                return Err(r.err(format!("decimal scale {k} above {DECIMALS_MAX}")));
            }
            let pos = r.pos();
            let ints: Vec<i64> = pco_decode(r.take(r.remaining())?, n, pos)?;
            let scale = 10f64.powi(i32::from(k));
            Ok(ints.into_iter().map(|i| i as f64 / scale).collect())
        }
        c @ (Codec::PcoDecimalUlp | Codec::PackedDecimalUlp) => ulp::decode(&mut r, n, c),
        Codec::PcoDictionary => {
            let count = r.u32()? as usize;
            let dictionary_len = r.u32()? as usize;
            if count > n.max(1) {
                return Err(r.err(format!("dictionary of {count} values for {n} values")));
            }
            let pos = r.pos();
            let dictionary: Vec<f64> = pco_decode(r.take(dictionary_len)?, count, pos)?;
            let pos = r.pos();
            let indexes: Vec<u32> = pco_decode(r.take(r.remaining())?, n, pos)?;
            if let Some(i) = indexes.iter().find(|i| **i as usize >= count) {
                return Err(DecodeError::new(pos, format!("index {i} outside a dictionary of {count}")));
            }
            Ok(indexes.into_iter().map(|i| dictionary[i as usize]).collect())
        }
        c => Err(DecodeError::new(0, format!("codec {c:?} is not for f64"))),
    }
}

/// Finds the smallest `k` such that every value is exactly `i / 10^k` for an integer `i`.
fn decimal_scale(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    let mut k = 0u8;
    let exact = |v: f64, k: u8| -> bool {
        let scale = 10f64.powi(i32::from(k));
        let scaled = (v * scale).round();
        scaled.abs() < DECIMAL_INT_MAX && (scaled / scale).to_bits() == v.to_bits()
    };
    for &v in values {
        if !v.is_finite() {
            return None;
        }
        while !exact(v, k) {
            k += 1;
            if k > DECIMALS_MAX {
                return None;
            }
        }
    }
    let scale = 10f64.powi(i32::from(k));
    let ints: Vec<i64> = values.iter().map(|v| (v * scale).round() as i64).collect();
    // A value exact at a smaller k may not be exact at the final k; check the whole column.
    ints.iter().zip(values).all(|(i, v)| (*i as f64 / scale).to_bits() == v.to_bits()).then_some((k, ints))
}

/// Encodes i64 values (integers and timestamps).
pub fn encode_i64(values: &[i64], opts: &CodecOptions) -> Vec<u8> {
    let plain = {
        let mut w = Writer::new();
        w.u8(Codec::Plain as u8);
        values.iter().for_each(|v| w.i64(*v));
        w.into_inner()
    };
    let pco = simple_compress(values, &pco_config(opts)).ok().map(|b| with_codec(Codec::Pco, &b));
    smallest([Some(plain), pco])
}

/// Decodes `n` i64 values.
pub fn decode_i64(bytes: &[u8], n: usize) -> Result<Vec<i64>, DecodeError> {
    let mut r = Reader::new(bytes);
    match codec_byte(&mut r)? {
        Codec::Plain => {
            expect_len(&r, n.checked_mul(8))?;
            (0..n).map(|_| r.i64()).collect()
        }
        Codec::Pco => {
            let pos = r.pos();
            pco_decode(r.take(r.remaining())?, n, pos)
        }
        c => Err(DecodeError::new(0, format!("codec {c:?} is not for i64"))),
    }
}

/// Encodes booleans as packed bits, zstd-compressed when that is smaller.
pub fn encode_bool(values: &[bool], opts: &CodecOptions) -> Vec<u8> {
    let bits = pack_bits(values);
    let plain = with_codec(Codec::Plain, &bits);
    let zstd = zstd_block(Codec::BitsZstd, &bits, opts);
    smallest([Some(plain), zstd])
}

/// Decodes `n` booleans.
pub fn decode_bool(bytes: &[u8], n: usize) -> Result<Vec<bool>, DecodeError> {
    let mut r = Reader::new(bytes);
    let packed = match codec_byte(&mut r)? {
        Codec::Plain => r.take(r.remaining())?.to_vec(),
        Codec::BitsZstd => unzstd(&mut r)?,
        c => return Err(DecodeError::new(0, format!("codec {c:?} is not for bool"))),
    };
    unpack_bits(&packed, n).ok_or_else(|| DecodeError::new(1, format!("{} bytes cannot hold {n} bits", packed.len())))
}

/// Encodes strings: a dictionary when values repeat, otherwise the values; zstd-compressed.
pub fn encode_strings(values: &[Arc<str>], opts: &CodecOptions) -> Vec<u8> {
    let plain = {
        let mut w = Writer::new();
        values.iter().for_each(|v| w.str(v));
        w.into_inner()
    };
    let zstd_plain = zstd_block(Codec::ZstdPlain, &plain, opts);
    let dictionary = dictionary_payload(values).and_then(|p| zstd_block(Codec::Dictionary, &p, opts));
    smallest([Some(with_codec(Codec::Plain, &plain)), zstd_plain, dictionary])
}

/// Decodes `n` strings.
pub fn decode_strings(bytes: &[u8], n: usize) -> Result<Vec<Arc<str>>, DecodeError> {
    let mut r = Reader::new(bytes);
    match codec_byte(&mut r)? {
        Codec::Plain => read_strings(&mut r, n),
        Codec::ZstdPlain => read_strings(&mut Reader::new(&unzstd(&mut r)?), n),
        Codec::Dictionary => read_dictionary(&unzstd(&mut r)?, n),
        c => Err(DecodeError::new(0, format!("codec {c:?} is not for strings"))),
    }
}

fn read_strings(r: &mut Reader<'_>, n: usize) -> Result<Vec<Arc<str>>, DecodeError> {
    let out = (0..n).map(|_| r.str().map(Arc::from)).collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Ok(out)
}

/// `count u32, strings, index width u8, indexes` or `None` when there are too many distinct values.
fn dictionary_payload(values: &[Arc<str>]) -> Option<Vec<u8>> {
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut dict: Vec<&str> = Vec::new();
    let indexes: Vec<u32> = values
        .iter()
        .map(|v| {
            *ids.entry(v).or_insert_with(|| {
                dict.push(v);
                (dict.len() - 1) as u32
            })
        })
        .collect();
    if dict.len() > values.len() / 2 + 1 {
        return None;
    }
    let mut w = Writer::new();
    w.u32(dict.len() as u32);
    dict.iter().for_each(|s| w.str(s));
    let width: u8 = match dict.len() {
        0..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        _ => 4,
    };
    w.u8(width);
    for i in indexes {
        match width {
            1 => w.u8(i as u8),
            2 => w.u16(i as u16),
            _ => w.u32(i),
        }
    }
    Some(w.into_inner())
}

fn read_dictionary(bytes: &[u8], n: usize) -> Result<Vec<Arc<str>>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.len_u32(4)?;
    let dict: Vec<Arc<str>> = (0..count).map(|_| r.str().map(Arc::from)).collect::<Result<_, _>>()?;
    let width = r.u8()?;
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let i = match width {
            1 => u32::from(r.u8()?),
            2 => u32::from(r.u16()?),
            4 => r.u32()?,
            w => return Err(r.err(format!("bad index width {w}"))),
        };
        let s = dict.get(i as usize).ok_or_else(|| r.err(format!("index {i} outside a dictionary of {count}")))?;
        out.push(Arc::clone(s));
    }
    r.finish()?;
    Ok(out)
}

fn zstd_block(codec: Codec, raw: &[u8], opts: &CodecOptions) -> Option<Vec<u8>> {
    let compressed = zstd::bulk::compress(raw, opts.zstd_level).ok()?;
    let mut w = Writer::new();
    w.u8(codec as u8);
    w.u32(u32::try_from(raw.len()).ok()?);
    w.bytes(&compressed);
    Some(w.into_inner())
}

fn unzstd(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let raw_len = r.u32()? as usize;
    // The output is allocated at the length the header claims: check it against the bytes at
    // hand first, so a few bytes cannot make the decoder allocate a gigabyte.
    if raw_len > ZSTD_RAW_BYTES_MAX || raw_len > r.remaining().saturating_mul(ZSTD_EXPANSION_MAX) {
        return Err(r.err(format!("zstd block claims {raw_len} bytes from {} compressed bytes", r.remaining())));
    }
    let pos = r.pos();
    let out = zstd::bulk::decompress(r.take(r.remaining())?, raw_len).map_err(|e| DecodeError::new(pos, format!("zstd: {e}")))?;
    if out.len() != raw_len {
        return Err(DecodeError::new(pos, format!("zstd block holds {} bytes, header says {raw_len}", out.len())));
    }
    Ok(out)
}

fn pco_decode<T: pco::data_types::Number + Default>(bytes: &[u8], n: usize, pos: usize) -> Result<Vec<T>, DecodeError> {
    let mut out = vec![T::default(); n];
    let progress = simple_decompress_into(bytes, &mut out).map_err(|e| DecodeError::new(pos, format!("pco: {e}")))?;
    if progress.n_processed != n || !progress.finished {
        return Err(DecodeError::new(pos, format!("pco block holds {} values or more, expected {n}", progress.n_processed)));
    }
    Ok(out)
}

fn codec_byte(r: &mut Reader<'_>) -> Result<Codec, DecodeError> {
    let b = r.u8()?;
    Codec::from_byte(b).ok_or_else(|| DecodeError::new(0, format!("unknown codec {b}")))
}

fn expect_len(r: &Reader<'_>, len: Option<usize>) -> Result<(), DecodeError> {
    match len {
        Some(len) if len == r.remaining() => Ok(()),
        _ => Err(r.err(format!("{} bytes do not hold the expected values", r.remaining()))),
    }
}

/// Packs booleans into bits, least significant first.
pub(crate) fn pack_bits(values: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; values.len().div_ceil(8)];
    for (i, _) in values.iter().enumerate().filter(|(_, v)| **v) {
        out[i / 8] |= 1 << (i % 8);
    }
    out
}

/// Unpacks `n` bits; `None` unless `bytes` is exactly long enough.
pub(crate) fn unpack_bits(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    (bytes.len() == n.div_ceil(8)).then(|| (0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
}

#[cfg(test)]
mod tests;
