//! Delta and bit-packed integers: the integer stream for columns that must decode fast.
//!
//! pco spends about 4–7 ns per value decoding its entropy-coded integers; plain bit-packing of
//! deltas decodes in about 1.5 ns at a few percent more bytes. The stream takes deltas of order
//! 0, 1 or 2 (whichever packs smallest), then stores them in blocks of [`BLOCK_VALUES`], each as
//! `value - min` in the fewest bits that hold the block's range:
//!
//! `order u8 | order × first value i64 | per block: min i64 | width u8 | ceil(len·width / 64)
//! words u64`, all little-endian, values packed least significant bit first.

use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;

/// Deltas per block: small enough that a burst widens few values, large enough that the
/// nine header bytes cost little.
const BLOCK_VALUES: usize = 1024;
/// Highest delta order tried: order 2 turns a moving average's steps into small numbers.
const ORDER_MAX: u8 = 2;

fn deltas(values: &[i64]) -> Vec<i64> {
    values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect()
}

/// Bits that hold every `v - min` of a block.
fn width(block: &[i64]) -> (i64, u32) {
    let min = block.iter().copied().min().unwrap_or(0);
    let max = block.iter().copied().max().unwrap_or(0);
    (min, u64::BITS - (max.wrapping_sub(min) as u64).leading_zeros())
}

fn packed_bytes(deltas: &[i64]) -> usize {
    deltas.chunks(BLOCK_VALUES).map(|b| 9 + (b.len() * width(b).1 as usize).div_ceil(64) * 8).sum()
}

/// Appends `values` as a packed stream.
pub(super) fn encode(values: &[i64], w: &mut Writer) {
    let mut firsts = Vec::new();
    let mut best = (values.to_vec(), Vec::new());
    let mut current = values.to_vec();
    let mut best_bytes = packed_bytes(&current);
    while firsts.len() < usize::from(ORDER_MAX) && current.len() > 1 {
        firsts.push(current[0]);
        current = deltas(&current);
        let bytes = packed_bytes(&current) + firsts.len() * 8;
        if bytes < best_bytes {
            best_bytes = bytes;
            best = (current.clone(), firsts.clone());
        }
    }
    let (deltas, firsts) = best;
    w.u8(firsts.len() as u8);
    firsts.iter().for_each(|v| w.i64(*v));
    for block in deltas.chunks(BLOCK_VALUES) {
        let (min, bits) = width(block);
        w.i64(min);
        w.u8(bits as u8);
        let bits = bits as usize;
        let mut words = vec![0u64; (block.len() * bits).div_ceil(64)];
        if bits > 0 {
            for (j, v) in block.iter().enumerate() {
                let u = v.wrapping_sub(min) as u64;
                let (word, shift) = ((j * bits) / 64, (j * bits) % 64);
                words[word] |= u << shift;
                if shift + bits > 64 {
                    words[word + 1] |= u >> (64 - shift);
                }
            }
        }
        words.iter().for_each(|word| w.u64(*word));
    }
}

/// Reads a packed stream of `n` values.
pub(super) fn decode(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, DecodeError> {
    let order = r.u8()?;
    if order > ORDER_MAX || (order > 0 && usize::from(order) >= n) {
        return Err(r.err(format!("delta order {order} for {n} values")));
    }
    let firsts: Vec<i64> = (0..order).map(|_| r.i64()).collect::<Result<_, _>>()?;
    let mut out = vec![0i64; n];
    let mut words = [0u64; BLOCK_VALUES];
    for block in out[usize::from(order)..].chunks_mut(BLOCK_VALUES) {
        let min = r.i64()?;
        let bits = r.u8()?;
        if bits > 64 {
            return Err(r.err(format!("bit width {bits}")));
        }
        let word_count = (block.len() * usize::from(bits)).div_ceil(64);
        let words = &mut words[..word_count];
        for (word, bytes) in words.iter_mut().zip(r.take(word_count * 8)?.chunks_exact(8)) {
            *word = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        }
        unpack(usize::from(bits), words, block);
        block.iter_mut().for_each(|v| *v = v.wrapping_add(min));
    }
    match firsts[..] {
        [] => {}
        [first] => {
            // `out[0]` is still 0: blocks start after the first values.
            let mut acc = first;
            for v in &mut out {
                acc = acc.wrapping_add(*v);
                *v = acc;
            }
        }
        [first, step] => {
            out[0] = first;
            out[1] = first.wrapping_add(step);
            let (mut acc, mut step) = (out[1], step);
            for v in &mut out[2..] {
                step = step.wrapping_add(*v);
                acc = acc.wrapping_add(step);
                *v = acc;
            }
        }
        _ => unreachable!("order is at most {ORDER_MAX}"),
    }
    Ok(out)
}

/// Unpacks `out.len()` values of `bits` bits from `words`, which holds exactly enough words.
fn unpack(bits: usize, words: &[u64], out: &mut [i64]) {
    macro_rules! by_width {
        ($($w:literal)*) => {
            match bits {
                0 => out.fill(0),
                $($w => unpack_width::<$w>(words, out),)*
                _ => unreachable!("widths are checked to be at most 64"),
            }
        };
    }
    by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64);
}

/// With the width a constant, each group of 64 values (exactly `W` words) unrolls into fixed
/// shifts and masks.
fn unpack_width<const W: usize>(words: &[u64], out: &mut [i64]) {
    let full_groups = out.len() / 64;
    let (groups, tail) = out.split_at_mut(full_groups * 64);
    for (group, w) in groups.chunks_exact_mut(64).zip(words.chunks_exact(W)) {
        let mut j = 0;
        while j < 64 {
            group[j] = extract::<W>(w, j);
            j += 1;
        }
    }
    let tail_words = &words[full_groups * W..];
    for (j, v) in tail.iter_mut().enumerate() {
        *v = extract::<W>(tail_words, j);
    }
}

#[inline(always)]
fn extract<const W: usize>(words: &[u64], j: usize) -> i64 {
    let (word, shift) = ((j * W) / 64, (j * W) % 64);
    let mask = if W == 64 { u64::MAX } else { (1u64 << W) - 1 };
    let low = words[word] >> shift;
    let v = if shift + W > 64 { low | (words[word + 1] << (64 - shift)) } else { low };
    (v & mask) as i64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(values: &[i64]) -> Result<Vec<i64>, DecodeError> {
        let mut w = Writer::new();
        encode(values, &mut w);
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes);
        let out = decode(&mut r, values.len())?;
        r.finish()?;
        Ok(out)
    }

    proptest! {
        #[test]
        fn any_integers_round_trip(values in prop::collection::vec(any::<i64>(), 0..3000)) {
            prop_assert_eq!(round_trip(&values).expect("decodes"), values);
        }

        #[test]
        fn smooth_integers_round_trip(steps in prop::collection::vec(-100i64..100, 0..3000), start in any::<i64>()) {
            let values: Vec<i64> = steps.iter().scan(start, |acc, s| { *acc = acc.wrapping_add(*s); Some(*acc) }).collect();
            prop_assert_eq!(round_trip(&values).expect("decodes"), values);
        }

        #[test]
        fn damaged_bytes_never_panic(values in prop::collection::vec(-1000i64..1000, 1..2000), at in any::<prop::sample::Index>(), xor in 1u8..=255) {
            let mut w = Writer::new();
            encode(&values, &mut w);
            let mut bytes = w.into_inner();
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            let _ = decode(&mut Reader::new(&bytes), values.len());
            let _ = decode(&mut Reader::new(&bytes[..i]), values.len());
        }
    }

    #[test]
    fn every_width_round_trips() {
        for bits in 0..=64u32 {
            let top = if bits == 64 { u64::MAX } else { (1u64 << bits).wrapping_sub(1) };
            // Alternating extremes defeat the delta orders, so the width is exactly `bits`.
            let values: Vec<i64> = (0..700).map(|j| if j % 2 == 0 { 0 } else { top as i64 }).collect();
            assert_eq!(round_trip(&values).expect("decodes"), values, "width {bits}");
        }
    }

    #[test]
    fn a_moving_average_packs_in_about_eight_bits() {
        let mut walk = 150_000i64;
        let mut window = std::collections::VecDeque::new();
        let values: Vec<i64> = (0..10_000i64)
            .map(|j| {
                walk += (j * 7919) % 101 - 50;
                window.push_back(walk);
                if window.len() > 10 {
                    window.pop_front();
                }
                window.iter().sum()
            })
            .collect();
        let mut w = Writer::new();
        encode(&values, &mut w);
        assert!(w.len() * 8 < values.len() * 9, "{} bytes for {} values", w.len(), values.len());
        assert_eq!(round_trip(&values).expect("decodes"), values);
    }
}
