//! Detection settings and per-dependency fault-tolerance specifications.
//!
//! Zero configuration works: every dependency gets the defaults of `[detection]`. A spec in
//! `[dependencies.NAME]` states what "normal" is for that dependency, how much degradation is
//! acceptable, and what to do on breach:
//!
//! ```toml
//! [dependencies.payments-api]
//! normal     = { p99_ms = 300, error_rate = 0.005 }   # outside: degraded
//! acceptable = { p99_ms = 400, error_rate = 0.02 }    # outside: failing
//! slow_call  = { duration_ms = 1000, max_rate = 0.05 }
//! on_breach  = { notify = ["oncall-mail"], breaker = "degraded" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::Hysteresis;

/// Global detection settings (`[detection]`), the defaults for every dependency.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSettings {
    /// How often the daemon evaluates (event time in `replay`).
    #[serde(with = "crate::config::duration")]
    pub evaluate_every: Duration,
    /// The longest a condition holds before its alert fires; sequential evidence on the
    /// per-second counts fires a baseline detector's condition sooner (see
    /// [`super::sequential`]).
    #[serde(with = "crate::config::duration")]
    pub fire_after: Duration,
    /// How long a condition must be clear before an alert resolves.
    #[serde(with = "crate::config::duration")]
    pub resolve_after: Duration,
    /// Significance level of each statistical test. Tests run every second on several windows
    /// and series, so this is far stricter than the textbook 0.05.
    pub alpha: f64,
    /// Share of calls slower than the baseline p99 is tested against this floor (1%).
    pub tail_quantile: f64,
    /// The window's p99 must also reach this multiple of the baseline p99 (effect-size floor).
    pub tail_ratio: f64,
    /// In the body, the window's p50 (p90) must also reach this multiple of the baseline's:
    /// the odds floor alone would page a tight distribution (a cache answering in 1 ms +- 5%)
    /// for a 5% slowdown, which nobody acts on.
    pub body_ratio: f64,
    /// An error or timeout rate must reach this multiple of the baseline rate...
    pub rate_ratio: f64,
    /// ...and exceed it by at least this much (absolute).
    pub rate_min_increase: f64,
    /// Least number of offending calls before any detector speaks.
    pub min_bad_calls: u64,
    /// Error plus timeout rate at which a dependency is `failing`.
    pub failing_rate: f64,
    /// Minutes of healthy traffic the baseline learns from.
    pub baseline_minutes: u32,
    /// Nothing older than this (event time) is remembered: baseline chunks age out, and the
    /// anchor that guards against slow creep covers this span.
    #[serde(with = "crate::config::duration")]
    pub baseline_max_age: Duration,
    /// Least healthy minutes and calls before baseline detectors judge (cold start).
    pub baseline_min_minutes: u32,
    pub baseline_min_calls: u64,
    /// Peers (instances or zones) with fewer calls in the window are not compared.
    pub peer_min_calls: u64,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(1),
            fire_after: Duration::from_secs(15),
            resolve_after: Duration::from_secs(30),
            alpha: 1e-6,
            tail_quantile: 0.99,
            tail_ratio: 1.5,
            body_ratio: 1.2,
            rate_ratio: 2.0,
            rate_min_increase: 0.001,
            min_bad_calls: 5,
            failing_rate: 0.5,
            baseline_minutes: 30,
            baseline_max_age: Duration::from_secs(24 * 3600),
            baseline_min_minutes: 5,
            baseline_min_calls: 200,
            peer_min_calls: 20,
        }
    }
}

impl DetectionSettings {
    pub fn hysteresis(&self, spec: Option<&DependencySpec>) -> Hysteresis {
        let fire = spec.and_then(|s| s.fire_after).unwrap_or(self.fire_after);
        let resolve = spec
            .and_then(|s| s.resolve_after)
            .unwrap_or(self.resolve_after);
        Hysteresis::new(fire, resolve)
    }

    /// Problems with the values, as (key, value, why).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, why: &str| {
            if !ok {
                out.push((format!("detection.{key}"), value, why.to_string()));
            }
        };
        check(
            self.alpha > 0.0 && self.alpha < 0.5,
            "alpha",
            self.alpha.to_string(),
            "must be in (0, 0.5)",
        );
        check(
            self.tail_quantile > 0.5 && self.tail_quantile < 1.0,
            "tail_quantile",
            self.tail_quantile.to_string(),
            "must be in (0.5, 1)",
        );
        check(
            self.tail_ratio >= 1.0,
            "tail_ratio",
            self.tail_ratio.to_string(),
            "must be >= 1",
        );
        check(
            self.body_ratio >= 1.0,
            "body_ratio",
            self.body_ratio.to_string(),
            "must be >= 1",
        );
        check(
            self.rate_ratio >= 1.0,
            "rate_ratio",
            self.rate_ratio.to_string(),
            "must be >= 1",
        );
        check(
            self.failing_rate > 0.0 && self.failing_rate <= 1.0,
            "failing_rate",
            self.failing_rate.to_string(),
            "must be in (0, 1]",
        );
        check(
            self.evaluate_every >= Duration::from_millis(100),
            "evaluate_every",
            humantime::format_duration(self.evaluate_every).to_string(),
            "must be at least 100ms",
        );
        check(
            self.baseline_minutes >= self.baseline_min_minutes && self.baseline_min_minutes >= 1,
            "baseline_minutes",
            self.baseline_minutes.to_string(),
            "must be >= baseline_min_minutes >= 1",
        );
        check(
            self.baseline_max_age >= Duration::from_secs(60 * u64::from(self.baseline_minutes)),
            "baseline_max_age",
            humantime::format_duration(self.baseline_max_age).to_string(),
            "must be at least baseline_minutes",
        );
        out
    }
}

/// Latency and error bounds of one envelope.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
}

/// resilience4j-style slow-call rule: at most `max_rate` of calls slower than `duration_ms`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlowCall {
    pub duration_ms: f64,
    pub max_rate: f64,
}

/// Which health state opens the dependency's breaker.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BreakerPolicy {
    /// Only `failing` opens it (the default).
    #[default]
    Failing,
    /// `degraded` opens it too: for dependencies with a good fallback.
    Degraded,
    /// Never: for fire-and-forget dependencies.
    Never,
}

/// What to do when the spec is breached.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnBreach {
    /// Notifier names; empty means the default route.
    pub notify: Vec<String>,
    pub breaker: BreakerPolicy,
    /// Alerts of this dependency are recorded but not notified.
    pub silent: bool,
}

/// A dependency's fault-tolerance specification.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DependencySpec {
    /// The normal envelope: outside it the dependency is `degraded`.
    pub normal: Envelope,
    /// The acceptable degradation: outside it the dependency is `failing`.
    pub acceptable: Envelope,
    pub slow_call: Option<SlowCall>,
    pub on_breach: OnBreach,
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub fire_after: Option<Duration>,
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub resolve_after: Option<Duration>,
    /// Free text shown in alerts: the failure scenario and the expected behaviour.
    pub description: Option<String>,
}

impl DependencySpec {
    pub fn problems(&self, name: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let key = |k: &str| format!("dependencies.{name}.{k}");
        for (which, env) in [("normal", &self.normal), ("acceptable", &self.acceptable)] {
            if let Some(p) = env.p99_ms.filter(|p| !is_positive(*p)) {
                out.push((
                    key(&format!("{which}.p99_ms")),
                    p.to_string(),
                    "must be > 0".into(),
                ));
            }
            for (k, v) in [
                ("error_rate", env.error_rate),
                ("timeout_rate", env.timeout_rate),
            ] {
                if let Some(r) = v.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
                    out.push((
                        key(&format!("{which}.{k}")),
                        r.to_string(),
                        "must be in (0, 1]".into(),
                    ));
                }
            }
        }
        if let (Some(n), Some(a)) = (self.normal.p99_ms, self.acceptable.p99_ms)
            && a < n
        {
            out.push((
                key("acceptable.p99_ms"),
                a.to_string(),
                format!("must be >= normal.p99_ms ({n})"),
            ));
        }
        if let (Some(n), Some(a)) = (self.normal.error_rate, self.acceptable.error_rate)
            && a < n
        {
            out.push((
                key("acceptable.error_rate"),
                a.to_string(),
                format!("must be >= normal.error_rate ({n})"),
            ));
        }
        if let Some(s) = &self.slow_call {
            if !is_positive(s.duration_ms) {
                out.push((
                    key("slow_call.duration_ms"),
                    s.duration_ms.to_string(),
                    "must be > 0".into(),
                ));
            }
            if !(s.max_rate > 0.0 && s.max_rate < 1.0) {
                out.push((
                    key("slow_call.max_rate"),
                    s.max_rate.to_string(),
                    "must be in (0, 1)".into(),
                ));
            }
        }
        out
    }
}

/// True for a finite number above zero (false for NaN).
fn is_positive(x: f64) -> bool {
    x > 0.0
}

/// Specs by dependency name.
pub type Specs = BTreeMap<String, DependencySpec>;

mod opt_duration {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::config::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        crate::config::duration::deserialize(d).map(Some)
    }
}
