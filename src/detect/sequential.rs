//! Sequential evidence: how soon a condition the detectors found may fire.
//!
//! The detectors' tests say whether a shift is there (significant, large enough, still
//! present); they do not say how long to wait before paging. A fixed hold waits as long for
//! a tenfold rise at 200 calls/s as for a marginal one at 2 calls/s. Instead, each
//! dependency keeps one-sided CUSUMs on its per-second counts: every complete second adds the
//! log-likelihood ratio of its offending calls (slower than a baseline quantile, errors,
//! timeouts) under a shifted rate against the baseline rate, and the sum, floored at zero,
//! fires once it reaches the threshold `h`. Strong evidence reaches it in a few seconds, weak
//! evidence later, and evidence that stops drains it again.
//!
//! - **Alternatives.** Each count is watched against three shifts (the odds of offending
//!   multiplied by 2, 4 and 10), so that a small shift is not judged against an alternative
//!   it never reaches, nor a large one slowly.
//! - **Dependence.** Errors and timeouts that come in bursts (retries, fan-out) are not
//!   independent calls: their log-likelihood ratio is divided by the baseline's dispersion,
//!   as the quasi-binomial test does.
//! - **Bursts.** One second adds at most a fifth of `h`, so at least five seconds of evidence
//!   are needed: one burst of slow or failed calls within a second cannot fire alone.
//! - **Now, not then.** A statistic stops at the threshold: it says the evidence reached it
//!   and is still there. A long incident does not pile up a sum that would take minutes to
//!   drain after recovery and speak for old evidence meanwhile.
//! - **Calibration.** Under the baseline, a CUSUM with threshold `h` crosses about once in
//!   `e^h` steps. With one step a second and [`STATISTICS`] statistics per dependency,
//!   `h = ln(86 400 x STATISTICS / budget)` allows `budget` crossings per dependency-day
//!   ([`FALSE_ALARMS_PER_DAY`]); a crossing fires only while a detector's test also holds.

use serde_json::json;

use super::baseline::BaselineStats;
use crate::window::Sample;

/// Shifts of the odds of an offending call each stream is watched against.
pub const SHIFTS: [f64; 3] = [2.0, 4.0, 10.0];
/// Streams: the shares above the baseline's four latency quantiles (see
/// [`BaselineStats::quantiles`]), errors and timeouts.
pub const STREAMS: usize = 6;
/// CUSUM statistics per dependency.
pub const STATISTICS: usize = STREAMS * SHIFTS.len();
/// Crossings of the statistics alone the threshold allows per dependency and day.
pub const FALSE_ALARMS_PER_DAY: f64 = 1.0;
/// Largest share of the threshold one second may add.
pub const MAX_STEP_SHARE: f64 = 0.2;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Which count a statistic watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Calls slower than the baseline quantile of this index in [`BaselineStats::quantiles`].
    Slower(usize),
    Errors,
    Timeouts,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Slower(i) => i.min(3),
            Stream::Errors => 4,
            Stream::Timeouts => 5,
        }
    }
}

/// The threshold every statistic fires at (about 14.3).
pub fn threshold() -> f64 {
    (SECONDS_PER_DAY * STATISTICS as f64 / FALSE_ALARMS_PER_DAY).ln()
}

/// Log-likelihood ratio of `k` offending calls out of `n` under the odds of `p0` multiplied
/// by `odds_ratio` against `p0`, divided by the dispersion `phi` (at least 1).
pub fn log_likelihood_ratio(k: u64, n: u64, p0: f64, odds_ratio: f64, phi: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let p0 = p0.clamp(1e-9, 1.0 - 1e-9);
    let p1 = p0 * odds_ratio / (1.0 - p0 + p0 * odds_ratio);
    let k = k.min(n) as f64;
    let llr = k * (p1 / p0).ln() + (n as f64 - k) * ((1.0 - p1) / (1.0 - p0)).ln();
    llr / phi.max(1.0)
}

/// One dependency's statistics.
#[derive(Debug, Clone)]
pub struct Evidence {
    stats: [[f64; SHIFTS.len()]; STREAMS],
    /// Start of the last second added: each second counts once, however often it is read.
    last_second_ms: i64,
}

impl Default for Evidence {
    fn default() -> Self {
        Self {
            stats: [[0.0; SHIFTS.len()]; STREAMS],
            last_second_ms: i64::MIN,
        }
    }
}

impl Evidence {
    /// Adds one complete second (once; earlier or repeated seconds are ignored).
    pub fn observe(&mut self, second: &Sample, base: &BaselineStats) {
        if second.from_ms() <= self.last_second_ms {
            return;
        }
        self.last_second_ms = second.from_ms();
        // Latency shares are of the successful calls (the ones the histograms time), as the
        // baseline's are; errors and timeouts are shares of all calls.
        let timed = second.successful();
        for (i, q) in base.quantiles.iter().enumerate() {
            let k = second.count_above(q.threshold_us);
            self.add(Stream::Slower(i), k, timed, q.share, 1.0);
        }
        let n = second.total();
        let c = second.counts();
        self.add(
            Stream::Errors,
            c.error,
            n,
            base.error_rate,
            base.error_dispersion,
        );
        self.add(
            Stream::Timeouts,
            c.timeout,
            n,
            base.timeout_rate,
            base.timeout_dispersion,
        );
    }

    fn add(&mut self, stream: Stream, k: u64, n: u64, p0: f64, phi: f64) {
        let h = threshold();
        for (s, shift) in self.stats[stream.index()].iter_mut().zip(SHIFTS) {
            let step = log_likelihood_ratio(k, n, p0, shift, phi).min(MAX_STEP_SHARE * h);
            *s = (*s + step).clamp(0.0, h);
        }
    }

    /// The largest statistic of `stream` and the shift it watches.
    pub fn strongest(&self, stream: Stream) -> (f64, f64) {
        self.stats[stream.index()]
            .iter()
            .zip(SHIFTS)
            .map(|(s, shift)| (*s, shift))
            .fold((0.0, SHIFTS[0]), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// Whether any statistic of `stream` reached the threshold.
    pub fn crossed(&self, stream: Stream) -> bool {
        self.strongest(stream).0 >= threshold()
    }

    /// What a finding's evidence says of the statistics of `streams`: the strongest, and
    /// whether it crossed (then the condition need not be held for `fire_after`).
    pub fn describe(&self, streams: &[Stream]) -> serde_json::Value {
        let (statistic, shift) = streams
            .iter()
            .map(|s| self.strongest(*s))
            .fold((0.0, SHIFTS[0]), |a, b| if b.0 > a.0 { b } else { a });
        json!({
            "test": "CUSUM of per-second log-likelihood ratios, one-sided",
            "statistic": statistic,
            "odds_shift": shift,
            "threshold": threshold(),
            "crossed": statistic >= threshold(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::baseline::QuantileShare;
    use crate::domain::Outcome;
    use crate::window::Slot;

    fn base() -> BaselineStats {
        let q = |quantile: f64, threshold_us: u64| QuantileShare {
            quantile,
            threshold_us,
            above: (100_000.0 * (1.0 - quantile)) as u64,
            share: 1.0 - quantile,
        };
        BaselineStats {
            minutes: 30,
            calls: 100_000,
            successful_calls: 100_000,
            tail_us: 100_000,
            p50_us: 20_000,
            tail_share: 0.01,
            tail_above: 1_000,
            error_rate: 0.001,
            timeout_rate: 0.0001,
            error_dispersion: 1.0,
            timeout_dispersion: 1.0,
            quantiles: [
                q(0.5, 20_000),
                q(0.9, 50_000),
                q(0.99, 100_000),
                q(0.999, 300_000),
            ],
        }
    }

    /// Second `at` with `n` calls of 10 ms, `slow` of them 200 ms, `errors` of them errors.
    fn second(at: i64, n: u64, slow: u64, errors: u64) -> Sample {
        let mut slot = Slot::new(at * 1000);
        for i in 0..n {
            let us = if i < slow { 200_000 } else { 10_000 };
            let outcome = if i >= n - errors {
                Outcome::Error
            } else {
                Outcome::Ok
            };
            slot.record(us, outcome);
        }
        let mut s = crate::window::Snapshot::empty(at * 1000, at * 1000 + 1000);
        s.add_slot(&slot);
        Sample::Histogram(s)
    }

    #[test]
    fn the_threshold_allows_one_crossing_per_dependency_day() {
        let h = threshold();
        assert!((h - (86_400.0 * 18.0f64).ln()).abs() < 1e-9, "{h}");
    }

    #[test]
    fn the_ratio_favours_the_shift_only_when_the_count_does() {
        // 1% expected: 10 of 100 is strong evidence for a shift, 1 of 100 against it.
        assert!(log_likelihood_ratio(10, 100, 0.01, 4.0, 1.0) > 5.0);
        assert!(log_likelihood_ratio(1, 100, 0.01, 4.0, 1.0) < 0.0);
        // Over-dispersed counts weigh less.
        let plain = log_likelihood_ratio(10, 100, 0.01, 4.0, 1.0);
        assert!((log_likelihood_ratio(10, 100, 0.01, 4.0, 5.0) - plain / 5.0).abs() < 1e-12);
        assert_eq!(log_likelihood_ratio(0, 0, 0.01, 4.0, 1.0), 0.0);
    }

    #[test]
    fn a_strong_shift_crosses_in_five_seconds_and_not_sooner() {
        let b = base();
        let mut e = Evidence::default();
        // A tenth of the calls slower than the baseline p99: overwhelming each second, but
        // one second adds at most a fifth of the threshold.
        for s in 0..4 {
            e.observe(&second(s, 200, 20, 0), &b);
            assert!(!e.crossed(Stream::Slower(2)), "after {} s", s + 1);
        }
        e.observe(&second(4, 200, 20, 0), &b);
        assert!(e.crossed(Stream::Slower(2)));
        assert!(!e.crossed(Stream::Errors));
        // A second read twice counts once.
        let before = e.strongest(Stream::Errors);
        e.observe(&second(4, 200, 0, 50), &b);
        assert_eq!(e.strongest(Stream::Errors), before);
    }

    #[test]
    fn one_burst_does_not_cross_and_healthy_seconds_drain_it() {
        let b = base();
        let mut e = Evidence::default();
        e.observe(&second(0, 100, 0, 60), &b);
        assert!(!e.crossed(Stream::Errors));
        for s in 1..600 {
            e.observe(&second(s, 100, 1, 0), &b);
        }
        assert!(!e.crossed(Stream::Errors));
        assert!(!e.crossed(Stream::Slower(2)));
        assert_eq!(e.strongest(Stream::Errors).0, 0.0);
    }

    #[test]
    fn weak_evidence_crosses_later_than_strong() {
        let b = base();
        let crossing = |slow: u64| {
            let mut e = Evidence::default();
            (0..600).find(|&s| {
                e.observe(&second(s, 100, slow, 0), &b);
                e.crossed(Stream::Slower(2))
            })
        };
        let strong = crossing(20).expect("crosses");
        let weak = crossing(3).expect("crosses");
        assert!(strong < weak, "{strong} {weak}");
        // After a long shift, a few healthy seconds are enough to un-cross.
        let mut e = Evidence::default();
        for s in 0..300 {
            e.observe(&second(s, 100, 20, 0), &b);
        }
        assert!(e.crossed(Stream::Slower(2)));
        for s in 300..303 {
            e.observe(&second(s, 100, 1, 0), &b);
        }
        assert!(!e.crossed(Stream::Slower(2)));
        assert_eq!(crossing(1), None, "the baseline share never crosses");
    }
}
