//! Traffic anomalies: a dependency called far less (a drop: calls failing before they are
//! made or recorded, a broken service discovery, a caller gone) or far more (a surge: a retry
//! storm) than usual.
//!
//! What is usual is learnt from the dependency's healthy minutes, as the latency baseline is,
//! but kept as the calls of each minute, zero included: the spread of those counts is what
//! tells a drop from a quiet spell. A window is judged against the baseline's quiet end (the
//! 10th percentile of its minutes) for drops and its busy end (the 90th) for surges, so
//! traffic that swings within the last half hour (diurnal, bursty) is judged against its own
//! swings, not its mean. Each test needs:
//! - an effect: at most half the quiet end, or at least twice the busy end;
//! - significance: a one-sided Poisson test at `alpha`, which is what keeps a dependency
//!   called a few times a minute from alerting on chance silences. Calls that come in runs
//!   (a caller busy for half a minute, then quiet) vary more from minute to minute than a
//!   Poisson count; as for errors, both counts are divided by that dispersion (the variance
//!   of the learnt minutes over their mean, from successive differences so that a slow swing
//!   of the rate does not count as noise) before the test.
//!
//! Windows are the last minute and the last five minutes; a five-minute verdict also needs
//! the last minute to show the effect (recency). Ten-second windows are not judged: bursty
//! callers change rate within seconds as a matter of course.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::json;

use super::detectors::{DetectorKind, Finding, Severity};
use super::stats::{poisson_lower_p_value, poisson_upper_p_value};

/// A drop counts when a window holds at most this share of the baseline's quiet end...
pub const DROP_RATIO: f64 = 0.5;
/// ...and a surge when it holds at least this multiple of the busy end.
pub const SURGE_RATIO: f64 = 2.0;
/// Learnt minutes needed before traffic is judged: more than the latency baseline needs, as
/// the spread of the minutes matters here, not only their sum.
pub const TRAFFIC_MIN_MINUTES: usize = 10;
/// Quantiles of the learnt minutes that stand for the quiet and the busy end.
const LOW_QUANTILE: f64 = 0.1;
const MINUTE_MS: f64 = 60_000.0;

/// Summary of a ready traffic baseline, in calls per minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrafficStats {
    pub minutes: usize,
    /// 10th percentile of the learnt minutes' calls.
    pub low_per_minute: f64,
    pub median_per_minute: f64,
    /// 90th percentile.
    pub high_per_minute: f64,
    /// How many times more the minutes vary than Poisson counts would (at least 1).
    pub dispersion: f64,
}

/// Calls of each learnt minute, newest last, at most `max_minutes` of them.
#[derive(Debug, Clone)]
pub struct TrafficBaseline {
    minutes: VecDeque<u64>,
    max_minutes: usize,
    stats: Option<TrafficStats>,
}

impl TrafficBaseline {
    pub fn new(max_minutes: u32) -> Self {
        Self {
            minutes: VecDeque::new(),
            max_minutes: (max_minutes as usize).max(TRAFFIC_MIN_MINUTES),
            stats: None,
        }
    }

    /// Whether nothing has been learnt yet (leading silent minutes are not learnt: the
    /// dependency did not exist yet).
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Adds a healthy minute's calls (zero included).
    pub fn absorb(&mut self, calls: u64) {
        if self.minutes.len() >= self.max_minutes {
            self.minutes.pop_front();
        }
        self.minutes.push_back(calls);
        self.stats = (self.minutes.len() >= TRAFFIC_MIN_MINUTES).then(|| {
            let mut sorted: Vec<u64> = self.minutes.iter().copied().collect();
            sorted.sort_unstable();
            let last = sorted.len() - 1;
            let low = (last as f64 * LOW_QUANTILE).floor() as usize;
            // Half the mean squared successive difference estimates the variance without the
            // part a trend adds (von Neumann).
            let diffs: f64 = self
                .minutes
                .iter()
                .zip(self.minutes.iter().skip(1))
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            let mean = sorted.iter().sum::<u64>() as f64 / sorted.len() as f64;
            let variance = diffs / (2.0 * last as f64);
            let dispersion = if mean > 0.0 {
                (variance / mean).max(1.0)
            } else {
                1.0
            };
            TrafficStats {
                dispersion,
                minutes: sorted.len(),
                low_per_minute: sorted[low] as f64,
                median_per_minute: sorted[last / 2] as f64,
                high_per_minute: sorted[last - low] as f64,
            }
        });
    }

    /// The baseline once it has learnt enough minutes.
    pub fn ready(&self) -> Option<TrafficStats> {
        self.stats
    }
}

/// A window's calls and its length.
#[derive(Debug, Clone, Copy)]
pub struct CallCount {
    pub name: &'static str,
    pub calls: u64,
    pub span_ms: i64,
}

impl CallCount {
    fn expected(&self, per_minute: f64) -> f64 {
        per_minute * self.span_ms.max(0) as f64 / MINUTE_MS
    }
}

/// Whether silence itself (a minute without calls) would be a significant drop: the quiet end
/// of the baseline is busy enough that no call in a minute is beyond chance at `alpha`.
pub fn silence_is_significant(base: &TrafficStats, alpha: f64) -> bool {
    base.low_per_minute > 0.0
        && poisson_lower_p_value(0, base.low_per_minute / base.dispersion) < alpha
}

/// A significant drop: the last minute (or the last five, with the last minute agreeing)
/// holds at most [`DROP_RATIO`] of the calls of the baseline's quiet end, and a Poisson test
/// at `alpha` says so. `m5` may be `None` (calls stopped: judged on the last minute alone).
pub fn traffic_drop(
    m1: CallCount,
    m5: Option<CallCount>,
    base: &TrafficStats,
    alpha: f64,
) -> Option<Finding> {
    let effect = |w: &CallCount| (w.calls as f64) <= DROP_RATIO * w.expected(base.low_per_minute);
    if !effect(&m1) {
        return None;
    }
    // Rounded up: fewer calls would overstate the drop.
    let p = |w: &CallCount| {
        let d = base.dispersion;
        let calls = (w.calls as f64 / d).ceil() as u64;
        poisson_lower_p_value(calls, w.expected(base.low_per_minute) / d)
    };
    let (w, p, per_minute) = strongest(m1, m5, effect, p, alpha)?;
    Some(Finding {
        detector: DetectorKind::TrafficDrop,
        severity: Severity::Degraded,
        summary: format!(
            "calls dropped to {per_minute:.1}/min against a usual low of {:.1}/min",
            base.low_per_minute
        ),
        evidence: evidence(&w, m1, base, base.low_per_minute, p, alpha, DROP_RATIO),
    })
}

/// The window (the last minute, or the last five when they show the effect too) with the
/// smallest p-value under `alpha`, that p-value, and its calls per minute.
fn strongest(
    m1: CallCount,
    m5: Option<CallCount>,
    effect: impl Fn(&CallCount) -> bool,
    p: impl Fn(&CallCount) -> f64,
    alpha: f64,
) -> Option<(CallCount, f64, f64)> {
    let (w, p) = std::iter::once(m1)
        .chain(m5.filter(|w| effect(w)))
        .map(|w| (w, p(&w)))
        .filter(|(_, p)| *p < alpha)
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let per_minute = w.calls as f64 * MINUTE_MS / w.span_ms.max(1) as f64;
    Some((w, p, per_minute))
}

/// A significant surge: at least [`SURGE_RATIO`] times the calls of the baseline's busy end
/// over the last minute (or the last five, with the last minute agreeing), significant by a
/// Poisson test at `alpha`.
pub fn traffic_surge(
    m1: CallCount,
    m5: Option<CallCount>,
    base: &TrafficStats,
    alpha: f64,
) -> Option<Finding> {
    let effect = |w: &CallCount| (w.calls as f64) >= SURGE_RATIO * w.expected(base.high_per_minute);
    if !effect(&m1) {
        return None;
    }
    // Rounded down: more calls would overstate the surge.
    let p = |w: &CallCount| {
        let d = base.dispersion;
        let calls = (w.calls as f64 / d).floor() as u64;
        poisson_upper_p_value(calls, w.expected(base.high_per_minute) / d)
    };
    let (w, p, per_minute) = strongest(m1, m5, effect, p, alpha)?;
    Some(Finding {
        detector: DetectorKind::TrafficSurge,
        severity: Severity::Degraded,
        summary: format!(
            "calls surged to {per_minute:.0}/min against a usual high of {:.0}/min",
            base.high_per_minute
        ),
        evidence: evidence(&w, m1, base, base.high_per_minute, p, alpha, SURGE_RATIO),
    })
}

fn evidence(
    w: &CallCount,
    m1: CallCount,
    base: &TrafficStats,
    reference_per_minute: f64,
    p: f64,
    alpha: f64,
    ratio: f64,
) -> serde_json::Value {
    json!({
        "window": w.name,
        "shortest_window": m1.name,
        "calls": w.calls,
        "expected_calls": w.expected(reference_per_minute),
        "reference_per_minute": reference_per_minute,
        "ratio_floor": ratio,
        "baseline_traffic": base,
        "recent_calls": m1.calls,
        "test": "Poisson, one-sided, counts divided by the dispersion",
        "dispersion": base.dispersion,
        "p_value": p,
        "alpha": alpha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(minutes: &[u64]) -> TrafficStats {
        let mut b = TrafficBaseline::new(30);
        for &m in minutes {
            b.absorb(m);
        }
        b.ready().expect("enough minutes")
    }

    fn m1(calls: u64) -> CallCount {
        CallCount {
            name: "1m",
            calls,
            span_ms: 60_000,
        }
    }

    fn m5(calls: u64) -> CallCount {
        CallCount {
            name: "5m",
            calls,
            span_ms: 300_000,
        }
    }

    #[test]
    fn the_baseline_needs_ten_minutes_and_keeps_the_last_thirty() {
        let mut b = TrafficBaseline::new(30);
        for _ in 0..9 {
            b.absorb(6_000);
        }
        assert!(b.ready().is_none());
        b.absorb(6_000);
        assert_eq!(b.ready().unwrap().low_per_minute, 6_000.0);
        for _ in 0..30 {
            b.absorb(600);
        }
        let s = b.ready().unwrap();
        assert_eq!((s.minutes, s.high_per_minute), (30, 600.0));
    }

    #[test]
    fn a_ninety_percent_drop_is_found_and_a_quiet_spell_is_not() {
        // 100 calls/s, give or take.
        let b = base(&(0..30).map(|i| 5_900 + i * 7).collect::<Vec<_>>());
        let f = traffic_drop(m1(600), Some(m5(20_000)), &b, 1e-6).expect("a drop");
        assert_eq!(f.detector, DetectorKind::TrafficDrop);
        assert_eq!(f.evidence["window"], "1m");
        // 30% fewer calls than the quietest usual minute: not a drop.
        assert!(traffic_drop(m1(4_100), Some(m5(25_000)), &b, 1e-6).is_none());
    }

    #[test]
    fn traffic_swinging_within_the_baseline_is_judged_against_its_quiet_end() {
        // A day compressed into the baseline: minutes from 1,200 to 12,000 calls.
        let swing: Vec<u64> = (0..30)
            .map(|i| {
                let phase = i as f64 / 30.0 * std::f64::consts::TAU;
                (1_200.0 + 10_800.0 * 0.5 * (1.0 - phase.cos())) as u64
            })
            .collect();
        let b = base(&swing);
        assert!(b.low_per_minute < 2_000.0, "{b:?}");
        // The trough again: no drop; twice the peak: a surge; the peak: none.
        assert!(traffic_drop(m1(1_200), None, &b, 1e-6).is_none());
        assert!(traffic_surge(m1(12_000), None, &b, 1e-6).is_none());
        assert!(traffic_surge(m1(30_000), None, &b, 1e-6).is_some());
    }

    #[test]
    fn at_low_traffic_significance_decides() {
        // About 0.5 calls/s: 30 a minute, a quiet end near 22.
        let b = base(&(0..30).map(|i| 22 + i % 15).collect::<Vec<_>>());
        // A silent minute is e^-22 ~ 3e-10: significant; 8 calls (below half) are not.
        assert!(silence_is_significant(&b, 1e-6));
        assert!(traffic_drop(m1(0), None, &b, 1e-6).is_some());
        assert!(traffic_drop(m1(8), None, &b, 1e-6).is_none());
        // Over five minutes, 30 calls where 110 were the least expected: significant, and
        // the last minute agrees.
        let f = traffic_drop(m1(6), Some(m5(30)), &b, 1e-6).expect("over five minutes");
        assert_eq!(f.evidence["window"], "5m");
        // A dependency called a few times a minute cannot tell silence from chance.
        let sparse = base(&[3, 5, 4, 2, 6, 3, 4, 5, 3, 4]);
        assert!(!silence_is_significant(&sparse, 1e-6));
        assert!(traffic_drop(m1(0), Some(m5(2)), &sparse, 1e-6).is_none());
    }

    #[test]
    fn a_retry_storm_is_a_surge_and_the_five_minute_verdict_needs_the_last_minute() {
        let b = base(&[6_000; 30]);
        let f = traffic_surge(m1(24_000), Some(m5(48_000)), &b, 1e-6).expect("a surge");
        assert_eq!(f.detector, DetectorKind::TrafficSurge);
        // Five busy minutes, but the last one is back to normal: over.
        assert!(traffic_surge(m1(6_100), Some(m5(70_000)), &b, 1e-6).is_none());
    }

    #[test]
    fn calls_that_come_in_runs_need_more_evidence() {
        // About 180 calls a minute, but in runs: minutes from 45 to 400.
        let runs = [
            180, 400, 60, 250, 120, 45, 310, 90, 200, 150, 380, 70, 220, 130, 260, 55, 170, 330,
            100, 240, 80, 190, 350, 110, 140, 290, 65, 210, 160, 230,
        ];
        let b = base(&runs);
        assert!(b.dispersion > 20.0, "{b:?}");
        // A quiet minute of 30 calls is half the quiet end, but no drop for such a caller;
        // nor is one silent minute.
        assert!(traffic_drop(m1(30), None, &b, 1e-6).is_none());
        assert!(!silence_is_significant(&b, 1e-6));
        // Steady traffic keeps its dispersion near 1, and a 90% drop is still found.
        let steady = base(&(0..30).map(|i| 5_900 + (i * 37) % 150).collect::<Vec<_>>());
        assert!(steady.dispersion < 3.0, "{steady:?}");
        assert!(traffic_drop(m1(600), None, &steady, 1e-6).is_some());
    }

    #[test]
    fn silent_minutes_are_learnt_so_a_caller_that_comes_and_goes_is_not_a_drop() {
        // A batch caller: busy minutes between silent ones.
        let b = base(&[0, 600, 0, 0, 580, 0, 610, 0, 0, 590, 0, 0]);
        assert_eq!(b.low_per_minute, 0.0);
        assert!(!silence_is_significant(&b, 1e-6));
        assert!(traffic_drop(m1(0), Some(m5(0)), &b, 1e-6).is_none());
    }
}
