//! `GET /v1/overview` and `GET /v1/overview/{name}`: everything one dashboard page shows about
//! many series, in one answer.
//!
//! The overview page lists every dependency (up to `limits.max_dependencies`, 1,000 by default)
//! with a sparkline each; asking `series` once per dependency would be 1,000 requests a second.
//! Here one request reads the window store once per series: the current minute's stats, the
//! last 15 one-minute buckets (the sparkline), the health and the baseline. The work is a few
//! histogram copies per series, so it runs on the blocking pool, off the async workers.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::actions::breaker::BreakerView;
use crate::api::openapi::{DependencyHealthDoc, WindowStatsDoc};
use crate::detect::DependencyHealth;
use crate::detect::baseline::BaselineStats;
use crate::window::{SeriesKey, SeriesKind, Window, WindowStats, WindowStore};

const MINUTE: i64 = 60_000;
/// Minutes in a sparkline: the in-memory minute ring holds the last 15.
pub const SPARK_MINUTES: i64 = 15;

/// One-minute points of a series, oldest first; the last minute is the current, partial one.
/// A minute without calls has `null` latency and rates.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sparkline {
    pub t_ms: Vec<i64>,
    pub p99: Vec<Option<f64>>,
    pub error_rate: Vec<Option<f64>>,
    pub rate_per_s: Vec<f64>,
}

/// The baseline as the dashboard draws it (milliseconds and shares).
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineFigures {
    pub p50: f64,
    pub p99: f64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub minutes: u32,
    pub calls: u64,
}

impl From<BaselineStats> for BaselineFigures {
    fn from(b: BaselineStats) -> Self {
        Self {
            p50: b.p50_us as f64 / 1000.0,
            p99: b.tail_us as f64 / 1000.0,
            error_rate: b.error_rate,
            timeout_rate: b.timeout_rate,
            minutes: b.minutes,
            calls: b.calls,
        }
    }
}

/// One dependency's row of the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewRow {
    pub name: String,
    #[schema(value_type = DependencyHealthDoc)]
    pub health: DependencyHealth,
    /// The dependency's own breaker (`closed` when it has none yet).
    pub breaker: String,
    pub breaker_forced: bool,
    /// The last minute.
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
    pub baseline: Option<BaselineFigures>,
    /// Alerts of the dependency (or its instances and zones) firing now.
    pub firing: usize,
    /// How far the last minute is from the baseline: the largest of the ratios p99 / baseline
    /// p99, error rate / baseline error rate and timeout rate / baseline timeout rate; 0
    /// without a baseline. Orders rows of the same health.
    pub score: f64,
    pub spark: Sparkline,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub now: String,
    pub now_ms: i64,
    /// Worst first: failing, degraded, then by `score`, then by name.
    pub dependencies: Vec<OverviewRow>,
}

/// What the overview needs besides the store, read under the locks that own it.
pub struct Inputs {
    pub health: std::collections::BTreeMap<String, DependencyHealth>,
    pub baselines: std::collections::BTreeMap<String, BaselineStats>,
    pub breakers: Vec<BreakerView>,
    pub firing: HashMap<String, usize>,
}

pub fn overview(store: &WindowStore, inputs: Inputs, now_ms: i64) -> Overview {
    let breakers: HashMap<&str, &BreakerView> = inputs
        .breakers
        .iter()
        .filter(|b| b.instance.is_none())
        .map(|b| (b.dependency.as_str(), b))
        .collect();
    let mut rows: Vec<OverviewRow> = store
        .dependencies(Window::M1, now_ms)
        .into_iter()
        .map(|(name, snap)| {
            let stats = snap.stats();
            let baseline = inputs.baselines.get(&name).copied();
            let key = SeriesKey {
                dependency: name.clone(),
                kind: SeriesKind::Dependency,
                label: String::new(),
            };
            let breaker = breakers.get(name.as_str());
            OverviewRow {
                health: inputs.health.get(&name).cloned().unwrap_or_default(),
                breaker: breaker.map_or("closed", |b| b.state.as_str()).to_string(),
                breaker_forced: breaker.is_some_and(|b| b.forced),
                score: baseline.map_or(0.0, |b| distance(&stats, &b)),
                baseline: baseline.map(BaselineFigures::from),
                firing: inputs.firing.get(&name).copied().unwrap_or(0),
                spark: sparkline(store, &key, now_ms),
                stats,
                name,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.health
            .state
            .cmp(&a.health.state)
            .then(b.score.total_cmp(&a.score))
            .then_with(|| a.name.cmp(&b.name))
    });
    Overview {
        now: crate::time::to_rfc3339(now_ms),
        now_ms,
        dependencies: rows,
    }
}

/// How far the last minute is from the baseline (see [`OverviewRow::score`]).
fn distance(stats: &WindowStats, b: &BaselineStats) -> f64 {
    if stats.total == 0 {
        return 0.0;
    }
    let tail = match stats.p99 {
        Some(p99) if b.tail_us > 0 => p99 * 1000.0 / b.tail_us as f64,
        _ => 0.0,
    };
    // The baseline rates are smoothed ((k + 1) / (n + 2)), never zero.
    let errors = stats.error_rate / b.error_rate;
    let timeouts = stats.timeout_rate / b.timeout_rate;
    tail.max(errors).max(timeouts)
}

/// The last [`SPARK_MINUTES`] one-minute buckets of a series, from the in-memory minute ring.
pub fn sparkline(store: &WindowStore, key: &SeriesKey, now_ms: i64) -> Sparkline {
    let current = now_ms - now_ms.rem_euclid(MINUTE);
    let first = current - (SPARK_MINUTES - 1) * MINUTE;
    let buckets = store
        .buckets(key, 1, first, current, now_ms)
        .unwrap_or_default();
    let n = SPARK_MINUTES as usize;
    let mut spark = Sparkline {
        t_ms: Vec::with_capacity(n),
        p99: Vec::with_capacity(n),
        error_rate: Vec::with_capacity(n),
        rate_per_s: Vec::with_capacity(n),
    };
    for i in 0..SPARK_MINUTES {
        let t = first + i * MINUTE;
        spark.t_ms.push(t);
        let Some(b) = buckets.get(&t).filter(|b| b.total() > 0) else {
            spark.p99.push(None);
            spark.error_rate.push(None);
            spark.rate_per_s.push(0.0);
            continue;
        };
        let total = b.total() as f64;
        // The current minute has lasted only until now.
        let seconds = ((now_ms.min(t + MINUTE) - t).max(1_000) as f64) / 1000.0;
        // As `Snapshot::stats` reports a quantile: the middle of its bucket, of the successful
        // calls (none in a minute where every call failed).
        let p99_us =
            (!b.hist.is_empty()).then(|| b.hist.median_equivalent(b.hist.value_at_quantile(0.99)));
        spark.p99.push(p99_us.map(|us| us as f64 / 1000.0));
        spark.error_rate.push(Some(b.counts.error as f64 / total));
        spark.rate_per_s.push(total / seconds);
    }
    spark
}

/// An instance or zone of one dependency, as its table on the dependency page shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeerRow {
    pub name: String,
    /// The instance's zone, when it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The engine's verdict (`healthy` unless listed in the dependency's health).
    pub health: String,
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
    /// Why the row is highlighted: the engine judged it unhealthy, or its last minute stands
    /// far from its peers' median (a visual hint only; detection decides alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<String>,
    pub spark: Sparkline,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyOverview {
    pub name: String,
    pub now: String,
    pub now_ms: i64,
    #[schema(value_type = DependencyHealthDoc)]
    pub health: DependencyHealth,
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
    pub baseline: Option<BaselineFigures>,
    pub spark: Sparkline,
    pub instances: Vec<PeerRow>,
    pub zones: Vec<PeerRow>,
}

/// One dependency with each of its instances and zones; `None` for an unknown dependency.
pub fn dependency_overview(
    store: &WindowStore,
    name: &str,
    health: DependencyHealth,
    baseline: Option<BaselineStats>,
    now_ms: i64,
) -> Option<DependencyOverview> {
    let view = store.dependency(name, Window::M1, now_ms)?;
    let key = |kind, label: &str| SeriesKey {
        dependency: name.to_string(),
        kind,
        label: label.to_string(),
    };
    let peers =
        |kind: SeriesKind,
         list: Vec<(String, crate::window::Snapshot)>,
         verdicts: &std::collections::BTreeMap<String, crate::detect::Health>| {
            let stats: Vec<(String, WindowStats)> =
                list.into_iter().map(|(k, s)| (k, s.stats())).collect();
            let p99s: Vec<f64> = stats.iter().filter_map(|(_, s)| s.p99).collect();
            let errs: Vec<f64> = stats
                .iter()
                .filter(|(_, s)| s.total > 0)
                .map(|(_, s)| s.error_rate + s.timeout_rate)
                .collect();
            let (p99_median, err_median) = (median(p99s), median(errs));
            stats
                .into_iter()
                .map(|(label, s)| {
                    let verdict = verdicts.get(&label);
                    let outlier = match verdict {
                        Some(h) => Some(format!("judged {}", health_word(h))),
                        None => peer_outlier(&s, p99_median, err_median),
                    };
                    PeerRow {
                        zone: (kind == SeriesKind::Instance)
                            .then(|| view.instance_zone.get(&label).cloned())
                            .flatten(),
                        health: verdict.map_or("healthy".to_string(), health_word),
                        spark: sparkline(store, &key(kind, &label), now_ms),
                        outlier,
                        stats: s,
                        name: label,
                    }
                })
                .collect::<Vec<_>>()
        };
    let instances = peers(
        SeriesKind::Instance,
        view.instances.clone(),
        &health.instances,
    );
    let zones = peers(SeriesKind::Zone, view.zones.clone(), &health.zones);
    Some(DependencyOverview {
        name: name.to_string(),
        now: crate::time::to_rfc3339(now_ms),
        now_ms,
        stats: view.total.stats(),
        baseline: baseline.map(BaselineFigures::from),
        spark: sparkline(store, &key(SeriesKind::Dependency, ""), now_ms),
        health,
        instances,
        zones,
    })
}

fn health_word(h: &crate::detect::Health) -> String {
    serde_json::to_value(h)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.len() < 3 {
        // With one or two peers there is no "rest" to stand out from.
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// A peer whose p99 is at least twice its peers' median, or whose error plus timeout rate is
/// 5 points above theirs.
fn peer_outlier(
    s: &WindowStats,
    p99_median: Option<f64>,
    err_median: Option<f64>,
) -> Option<String> {
    if let (Some(p99), Some(m)) = (s.p99, p99_median)
        && m > 0.0
        && p99 >= 2.0 * m
    {
        return Some(format!("p99 {:.1}x the peers' median", p99 / m));
    }
    let err = s.error_rate + s.timeout_rate;
    if let Some(m) = err_median
        && s.total > 0
        && err >= m + 0.05
    {
        return Some(format!(
            "errors and timeouts {:.1}% vs the peers' median {:.1}%",
            err * 100.0,
            m * 100.0
        ));
    }
    None
}
