//! The detection engine: runs the detectors over every dependency at one instant of event
//! time and turns their findings into alert transitions through the hysteresis machines.
//!
//! It reads the window store and knows nothing of HTTP, storage or notifications: the daemon
//! calls [`Engine::evaluate`] once a second with the wall clock, `replay` with event time.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::baseline::{Baseline, BaselineStats};
use super::detectors::{self, DetectorKind, Finding, Severity, Windows};
use super::spec::{DetectionSettings, Specs};
use super::state::{AlertMachine, Hysteresis, Step};
use crate::window::{PeerView, SeriesKey, SeriesKind, Window, WindowStore};

/// A minute joins the baseline this long after it ended, so that a degradation starting in
/// it has had time to be noticed (and keep it out).
const BASELINE_LAG_MS: i64 = 90_000;
const MINUTE_MS: i64 = 60_000;

/// What an alert is about: a dependency, or one instance or zone of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Dependency,
    Instance(String),
    Zone(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// An alert starting or ending.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at_ms: i64,
    pub status: AlertStatus,
    pub dependency: String,
    pub instance: Option<String>,
    pub zone: Option<String>,
    pub detector: DetectorKind,
    pub severity: Severity,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
}

impl Transition {
    /// Stable identity of the condition (not of one occurrence): same for firing and resolved.
    pub fn fingerprint(&self) -> String {
        let scope = match (&self.instance, &self.zone) {
            (Some(i), _) => format!("instance={i}"),
            (_, Some(z)) => format!("zone={z}"),
            _ => "dependency".into(),
        };
        format!(
            "{}/{}/{}/{}",
            self.dependency,
            scope,
            self.detector.as_str(),
            self.severity.as_str()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    Degraded,
    Failing,
}

impl From<Severity> for Health {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Degraded => Health::Degraded,
            Severity::Failing => Health::Failing,
        }
    }
}

/// Health of a dependency and of those of its instances and zones that are not healthy.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DependencyHealth {
    pub state: Health,
    pub instances: BTreeMap<String, Health>,
    pub zones: BTreeMap<String, Health>,
    pub baseline_ready: bool,
}

type Key = (Scope, DetectorKind, Severity);

#[derive(Debug, Clone, Default)]
struct Tracked {
    machine: AlertMachine,
    /// The finding when the alert fired (what `resolved` reports too).
    fired: Option<Finding>,
}

#[derive(Debug, Clone)]
struct DependencyState {
    baseline: Baseline,
    tracked: BTreeMap<Key, Tracked>,
    /// Last evaluation at which some alert of the dependency was pending or firing.
    last_active_ms: i64,
    health: DependencyHealth,
    /// What the detectors found at the last evaluation, before hysteresis.
    current: Conditions,
}

/// The raw verdict of one evaluation: worst severity found for the dependency as a whole and
/// for each instance, before any hysteresis. Breaker probes judge by this fresh signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    pub dependency: Option<Severity>,
    pub instances: BTreeMap<String, Severity>,
    /// Instances that reported in the last minute.
    pub known_instances: usize,
}

pub struct Engine {
    settings: DetectionSettings,
    specs: Specs,
    deps: HashMap<String, DependencyState>,
}

impl Engine {
    pub fn new(settings: DetectionSettings, specs: Specs) -> Self {
        Self {
            settings,
            specs,
            deps: HashMap::new(),
        }
    }

    /// Evaluates every dependency at `now_ms` and returns the alert transitions, ordered by
    /// dependency name.
    pub fn evaluate(&mut self, store: &WindowStore, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut names = store.names();
        // Dependencies gone from the store but with alerts still open: let those resolve.
        names.extend(
            self.deps
                .iter()
                .filter(|(n, d)| !d.tracked.is_empty() && !store.contains(n))
                .map(|(n, _)| n.clone()),
        );
        names.sort();
        names.dedup();
        for name in names {
            self.evaluate_one(store, &name, now_ms, &mut out);
        }
        out
    }

    fn evaluate_one(
        &mut self,
        store: &WindowStore,
        name: &str,
        now: i64,
        out: &mut Vec<Transition>,
    ) {
        let Some(view) = store.detection_view(name, now) else {
            self.step_without_data(name, now, out);
            return;
        };
        let settings = &self.settings;
        let spec = self.specs.get(name);
        let state = self
            .deps
            .entry(name.to_string())
            .or_insert_with(|| DependencyState {
                baseline: Baseline::new(settings.baseline_minutes),
                tracked: BTreeMap::new(),
                last_active_ms: i64::MIN,
                health: DependencyHealth::default(),
                current: Conditions::default(),
            });
        learn_baseline(state, store, name, now, settings);

        let mut findings: HashMap<Key, Finding> = HashMap::new();
        let mut add = |scope: Scope, f: Finding| {
            findings.insert((scope, f.detector, f.severity), f);
        };
        let total = Windows {
            s10: &view.s10,
            m1: &view.m1,
            m5: Some(&view.m5),
        };
        if let Some(base) = state
            .baseline
            .ready(settings.baseline_min_minutes, settings.baseline_min_calls)
        {
            let found = [
                detectors::latency_tail(&total, &base, settings),
                detectors::rate_rise(&total, &base, settings, false),
                detectors::rate_rise(&total, &base, settings, true),
            ];
            for f in found.into_iter().flatten() {
                add(Scope::Dependency, f);
            }
        }
        if let Some(f) = detectors::hard_failure(&total, settings) {
            add(Scope::Dependency, f);
        }
        if let Some(spec) = spec {
            for f in detectors::spec_rules(&total, spec, settings) {
                add(Scope::Dependency, f);
            }
        }
        for (kind, peers) in [
            (SeriesKind::Instance, &view.instances),
            (SeriesKind::Zone, &view.zones),
        ] {
            let scope = |n: &str| match kind {
                SeriesKind::Instance => Scope::Instance(n.to_string()),
                _ => Scope::Zone(n.to_string()),
            };
            let mut recent_latency = |peer: &str| {
                let key = SeriesKey {
                    dependency: name.to_string(),
                    kind,
                    label: peer.to_string(),
                };
                store.series_window(&key, Window::S10, now)
            };
            for (peer, f) in detectors::peer_outliers(peers, settings, &mut recent_latency) {
                add(scope(peer), f);
            }
            for p in peers {
                if let Some(f) = detectors::peer_hard_failure(p, settings) {
                    add(scope(&p.name), f);
                }
            }
        }

        explain_locally(
            &mut findings,
            &view.instances,
            &view.zones,
            settings.peer_min_calls,
        );
        let mut current = Conditions {
            known_instances: view.instances.len(),
            ..Conditions::default()
        };
        for (scope, _, severity) in findings.keys() {
            match scope {
                Scope::Dependency => current.dependency = current.dependency.max(Some(*severity)),
                Scope::Instance(i) => {
                    let e = current.instances.entry(i.clone()).or_insert(*severity);
                    *e = (*e).max(*severity);
                }
                Scope::Zone(_) => {}
            }
        }
        state.current = current;

        // Step every machine that has a finding or is not idle.
        let h = settings.hysteresis(spec);
        // Built only when an alert fires: most evaluations fire nothing.
        let baseline = state.baseline.stats();
        let dependency_evidence = || {
            serde_json::json!({
                "window_stats_1m": serde_json::to_value(view.m1.stats()).unwrap_or_default(),
                "baseline": baseline,
            })
        };
        step_machines(
            name,
            state,
            findings,
            Some(&dependency_evidence),
            now,
            &h,
            out,
        );
        state.health = health(state, settings);
    }

    /// Restores an alert that was firing when the daemon stopped: it goes on firing (and
    /// resolves through the usual clear spell) instead of being forgotten or fired twice.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_firing(
        &mut self,
        dependency: &str,
        instance: Option<&str>,
        zone: Option<&str>,
        detector: &str,
        severity: &str,
        started_ms: i64,
        summary: &str,
        evidence: serde_json::Value,
    ) -> bool {
        let (Some(detector), Some(severity)) =
            (DetectorKind::parse(detector), Severity::parse(severity))
        else {
            return false;
        };
        let scope = match (instance, zone) {
            (Some(i), _) => Scope::Instance(i.to_string()),
            (_, Some(z)) => Scope::Zone(z.to_string()),
            _ => Scope::Dependency,
        };
        let settings = &self.settings;
        let state = self
            .deps
            .entry(dependency.to_string())
            .or_insert_with(|| DependencyState {
                baseline: Baseline::new(settings.baseline_minutes),
                tracked: BTreeMap::new(),
                last_active_ms: started_ms,
                health: DependencyHealth::default(),
                current: Conditions::default(),
            });
        state.last_active_ms = state.last_active_ms.max(started_ms);
        let finding = Finding {
            detector,
            severity,
            summary: summary.to_string(),
            evidence,
        };
        state.tracked.insert(
            (scope, detector, severity),
            Tracked {
                machine: AlertMachine::firing_since(started_ms),
                fired: Some(finding),
            },
        );
        state.health = health(state, settings);
        true
    }

    /// A dependency without data: nothing is found, so open alerts move towards resolving.
    fn step_without_data(&mut self, name: &str, now: i64, out: &mut Vec<Transition>) {
        let h = self.settings.hysteresis(self.specs.get(name));
        let Some(state) = self.deps.get_mut(name) else {
            return;
        };
        state.current = Conditions::default();
        step_machines(name, state, HashMap::new(), None, now, &h, out);
        state.health = health(state, &self.settings);
    }

    /// Health of every dependency that has been evaluated.
    pub fn health(&self) -> BTreeMap<String, DependencyHealth> {
        self.deps
            .iter()
            .map(|(k, v)| (k.clone(), v.health.clone()))
            .collect()
    }

    /// Health and raw conditions of every evaluated dependency at the last evaluation.
    pub fn conditions(&self) -> BTreeMap<String, (DependencyHealth, Conditions)> {
        self.deps
            .iter()
            .map(|(k, v)| (k.clone(), (v.health.clone(), v.current.clone())))
            .collect()
    }

    pub fn specs(&self) -> &Specs {
        &self.specs
    }

    /// Each evaluated dependency's baseline once it is ready to judge by (the dashboard draws
    /// the baseline p99 beside the current one).
    pub fn baselines(&self) -> BTreeMap<String, BaselineStats> {
        let s = &self.settings;
        self.deps
            .iter()
            .filter_map(|(k, v)| {
                let b = v
                    .baseline
                    .ready(s.baseline_min_minutes, s.baseline_min_calls)?;
                Some((k.clone(), b))
            })
            .collect()
    }

    pub fn health_of(&self, dependency: &str) -> Option<&DependencyHealth> {
        self.deps.get(dependency).map(|d| &d.health)
    }

    /// Drops state of dependencies that are no longer in the store and have no open alert.
    pub fn forget_missing(&mut self, store: &WindowStore) {
        self.deps
            .retain(|name, d| !d.tracked.is_empty() || store.contains(name));
    }
}

/// Steps every machine that has a finding or is not idle, emitting transitions. Findings at
/// the dependency scope get `dependency_evidence` (window stats, baseline) merged in.
fn step_machines(
    name: &str,
    state: &mut DependencyState,
    mut findings: HashMap<Key, Finding>,
    dependency_evidence: Option<&dyn Fn() -> serde_json::Value>,
    now: i64,
    h: &Hysteresis,
    out: &mut Vec<Transition>,
) {
    let mut keys: Vec<Key> = state.tracked.keys().cloned().collect();
    keys.extend(
        findings
            .keys()
            .filter(|k| !state.tracked.contains_key(*k))
            .cloned(),
    );
    keys.sort();
    for key in keys {
        let finding = findings.remove(&key);
        let tracked = state.tracked.entry(key.clone()).or_default();
        match tracked.machine.step(finding.is_some(), now, h) {
            Step::Unchanged => {}
            Step::Fired { started_ms } => {
                let mut f = finding.expect("fires only on a finding");
                if let (Scope::Dependency, Some(extra)) = (&key.0, dependency_evidence)
                    && let serde_json::Value::Object(extra) = extra()
                {
                    for (k, v) in extra {
                        f.evidence[k] = v;
                    }
                }
                out.push(transition(
                    name,
                    &key,
                    &f,
                    AlertStatus::Firing,
                    now,
                    started_ms,
                    None,
                ));
                tracked.fired = Some(f);
            }
            Step::Resolved {
                started_ms,
                resolved_ms,
            } => {
                if let Some(f) = tracked.fired.take() {
                    out.push(transition(
                        name,
                        &key,
                        &f,
                        AlertStatus::Resolved,
                        now,
                        started_ms,
                        Some(resolved_ms),
                    ));
                }
            }
        }
    }
    state.tracked.retain(|_, t| t.machine.is_active());
    if !state.tracked.is_empty() {
        state.last_active_ms = now;
    }
}

/// Attributes a localized problem to its cause. A bad instance makes its zone look bad too,
/// and a bad zone makes each of its instances look bad. When exactly one of a flagged zone's
/// instances (out of two or more judged) is flagged for the same detector, the instance is the
/// cause and the zone finding goes; when two or more are, the zone is the cause and its
/// instances' findings go.
fn explain_locally(
    findings: &mut HashMap<Key, Finding>,
    instances: &[PeerView],
    zones: &[PeerView],
    min_calls: u64,
) {
    let zone_keys: Vec<Key> = findings
        .keys()
        .filter(|k| matches!(k.0, Scope::Zone(_)))
        .cloned()
        .collect();
    // Both lists are sorted by name.
    let find =
        |peers: &[PeerView], name: &str| peers.binary_search_by(|p| p.name.as_str().cmp(name)).ok();
    for key in zone_keys {
        let Scope::Zone(zone) = &key.0 else { continue };
        let zone = find(zones, zone);
        let in_zone = |p: &PeerView| zone.is_some() && p.zone == zone;
        let judged = instances
            .iter()
            .filter(|p| in_zone(p) && p.m1.total() >= min_calls)
            .count();
        let in_zone = |i: &str| find(instances, i).is_some_and(|at| in_zone(&instances[at]));
        let flagged: Vec<Key> = findings
            .keys()
            .filter(|k| k.1 == key.1 && matches!(&k.0, Scope::Instance(i) if in_zone(i)))
            .cloned()
            .collect();
        if flagged.len() == 1 && judged >= 2 {
            findings.remove(&key);
        } else if flagged.len() >= 2 {
            for k in flagged {
                findings.remove(&k);
            }
        }
    }
}

/// Feeds completed, healthy minutes into the baseline.
fn learn_baseline(
    state: &mut DependencyState,
    store: &WindowStore,
    name: &str,
    now: i64,
    s: &DetectionSettings,
) {
    let newest = (now - BASELINE_LAG_MS).div_euclid(MINUTE_MS) * MINUTE_MS - MINUTE_MS;
    let oldest = state
        .baseline
        .last_minute_ms
        .saturating_add(MINUTE_MS)
        .max(newest - 5 * MINUTE_MS);
    if newest < oldest {
        return;
    }
    state.baseline.last_minute_ms = newest;
    let key = SeriesKey {
        dependency: name.to_string(),
        kind: SeriesKind::Dependency,
        label: String::new(),
    };
    let Some(buckets) = store.buckets(&key, 1, oldest, newest, now) else {
        return;
    };
    for (minute, snap) in buckets {
        // Skip minutes during or after which something was suspected.
        if state.last_active_ms >= minute || snap.total() == 0 {
            continue;
        }
        state.baseline.absorb(&snap, s.tail_quantile);
    }
}

fn health(state: &DependencyState, s: &DetectionSettings) -> DependencyHealth {
    let mut out = DependencyHealth {
        // The same test the baseline detectors use before they judge.
        baseline_ready: state
            .baseline
            .ready(s.baseline_min_minutes, s.baseline_min_calls)
            .is_some(),
        ..DependencyHealth::default()
    };
    for ((scope, _, severity), t) in &state.tracked {
        if !t.machine.is_firing() {
            continue;
        }
        let h = Health::from(*severity);
        let slot = match scope {
            Scope::Dependency => &mut out.state,
            Scope::Instance(i) => out.instances.entry(i.clone()).or_default(),
            Scope::Zone(z) => out.zones.entry(z.clone()).or_default(),
        };
        *slot = (*slot).max(h);
    }
    // A localized problem degrades the dependency as a whole too.
    let worst_part = out
        .instances
        .values()
        .chain(out.zones.values())
        .copied()
        .max()
        .unwrap_or_default();
    out.state = out.state.max(worst_part.min(Health::Degraded));
    out
}

fn transition(
    name: &str,
    key: &Key,
    f: &Finding,
    status: AlertStatus,
    at_ms: i64,
    started_ms: i64,
    resolved_ms: Option<i64>,
) -> Transition {
    let (instance, zone) = match &key.0 {
        Scope::Dependency => (None, None),
        Scope::Instance(i) => (Some(i.clone()), None),
        Scope::Zone(z) => (None, Some(z.clone())),
    };
    Transition {
        at_ms,
        status,
        dependency: name.to_string(),
        instance,
        zone,
        detector: f.detector,
        severity: f.severity,
        summary: f.summary.clone(),
        evidence: f.evidence.clone(),
        started_ms,
        resolved_ms,
    }
}
