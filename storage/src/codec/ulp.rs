//! The decimal-with-residues codec for full-precision f64 columns.
//!
//! Computed readings (a moving average, a unit conversion) are close to, but not exactly,
//! decimals: `sum / 10` of four-decimal values lands within a few ULPs of a five-decimal
//! number. pco's float modes store such columns well but decode them at half the speed of
//! integers. This codec stores `i = round(v * 10^k)` with pco and, per value, the distance in
//! ULPs from `i / 10^k` back to `v` as a 2-bit code: 0, +1, -1 or "escaped", the escaped
//! distances in a second pco stream, in order. Decoding is one pco stream, a division and a
//! table lookup per value, and exact for every f64 bit pattern (NaN, infinities, -0.0).
//!
//! The integers are one pco stream (codec 7, smaller) or a bit-packed stream (codec 8,
//! `codec/packed.rs`, decodes about three times faster):
//!
//! `k u8 | ints_len u32 | ints | codes: ceil(n / 4) bytes, 2 bits per value, first value in
//! the low bits | escape_count u32 | pco(i64 escaped distances)` (the last stream is absent
//! when `escape_count` is 0).

use pco::ModeSpec;
use pco::standalone::simple_compress;

use super::{Codec, CodecOptions, DECIMALS_MAX, SAMPLE_VALUES, packed, pco_config, pco_decode};
use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;

const ESCAPE: u8 = 3;
/// Highest pco level of the escaped residues. They are the low bits no decimal holds, close to
/// noise, where pco's finer bins buy little: for the fleet's exponential moving average (a
/// residue escaped for nearly every value) level 6 instead of 8 costs 0.7 % more bytes and
/// encodes the column 60 % faster.
const ESCAPES_PCO_LEVEL: usize = 6;
/// For each byte of four codes, the four distances to add to `i / 10^k`'s bits (an escape
/// adds 0 here and is patched afterwards).
const BYTE_DISTANCES: [[i64; 4]; 256] = {
    let mut table = [[0i64; 4]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut slot = 0;
        while slot < 4 {
            table[byte][slot] = match (byte >> (2 * slot)) & 3 {
                1 => 1,
                2 => -1,
                _ => 0,
            };
            slot += 1;
        }
        byte += 1;
    }
    table
};

/// 2^52 + 2^51: adding it to an integer below 2^51 in magnitude and reading the bits as an f64
/// gives the integer plus this, a conversion that vectorises (an `as f64` of an i64 does not).
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// `i / scale` for `|i| < 2^51`; for larger `i` some other value, the same on every machine,
/// which the residue corrects.
fn reconstruct(i: i64, scale: f64) -> u64 {
    ((f64::from_bits(i.wrapping_add(MAGIC.to_bits() as i64) as u64) - MAGIC) / scale).to_bits()
}

fn scaled(v: f64, scale: f64) -> i64 {
    // `as` saturates and maps NaN to 0; the residue carries whatever that loses.
    (v * scale).round() as i64
}

fn code(distance: u64) -> u8 {
    match distance {
        0 => 0,
        1 => 1,
        u64::MAX => 2,
        _ => ESCAPE,
    }
}

/// The smallest scale with about the fewest escapes on a sample. A larger scale with as few
/// escapes only multiplies every integer by 10.
fn best_decimals(values: &[f64]) -> u8 {
    let sample = &values[..values.len().min(SAMPLE_VALUES)];
    let escapes: Vec<usize> = (0..=DECIMALS_MAX)
        .map(|k| {
            let scale = 10f64.powi(i32::from(k));
            sample.iter().filter(|v| code(v.to_bits().wrapping_sub(reconstruct(scaled(**v, scale), scale))) == ESCAPE).count()
        })
        .collect();
    let fewest = escapes.iter().min().copied().unwrap_or(0);
    let k = escapes.iter().position(|e| *e <= fewest + sample.len() / 64).unwrap_or(0);
    u8::try_from(k).unwrap_or(0)
}

/// Values as decimals at one scale and their distances in ULPs from them: what both integer
/// streams encode.
#[derive(Debug)]
pub(super) struct Residues {
    k: u8,
    ints: Vec<i64>,
    codes: Vec<u8>,
    escapes: Vec<i64>,
}

impl Residues {
    pub(super) fn new(values: &[f64]) -> Self {
        let k = best_decimals(values);
        let scale = 10f64.powi(i32::from(k));
        let ints: Vec<i64> = values.iter().map(|v| scaled(*v, scale)).collect();
        let mut codes = vec![0u8; values.len().div_ceil(4)];
        let mut escapes = Vec::new();
        for (n, (v, i)) in values.iter().zip(&ints).enumerate() {
            let distance = v.to_bits().wrapping_sub(reconstruct(*i, scale));
            let c = code(distance);
            if c == ESCAPE {
                escapes.push(distance as i64);
            }
            codes[n / 4] |= c << (2 * (n % 4));
        }
        Self { k, ints, codes, escapes }
    }

    /// Encodes with the integers as codec `ints_codec` says: [`Codec::PcoDecimalUlp`] or
    /// [`Codec::PackedDecimalUlp`].
    pub(super) fn encode(&self, ints_codec: Codec, opts: &CodecOptions) -> Option<Vec<u8>> {
        let int_bytes = if ints_codec == Codec::PackedDecimalUlp {
            let mut w = Writer::new();
            packed::encode(&self.ints, &mut w);
            w.into_inner()
        } else {
            // pco's classic mode: one stream, the fastest to decode.
            simple_compress(&self.ints, &pco_config(opts).with_mode_spec(ModeSpec::Classic)).ok()?
        };
        let mut w = Writer::new();
        w.u8(ints_codec as u8);
        w.u8(self.k);
        w.u32(u32::try_from(int_bytes.len()).ok()?);
        w.bytes(&int_bytes);
        w.bytes(&self.codes);
        w.u32(u32::try_from(self.escapes.len()).ok()?);
        if !self.escapes.is_empty() {
            let level = opts.pco_level.min(ESCAPES_PCO_LEVEL);
            w.bytes(&simple_compress(&self.escapes, &pco_config(&CodecOptions { pco_level: level, ..*opts })).ok()?);
        }
        Some(w.into_inner())
    }
}

/// Decodes the bytes after the codec byte, `codec`.
pub(super) fn decode(r: &mut Reader<'_>, n: usize, codec: Codec) -> Result<Vec<f64>, DecodeError> {
    let k = r.u8()?;
    if k > DECIMALS_MAX {
        return Err(r.err(format!("decimal scale {k} above {DECIMALS_MAX}")));
    }
    let scale = 10f64.powi(i32::from(k));
    let ints_len = r.u32()? as usize;
    let pos = r.pos();
    let int_bytes = r.take(ints_len)?;
    let ints: Vec<i64> = if codec == Codec::PackedDecimalUlp {
        let mut ints_reader = Reader::new(int_bytes);
        let ints = packed::decode(&mut ints_reader, n).map_err(|e| e.shifted(pos))?;
        ints_reader.finish().map_err(|e| e.shifted(pos))?;
        ints
    } else {
        pco_decode(int_bytes, n, pos)?
    };
    let codes = r.take(n.div_ceil(4))?;
    let escape_count = r.u32()? as usize;
    if escape_count > n {
        return Err(r.err(format!("{escape_count} escaped residues for {n} values")));
    }
    let pos = r.pos();
    let escapes: Vec<i64> = if escape_count == 0 { Vec::new() } else { pco_decode(r.take(r.remaining())?, escape_count, pos)? };
    r.finish()?;

    // In place, in passes that vectorise: the integers become their values' bits.
    let mut bits = ints;
    bits.iter_mut().for_each(|b| *b = reconstruct(*b, scale) as i64);
    for (chunk, byte) in bits.chunks_mut(4).zip(codes) {
        let distances = &BYTE_DISTANCES[usize::from(*byte)];
        chunk.iter_mut().zip(distances).for_each(|(b, d)| *b = b.wrapping_add(*d));
    }
    let mut escapes = escapes.into_iter();
    for (byte_index, byte) in codes.iter().enumerate() {
        // A code is 3 when both of its bits are set.
        if byte & (byte >> 1) & 0x55 == 0 {
            continue;
        }
        for slot in 0..4 {
            let n = byte_index * 4 + slot;
            if byte >> (2 * slot) & 3 == ESCAPE && n < bits.len() {
                let distance =
                    escapes.next().ok_or_else(|| DecodeError::new(pos, format!("more escaped residues than the {escape_count} stored")))?;
                bits[n] = bits[n].wrapping_add(distance);
            }
        }
    }
    if escapes.next().is_some() {
        return Err(DecodeError::new(pos, format!("fewer escape codes than the {escape_count} residues stored")));
    }
    Ok(bits.into_iter().map(|b| f64::from_bits(b as u64)).collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BOTH: [Codec; 2] = [Codec::PcoDecimalUlp, Codec::PackedDecimalUlp];

    fn encode(values: &[f64], pco_level: usize, codec: Codec) -> Option<Vec<u8>> {
        Residues::new(values).encode(codec, &CodecOptions { pco_level, ..CodecOptions::default() })
    }

    fn round_trip(values: &[f64]) -> Vec<u64> {
        let decoded: Vec<Vec<u64>> = BOTH
            .into_iter()
            .map(|codec| {
                let bytes = encode(values, 4, codec).expect("encodes");
                let mut r = Reader::new(&bytes[1..]);
                decode(&mut r, values.len(), codec).expect("decodes").into_iter().map(f64::to_bits).collect()
            })
            .collect();
        assert_eq!(decoded[0], decoded[1], "both integer streams decode the same");
        decoded[0].clone()
    }

    proptest! {
        #[test]
        fn every_bit_pattern_round_trips(values in prop::collection::vec(any::<f64>(), 0..300)) {
            prop_assert_eq!(round_trip(&values), values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn near_decimals_round_trip(ints in prop::collection::vec(-10_000_000i64..10_000_000, 1..300), k in 0u8..8) {
            // Means of decimals: within a few ULPs of a decimal with one more digit.
            let values: Vec<f64> = ints.windows(3).map(|w| w.iter().map(|i| *i as f64 / 10f64.powi(i32::from(k))).sum::<f64>() / 3.0).collect();
            prop_assert_eq!(round_trip(&values), values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn damaged_bytes_never_panic(values in prop::collection::vec(any::<f64>(), 1..100), at in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>()) {
            for codec in BOTH {
                let mut bytes = encode(&values, crate::codec::PCO_LEVEL_DEFAULT, codec).expect("encodes");
                let i = at.index(bytes.len());
                bytes[i] ^= xor;
                let _ = decode(&mut Reader::new(&bytes[1..]), values.len(), codec);
                let _ = decode(&mut Reader::new(&bytes[1..cut.index(bytes.len()).max(1)]), values.len(), codec);
            }
        }
    }

    #[test]
    fn a_moving_average_needs_few_escapes() {
        let walk: Vec<f64> = (0..1000).map(|i| f64::from((i * 7919) % 2000 - 1000) / 1e4).collect();
        let values: Vec<f64> = walk.windows(10).map(|w| w.iter().sum::<f64>() / 10.0).collect();
        for codec in BOTH {
            let bytes = encode(&values, crate::codec::PCO_LEVEL_DEFAULT, codec).expect("encodes");
            // A quarter byte of codes per value, the integers, and few escapes.
            assert!(bytes.len() < values.len() * 3, "{codec:?}: {} bytes for {} values", bytes.len(), values.len());
        }
        assert_eq!(round_trip(&values), values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}
