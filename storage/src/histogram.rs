//! A latency histogram for `/metrics`: fixed buckets, counted with atomics, so recording costs
//! a few relaxed additions on the write path and no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (Prometheus `le`, inclusive); the last bucket
/// (`+Inf`) takes the rest.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000];

/// How many durations fell in each bucket, their count and their sum.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// One count per bucket of [`LATENCY_BUCKETS_US`], then one for longer durations.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// What a histogram held when read: cumulative counts per bucket, as Prometheus shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `(le in microseconds, durations at most that long)`, for each of [`LATENCY_BUCKETS_US`].
    pub cumulative: Vec<(u64, u64)>,
    pub count: u64,
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&le| le < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS_US.len());
        for (le, bucket) in LATENCY_BUCKETS_US.iter().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push((*le, running));
        }
        let count = running + self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        LatencySnapshot { cumulative, count, sum_us: self.sum_us.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        for us in [0, 250, 251, 1_500, 7_000_000] {
            histogram.record(Duration::from_micros(us));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.sum_us, 250 + 251 + 1_500 + 7_000_000);
        let at = |le: u64| snapshot.cumulative.iter().find(|(bound, _)| *bound == le).map(|(_, n)| *n);
        assert_eq!(at(250), Some(2), "0 and exactly 250 µs");
        assert_eq!(at(500), Some(3));
        assert_eq!(at(1_000), Some(3));
        assert_eq!(at(2_000), Some(4));
        assert_eq!(at(5_000_000), Some(4), "7 s is only in +Inf");
    }
}
