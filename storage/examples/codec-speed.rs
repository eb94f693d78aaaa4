//! Decode throughput of isobar's f64 codecs on seed-shaped columns (128 Ki values each): a
//! 4-decimal random walk and its 10-reading moving average at full precision, as the seed
//! fleet sends them. Builds without RocksDB, so it answers in a minute on a cold machine:
//!
//! `cargo run --release -p isobar-storage --no-default-features --example codec-speed`
//!
//! Prints the best of 7 rounds of 20 decodes; `cargo bench -p isobar-benches --bench storage --
//! codec` measures the same with criterion.

use isobar_storage::codec::{self, CodecOptions};
use std::time::Instant;

fn main() {
    let n = 128 * 1024;
    let mut rng = 7u64;
    // splitmix64, as the fleet simulator uses.
    let mut next = || {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut walk = 150_000i64;
    let mut recent: Vec<f64> = Vec::new();
    let (mut values, mut smoothed) = (Vec::new(), Vec::new());
    for _ in 0..n {
        walk += (next() % 101) as i64 - 50;
        let v = walk as f64 / 10_000.0;
        if recent.len() == 10 {
            recent.remove(0);
        }
        recent.push(v);
        values.push(v);
        smoothed.push(recent.iter().sum::<f64>() / recent.len() as f64);
    }
    let opts = CodecOptions::default();
    for (name, column) in [("random_walk_4_decimals", &values), ("moving_average", &smoothed)] {
        let encoded = codec::encode_f64(column, &opts);
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..20 {
                std::hint::black_box(codec::decode_f64(&encoded, n).expect("decodes"));
            }
            best = best.min(t.elapsed().as_secs_f64() / 20.0);
        }
        let bits = encoded.len() as f64 * 8.0 / n as f64;
        println!("{name}: codec {} bits/value {bits:.2} decode {:.0} M values/s", encoded[0], n as f64 / best / 1e6);
    }
}
