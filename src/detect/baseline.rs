//! A dependency's learned baseline: what its healthy minutes looked like.
//!
//! Completed minutes are absorbed only while the dependency was healthy (no alert pending or
//! firing), so a degradation does not teach the baseline that it is normal. Minutes are
//! grouped into chunks; the oldest chunk is dropped as new ones fill, so the baseline follows
//! slow drift (a deploy that makes calls 10% slower) over `baseline_minutes`.

use std::collections::VecDeque;

use super::stats::{dispersion, pearson_dispersion};
use crate::window::{Counts, Snapshot, new_histogram};

/// Quantiles whose shares [`crate::detect::detectors::latency_tail`] tests: the body (p50,
/// p90), the tail (`tail_quantile`, p99 by default, takes the middle place) and the far tail.
pub const BODY_QUANTILES: [f64; 2] = [0.5, 0.9];
pub const FAR_TAIL_QUANTILE: f64 = 0.999;

/// One latency quantile of the baseline and how many of its calls were slower.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QuantileShare {
    pub quantile: f64,
    pub threshold_us: u64,
    /// Baseline calls slower than `threshold_us`, and their share (measured, see
    /// [`BaselineStats::tail_share`]).
    pub above: u64,
    pub share: f64,
}

/// Summary figures of a ready baseline.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BaselineStats {
    pub minutes: u32,
    pub calls: u64,
    /// The baseline's tail quantile (p99 by default), microseconds.
    pub tail_us: u64,
    pub p50_us: u64,
    /// Share of baseline calls slower than `tail_us`, as measured: with bucketed latencies it
    /// is often well below 1 - tail_quantile (0.3% rather than 1% when many calls share the
    /// bucket at the quantile), and testing against 1% would need a far larger rise.
    pub tail_share: f64,
    /// How many baseline calls were slower than `tail_us` (the two-sample test's reference).
    pub tail_above: u64,
    /// Smoothed error and timeout rates: (k + 1) / (n + 2), so that a baseline without a single
    /// error does not make the next error infinitely surprising.
    pub error_rate: f64,
    pub timeout_rate: f64,
    /// How many times more the error (timeout) count of a window varies than a binomial count
    /// would: about the size of a burst when failed requests are retried (see
    /// [`crate::detect::stats::dispersion`]); from the baseline's per-minute counts.
    pub error_dispersion: f64,
    pub timeout_dispersion: f64,
    /// p50, p90, the tail quantile and p99.9 with the shares of calls above them.
    pub quantiles: [QuantileShare; 4],
}

#[derive(Debug, Clone)]
struct Chunk {
    snap: Snapshot,
    minutes: u32,
    /// Each minute's (calls, errors, timeouts): how the counts vary from minute to minute.
    per_minute: Vec<[u64; 3]>,
}

#[derive(Debug, Clone)]
pub struct Baseline {
    chunks: VecDeque<Chunk>,
    chunk_minutes: u32,
    max_chunks: usize,
    /// Last minute considered (absorbed or skipped), so each minute is seen once.
    pub last_minute_ms: i64,
    stats: Option<BaselineStats>,
}

impl Baseline {
    /// A baseline over about `minutes` minutes, kept as six chunks.
    pub fn new(minutes: u32) -> Self {
        let chunk_minutes = minutes.div_ceil(6).max(1);
        Self {
            chunks: VecDeque::new(),
            chunk_minutes,
            max_chunks: minutes.div_ceil(chunk_minutes) as usize,
            last_minute_ms: i64::MIN,
            stats: None,
        }
    }

    /// Adds a healthy minute.
    pub fn absorb(&mut self, minute: &Snapshot, tail_quantile: f64) {
        let needs_new = self
            .chunks
            .back()
            .is_none_or(|c| c.minutes >= self.chunk_minutes);
        if needs_new {
            if self.chunks.len() > self.max_chunks {
                self.chunks.pop_front();
            }
            self.chunks.push_back(Chunk {
                snap: Snapshot::empty(minute.from_ms, minute.to_ms),
                minutes: 0,
                per_minute: Vec::new(),
            });
        }
        let chunk = self.chunks.back_mut().expect("pushed above");
        chunk.snap.merge(minute);
        chunk.minutes += 1;
        let c = &minute.counts;
        chunk.per_minute.push([c.total(), c.error, c.timeout]);
        self.stats = Some(self.compute(tail_quantile));
    }

    fn compute(&self, q: f64) -> BaselineStats {
        let mut hist = new_histogram::<u32>();
        let mut counts = Counts::default();
        let mut minutes = 0;
        for c in &self.chunks {
            hist.add(&c.snap.hist).expect("shared bounds");
            counts.add(&c.snap.counts);
            minutes += c.minutes;
        }
        let n = counts.total();
        let (tail_us, p50_us, tail_above) = if hist.is_empty() {
            (0, 0, 0)
        } else {
            let tail = hist.value_at_quantile(q);
            let above =
                hist.count_between(hist.highest_equivalent(tail) + 1, hist.max().max(tail + 1));
            (tail, hist.value_at_quantile(0.5), above)
        };
        let tail_share = if hist.is_empty() {
            1.0 - q
        } else {
            tail_above as f64 / hist.len() as f64
        };
        let share_above = |quantile: f64| {
            if hist.is_empty() {
                return QuantileShare {
                    quantile,
                    threshold_us: 0,
                    above: 0,
                    share: 1.0 - quantile,
                };
            }
            let t = hist.value_at_quantile(quantile);
            let above = hist.count_between(hist.highest_equivalent(t) + 1, hist.max().max(t + 1));
            QuantileShare {
                quantile,
                threshold_us: t,
                above,
                share: above as f64 / hist.len() as f64,
            }
        };
        let quantiles = [
            share_above(BODY_QUANTILES[0]),
            share_above(BODY_QUANTILES[1]),
            share_above(q),
            share_above(FAR_TAIL_QUANTILE),
        ];
        let smooth = |k: u64| (k as f64 + 1.0) / (n as f64 + 2.0);
        let minutes_of = |i: usize| {
            self.chunks
                .iter()
                .flat_map(|c| c.per_minute.iter())
                .map(move |m| (m[i], m[0]))
        };
        BaselineStats {
            minutes,
            calls: n,
            tail_us,
            p50_us,
            tail_share,
            tail_above,
            error_rate: smooth(counts.error),
            timeout_rate: smooth(counts.timeout),
            error_dispersion: dispersion(pearson_dispersion(minutes_of(1))),
            timeout_dispersion: dispersion(pearson_dispersion(minutes_of(2))),
            quantiles,
        }
    }

    /// The baseline, once it has learned enough to judge by (cold start: `None`).
    pub fn ready(&self, min_minutes: u32, min_calls: u64) -> Option<BaselineStats> {
        self.stats
            .filter(|s| s.minutes >= min_minutes && s.calls >= min_calls)
    }

    pub fn stats(&self) -> Option<BaselineStats> {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;
    use crate::window::Slot;

    fn minute(start: i64, values: &[u64], errors: usize) -> Snapshot {
        let mut slot = Slot::new(start);
        for (i, v) in values.iter().enumerate() {
            slot.record(
                *v,
                if i < errors {
                    Outcome::Error
                } else {
                    Outcome::Ok
                },
            );
        }
        let mut s = Snapshot::empty(start, start + 60_000);
        s.add_slot(&slot);
        s
    }

    #[test]
    fn the_baseline_is_ready_only_after_enough_minutes_and_calls() {
        let mut b = Baseline::new(30);
        let values: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        for m in 0..4 {
            b.absorb(&minute(m * 60_000, &values, 0), 0.99);
        }
        assert!(b.ready(5, 200).is_none());
        b.absorb(&minute(4 * 60_000, &values, 1), 0.99);
        let s = b
            .ready(5, 200)
            .expect("ready after 5 minutes and 500 calls");
        assert_eq!(s.calls, 500);
        // p99 of 1..=100 ms is 99 ms (within the histogram's bucket width).
        assert!(
            (s.tail_us as f64 - 99_000.0).abs() / 99_000.0 < 0.01,
            "{}",
            s.tail_us
        );
        assert!((s.error_rate - 2.0 / 502.0).abs() < 1e-12);
    }

    #[test]
    fn retry_bursts_in_the_baseline_raise_its_error_dispersion() {
        let values = [20_000; 60];
        let mut quiet = Baseline::new(30);
        let mut bursty = Baseline::new(30);
        for m in 0..30 {
            quiet.absorb(&minute(m * 60_000, &values, (m % 2) as usize), 0.99);
            // One request failing 6 times, every tenth minute.
            let burst = if m % 10 == 3 { 6 } else { 0 };
            bursty.absorb(&minute(m * 60_000, &values, burst), 0.99);
        }
        let quiet = quiet.stats().unwrap();
        let bursty = bursty.stats().unwrap();
        // 15 errors spread one a minute: less variable than binomial, so no inflation left
        // but what the prior still holds.
        assert!(quiet.error_dispersion < 2.5, "{}", quiet.error_dispersion);
        assert!(bursty.error_dispersion > 4.0, "{}", bursty.error_dispersion);
        // No timeouts at all: the prior.
        assert_eq!(
            bursty.timeout_dispersion,
            crate::detect::stats::dispersion(None)
        );
    }

    #[test]
    fn old_chunks_are_forgotten() {
        let mut b = Baseline::new(6);
        for m in 0..6 {
            b.absorb(&minute(m * 60_000, &[1_000; 10], 0), 0.99);
        }
        for m in 6..20 {
            b.absorb(&minute(m * 60_000, &[50_000; 10], 0), 0.99);
        }
        let s = b.stats().unwrap();
        assert!(s.minutes <= 7);
        assert!(
            s.p50_us >= 49_000,
            "the fast minutes should have aged out: {}",
            s.p50_us
        );
    }
}
