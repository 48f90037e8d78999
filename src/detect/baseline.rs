//! A dependency's learned baseline: what its healthy minutes looked like.
//!
//! Completed minutes are absorbed only while the dependency was healthy (no alert pending or
//! firing), so a degradation does not teach the baseline that it is normal. Minutes are
//! grouped into chunks; the oldest chunk is dropped as new ones fill, so the baseline follows
//! slow drift (a deploy that makes calls 10% slower) over `baseline_minutes`. Chunks also age
//! out by event time (`baseline_max_age`): a baseline learnt before a long outage or a long
//! silence is not what the dependency looks like today.
//!
//! The [`Anchor`] keeps the same healthy minutes over a much longer span (a day by default,
//! in a few coarse chunks), so that a creep too slow for the 30-minute baseline to notice is
//! still measured against where the dependency stood a day ago.

use std::collections::VecDeque;

use super::stats::{dispersion, pearson_dispersion};
use crate::window::{Counts, Snapshot, new_histogram};

/// Quantiles whose shares [`crate::detect::detectors::latency_tail`] tests: the body (p50,
/// p90), the tail (`tail_quantile`, p99 by default, takes the middle place) and the far tail.
pub const BODY_QUANTILES: [f64; 2] = [0.5, 0.9];
pub const FAR_TAIL_QUANTILE: f64 = 0.999;

/// One latency quantile of the baseline's successful calls and how many of them were slower.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QuantileShare {
    pub quantile: f64,
    pub threshold_us: u64,
    /// Successful baseline calls slower than `threshold_us`, and their share of the
    /// successful calls (measured, see [`BaselineStats::tail_share`]).
    pub above: u64,
    pub share: f64,
}

/// Summary figures of a ready baseline.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BaselineStats {
    pub minutes: u32,
    pub calls: u64,
    /// The calls its latencies are of: the successful ones (errors and timeouts are counted,
    /// not timed), the denominator of every latency share below.
    pub successful_calls: u64,
    /// The baseline's tail quantile (p99 by default), microseconds.
    pub tail_us: u64,
    pub p50_us: u64,
    /// Share of successful baseline calls slower than `tail_us`, as measured: with bucketed latencies it
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
    /// End of the newest minute absorbed (event time): when the chunk ages out.
    last_ms: i64,
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
    /// The tail quantile the stats were computed with (recomputed when chunks age out).
    tail_quantile: f64,
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
            tail_quantile: 0.99,
        }
    }

    /// Forgets the chunks whose newest minute ended `max_age_ms` or more before `now_ms`.
    /// Returns whether anything was forgotten.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> bool {
        let before = self.chunks.len();
        while self
            .chunks
            .front()
            .is_some_and(|c| c.last_ms <= now_ms.saturating_sub(max_age_ms))
        {
            self.chunks.pop_front();
        }
        if self.chunks.len() == before {
            return false;
        }
        self.stats = if self.chunks.is_empty() {
            None
        } else {
            Some(self.compute(self.tail_quantile))
        };
        true
    }

    /// Adds a healthy minute.
    pub fn absorb(&mut self, minute: &Snapshot, tail_quantile: f64) {
        self.tail_quantile = tail_quantile;
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
                last_ms: minute.to_ms,
                per_minute: Vec::new(),
            });
        }
        let chunk = self.chunks.back_mut().expect("pushed above");
        chunk.snap.merge(minute);
        chunk.minutes += 1;
        chunk.last_ms = chunk.last_ms.max(minute.to_ms);
        let c = &minute.counts;
        chunk.per_minute.push([c.total(), c.error, c.timeout]);
        self.stats = Some(self.compute(tail_quantile));
    }

    fn compute(&self, q: f64) -> BaselineStats {
        let mut hist = new_histogram::<u32>();
        let mut counts = Counts::default();
        let mut minutes = 0;
        for c in &self.chunks {
            hist.add(&*c.snap.hist).expect("shared bounds");
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
            successful_calls: hist.len(),
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

/// Summary figures of the anchor: where the dependency's healthy minutes stood over the
/// last day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorStats {
    pub calls: u64,
    /// The anchor's tail quantile (p99 by default), microseconds.
    pub tail_us: u64,
    /// Measured share of successful anchor calls slower than `tail_us`.
    pub tail_share: f64,
    /// Smoothed error and timeout rates, as the baseline's.
    pub error_rate: f64,
    pub timeout_rate: f64,
}

#[derive(Debug, Clone)]
struct Span {
    from_ms: i64,
    last_ms: i64,
    snap: Snapshot,
}

/// The healthy minutes of the last `max_age`, in four coarse chunks by event time.
#[derive(Debug, Clone)]
pub struct Anchor {
    spans: VecDeque<Span>,
    span_ms: i64,
    max_age_ms: i64,
    /// Start of the oldest minute held since the anchor was last empty: it judges only once
    /// it has seen (nearly) a whole `max_age`, i.e. every hour of a daily cycle.
    since_ms: Option<i64>,
    stats: Option<AnchorStats>,
}

impl Anchor {
    pub fn new(max_age_ms: i64) -> Self {
        let max_age_ms = max_age_ms.max(4);
        Self {
            spans: VecDeque::new(),
            span_ms: max_age_ms / 4,
            max_age_ms,
            since_ms: None,
            stats: None,
        }
    }

    /// Adds a healthy minute (the minute the baseline absorbed).
    pub fn absorb(&mut self, minute: &Snapshot, tail_quantile: f64) {
        match self.spans.back_mut() {
            Some(span) if minute.from_ms < span.from_ms + self.span_ms => {
                span.snap.merge_data(minute);
                span.last_ms = span.last_ms.max(minute.to_ms);
            }
            _ => {
                let mut snap = Snapshot::empty(minute.from_ms, minute.to_ms);
                snap.merge_data(minute);
                self.spans.push_back(Span {
                    from_ms: minute.from_ms,
                    last_ms: minute.to_ms,
                    snap,
                });
            }
        }
        self.since_ms.get_or_insert(minute.from_ms);
        self.expire(minute.to_ms);
        self.stats = self.compute(tail_quantile);
    }

    /// Puts an anchor of older minutes before this one's: the healthy minutes of the day
    /// before a restart, read back from stored roll-ups, so that the slow-creep guard does not
    /// need a whole new day to judge again. Spans of `older` that reach into this anchor's
    /// first minute are dropped. `now_ms` ages out what is older than `max_age`.
    pub fn prepend(&mut self, older: Anchor, tail_quantile: f64, now_ms: i64) {
        let first_own = self.spans.front().map(|s| s.from_ms);
        let mut spans = older.spans;
        spans.retain(|s| first_own.is_none_or(|first| s.last_ms <= first));
        if spans.is_empty() {
            return;
        }
        let oldest = spans.front().map(|s| s.from_ms);
        spans.append(&mut self.spans);
        self.spans = spans;
        self.since_ms = match (oldest, self.since_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.expire(now_ms);
        self.stats = self.compute(tail_quantile);
    }

    /// Start of the oldest minute the anchor holds since it was last empty.
    pub fn since_ms(&self) -> Option<i64> {
        self.since_ms
    }

    /// Forgets spans whose newest minute is `max_age` old or older.
    pub fn expire(&mut self, now_ms: i64) {
        let before = self.spans.len();
        while self
            .spans
            .front()
            .is_some_and(|s| s.last_ms <= now_ms.saturating_sub(self.max_age_ms))
        {
            self.spans.pop_front();
        }
        if self.spans.is_empty() {
            self.since_ms = None;
            self.stats = None;
        } else if self.spans.len() != before {
            let oldest = self.spans.front().map_or(now_ms, |s| s.from_ms);
            self.since_ms = self.since_ms.map(|since| since.max(oldest));
        }
    }

    fn compute(&self, q: f64) -> Option<AnchorStats> {
        let mut all = Snapshot::empty(0, 0);
        for span in &self.spans {
            all.merge_data(&span.snap);
        }
        let n = all.total();
        if all.hist.is_empty() {
            return None;
        }
        let tail = all.hist.value_at_quantile(q);
        let above = all.count_above(tail);
        let smooth = |k: u64| (k as f64 + 1.0) / (n as f64 + 2.0);
        Some(AnchorStats {
            calls: n,
            tail_us: tail,
            tail_share: above as f64 / all.hist.len() as f64,
            error_rate: smooth(all.counts.error),
            timeout_rate: smooth(all.counts.timeout),
        })
    }

    /// The anchor's figures once it covers (nearly) all of `max_age` as of `now_ms`: less
    /// than that, and a daily swing it has not seen yet would look like a creep.
    pub fn ready(&self, now_ms: i64) -> Option<AnchorStats> {
        let since = self.since_ms?;
        (now_ms - since >= self.max_age_ms - self.span_ms)
            .then_some(self.stats)
            .flatten()
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
        // The fifth minute also holds an error that came back in 2 ms.
        let with_error: Vec<u64> = std::iter::once(2_000)
            .chain(values.iter().copied())
            .collect();
        b.absorb(&minute(4 * 60_000, &with_error, 1), 0.99);
        let s = b
            .ready(5, 200)
            .expect("ready after 5 minutes and 500 calls");
        assert_eq!(s.calls, 501);
        // Latency is of the successful calls: the error is not among them.
        assert_eq!(s.successful_calls, 500);
        // p99 of 1..=100 ms is 99 ms (within the histogram's bucket width).
        assert!(
            (s.tail_us as f64 - 99_000.0).abs() / 99_000.0 < 0.01,
            "{}",
            s.tail_us
        );
        assert_eq!(s.quantiles[2].share, s.tail_share);
        assert!(
            (s.tail_share - 5.0 / 500.0).abs() < 1e-12,
            "{}",
            s.tail_share
        );
        assert!((s.error_rate - 2.0 / 503.0).abs() < 1e-12);
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

    #[test]
    fn chunks_age_out_by_event_time_even_when_nothing_new_is_learnt() {
        let mut b = Baseline::new(30);
        for m in 0..10 {
            b.absorb(&minute(m * 60_000, &[20_000; 60], 0), 0.99);
        }
        assert_eq!(b.stats().map(|s| s.minutes), Some(10));
        // Two chunks of five minutes: with an hour's maximum age, the first goes an hour
        // after its newest minute ended, the second five minutes later.
        assert!(!b.expire(5 * 60_000 + 3_600_000 - 1, 3_600_000));
        assert!(b.expire(5 * 60_000 + 3_600_000, 3_600_000));
        assert_eq!(b.stats().map(|s| s.minutes), Some(5));
        assert!(b.ready(5, 200).is_some());
        // Once every minute is older than the maximum age, nothing is left to judge by.
        assert!(b.expire(10 * 60_000 + 3_600_000, 3_600_000));
        assert_eq!(b.stats(), None);
        assert!(b.ready(1, 1).is_none());
    }

    #[test]
    fn the_anchor_judges_only_once_it_has_seen_its_whole_span_and_forgets_what_is_older() {
        let hour = 3_600_000;
        let mut a = Anchor::new(4 * hour);
        // Three hours of fast minutes: not yet a whole span (the last quarter may be missing).
        for m in 0..180 {
            a.absorb(&minute(m * 60_000, &[10_000; 60], 0), 0.99);
        }
        assert!(a.ready(180 * 60_000).is_some());
        assert!(a.ready(170 * 60_000).is_none());
        // Then slow minutes for five hours: the fast ones age out after four hours.
        for m in 180..480 {
            a.absorb(&minute(m * 60_000, &[40_000; 60], 0), 0.99);
        }
        let s = a.ready(480 * 60_000).expect("ready");
        assert!(s.tail_us >= 39_000, "{s:?}");
        assert_eq!(s.calls % 60, 0);
        assert!(s.calls <= 5 * 60 * 60, "{s:?}");
        // A long silence: everything ages out and readiness starts over.
        a.expire(480 * 60_000 + 4 * hour);
        assert!(a.ready(480 * 60_000 + 4 * hour).is_none());
    }

    #[test]
    fn an_anchor_primed_with_the_stored_day_judges_at_once() {
        let hour = 3_600_000;
        let stored = |max_age: i64, to_minute: i64| {
            let mut a = Anchor::new(max_age);
            for m in 0..to_minute {
                a.absorb(&minute(m * 60_000, &[10_000; 60], 0), 0.99);
            }
            a
        };
        // After a restart the anchor holds only the minutes learnt since: not ready.
        let mut a = Anchor::new(4 * hour);
        for m in 230..240 {
            a.absorb(&minute(m * 60_000, &[12_000; 60], 0), 0.99);
        }
        assert!(a.ready(240 * 60_000).is_none());
        a.prepend(stored(4 * hour, 230), 0.99, 240 * 60_000);
        let s = a.ready(240 * 60_000).expect("ready once primed");
        assert_eq!(s.calls, 240 * 60);
        assert!(s.tail_us < 13_000, "{s:?}");
        assert_eq!(a.since_ms(), Some(0));
        // Stored minutes that reach into what the anchor holds are not counted twice.
        a.prepend(stored(4 * hour, 235), 0.99, 240 * 60_000);
        assert_eq!(a.ready(240 * 60_000).unwrap().calls, 240 * 60);
        // What is older than the anchor's span ages out.
        let mut b = Anchor::new(hour);
        b.absorb(&minute(230 * 60_000, &[10_000; 60], 0), 0.99);
        b.prepend(stored(hour, 230), 0.99, 231 * 60_000);
        let s = b.ready(231 * 60_000).expect("ready");
        assert!(s.calls <= 76 * 60, "{s:?}");
        assert!(b.since_ms().unwrap() >= 150 * 60_000, "{:?}", b.since_ms());
    }
}
