//! Round trips for every codec, and checks that hostile bytes never panic.

use proptest::prelude::*;

use super::*;

fn opts() -> CodecOptions {
    CodecOptions { pco_level: 4, zstd_level: 1 }
}

fn same_f64(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// f64 values of every shape: decimals, full precision, specials.
fn f64_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(any::<f64>(), 0..300),
        prop::collection::vec((-1_000_000i64..1_000_000, 0u8..6), 0..300)
            .prop_map(|v| v.into_iter().map(|(i, k)| i as f64 / 10f64.powi(i32::from(k))).collect()),
        prop::collection::vec(prop::sample::select(vec![0.0, -0.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE, 1.5]), 0..50),
    ]
}

proptest! {
    #[test]
    fn f64_round_trips(values in f64_values()) {
        let encoded = encode_f64(&values, &opts());
        let decoded = decode_f64(&encoded, values.len()).expect("decodes");
        prop_assert!(same_f64(&values, &decoded), "{values:?} != {decoded:?}");
    }

    #[test]
    fn i64_round_trips(values in prop::collection::vec(any::<i64>(), 0..300), base in any::<i64>(), step in 0i64..1_000_000_000) {
        prop_assert_eq!(decode_i64(&encode_i64(&values, &opts()), values.len()).expect("decodes"), values);
        let regular: Vec<i64> = (0..200).map(|i| base.wrapping_add(i * step)).collect();
        prop_assert_eq!(decode_i64(&encode_i64(&regular, &opts()), regular.len()).expect("decodes"), regular);
    }

    #[test]
    fn bool_round_trips(values in prop::collection::vec(any::<bool>(), 0..300)) {
        prop_assert_eq!(decode_bool(&encode_bool(&values, &opts()), values.len()).expect("decodes"), values);
    }

    #[test]
    fn strings_round_trip(values in prop::collection::vec(prop_oneof!["[a-c]{0,3}", ".{0,20}"], 0..200)) {
        let values: Vec<Arc<str>> = values.into_iter().map(Arc::from).collect();
        prop_assert_eq!(decode_strings(&encode_strings(&values, &opts()), values.len()).expect("decodes"), values);
    }

    #[test]
    fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), n in 0usize..100) {
        let _ = decode_f64(&bytes, n);
        let _ = decode_i64(&bytes, n);
        let _ = decode_bool(&bytes, n);
        let _ = decode_strings(&bytes, n);
    }

    #[test]
    fn a_flipped_byte_never_panics(values in prop::collection::vec(-1000i64..1000, 1..100), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let floats: Vec<f64> = values.iter().map(|v| *v as f64 / 100.0).collect();
        let mut encoded = encode_f64(&floats, &opts());
        let i = at.index(encoded.len());
        encoded[i] ^= 1 << bit;
        let _ = decode_f64(&encoded, floats.len());
    }
}

#[test]
fn decimal_columns_are_scaled_to_integers() {
    let values: Vec<f64> = (0..1000).map(|i| (i % 97) as f64 * 0.01 + 20.0).collect();
    let encoded = encode_f64(&values, &opts());
    assert_eq!(encoded[0], Codec::PcoDecimal as u8);
    assert_eq!(encoded[1], 2, "two decimals");
    assert!(same_f64(&decode_f64(&encoded, values.len()).expect("decodes"), &values));
}

#[test]
fn a_block_is_encoded_as_its_sample_chose_unless_the_rest_does_not_fit() {
    // A reading with two decimals wandering about: few repeats, so a dictionary does not win.
    let mut rng = 11u64;
    let values: Vec<f64> = (0..3 * CHOICE_SAMPLE_VALUES)
        .scan(200_000i64, |walk, _| {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *walk += ((rng >> 33) % 201) as i64 - 100;
            Some(*walk as f64 / 100.0)
        })
        .collect();
    let encoded = encode_f64(&values, &CodecOptions::default());
    assert_eq!((encoded[0], encoded[1]), (Codec::PcoDecimal as u8, 2), "the sample's codec and scale");
    assert!(same_f64(&decode_f64(&encoded, values.len()).expect("decodes"), &values));

    // Past the sample the values need more decimals than the sample's codec can scale away.
    let mut changing = values.clone();
    changing[2 * CHOICE_SAMPLE_VALUES..].iter_mut().for_each(|v| *v = 1.0 / *v);
    let encoded = encode_f64(&changing, &CodecOptions::default());
    assert_ne!(encoded[0], Codec::PcoDecimal as u8);
    assert!(same_f64(&decode_f64(&encoded, changing.len()).expect("decodes"), &changing));
}

/// A random walk of `n` readings with two decimals, from `seed`.
fn two_decimal_walk(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = seed;
    (0..n)
        .scan(200_000i64, |walk, _| {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *walk += ((rng >> 33) % 201) as i64 - 100;
            Some(*walk as f64 / 100.0)
        })
        .collect()
}

#[test]
fn a_column_keeps_its_codec_until_it_no_longer_holds_the_values_or_costs_more() {
    let opts = CodecOptions::default();
    let mut choice = F64Choice::default();
    let blocks: Vec<Vec<f64>> = (0..3).map(|k| two_decimal_walk(3 * CHOICE_SAMPLE_VALUES, 11 + k)).collect();
    for block in &blocks {
        let encoded = encode_f64_block(block, &opts, &mut choice);
        assert_eq!((encoded[0], encoded[1]), (Codec::PcoDecimal as u8, 2), "the codec and scale of every block");
        assert!(same_f64(&decode_f64(&encoded, block.len()).expect("decodes"), block));
    }
    assert_eq!(choice.reused, 2, "chosen on the first block, reused for the next two");

    // Values the chosen codec cannot hold are encoded as if alone, and chosen for.
    let full_precision: Vec<f64> = blocks[0].iter().map(|v| 1.0 / v).collect();
    let encoded = encode_f64_block(&full_precision, &opts, &mut choice);
    assert_eq!(encoded, encode_f64(&full_precision, &opts));
    assert!(same_f64(&decode_f64(&encoded, full_precision.len()).expect("decodes"), &full_precision));
    assert_eq!(choice.reused, 0);

    // Values that suit another codec better take fewer bytes than when the codec was chosen:
    // the candidates are tried again.
    let encoded = encode_f64_block(&blocks[1], &opts, &mut choice);
    assert_eq!((encoded[0], encoded[1]), (Codec::PcoDecimal as u8, 2), "decimals again");
    assert_eq!(choice.reused, 0, "tried again, not reused");

    // A constant block is chosen for; a noisy one after it costs far more with that codec.
    let mut choice = F64Choice::default();
    encode_f64_block(&vec![21.5; 3 * CHOICE_SAMPLE_VALUES], &opts, &mut choice);
    let encoded = encode_f64_block(&blocks[2], &opts, &mut choice);
    assert_eq!(encoded, encode_f64(&blocks[2], &opts));
    assert_eq!(choice.reused, 0, "tried again, not reused");
}

#[test]
fn a_choice_is_tried_again_after_some_blocks() {
    let opts = CodecOptions::default();
    let mut choice = F64Choice::default();
    let block = two_decimal_walk(3 * CHOICE_SAMPLE_VALUES, 5);
    let reuses: Vec<u32> = (0..CHOICE_REUSE_BLOCKS + 2)
        .map(|_| {
            encode_f64_block(&block, &opts, &mut choice);
            choice.reused
        })
        .collect();
    let mut expected: Vec<u32> = (0..=CHOICE_REUSE_BLOCKS).collect();
    expected.push(0);
    assert_eq!(reuses, expected);
}

#[test]
fn regular_timestamps_cost_almost_nothing() {
    let start = 1_700_000_000_000_000_000i64;
    let times: Vec<i64> = (0..100_000).map(|i| start + i * 1_000_000_000).collect();
    let encoded = encode_i64(&times, &CodecOptions::default());
    let bits_per_value = encoded.len() as f64 * 8.0 / times.len() as f64;
    assert!(bits_per_value <= 0.1, "{bits_per_value} bits per value");
}

#[test]
fn wrong_value_counts_are_errors() {
    let encoded = encode_i64(&[1, 2, 3], &opts());
    assert!(decode_i64(&encoded, 2).is_err());
    assert!(decode_i64(&encoded, 4).is_err());
    let encoded = encode_bool(&[true, false, true], &opts());
    assert!(decode_bool(&encoded, 9).is_err());
}

#[test]
fn a_moving_average_is_stored_to_decode_fast_at_about_ten_bits() {
    let mut walk = 150_000i64;
    let mut window = std::collections::VecDeque::new();
    let mut rng = 7u64;
    let values: Vec<f64> = (0..100_000)
        .map(|_| {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            walk += ((rng >> 33) % 101) as i64 - 50;
            window.push_back(walk as f64 / 1e4);
            if window.len() > 10 {
                window.pop_front();
            }
            window.iter().sum::<f64>() / window.len() as f64
        })
        .collect();
    let encoded = encode_f64(&values, &CodecOptions::default());
    assert_eq!(encoded[0], Codec::PackedDecimalUlp as u8);
    let bits_per_value = encoded.len() as f64 * 8.0 / values.len() as f64;
    assert!(bits_per_value < 10.5, "{bits_per_value} bits per value");
    assert!(same_f64(&decode_f64(&encoded, values.len()).expect("decodes"), &values));
}

/// Found by the `column_block` fuzz target: a zstd block whose header claims a gigabyte from a
/// few bytes is refused before anything is allocated for it.
#[test]
fn a_zstd_header_claiming_more_than_its_bytes_can_hold_is_refused() {
    let mut block = vec![Codec::ZstdPlain as u8];
    block.extend_from_slice(&(1u32 << 30).to_le_bytes());
    block.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
    let e = decode_strings(&block, 7).expect_err("refused");
    assert!(e.reason.contains("claims 1073741824 bytes from 4 compressed bytes"), "{e}");
    let real = encode_strings(&[Arc::from("a".repeat(100_000).as_str())], &opts());
    assert_eq!(decode_strings(&real, 1).expect("a real block decodes")[0].len(), 100_000);
}
