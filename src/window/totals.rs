//! Running totals of a series since it was created: counters that only grow, for the
//! Prometheus exposition (`graywatch_dependency_calls_total`, the call-duration histogram).
//!
//! Windows forget; a Prometheus counter must not. Adding to a total per event would put work
//! on the ingest path under the shard lock, so the totals are folded where the series already
//! aggregates: a fine (1-second) slot is added when it retires from the 10-second ring, which
//! happens once per second per series. Reading a total adds the fine slots still live, under
//! the same lock, so a scrape sees every recorded call exactly once and a total never
//! decreases. Events older than the fine ring (late by more than 10 s) skip the fine slots and
//! are added one by one on that slow path.

use super::fine::{FineData, FineSlot};
use super::histogram::{SlotHistogram, list_value};
use super::sample::SHAPE;
use super::slot::Counts;
use super::slot_hist::SlotHist;
use crate::domain::Outcome;

/// Upper bounds of the exported call-duration buckets in microseconds (the Prometheus `le`
/// values 0.001 s to 30 s, fixed so that PromQL can aggregate histograms across nodes). A last
/// bucket, `+Inf`, follows.
pub const BUCKET_BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// Calls per duration bucket (not cumulative; the last entry is `+Inf`) and their sum.
///
/// A call counts in the first bucket whose bound is at least its duration. Durations read from
/// a histogram are known to two significant digits only: they are placed by the lowest value
/// of their HdrHistogram bucket, so a call exactly on a bound lands in that bound's bucket and
/// one within 0.8% above a bound may too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyBuckets {
    pub counts: [u64; BUCKET_BOUNDS_US.len() + 1],
    /// Sum of the durations in microseconds (histogram data at the middle of its buckets).
    pub sum_us: f64,
}

impl LatencyBuckets {
    #[inline]
    fn add(&mut self, at_us: u64, value_us: f64, n: u64) {
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < at_us);
        self.counts[i] += n;
        self.sum_us += value_us * n as f64;
    }

    pub(crate) fn add_values(&mut self, values: &[u32]) {
        for &v in values {
            self.add(u64::from(v), f64::from(v), 1);
        }
    }

    /// Adds a slot's calls, each at its bucket (see [`LatencyBuckets::add_histogram`]).
    pub(crate) fn add_slot_hist(&mut self, hist: &SlotHist) {
        match hist {
            SlotHist::Dense(h) => self.add_histogram(h),
            SlotHist::Sparse(_) => hist.for_each_bucket(|lowest, n| {
                self.add(lowest, SHAPE.median_equivalent(lowest) as f64, n)
            }),
        }
    }

    pub(crate) fn add_histogram(&mut self, hist: &SlotHistogram) {
        for v in hist.iter_recorded() {
            let value = v.value_iterated_to();
            self.add(
                hist.lowest_equivalent(value),
                hist.median_equivalent(value) as f64,
                u64::from(v.count_at_value()),
            );
        }
    }

    pub fn merge(&mut self, other: &LatencyBuckets) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Calls per bucket, cumulative as Prometheus exports them (the last is the count).
    pub fn cumulative(&self) -> [u64; BUCKET_BOUNDS_US.len() + 1] {
        let mut out = self.counts;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }
}

/// What a series has recorded since it was created (or since the daemon started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub counts: Counts,
    /// Kept for a dependency's total only: instances and zones export counts alone.
    pub latency: Option<Box<LatencyBuckets>>,
}

impl Totals {
    pub(crate) fn with_latency() -> Self {
        Self {
            counts: Counts::default(),
            latency: Some(Box::default()),
        }
    }

    /// Adds a fine slot that retires (or, when reading, one still live).
    pub(crate) fn add_fine(&mut self, fine: &FineSlot) {
        self.counts.add(&fine.counts);
        if let Some(l) = &mut self.latency {
            match fine.data() {
                FineData::Sparse(values) => l.add_values(values),
                FineData::Dense(hist) => l.add_histogram(hist),
            }
        }
    }

    /// Adds one call that bypassed the fine slots (a late event).
    pub(crate) fn record(&mut self, duration_us: u64, outcome: Outcome) {
        let timed = Counts::timed(outcome);
        self.counts
            .count(outcome, timed && duration_us > super::histogram::HIGHEST_US);
        if timed && let Some(l) = &mut self.latency {
            let v = list_value(duration_us);
            l.add(u64::from(v), f64::from(v), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::new_histogram;

    #[test]
    fn a_call_on_a_bound_is_in_that_bucket_from_a_list_and_from_a_histogram() {
        let values = [
            999,
            1_000,
            1_001,
            2_500,
            30_000_000,
            30_000_001,
            3_600_000_000,
        ];
        let mut listed = LatencyBuckets::default();
        listed.add_values(&values);
        let mut hist = new_histogram();
        for v in values {
            hist.record(u64::from(v)).unwrap();
        }
        let mut from_hist = LatencyBuckets::default();
        from_hist.add_histogram(&hist);
        // 999 and 1000 are within 1 ms; 1001 is above it (in a list; a histogram bucket
        // starting at 1000 holds it too).
        assert_eq!(listed.counts[0], 2);
        assert_eq!(listed.counts[1], 2);
        assert_eq!(from_hist.counts[0], 3);
        assert_eq!(listed.counts[13], 1);
        assert_eq!(listed.counts[14], 2);
        // At 30 s a histogram bucket is 0.26 s wide: 30 s + 1 µs shares the bucket of 30 s.
        assert_eq!(from_hist.counts[13], 2);
        assert_eq!(from_hist.counts[14], 1);
        assert_eq!(listed.cumulative()[14], values.len() as u64);
        assert_eq!(from_hist.cumulative()[14], values.len() as u64);
        let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
        assert_eq!(listed.sum_us, sum as f64);
        assert!((from_hist.sum_us - sum as f64).abs() / (sum as f64) < 0.01);
    }
}
