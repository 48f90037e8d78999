//! The detectors: pure functions from window snapshots (and a baseline) to findings.
//!
//! Every detector follows the same evidence rules:
//! - **Significance.** A rate is compared with its reference by an exact one-sided binomial
//!   test (or a two-proportion test between peers) at `alpha`. Because the test needs more
//!   calls to confirm a smaller effect, low traffic is judged on longer windows (10 s, 1 m and
//!   5 m are all tested) rather than by lower standards.
//! - **Effect size.** Significance alone is not enough: at 10,000 calls a second a trivial
//!   shift is "significant". Each detector also needs a minimum effect (p99 at least
//!   `tail_ratio` times the baseline; a rate at least `rate_ratio` times the reference and
//!   `rate_min_increase` above it) and at least `min_bad_calls` offending calls.
//! - **Recency.** Long windows remember a problem after it ended (a 2 s pause stays in the
//!   1-minute window for a minute). A finding from any window therefore also needs the most
//!   recent window with enough calls to show the effect now.

use serde::Serialize;
use serde_json::json;

use super::baseline::BaselineStats;
use super::spec::{DependencySpec, DetectionSettings};
use super::stats::{
    PRIOR_DISPERSION, burst_bounded_upper_p_value, few_events_p_value_above, holm_bonferroni,
    holm_rejects_any, quasi_binomial_upper_p_value, rate_not_above, two_proportion_p_value,
};
use crate::window::{Counts, PeerView, Sample, Snapshot};

/// Calls the recency window needs before its point estimate is trusted.
const RECENT_MIN_CALLS: u64 = 30;
/// Calls from which a 10-second window is busy: a few hundred calls, where a rise must show
/// within seconds. Its error and timeout counts are tested with the quasi-binomial test
/// alone, without the failure-count bound of sparse windows: that bound gives up most of the
/// power of the count, and a retried request, whose retries take 6-9 s, rarely shares a
/// 10-second window with another.
const BUSY_10S_CALLS: u64 = 300;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Share of calls slower than the baseline p99 rose.
    LatencyTail,
    /// Error rate rose against the baseline.
    ErrorRate,
    /// Timeout rate rose against the baseline.
    TimeoutRate,
    /// Share of calls slower than the spec's slow-call duration is above its limit.
    SlowCalls,
    /// p99 outside the spec's envelope.
    SloLatency,
    /// Error rate outside the spec's envelope.
    SloErrors,
    /// Timeout rate outside the spec's envelope.
    SloTimeouts,
    /// One instance or zone slower than its peers.
    PeerLatency,
    /// One instance or zone failing more than its peers.
    PeerErrors,
    /// Errors plus timeouts above the failing threshold.
    HardFailure,
    /// Far fewer calls than the baseline's quiet minutes (see [`super::traffic`]).
    TrafficDrop,
    /// Far more calls than the baseline's busy minutes: a retry storm.
    TrafficSurge,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 12] = [
        DetectorKind::LatencyTail,
        DetectorKind::ErrorRate,
        DetectorKind::TimeoutRate,
        DetectorKind::SlowCalls,
        DetectorKind::SloLatency,
        DetectorKind::SloErrors,
        DetectorKind::SloTimeouts,
        DetectorKind::PeerLatency,
        DetectorKind::PeerErrors,
        DetectorKind::HardFailure,
        DetectorKind::TrafficDrop,
        DetectorKind::TrafficSurge,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the detector judges the number of calls rather than how they went: such a
    /// condition alerts but does not make its dependency unhealthy (nor open its breaker).
    pub fn is_traffic(self) -> bool {
        matches!(self, DetectorKind::TrafficDrop | DetectorKind::TrafficSurge)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::LatencyTail => "latency_tail",
            DetectorKind::ErrorRate => "error_rate",
            DetectorKind::TimeoutRate => "timeout_rate",
            DetectorKind::SlowCalls => "slow_calls",
            DetectorKind::SloLatency => "slo_latency",
            DetectorKind::SloErrors => "slo_errors",
            DetectorKind::SloTimeouts => "slo_timeouts",
            DetectorKind::PeerLatency => "peer_latency",
            DetectorKind::PeerErrors => "peer_errors",
            DetectorKind::HardFailure => "hard_failure",
            DetectorKind::TrafficDrop => "traffic_drop",
            DetectorKind::TrafficSurge => "traffic_surge",
        }
    }
}

/// How bad a finding is; also the health state it puts its subject in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A gray failure: outside the normal envelope or significantly worse than usual.
    Degraded,
    /// Beyond acceptable: hard failure or outside the acceptable degradation.
    Failing,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "degraded" => Some(Severity::Degraded),
            "failing" => Some(Severity::Failing),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Degraded => "degraded",
            Severity::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: DetectorKind,
    pub severity: Severity,
    pub summary: String,
    pub evidence: serde_json::Value,
}

impl Finding {
    /// Whether the finding's sequential evidence crossed its threshold (see
    /// [`crate::detect::sequential`]): it need not be held for `fire_after`.
    pub fn sequential_crossed(&self) -> bool {
        self.evidence
            .pointer("/sequential/crossed")
            .and_then(|v| v.as_bool())
            == Some(true)
    }

    /// Evidence strong enough to fire at once (see [`fast_hard_failure`]).
    pub fn is_fast(&self) -> bool {
        self.evidence.get("fast").and_then(|v| v.as_bool()) == Some(true)
    }

    /// Length of the shortest window the evidence was found in, so that the
    /// engine can tell evidence older than an alert's resolution; the longest window tested
    /// when unknown.
    pub fn window_ms(&self) -> i64 {
        let window = self
            .evidence
            .get("shortest_window")
            .or_else(|| self.evidence.get("window"));
        match window.and_then(|w| w.as_str()) {
            Some("2s") => 2_000,
            Some("10s") => 10_000,
            Some("1m") => 60_000,
            _ => 300_000,
        }
    }
}

/// The windows a dependency (or one of its peers) is judged on, shortest first. As samples:
/// the 10-second window is read every second, and is often a few hundred durations (see
/// [`Sample`]).
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    pub s10: &'a Sample,
    pub m1: &'a Sample,
    pub m5: Option<&'a Sample>,
}

impl<'a> Windows<'a> {
    fn all(&self) -> impl Iterator<Item = (&'static str, &'a Sample)> {
        [
            ("10s", Some(self.s10)),
            ("1m", Some(self.m1)),
            ("5m", self.m5),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
    }

    /// The shortest window with enough calls to say what is happening now.
    fn recent(&self) -> (&'static str, &'a Sample) {
        self.recent_with(RECENT_MIN_CALLS, &Sample::total)
    }

    /// The shortest window with at least `min_calls` calls as `calls` counts them (all, or
    /// the successful ones for a latency share), the longest otherwise. Beyond
    /// [`RECENT_MIN_CALLS`], never the 5-minute window: it remembers a recovered problem for
    /// five minutes, and a test that needs that many calls is then judged on the minute.
    fn recent_with(
        &self,
        min_calls: u64,
        calls: &dyn Fn(&Sample) -> u64,
    ) -> (&'static str, &'a Sample) {
        if min_calls > RECENT_MIN_CALLS {
            return if calls(self.s10) >= min_calls {
                ("10s", self.s10)
            } else {
                ("1m", self.m1)
            };
        }
        self.all()
            .find(|(_, s)| calls(s) >= min_calls)
            .unwrap_or(("5m", self.m5.unwrap_or(self.m1)))
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// HdrHistogram's p99 (0 without successful calls).
fn p99_us(s: &Sample) -> u64 {
    s.value_at_quantile(0.99)
}

/// A rate test of `count(window)` out of `calls(window)` against reference `p0`.
struct RateTest<'s> {
    settings: &'s DetectionSettings,
    p0: f64,
    /// The reference's own counts (offending, total) when it is a sample, not a known rate:
    /// then a two-sample test accounts for its uncertainty too.
    reference: Option<(u64, u64)>,
    /// Design effect of the counts (1 for independent calls): with errors that come in bursts
    /// the binomial test is replaced by the quasi-binomial one.
    dispersion: f64,
    /// Judge the effect on the odds (`rate_ratio` times the reference odds) rather than the
    /// rate: a share near one half cannot double.
    odds: bool,
    /// Calls the recency window needs (more for a rare share: ten calls in 10 seconds say
    /// nothing of the share above a p99.9).
    recent_min_calls: u64,
    /// Extra effect condition on the window (e.g. its p99 against the baseline).
    extra: &'s dyn Fn(&Sample) -> bool,
    count: &'s dyn Fn(&Sample) -> u64,
    /// The calls `count` is a share of: all of them for errors and timeouts, the successful
    /// ones (those the histograms time) for a latency share.
    calls: &'s dyn Fn(&Sample) -> u64,
}

impl RateTest<'_> {
    fn effect(&self, k: u64, n: u64) -> bool {
        let rate = k as f64 / n.max(1) as f64;
        let odds = |p: f64| p / (1.0 - p).max(f64::MIN_POSITIVE);
        let ratio_ok = if self.odds {
            rate >= 1.0 || odds(rate) >= odds(self.p0) * self.settings.rate_ratio
        } else {
            rate >= self.p0 * self.settings.rate_ratio
        };
        n > 0 && ratio_ok && rate >= self.p0 + self.settings.rate_min_increase
    }

    /// The most significant window passing every rule, with its figures.
    fn run(&self, w: &Windows) -> Option<serde_json::Value> {
        let (recent_name, recent) = w.recent_with(self.recent_min_calls, self.calls);
        if !self.effect((self.count)(recent), (self.calls)(recent)) || !(self.extra)(recent) {
            return None;
        }
        let mut best: Option<(f64, &str, u64, u64)> = None;
        let mut shortest: Option<&str> = None;
        for (name, s) in w.all() {
            let (k, n) = ((self.count)(s), (self.calls)(s));
            if k < self.settings.min_bad_calls || !self.effect(k, n) || !(self.extra)(s) {
                continue;
            }
            let p = match self.reference {
                Some((k0, n0)) => two_proportion_p_value(k, n, k0, n0),
                None if name == "10s" && n >= BUSY_10S_CALLS => {
                    quasi_binomial_upper_p_value(k, n, self.p0, self.dispersion)
                }
                None => burst_bounded_upper_p_value(k, n, self.p0, self.dispersion),
            };
            if p < self.settings.alpha {
                shortest.get_or_insert(name);
                if best.is_none_or(|b| p < b.0) {
                    best = Some((p, name, k, n));
                }
            }
        }
        best.map(|(p, name, k, n)| {
            json!({
                "window": name,
                "shortest_window": shortest.unwrap_or(name),
                "calls": n,
                "offending_calls": k,
                "rate": k as f64 / n as f64,
                "reference_rate": self.p0,
                "test": if self.reference.is_some() {
                    "two-proportion against the baseline's counts, one-sided"
                } else if self.dispersion > 1.0 {
                    "quasi-binomial (counts divided by the dispersion; failures counted when few are expected), one-sided"
                } else {
                    "binomial, one-sided"
                },
                "dispersion": self.dispersion,
                "p_value": p,
                "alpha": self.settings.alpha,
                "recent_window": recent_name,
                "recent_rate": (self.count)(recent) as f64 / (self.calls)(recent).max(1) as f64,
            })
        })
    }
}

/// Latency shift against the baseline, in the body and the tails: the shares of calls slower
/// than the baseline's p50 and p90 (the body), its p99 (`tail_quantile`) and its p99.9 (the
/// far tail) are each tested against the baseline's own counts, and Holm's procedure over
/// the four keeps the false-alarm rate of the detector at `alpha`. Effect-size floors: in the
/// body, the odds of a call being slower must grow `rate_ratio` times (at p50, from half the
/// calls to two thirds) and the window's quantile reach `body_ratio` times the baseline's;
/// in the tails, the share must grow `rate_ratio` times and the
/// window's quantile reach `tail_ratio` times the baseline's. One slow replica of two moves
/// the body a lot and the p99 barely; a slow tail moves the p99 and p99.9.
pub fn latency_tail(w: &Windows, base: &BaselineStats, s: &DetectionSettings) -> Option<Finding> {
    let mut tested: Vec<(usize, f64, serde_json::Value)> = Vec::new();
    for (i, q) in base.quantiles.iter().enumerate() {
        let body = q.quantile < s.tail_quantile;
        let threshold = q.threshold_us;
        let floor = (threshold as f64 * s.tail_ratio) as u64;
        let quantile = q.quantile;
        let count = |x: &Sample| x.count_above(threshold);
        let floor = if body {
            (threshold as f64 * s.body_ratio) as u64
        } else {
            floor
        };
        let extra = |x: &Sample| x.successful() > 0 && x.value_at_quantile(quantile) >= floor;
        let test = RateTest {
            settings: s,
            p0: q.share,
            reference: Some((q.above, base.successful_calls)),
            dispersion: 1.0,
            odds: body,
            // Enough calls to expect five above the quantile.
            recent_min_calls: RECENT_MIN_CALLS.max((5.0 / (1.0 - q.quantile)) as u64),
            extra: &extra,
            count: &count,
            calls: &Sample::successful,
        };
        if let Some(ev) = test.run(w) {
            let p = ev["p_value"].as_f64().unwrap_or(1.0);
            tested.push((i, p, ev));
        }
    }
    let mut p_values = vec![1.0; base.quantiles.len()];
    for (i, p, _) in &tested {
        p_values[*i] = *p;
    }
    let rejected = holm_bonferroni(&p_values, s.alpha);
    let mut shifted: Vec<(usize, f64, serde_json::Value)> = tested
        .into_iter()
        .filter(|(i, _, _)| rejected[*i])
        .collect();
    shifted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (i, _, mut evidence) = shifted.first().cloned()?;
    let q = base.quantiles[i];
    let name = quantile_name(q.quantile);
    let window_p99 = ms(p99_us(w.m1));
    evidence["test"] = json!(
        "two-proportion against the baseline's counts, one-sided, Holm-corrected over p50, p90, p99, p99.9"
    );
    evidence["quantile"] = json!(name);
    evidence["threshold_ms"] = json!(ms(q.threshold_us));
    evidence["shifted_quantiles"] = json!(
        shifted
            .iter()
            .map(|(j, p, _)| json!({"quantile": quantile_name(base.quantiles[*j].quantile), "p_value": p}))
            .collect::<Vec<_>>()
    );
    evidence["baseline_p99_ms"] = json!(ms(base.tail_us));
    evidence["baseline_calls"] = json!(base.successful_calls);
    evidence["p99_ms"] = json!(window_p99);
    evidence["tail_ratio_floor"] = json!(s.tail_ratio);
    Some(Finding {
        detector: DetectorKind::LatencyTail,
        severity: Severity::Degraded,
        summary: format!(
            "{:.1}% of successful calls slower than the baseline {name} of {:.1} ms (expected {:.1}%); p99 now {:.1} ms",
            evidence["rate"].as_f64().unwrap_or(0.0) * 100.0,
            ms(q.threshold_us),
            q.share * 100.0,
            window_p99
        ),
        evidence,
    })
}

/// `p50`, `p99.9`, ... for a quantile.
pub fn quantile_name(q: f64) -> String {
    let pct = format!("{:.1}", q * 100.0);
    format!("p{}", pct.trim_end_matches('0').trim_end_matches('.'))
}

/// Error-rate or timeout-rate rise against the baseline.
pub fn rate_rise(
    w: &Windows,
    base: &BaselineStats,
    s: &DetectionSettings,
    timeouts: bool,
) -> Option<Finding> {
    let (p0, dispersion, what, detector) = if timeouts {
        let d = base.timeout_dispersion;
        (base.timeout_rate, d, "timeout", DetectorKind::TimeoutRate)
    } else {
        let d = base.error_dispersion;
        (base.error_rate, d, "error", DetectorKind::ErrorRate)
    };
    let count = |x: &Sample| {
        if timeouts {
            x.counts().timeout
        } else {
            x.counts().error
        }
    };
    let test = RateTest {
        settings: s,
        p0,
        reference: None,
        dispersion,
        odds: false,
        recent_min_calls: RECENT_MIN_CALLS,
        extra: &|_| true,
        count: &count,
        calls: &Sample::total,
    };
    let mut evidence = test.run(w)?;
    evidence["baseline_calls"] = json!(base.calls);
    Some(Finding {
        detector,
        severity: Severity::Degraded,
        summary: format!(
            "{what} rate {:.2}% against a baseline of {:.2}%",
            evidence["rate"].as_f64().unwrap_or(0.0) * 100.0,
            p0 * 100.0
        ),
        evidence,
    })
}

/// How many times more a window's error and timeout counts vary than independent calls would
/// make them (the baseline's design effects, see [`crate::detect::stats::dispersion`]). The
/// windowed hard-failure rules count bad calls in independent failures' worth with it: one
/// request failing and retried six times is one failure, not six.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureDispersion {
    pub errors: f64,
    pub timeouts: f64,
}

impl FailureDispersion {
    /// Before a baseline has seen any error: the prior design effect for both.
    pub const PRIOR: Self = Self {
        errors: PRIOR_DISPERSION,
        timeouts: PRIOR_DISPERSION,
    };

    /// The baseline's design effects.
    pub fn of(base: &BaselineStats) -> Self {
        Self {
            errors: base.error_dispersion,
            timeouts: base.timeout_dispersion,
        }
    }

    /// Bad calls of `c` as independent failures: each count divided by its design effect.
    fn independent(&self, c: &Counts) -> f64 {
        c.error as f64 / self.errors.max(1.0) + c.timeout as f64 / self.timeouts.max(1.0)
    }
}

/// Errors plus timeouts at or above `failing_rate` in the recent window, at least
/// `min_bad_calls` independent failures' worth of them (see [`FailureDispersion`]).
pub fn hard_failure(
    w: &Windows,
    s: &DetectionSettings,
    dispersion: FailureDispersion,
) -> Option<Finding> {
    let (name, recent) = w.recent();
    failing(name, recent.counts(), s, Some(dispersion))
}

/// Least calls in each of the two seconds [`fast_hard_failure`] judges.
const FAST_MIN_CALLS_PER_SECOND: u64 = 10;

/// A hard failure seen in each of the last two complete seconds: errors plus timeouts at or
/// above `failing_rate` of at least 10 calls in *both*. Two whole seconds, not a window, so
/// that one burst of failures inside one second cannot speak alone. Such evidence needs no
/// further hold (see the engine), which is how a dependency going down opens its breaker
/// within about three seconds instead of after `fire_after`.
pub fn fast_hard_failure(seconds: &[Counts; 2], s: &DetectionSettings) -> Option<Finding> {
    let failing_second = |c: &Counts| {
        let bad = c.error + c.timeout;
        c.total() >= FAST_MIN_CALLS_PER_SECOND && (bad as f64) >= s.failing_rate * c.total() as f64
    };
    if !seconds.iter().all(failing_second) {
        return None;
    }
    let mut both = seconds[0];
    both.add(&seconds[1]);
    // Counted as calls: a retried request cannot fail two whole seconds of 10 calls or more.
    let mut f = failing("2s", &both, s, None)?;
    f.evidence["fast"] = json!(true);
    Some(f)
}

/// [`hard_failure`] of one instance or zone: over its last two whole seconds when both are
/// failing (see [`fast_hard_failure`]), else on its last 10 seconds when they hold enough
/// calls and on its last minute otherwise, counting bad calls with its dependency's
/// `dispersion`: a quiet instance or zone that takes most of one retried request's calls is
/// not failing.
pub fn peer_hard_failure(
    p: &PeerView,
    s: &DetectionSettings,
    dispersion: FailureDispersion,
) -> Option<Finding> {
    if let Some(f) = fast_hard_failure(&p.last_seconds, s) {
        return Some(f);
    }
    if p.s10.total() >= RECENT_MIN_CALLS {
        failing("10s", &p.s10, s, Some(dispersion))
    } else {
        failing("1m", p.m1.counts(), s, Some(dispersion))
    }
}

/// Errors plus timeouts of `recent` at or above `failing_rate` of at least 10 calls, and at
/// least `min_bad_calls` of them: as calls (`dispersion` `None`, two whole failing seconds)
/// or as independent failures.
fn failing(
    name: &str,
    recent: &Counts,
    s: &DetectionSettings,
    dispersion: Option<FailureDispersion>,
) -> Option<Finding> {
    let bad = recent.error + recent.timeout;
    let n = recent.total();
    let independent = dispersion.map_or(bad as f64, |d| d.independent(recent));
    if n < 10
        || bad < s.min_bad_calls
        || independent < s.min_bad_calls as f64
        || (bad as f64) < s.failing_rate * n as f64
    {
        return None;
    }
    let rate = bad as f64 / n as f64;
    Some(Finding {
        detector: DetectorKind::HardFailure,
        severity: Severity::Failing,
        summary: format!(
            "{:.1}% of calls fail or time out (failing at {:.0}%)",
            rate * 100.0,
            s.failing_rate * 100.0
        ),
        evidence: json!({
            "window": name, "calls": n, "errors": recent.error,
            "timeouts": recent.timeout, "rate": rate, "threshold": s.failing_rate,
            "independent_failures": independent,
            "dispersion": dispersion.map(|d| json!({"errors": d.errors, "timeouts": d.timeouts})),
        }),
    })
}

/// Spec rules: slow-call rate, and the normal / acceptable envelopes. A bound counts as
/// breached when the window is *significantly* beyond it (the same binomial test), so a
/// dependency sitting exactly at its bound does not flap.
pub fn spec_rules(w: &Windows, spec: &DependencySpec, s: &DetectionSettings) -> Vec<Finding> {
    let mut out = Vec::new();
    // Latency bounds are about the successful calls (the ones the histograms time), rate
    // bounds about all calls.
    let beyond = |p0: f64, count: &dyn Fn(&Sample) -> u64, calls: &dyn Fn(&Sample) -> u64| {
        let ratio_free = DetectionSettings {
            rate_ratio: 1.0,
            rate_min_increase: 0.0,
            ..s.clone()
        };
        RateTest {
            settings: &ratio_free,
            p0,
            reference: None,
            dispersion: 1.0,
            odds: false,
            recent_min_calls: RECENT_MIN_CALLS,
            extra: &|_| true,
            count,
            calls,
        }
        .run(w)
    };
    if let Some(sc) = spec.slow_call {
        let d = (sc.duration_ms * 1000.0) as u64;
        if let Some(mut ev) = beyond(
            sc.max_rate,
            &|x: &Sample| x.count_above(d),
            &Sample::successful,
        ) {
            ev["slow_call_ms"] = json!(sc.duration_ms);
            out.push(Finding {
                detector: DetectorKind::SlowCalls,
                severity: Severity::Degraded,
                summary: format!(
                    "{:.1}% of successful calls slower than {} ms (limit {:.1}%)",
                    ev["rate"].as_f64().unwrap_or(0.0) * 100.0,
                    sc.duration_ms,
                    sc.max_rate * 100.0
                ),
                evidence: ev,
            });
        }
    }
    // Each envelope is its own condition: beyond `normal` is degraded, beyond `acceptable`
    // is failing (and then usually beyond `normal` too, so both fire).
    for (env, severity) in [
        (&spec.normal, Severity::Degraded),
        (&spec.acceptable, Severity::Failing),
    ] {
        let which = if severity == Severity::Failing {
            "acceptable"
        } else {
            "normal"
        };
        if let Some(p99) = env.p99_ms {
            let bound = (p99 * 1000.0) as u64;
            if let Some(mut ev) = beyond(
                1.0 - s.tail_quantile,
                &|x: &Sample| x.count_above(bound),
                &Sample::successful,
            ) {
                ev["p99_ms"] = json!(ms(p99_us(w.m1)));
                ev["bound_p99_ms"] = json!(p99);
                out.push(Finding {
                    detector: DetectorKind::SloLatency,
                    severity,
                    summary: format!(
                        "p99 {:.1} ms is beyond the {which} bound of {p99} ms",
                        ms(p99_us(w.m1))
                    ),
                    evidence: ev,
                });
            }
        }
        for (bound, timeouts, detector) in [
            (env.error_rate, false, DetectorKind::SloErrors),
            (env.timeout_rate, true, DetectorKind::SloTimeouts),
        ] {
            let Some(bound) = bound else { continue };
            let count = move |x: &Sample| {
                if timeouts {
                    x.counts().timeout
                } else {
                    x.counts().error
                }
            };
            if let Some(mut ev) = beyond(bound, &count, &Sample::total) {
                ev["bound_rate"] = json!(bound);
                out.push(Finding {
                    detector,
                    severity,
                    summary: format!(
                        "{} rate {:.2}% is beyond the {which} bound of {:.2}%",
                        if timeouts { "timeout" } else { "error" },
                        ev["rate"].as_f64().unwrap_or(0.0) * 100.0,
                        bound * 100.0
                    ),
                    evidence: ev,
                });
            }
        }
    }
    out
}

/// Levels below which [`peer_outliers`] skips the p-values of peers whose rate is not above
/// the rest's: those p-values are at least one half, and this leaves room for rounding.
const SKIP_P_VALUE_ALPHA: f64 = 0.25;

/// Peer outliers: a peer significantly worse than the rest of its peers, in latency (share
/// above the median peer p99) or in errors plus timeouts. Holm's step-down procedure over the
/// peers keeps the family-wise false-alarm rate at `alpha` however many peers there are.
/// Returns findings by peer name.
///
/// A flagged peer must also be worse over its last 10 seconds (when they hold enough calls),
/// so that a peer which has recovered is not flagged on its minute alone. A peer's view holds
/// only the counts of those 10 seconds; their latencies are asked of `recent_latency` only
/// then, for the peer at hand; `None` (the peer is gone) judges the minute instead.
pub fn peer_outliers<'a>(
    peers: &'a [PeerView],
    s: &DetectionSettings,
    recent_latency: &mut dyn FnMut(&str) -> Option<Snapshot>,
) -> Vec<(&'a str, Finding)> {
    let mut out = Vec::new();
    // Latency is judged on the successful calls (the ones the histograms time), failures on
    // all calls: each family over the peers with enough of the calls it counts. A judged
    // peer's p99 is read once, for the median and for the peer itself.
    let mut judged: Vec<Judged<'a>> = Vec::with_capacity(peers.len());
    judged.extend(
        peers
            .iter()
            .filter(|p| p.m1.successful() >= s.peer_min_calls)
            .map(|p| Judged::new(p, p.m1.successful())),
    );
    let threshold = if judged.len() < 2 {
        0
    } else {
        for j in &mut judged {
            j.p99 = j.peer.m1.value_at_quantile(0.99);
        }
        let mut p99s: Vec<u64> = judged.iter().map(|j| j.p99).collect();
        p99s.sort_unstable();
        // The median of the peers' p99s: one bad peer cannot move it.
        p99s[(p99s.len() - 1) / 2]
    };
    for detector in [DetectorKind::PeerLatency, DetectorKind::PeerErrors] {
        if detector == DetectorKind::PeerErrors {
            judged.clear();
            judged.extend(
                peers
                    .iter()
                    .filter(|p| p.m1.total() >= s.peer_min_calls)
                    .map(|p| Judged::new(p, p.m1.total())),
            );
        }
        if judged.len() < 2 {
            continue;
        }
        // Offending calls of each peer over the minute, counted once.
        for j in &mut judged {
            j.k = match detector {
                DetectorKind::PeerLatency => j.peer.m1.count_above(threshold),
                _ => j.peer.m1.counts().error + j.peer.m1.counts().timeout,
            };
        }
        let total_k: u64 = judged.iter().map(|j| j.k).sum();
        let total_n: u64 = judged.iter().map(|j| j.n).sum();
        // A peer whose rate is not above the rest's has a p-value of at least one half (see
        // `rate_not_above`), and one with a few offending calls often one known to be above
        // alpha (see `few_events_p_value_above`): such a peer can be neither rejected nor change
        // which peers are (Holm orders it after every p-value at or below alpha), so its
        // p-value is not computed (most peers, most seconds).
        let skip_unremarkable = s.alpha < SKIP_P_VALUE_ALPHA;
        for j in &mut judged {
            let (k, n) = (j.k, j.n);
            let (rest_k, rest_n) = (total_k - k, total_n - n);
            j.p_value = if skip_unremarkable
                && (rate_not_above(k, n, rest_k, rest_n)
                    || few_events_p_value_above(k, n, rest_k, rest_n, s.alpha))
            {
                1.0
            } else {
                two_proportion_p_value(k, n, rest_k, rest_n)
            };
        }
        // Most dependencies, most seconds: no peer stands out, no need to order them.
        if !holm_rejects_any(judged.iter().map(|j| j.p_value), s.alpha) {
            continue;
        }
        let pv: Vec<f64> = judged.iter().map(|j| j.p_value).collect();
        let rejected = holm_bonferroni(&pv, s.alpha);
        for (i, j) in judged.iter().enumerate() {
            if !rejected[i] {
                continue;
            }
            let (peer, k, n) = (j.peer, j.k, j.n);
            let rest_rate = (total_k - k) as f64 / (total_n - n).max(1) as f64;
            let rate = k as f64 / n as f64;
            let effect =
                |r: f64| r >= rest_rate * s.rate_ratio && r >= rest_rate + s.rate_min_increase;
            let latency_ok = detector != DetectorKind::PeerLatency
                || j.p99 as f64 >= threshold as f64 * s.tail_ratio;
            if k < s.min_bad_calls || !effect(rate) || !latency_ok {
                continue;
            }
            // Only now, for a peer that stands out over the minute, its last 10 seconds.
            let recent_s10 = if peer.s10.total() < RECENT_MIN_CALLS {
                None
            } else if detector == DetectorKind::PeerLatency {
                recent_latency(&peer.name)
                    .filter(|w| w.successful() >= RECENT_MIN_CALLS)
                    .map(|w| (w.count_above(threshold), w.successful()))
            } else {
                Some((peer.s10.error + peer.s10.timeout, peer.s10.total()))
            };
            let (recent_k, recent_n) = recent_s10.unwrap_or((k, n));
            let recent_rate = recent_k as f64 / recent_n.max(1) as f64;
            if !effect(recent_rate) {
                continue;
            }
            let severity = Severity::Degraded;
            let summary = match detector {
                DetectorKind::PeerLatency => format!(
                    "{} is slower than its peers: p99 {:.1} ms against a peer median of {:.1} ms",
                    peer.name,
                    ms(j.p99),
                    ms(threshold)
                ),
                _ => format!(
                    "{} fails more than its peers: {:.2}% errors and timeouts against {:.2}%",
                    peer.name,
                    rate * 100.0,
                    rest_rate * 100.0
                ),
            };
            // The errors family reads no p99 of its own (it is not shown in its summary).
            let p99 = match detector {
                DetectorKind::PeerLatency => j.p99,
                _ => peer.m1.value_at_quantile(0.99),
            };
            out.push((
                &*peer.name,
                Finding {
                    detector,
                    severity,
                    summary,
                    evidence: json!({
                        "window": "1m", "calls": n, "offending_calls": k, "rate": rate,
                        "peers_rate": rest_rate, "peers": judged.len(),
                        "peer_median_p99_ms": ms(threshold), "p99_ms": ms(p99),
                        "test": "two-proportion, one-sided, Holm-corrected over peers",
                        "p_value": j.p_value, "alpha": s.alpha, "recent_rate": recent_rate,
                    }),
                },
            ));
        }
    }
    out
}

/// A peer [`peer_outliers`] judges in one family: its calls `n`, offending calls `k`, p99
/// (latency only) and p-value.
struct Judged<'a> {
    peer: &'a PeerView,
    n: u64,
    k: u64,
    p99: u64,
    p_value: f64,
}

impl<'a> Judged<'a> {
    fn new(peer: &'a PeerView, n: u64) -> Self {
        Self {
            peer,
            n,
            k: 0,
            p99: 0,
            p_value: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::baseline::Baseline;
    use crate::detect::stats::normal_quantile;
    use crate::domain::Outcome;
    use crate::window::Slot;

    /// `n` log-normal latencies (median 20 ms, sigma 0.5) at evenly spaced quantiles, with
    /// `errors` of them errors; `slow` of them (spread evenly) multiplied by `factor`.
    fn snap(n: u64, errors: u64, slow: u64, factor: f64) -> Snapshot {
        let mut slot = Slot::new(0);
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            let mut us = 20_000.0 * (0.5 * normal_quantile(u)).exp();
            if slow > 0 && i % (n / slow).max(1) == 0 && i / (n / slow).max(1) < slow {
                us *= factor;
            }
            let outcome =
                if errors > 0 && i % (n / errors).max(1) == 0 && i / (n / errors).max(1) < errors {
                    Outcome::Error
                } else {
                    Outcome::Ok
                };
            slot.record(us as u64, outcome);
        }
        let mut s = Snapshot::empty(0, 60_000);
        s.add_slot(&slot);
        s
    }

    /// `n` calls of which `errors` fail in 2 ms, the others taking `factor` times the usual
    /// log-normal latencies (median 20 ms, sigma 0.5). With `timed_errors` the failures are
    /// timed too, as slots recorded them before they kept failures out of their histograms.
    fn fast_failure(n: u64, errors: u64, factor: f64, timed_errors: bool) -> Snapshot {
        let mut slot = Slot::new(0);
        let ok = n - errors;
        for i in 0..ok {
            let u = (i as f64 + 0.5) / ok as f64;
            let us = factor * 20_000.0 * (0.5 * normal_quantile(u)).exp();
            slot.record(us as u64, Outcome::Ok);
        }
        for _ in 0..errors {
            slot.record(2_000, Outcome::Error);
            if timed_errors {
                slot.hist.record(2_000);
            }
        }
        let mut s = Snapshot::empty(0, 60_000);
        s.add_slot(&slot);
        s
    }

    /// A peer's view: the counts of its last 10 seconds and its minute.
    fn peer(name: &str, s10: Snapshot, m1: Snapshot) -> PeerView {
        PeerView {
            last_seconds: [Counts::default(); 2],
            name: name.into(),
            s10: s10.counts,
            m1: crate::window::Sample::from(m1),
            zone: None,
        }
    }

    fn baseline(errors_per_minute: u64) -> BaselineStats {
        let mut b = Baseline::new(30);
        for m in 0..10 {
            let mut s = snap(3_000, errors_per_minute, 0, 1.0);
            s.from_ms = m * 60_000;
            b.absorb(&s, 0.99);
        }
        b.ready(5, 200).expect("ten minutes of 3000 calls")
    }

    fn windows(s: &Sample) -> Windows<'_> {
        Windows {
            s10: s,
            m1: s,
            m5: Some(s),
        }
    }

    #[test]
    fn a_slow_tail_on_five_percent_of_calls_is_a_tail_shift() {
        let base = baseline(3);
        let w = Sample::from(snap(3_000, 0, 150, 10.0));
        let f = latency_tail(&windows(&w), &base, &DetectionSettings::default()).expect("detected");
        assert_eq!(f.detector, DetectorKind::LatencyTail);
        assert!(f.evidence["p_value"].as_f64().unwrap() < 1e-6);
    }

    #[test]
    fn the_usual_distribution_is_not_a_tail_shift() {
        let base = baseline(3);
        let w = Sample::from(snap(3_000, 0, 0, 1.0));
        assert!(latency_tail(&windows(&w), &base, &DetectionSettings::default()).is_none());
    }

    #[test]
    fn a_trivial_shift_at_huge_traffic_is_significant_but_below_the_effect_floor() {
        let base = baseline(3);
        // 3% of a million calls 20% slower: overwhelming evidence, irrelevant effect.
        let w = Sample::from(snap(1_000_000, 0, 30_000, 1.2));
        assert!(latency_tail(&windows(&w), &base, &DetectionSettings::default()).is_none());
    }

    #[test]
    fn fast_errors_timed_with_the_successes_hid_their_slowdown() {
        let base = baseline(3);
        let s = DetectionSettings::default();
        // 30% of the calls fail in 2 ms; the successful ones are 1.3x slower.
        let timed = Sample::from(fast_failure(3_000, 900, 1.3, true));
        assert!(
            latency_tail(&windows(&timed), &base, &s).is_none(),
            "the errors' 2 ms dilute every share below its floor"
        );
        let counted = Sample::from(fast_failure(3_000, 900, 1.3, false));
        let f = latency_tail(&windows(&counted), &base, &s).expect("the successes are slower");
        assert_eq!(f.evidence["calls"], 2_100, "shares of the successful calls");
        assert!(f.summary.contains("of successful calls"), "{}", f.summary);
        // The errors themselves are the error detector's.
        assert!(rate_rise(&windows(&counted), &base, &s, false).is_some());
    }

    #[test]
    fn a_p99_bound_is_about_the_successful_calls() {
        let s = DetectionSettings::default();
        let spec = DependencySpec {
            normal: crate::detect::spec::Envelope {
                p99_ms: Some(100.0),
                ..Default::default()
            },
            ..Default::default()
        };
        // p99 of the successful calls is ~192 ms (3x the usual 64 ms); timed with 30% of 2 ms
        // errors the p99 would sit at the successes' p98.6.
        let w = Sample::from(fast_failure(3_000, 900, 3.0, false));
        let found = spec_rules(&windows(&w), &spec, &s);
        let f = found
            .iter()
            .find(|f| f.detector == DetectorKind::SloLatency)
            .expect("beyond the bound");
        assert_eq!(f.evidence["calls"], 2_100);
        // Within the bound, errors do not count as slow calls: nothing fires.
        let w = Sample::from(fast_failure(3_000, 900, 1.0, false));
        assert!(spec_rules(&windows(&w), &spec, &s).is_empty());
    }

    #[test]
    fn an_error_rate_rise_far_below_thresholds_is_caught_and_noise_is_not() {
        let base = baseline(3); // 0.1%
        let s = DetectionSettings::default();
        let risen = Sample::from(snap(6_000, 36, 0, 1.0)); // 0.6%
        let f = rate_rise(&windows(&risen), &base, &s, false).expect("detected");
        assert_eq!(f.detector, DetectorKind::ErrorRate);
        let noise = Sample::from(snap(6_000, 9, 0, 1.0)); // 0.15%
        assert!(rate_rise(&windows(&noise), &base, &s, false).is_none());
    }

    #[test]
    fn forty_identical_instances_raise_nothing_and_one_slow_one_is_named() {
        let s = DetectionSettings::default();
        let peers: Vec<PeerView> = (0..40)
            .map(|i| {
                peer(
                    &format!("i-{i}"),
                    snap(300, 0, 0, 1.0),
                    snap(300, 0, 0, 1.0),
                )
            })
            .collect();
        let mut asked = Vec::new();
        assert!(
            peer_outliers(&peers, &s, &mut |n| {
                asked.push(n.to_string());
                None
            })
            .is_empty()
        );
        assert!(asked.is_empty(), "no peer stands out: {asked:?}");

        let bad = snap(300, 0, 90, 8.0);
        let mut peers = peers;
        peers[7] = peer("i-7", bad.clone(), bad.clone());
        let found = peer_outliers(&peers, &s, &mut |n| {
            asked.push(n.to_string());
            Some(bad.clone())
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "i-7");
        assert_eq!(found[0].1.detector, DetectorKind::PeerLatency);
        assert_eq!(asked, ["i-7"]);

        // The same minute, but its last 10 seconds are back to normal: not flagged.
        let recovered = snap(300, 0, 0, 1.0);
        let found = peer_outliers(&peers, &s, &mut |_| Some(recovered.clone()));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn two_whole_failing_seconds_are_a_fast_hard_failure_and_one_burst_is_not() {
        let s = DetectionSettings::default();
        let second = |ok: u64, error: u64| Counts {
            ok,
            error,
            ..Counts::default()
        };
        let mut p = peer(
            "10.0.0.1",
            Snapshot::empty(0, 10_000),
            Snapshot::empty(0, 60_000),
        );
        p.last_seconds = [second(2, 18), second(0, 20)];
        // Counted as calls whatever the dispersion: no retried request fills two seconds.
        let f = peer_hard_failure(&p, &s, FailureDispersion::PRIOR).expect("both seconds fail");
        assert!(f.is_fast());
        assert_eq!(f.window_ms(), 2_000);
        // One burst of errors within one second, a healthy second beside it: not fast, and
        // with nothing else failing, nothing at all.
        p.last_seconds = [second(20, 0), second(0, 40)];
        assert!(peer_hard_failure(&p, &s, FailureDispersion::PRIOR).is_none());
        // Too few calls in a second to judge by.
        p.last_seconds = [second(0, 9), second(0, 20)];
        assert!(fast_hard_failure(&p.last_seconds, &s).is_none());
    }

    #[test]
    fn a_failing_peer_is_judged_on_its_last_ten_seconds_when_they_hold_enough_calls() {
        let s = DetectionSettings::default();
        let minute = snap(600, 6, 0, 1.0);
        let p = peer("i-1", snap(60, 40, 0, 1.0), minute.clone());
        let d = FailureDispersion::PRIOR;
        let f = peer_hard_failure(&p, &s, d).expect("failing over the last 10 s");
        assert_eq!(f.evidence["window"], "10s");
        let p = peer("i-1", snap(5, 5, 0, 1.0), minute);
        assert!(
            peer_hard_failure(&p, &s, d).is_none(),
            "the minute is healthy"
        );
        let p = peer("i-1", snap(5, 5, 0, 1.0), snap(30, 25, 0, 1.0));
        assert_eq!(
            peer_hard_failure(&p, &s, d).unwrap().evidence["window"],
            "1m"
        );
    }

    #[test]
    fn one_retried_request_on_a_quiet_peer_is_not_a_hard_failure() {
        let s = DetectionSettings::default();
        // A zone with a few calls a minute takes 7 of one request's retries: 7 bad of 11.
        let p = peer("az-1", snap(4, 0, 0, 1.0), snap(11, 7, 0, 1.0));
        // With the prior design effect, or the 2.5 a baseline measured, it is one or two
        // failures' worth, not five.
        assert!(peer_hard_failure(&p, &s, FailureDispersion::PRIOR).is_none());
        let measured = FailureDispersion {
            errors: 2.5,
            timeouts: 4.0,
        };
        assert!(peer_hard_failure(&p, &s, measured).is_none());
        // Where errors are known to come one call at a time, the same minute is failing: the
        // rule weighs evidence, it is not a higher threshold.
        let independent = FailureDispersion {
            errors: 1.0,
            timeouts: 1.0,
        };
        let f = peer_hard_failure(&p, &s, independent).expect("7 independent failures");
        assert_eq!(f.evidence["independent_failures"], 7.0);
        // An instance really down at one call a second fails its whole minute: 60 failures,
        // 15 with the prior, a hard failure.
        let p = peer("i-2", snap(10, 10, 0, 1.0), snap(60, 60, 0, 1.0));
        let f = peer_hard_failure(&p, &s, FailureDispersion::PRIOR).expect("down");
        assert_eq!(f.evidence["window"], "1m");
        assert_eq!(f.evidence["independent_failures"], 15.0);
        // The dependency-wide rule counts the same way.
        let w = Sample::from(snap(11, 7, 0, 1.0));
        assert!(hard_failure(&windows(&w), &s, FailureDispersion::PRIOR).is_none());
        assert!(hard_failure(&windows(&w), &s, independent).is_some());
    }

    #[test]
    fn mostly_failing_calls_are_a_hard_failure() {
        let s = DetectionSettings::default();
        let w = Sample::from(snap(200, 120, 0, 1.0));
        let d = FailureDispersion::PRIOR;
        let f = hard_failure(&windows(&w), &s, d).expect("failing");
        assert_eq!(f.severity, Severity::Failing);
        assert!(hard_failure(&windows(&snap(200, 20, 0, 1.0).into()), &s, d).is_none());
    }

    #[test]
    fn a_spec_envelope_breach_is_degraded_and_beyond_acceptable_is_failing() {
        let s = DetectionSettings::default();
        let spec = DependencySpec {
            normal: crate::detect::spec::Envelope {
                p99_ms: Some(40.0),
                ..Default::default()
            },
            acceptable: crate::detect::spec::Envelope {
                p99_ms: Some(400.0),
                ..Default::default()
            },
            ..Default::default()
        };
        // p99 of the base distribution is ~64 ms: beyond normal, within acceptable.
        let found = spec_rules(&windows(&snap(3_000, 0, 0, 1.0).into()), &spec, &s);
        let sev: Vec<_> = found.iter().map(|f| (f.detector, f.severity)).collect();
        assert_eq!(sev, vec![(DetectorKind::SloLatency, Severity::Degraded)]);
        // 10% of calls 20x slower: beyond both.
        let found = spec_rules(&windows(&snap(3_000, 0, 300, 20.0).into()), &spec, &s);
        assert_eq!(found.len(), 2);
        assert!(found.iter().any(|f| f.severity == Severity::Failing));
    }
}
