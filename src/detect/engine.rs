//! The detection engine: runs the detectors over every dependency at one instant of event
//! time and turns their findings into alert transitions.
//!
//! Per evaluation and dependency:
//! 1. the detectors find conditions per subject (the dependency, an instance, a zone, a
//!    source);
//! 2. attribution decides which subject a condition belongs to: a zone-wide problem absorbs
//!    its instances', a dependency-wide one absorbs the local ones it explains, and a
//!    dependency-wide shift caused by one bad instance, zone or source (caller) moves to that
//!    subject. Sources are orthogonal to instances and zones (a caller's calls go to every
//!    instance), so a bad caller is never blamed on a place, nor a bad place on a caller;
//! 3. each (subject, detector, severity) steps its hysteresis machine;
//! 4. the firing machines of a subject form its incident: one alert that fires, is updated
//!    when its detectors or severity change, and resolves when the last condition clears.
//!
//! It reads the window store and knows nothing of HTTP, storage or notifications: the daemon
//! calls [`Engine::evaluate`] once a second with the wall clock, `replay` with event time.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::baseline::{Anchor, AnchorStats, Baseline, BaselineStats};
use super::detectors::{self, DetectorKind, FailureDispersion, Finding, Severity, Windows};
use super::incident::{self, Change, Incident};
use super::sequential::{self, Stream};
use super::spec::{DetectionSettings, Specs};
use super::state::{AlertMachine, Hysteresis, Step};
use super::stats::{PRIOR_DISPERSION, quasi_binomial_upper_p_value, two_proportion_p_value};
use super::traffic::{self, TrafficBaseline};
use crate::window::{
    DetectionView, IdleTotal, PeerView, Sample, SeriesKey, SeriesKind, Snapshot, Window,
    WindowStore,
};

/// A minute joins the baseline this long after it ended, so that a degradation starting in
/// it has had time to be noticed (and keep it out).
const BASELINE_LAG_MS: i64 = 90_000;
const MINUTE_MS: i64 = 60_000;

/// What an alert is about: a dependency, or one instance, zone or source (caller) of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Dependency,
    Instance(String),
    Zone(String),
    Source(String),
}

impl Scope {
    /// The subject of a stored or transmitted alert: at most one of instance, zone and source
    /// is set (the first set wins).
    pub fn of(instance: Option<&str>, zone: Option<&str>, source: Option<&str>) -> Self {
        match (instance, zone, source) {
            (Some(i), _, _) => Scope::Instance(i.to_string()),
            (_, Some(z), _) => Scope::Zone(z.to_string()),
            (_, _, Some(c)) => Scope::Source(c.to_string()),
            _ => Scope::Dependency,
        }
    }

    /// `instance=..`, `zone=..`, `source=..` or `dependency`: the subject in fingerprints and
    /// in the `absorbed` list of evidence.
    pub fn label(&self) -> String {
        match self {
            Scope::Dependency => "dependency".into(),
            Scope::Instance(i) => format!("instance={i}"),
            Scope::Zone(z) => format!("zone={z}"),
            Scope::Source(c) => format!("source={c}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// A new incident.
    Firing,
    /// An open incident whose detectors or severity changed.
    Updated,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Updated => "updated",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Firing, Self::Updated, Self::Resolved]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An alert (one incident) starting, changing or ending. Serialized only to keep it across a
/// restart when the database refused it ([`crate::actions::spill`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: i64,
    pub status: AlertStatus,
    pub dependency: String,
    pub instance: Option<String>,
    pub zone: Option<String>,
    /// The caller the incident is localized to.
    pub source: Option<String>,
    /// The detector that names the incident (its most severe condition).
    pub detector: DetectorKind,
    /// Every detector with a firing condition, `detector` first.
    pub detectors: Vec<DetectorKind>,
    pub severity: Severity,
    /// Severity before an `Updated` transition; notifications go out when it differs.
    pub previous_severity: Option<Severity>,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
}

impl Transition {
    /// Stable identity of the subject (not of one occurrence): the same for every transition
    /// of an incident, whatever its detectors and severity.
    pub fn fingerprint(&self) -> String {
        format!("{}/{}", self.dependency, self.scope().label())
    }

    /// The subject of the alert.
    pub fn scope(&self) -> Scope {
        Scope::of(
            self.instance.as_deref(),
            self.zone.as_deref(),
            self.source.as_deref(),
        )
    }

    /// Whether receivers hear of this transition: firing and resolving always, an update
    /// only when the severity changed.
    pub fn notifies(&self) -> bool {
        self.status != AlertStatus::Updated || self.previous_severity != Some(self.severity)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No calls in the last minute: nothing to judge by (open alerts stay open).
    NoData,
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

/// Health of a dependency and of those of its instances, zones and sources that are not
/// healthy.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DependencyHealth {
    pub state: Health,
    pub instances: BTreeMap<String, Health>,
    pub zones: BTreeMap<String, Health>,
    /// Callers with an open alert. Unlike an instance or zone, a bad caller does not degrade
    /// `state`: the dependency serves its other callers well, and `state` is what opens the
    /// dependency's breaker (one job with a bad key must not cut everyone off).
    pub sources: BTreeMap<String, Health>,
    pub baseline_ready: bool,
    /// A traffic anomaly of the dependency with an open alert (`traffic_drop` or
    /// `traffic_surge`). It does not change `state`: fewer or more calls say nothing of how
    /// the calls made fare, and a breaker opened on a drop would only cut what is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<DetectorKind>,
}

/// One dependency's detection state as the metrics exposition reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSummary {
    pub health: DependencyHealth,
    /// The baseline's tail latency (`detection.tail_quantile`), once the baseline is ready.
    pub baseline_tail_us: Option<u64>,
    /// Open incidents (one alert each) of the dependency and its instances, zones, sources.
    pub firing: usize,
    /// Start of the oldest healthy minute the day-long anchor holds (the slow-creep guard
    /// judges once it spans most of `baseline_max_age`).
    pub anchor_since_ms: Option<i64>,
}

/// What readers (the API, the dashboard, `/metrics`) see of the engine: taken after each
/// evaluation and published, so that a read never waits for an evaluation to finish (with
/// many series one takes a good part of a second) and an evaluation never waits for a read.
#[derive(Debug, Clone, Default)]
pub struct EngineView {
    pub health: BTreeMap<String, DependencyHealth>,
    pub baselines: BTreeMap<String, BaselineStats>,
    pub summaries: HashMap<String, DetectionSummary>,
}

type Key = (Scope, DetectorKind, Severity);

#[derive(Debug, Clone, Default)]
struct Tracked {
    machine: AlertMachine,
    /// The latest finding while firing (what updates and `resolved` report).
    fired: Option<Finding>,
}

#[derive(Debug, Clone)]
struct DependencyState {
    baseline: Baseline,
    /// The same healthy minutes over `baseline_max_age` (a day): the slow-creep guard.
    anchor: Anchor,
    /// One hysteresis machine per condition.
    tracked: BTreeMap<Key, Tracked>,
    /// The open incident of each subject.
    incidents: BTreeMap<Scope, Incident>,
    /// When each subject's last incident resolved: evidence from windows that began before
    /// then is the resolved incident's, and must not fire a new one.
    resolved_ms: BTreeMap<Scope, i64>,
    /// Last evaluation at which a dependency-wide condition that poisons the baseline (a
    /// baseline detector or a hard failure) was pending or firing.
    last_active_ms: i64,
    /// Minutes from this instant on are not learnt: an incident restored after a restart
    /// was open then.
    restored_since_ms: Option<i64>,
    /// Until when machines of baseline detectors hold without a verdict (set at the first
    /// evaluation after a restore): long enough to relearn, short enough that an alert never
    /// stays open for ever because its evidence cannot be judged.
    hold_until_ms: Option<i64>,
    health: DependencyHealth,
    /// What the detectors found at the last evaluation, before hysteresis.
    current: Conditions,
    /// The calls of the dependency's healthy minutes (see [`traffic`]).
    traffic: TrafficBaseline,
    /// Last minute the traffic baseline considered.
    traffic_minute_ms: i64,
    /// Last evaluation at which a traffic condition was pending or firing: minutes from
    /// then back are not learnt (a drop must not teach the baseline that it is usual).
    traffic_active_ms: i64,
    /// Sequential evidence on the per-second counts against the baseline: how soon a
    /// baseline detector's finding fires.
    sequential: sequential::Evidence,
}

impl DependencyState {
    fn new(settings: &DetectionSettings) -> Self {
        Self {
            baseline: Baseline::new(settings.baseline_minutes),
            anchor: Anchor::new(max_age_ms(settings)),
            tracked: BTreeMap::new(),
            incidents: BTreeMap::new(),
            resolved_ms: BTreeMap::new(),
            last_active_ms: i64::MIN,
            restored_since_ms: None,
            hold_until_ms: None,
            health: DependencyHealth::default(),
            current: Conditions::default(),
            traffic: TrafficBaseline::new(settings.baseline_minutes),
            traffic_minute_ms: i64::MIN,
            traffic_active_ms: i64::MIN,
            sequential: sequential::Evidence::default(),
        }
    }

    /// Whether a traffic condition is pending or firing.
    fn traffic_active(&self) -> bool {
        self.tracked
            .iter()
            .any(|((_, d, _), t)| d.is_traffic() && t.machine.is_active())
    }

    /// Whether anything is pending or firing.
    fn is_active(&self) -> bool {
        !self.incidents.is_empty() || self.tracked.values().any(|t| t.machine.is_active())
    }
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
                .filter(|(n, d)| d.is_active() && !store.contains(n))
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
        // A dependency without calls in the last minute has nothing for the detectors but its
        // silence: its peers are not read.
        let view = match store.active_detection_view(name, now) {
            Some(Ok(view)) => view,
            idle => {
                self.traffic_without_data(idle.and_then(Result::err), name, now, out);
                self.hold_without_data(name);
                return;
            }
        };
        let settings = &self.settings;
        let spec = self.specs.get(name);
        let state = self
            .deps
            .entry(name.to_string())
            .or_insert_with(|| DependencyState::new(settings));
        learn_baseline(state, store, name, now, settings);
        learn_traffic(state, store, name, now, settings);
        let baseline_ready = state
            .baseline
            .ready(settings.baseline_min_minutes, settings.baseline_min_calls)
            .is_some();

        let mut findings: HashMap<Key, Finding> = HashMap::new();
        let mut add = |scope: Scope, f: Finding| {
            findings.insert((scope, f.detector, f.severity), f);
        };
        // The minute windows share their histograms: wrapping them copies nothing.
        let (m1, m5) = (Sample::from(view.m1.clone()), Sample::from(view.m5.clone()));
        let total = Windows {
            s10: &view.s10,
            m1: &m1,
            m5: Some(&m5),
        };
        if let Some(base) = state
            .baseline
            .ready(settings.baseline_min_minutes, settings.baseline_min_calls)
        {
            state.sequential.observe(&view.last_second, &base);
            // Once a latency shift fires, it holds on lower effect floors (the square roots of
            // `rate_ratio` and `body_ratio`): a shift that grows slowly past the floor must not
            // resolve and fire again each time noise takes it back under.
            let latency_firing = state.tracked.iter().any(|((scope, d, _), t)| {
                *scope == Scope::Dependency
                    && *d == DetectorKind::LatencyTail
                    && t.machine.is_firing()
            });
            let holding = DetectionSettings {
                rate_ratio: settings.rate_ratio.sqrt(),
                body_ratio: settings.body_ratio.sqrt(),
                ..settings.clone()
            };
            let latency_settings = if latency_firing { &holding } else { settings };
            let found = [
                detectors::latency_tail(&total, &base, latency_settings),
                detectors::rate_rise(&total, &base, settings, false),
                detectors::rate_rise(&total, &base, settings, true),
            ];
            for mut f in found.into_iter().flatten() {
                let streams = sequential_streams(&f, &base);
                f.evidence["sequential"] = state.sequential.describe(&streams);
                add(Scope::Dependency, f);
            }
        }
        // How errors cluster on this dependency, as far as its baseline knows (learning or
        // ready): the windowed hard-failure rules count bad calls with it.
        let failure_dispersion = state
            .baseline
            .stats()
            .map_or(FailureDispersion::PRIOR, |b| FailureDispersion::of(&b));
        if let Some(f) = detectors::hard_failure(&total, settings, failure_dispersion) {
            add(Scope::Dependency, f);
        }
        // After the windowed verdict, so that it takes the condition's place when both hold.
        if let Some(f) = detectors::fast_hard_failure(&view.last_seconds, settings) {
            add(Scope::Dependency, f);
        }
        if let Some(spec) = spec {
            for f in detectors::spec_rules(&total, spec, settings) {
                add(Scope::Dependency, f);
            }
        }
        if let Some(base) = state.traffic.ready() {
            let (m1, m5) = (call_count("1m", &view.m1), call_count("5m", &view.m5));
            let found = [
                traffic::traffic_drop(m1, Some(m5), &base, settings.alpha),
                traffic::traffic_surge(m1, Some(m5), &base, settings.alpha),
            ];
            for f in found.into_iter().flatten() {
                add(Scope::Dependency, f);
            }
        }
        for (kind, peers) in [
            (SeriesKind::Instance, &view.instances),
            (SeriesKind::Zone, &view.zones),
            (SeriesKind::Source, &view.sources),
        ] {
            let scope = |n: &str| match kind {
                SeriesKind::Instance => Scope::Instance(n.to_string()),
                SeriesKind::Zone => Scope::Zone(n.to_string()),
                _ => Scope::Source(n.to_string()),
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
                if let Some(f) = detectors::peer_hard_failure(p, settings, failure_dispersion) {
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
        let absorbed = attribute(
            &mut findings,
            &state.tracked,
            !state.incidents.is_empty() && state.incidents.contains_key(&Scope::Dependency),
            state.resolved_ms.get(&Scope::Dependency).copied(),
            now,
            &view,
            settings,
        );
        // Evidence that lies before a subject's last resolution belongs to that incident.
        findings.retain(|(scope, _, _), f| {
            state
                .resolved_ms
                .get(scope)
                .is_none_or(|&resolved| now - f.window_ms() >= resolved)
        });
        let mut current = Conditions {
            known_instances: view.instances.len(),
            ..Conditions::default()
        };
        for (scope, detector, severity) in findings.keys() {
            if detector.is_traffic() {
                // Not a verdict on the calls themselves: breakers do not act on it.
                continue;
            }
            match scope {
                Scope::Dependency => current.dependency = current.dependency.max(Some(*severity)),
                Scope::Instance(i) => {
                    let e = current.instances.entry(i.clone()).or_insert(*severity);
                    *e = (*e).max(*severity);
                }
                // A zone's or a caller's problem opens no breaker of its own.
                Scope::Zone(_) | Scope::Source(_) => {}
            }
        }
        state.current = current;

        // Step every machine that has a finding or is not idle.
        let h = settings.hysteresis(spec);
        // Built only when an incident changes: most evaluations change nothing.
        let baseline = state.baseline.stats();
        let dependency_evidence = || {
            let mut extra = serde_json::json!({
                "window_stats_1m": serde_json::to_value(view.m1.stats()).unwrap_or_default(),
                "baseline": baseline,
            });
            if !absorbed.is_empty() {
                extra["absorbed"] = serde_json::json!(absorbed);
            }
            extra
        };
        if state.restored_since_ms.is_some() && state.hold_until_ms.is_none() {
            state.hold_until_ms = Some(now + RESTORE_HOLD_MS);
        }
        let hold = !baseline_ready && state.hold_until_ms.is_some_and(|t| now < t);
        step_machines(state, findings, hold, now, &h);
        step_incidents(name, state, Some(&dependency_evidence), now, out);
        let poisoned = state.tracked.iter().any(|((scope, detector, _), t)| {
            t.machine.is_active() && poisons_baseline(scope, *detector)
        });
        // A restored incident keeps its minutes out until it closes; from then on the
        // usual rule (minutes before the last suspicion are not learnt) takes over.
        let restored_open = state.restored_since_ms.is_some() && !state.incidents.is_empty();
        if poisoned || state.restored_since_ms.is_some() {
            state.last_active_ms = now;
        }
        if state.traffic_active() {
            state.traffic_active_ms = now;
        }
        if !restored_open {
            state.restored_since_ms = None;
            state.hold_until_ms = None;
        }
        state.health = health(state, settings);
    }

    /// Restores what an alert resolved before a restart tells the detection state: minutes
    /// until its resolution are not learnt when the baseline relearns from stored roll-ups
    /// (as they would not have been, live, had the daemon not restarted), and evidence from
    /// windows that began before the resolution cannot fire its subject again. Returns
    /// whether the alert was understood.
    pub fn restore_resolved(
        &mut self,
        dependency: &str,
        instance: Option<&str>,
        zone: Option<&str>,
        source: Option<&str>,
        detectors: &[String],
        resolved_ms: i64,
    ) -> bool {
        let Some((scope, kinds)) = stored_subject(instance, zone, source, detectors) else {
            return false;
        };
        let settings = &self.settings;
        let state = self
            .deps
            .entry(dependency.to_string())
            .or_insert_with(|| DependencyState::new(settings));
        if kinds.iter().any(|&d| poisons_baseline(&scope, d)) {
            state.last_active_ms = state.last_active_ms.max(resolved_ms);
        }
        if kinds.iter().any(|d| d.is_traffic()) {
            state.traffic_active_ms = state.traffic_active_ms.max(resolved_ms);
        }
        let at = state.resolved_ms.entry(scope).or_insert(resolved_ms);
        *at = (*at).max(resolved_ms);
        true
    }

    /// Restores an alert that was firing when the daemon stopped: it goes on firing (and
    /// resolves through the usual clear spell once its evidence has cleared) instead of being
    /// forgotten or fired twice. Its detectors are all of `detectors` (at least `detector`).
    /// Minutes from its start on are kept out of the baseline.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_firing(
        &mut self,
        dependency: &str,
        instance: Option<&str>,
        zone: Option<&str>,
        source: Option<&str>,
        detectors: &[String],
        severity: &str,
        started_ms: i64,
        summary: &str,
        evidence: serde_json::Value,
    ) -> bool {
        let Some(severity) = Severity::parse(severity) else {
            return false;
        };
        let Some((scope, kinds)) = stored_subject(instance, zone, source, detectors) else {
            return false;
        };
        let settings = &self.settings;
        let state = self
            .deps
            .entry(dependency.to_string())
            .or_insert_with(|| DependencyState::new(settings));
        // The degradation began before the alert fired: keep out the minutes it needed to.
        let since = started_ms - settings.fire_after.as_millis() as i64 - BASELINE_LAG_MS;
        state.restored_since_ms = Some(state.restored_since_ms.map_or(since, |s| s.min(since)));
        let mut conditions = BTreeMap::new();
        for (i, detector) in kinds.into_iter().enumerate() {
            // The stored severity is the incident's worst; its other detectors are taken as
            // degraded (their machines re-learn the truth at the next evaluations).
            let severity = if i == 0 { severity } else { Severity::Degraded };
            let finding = Finding {
                detector,
                severity,
                summary: summary.to_string(),
                evidence: evidence.clone(),
            };
            state.tracked.insert(
                (scope.clone(), detector, severity),
                Tracked {
                    machine: AlertMachine::firing_since(started_ms),
                    fired: Some(finding.clone()),
                },
            );
            conditions.insert((detector, severity), finding);
        }
        state.incidents.insert(
            scope,
            Incident {
                started_ms,
                conditions,
            },
        );
        state.health = health(state, settings);
        true
    }

    /// A dependency without calls in the last minute whose silence is itself news: when its
    /// traffic baseline makes a silent minute significant, the traffic-drop condition is
    /// judged (the other machines hold, see [`Engine::hold_without_data`]), so calls that stop
    /// alert even at a few calls a second, and the alert stays open while they stay away.
    fn traffic_without_data(
        &mut self,
        view: Option<IdleTotal>,
        name: &str,
        now: i64,
        out: &mut Vec<Transition>,
    ) {
        let settings = &self.settings;
        let Some(state) = self.deps.get_mut(name) else {
            return;
        };
        let Some(base) = state.traffic.ready() else {
            return;
        };
        let m1 = view.as_ref().map_or(
            traffic::CallCount {
                name: "1m",
                calls: 0,
                span_ms: MINUTE_MS,
            },
            |v| call_count("1m", &v.m1),
        );
        let m5 = view.as_ref().map(|v| call_count("5m", &v.m5));
        let finding = traffic::traffic_drop(m1, m5, &base, settings.alpha);
        let h = settings.hysteresis(self.specs.get(name));
        let keys: Vec<Key> = state
            .tracked
            .keys()
            .filter(|k| k.1.is_traffic())
            .cloned()
            .chain(
                finding
                    .iter()
                    .map(|f| (Scope::Dependency, f.detector, f.severity)),
            )
            .collect();
        for key in keys {
            let found = finding
                .as_ref()
                .filter(|f| (Scope::Dependency, f.detector, f.severity) == key)
                .cloned();
            let tracked = state.tracked.entry(key).or_default();
            match tracked.machine.step(found.is_some(), now, &h) {
                Step::Unchanged | Step::Fired { .. } => {
                    if tracked.machine.is_firing() && found.is_some() {
                        tracked.fired = found;
                    }
                }
                Step::Resolved { .. } => tracked.fired = None,
            }
        }
        state.tracked.retain(|_, t| t.machine.worth_keeping());
        step_incidents(name, state, None, now, out);
        if state.traffic_active() {
            state.traffic_active_ms = now;
        }
    }

    /// Whether a dependency must be evaluated even while it receives no calls: its silence
    /// would be a significant drop (a ready traffic baseline busy enough at its quiet end)
    /// and no traffic-drop alert is firing yet. Once one fires, holding is all an evaluation
    /// without data does, and the next call brings the dependency back anyway.
    pub fn watches_silence(&self, dependency: &str) -> bool {
        let Some(state) = self.deps.get(dependency) else {
            return false;
        };
        let firing = state
            .tracked
            .iter()
            .any(|((_, d, _), t)| *d == DetectorKind::TrafficDrop && t.machine.is_firing());
        !firing
            && state
                .traffic
                .ready()
                .is_some_and(|b| traffic::silence_is_significant(&b, self.settings.alpha))
    }

    /// A dependency without calls in the last minute: nothing can be judged, so every machine
    /// holds (an open alert stays open) and its health is `no_data`.
    fn hold_without_data(&mut self, name: &str) {
        let Some(state) = self.deps.get_mut(name) else {
            return;
        };
        state.current = Conditions::default();
        state.health = health(state, &self.settings);
        state.health.state = Health::NoData;
    }

    /// Health of every dependency that has been evaluated.
    /// What readers see until the next evaluation (see [`EngineView`]).
    pub fn view(&self) -> EngineView {
        EngineView {
            health: self.health(),
            baselines: self.baselines(),
            summaries: self.summaries(),
        }
    }

    pub fn health(&self) -> BTreeMap<String, DependencyHealth> {
        self.deps
            .iter()
            .map(|(k, v)| (k.clone(), v.health.clone()))
            .collect()
    }

    /// What `GET /metrics` exports of every evaluated dependency.
    pub fn summaries(&self) -> HashMap<String, DetectionSummary> {
        let s = &self.settings;
        self.deps
            .iter()
            .map(|(k, v)| {
                let summary = DetectionSummary {
                    health: v.health.clone(),
                    baseline_tail_us: v
                        .baseline
                        .ready(s.baseline_min_minutes, s.baseline_min_calls)
                        .map(|b| b.tail_us),
                    firing: v.incidents.len(),
                    anchor_since_ms: v.anchor.since_ms(),
                };
                (k.clone(), summary)
            })
            .collect()
    }

    /// Health and raw conditions of every evaluated dependency at the last evaluation, by
    /// name. Borrowed: the breaker board reads them every second, and copies of a hundred
    /// dependencies' maps cost more than the rest of its step.
    pub fn conditions(&self) -> Vec<(&str, &DependencyHealth, &Conditions)> {
        let mut out: Vec<_> = self
            .deps
            .iter()
            .map(|(k, v)| (k.as_str(), &v.health, &v.current))
            .collect();
        out.sort_unstable_by_key(|c| c.0);
        out
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
            .retain(|name, d| d.is_active() || store.contains(name));
    }

    /// Dependencies whose state [`Engine::forget_missing`] would drop: gone from the store,
    /// no open or pending alert.
    pub fn missing(&self, store: &WindowStore) -> Vec<String> {
        self.deps
            .iter()
            .filter(|(name, d)| !d.is_active() && !store.contains(name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether the engine holds state for the dependency.
    pub fn knows(&self, dependency: &str) -> bool {
        self.deps.contains_key(dependency)
    }

    /// Drops a dependency's state (its baseline, its hysteresis); see [`Engine::missing`].
    pub fn forget(&mut self, dependency: &str) -> bool {
        self.deps.remove(dependency).is_some()
    }

    /// An empty anchor as this engine keeps them, for [`Engine::prime_anchor`].
    pub fn new_anchor(&self) -> Anchor {
        Anchor::new(max_age_ms(&self.settings))
    }

    /// Puts an anchor built from healthy minutes older than what the windows hold (after a
    /// restart, the stored roll-ups of the last day) before the dependency's own; see
    /// [`Anchor::prepend`]. The caller leaves out the minutes of incidents, as
    /// [`Engine::keeps_minutes_out`] says.
    pub fn prime_anchor(&mut self, dependency: &str, older: Anchor, now_ms: i64) {
        let settings = &self.settings;
        let state = self
            .deps
            .entry(dependency.to_string())
            .or_insert_with(|| DependencyState::new(settings));
        state.anchor.prepend(older, settings.tail_quantile, now_ms);
    }

    /// The detection settings' tail quantile (what anchors summarise).
    pub fn tail_quantile(&self) -> f64 {
        self.settings.tail_quantile
    }

    /// Whether the minutes of a stored alert (its subject and detectors) stay out of the
    /// dependency's baseline and anchor: those of a baseline detector or of a hard failure of
    /// the dependency as a whole.
    pub fn keeps_minutes_out(
        instance: Option<&str>,
        zone: Option<&str>,
        source: Option<&str>,
        detectors: &[String],
    ) -> bool {
        stored_subject(instance, zone, source, detectors)
            .is_some_and(|(scope, kinds)| kinds.iter().any(|&d| poisons_baseline(&scope, d)))
    }
}

/// The subject and the known detectors of a stored alert; `None` when it names no detector
/// this version knows.
fn stored_subject(
    instance: Option<&str>,
    zone: Option<&str>,
    source: Option<&str>,
    detectors: &[String],
) -> Option<(Scope, Vec<DetectorKind>)> {
    let kinds: Vec<DetectorKind> = detectors
        .iter()
        .filter_map(|d| DetectorKind::parse(d))
        .collect();
    if kinds.is_empty() {
        return None;
    }
    Some((Scope::of(instance, zone, source), kinds))
}

/// How long, after a restart, an alert of a baseline detector holds while the baseline
/// relearns: the least healthy minutes the baseline needs (5 by default), the lag before a
/// minute is learnt, and a margin.
const RESTORE_HOLD_MS: i64 = 10 * MINUTE_MS;

/// Whether a pending or firing condition keeps the dependency's minutes out of its baseline:
/// baseline detectors and hard failures of the dependency as a whole (also when attribution
/// moved them to the one instance or zone that causes them). Local, spec and peer conditions
/// do not: a slow instance or a strict envelope must not freeze what "usual" means.
fn poisons_baseline(scope: &Scope, detector: DetectorKind) -> bool {
    match detector {
        DetectorKind::LatencyTail | DetectorKind::ErrorRate | DetectorKind::TimeoutRate => true,
        DetectorKind::HardFailure => *scope == Scope::Dependency,
        _ => false,
    }
}

/// Whether a detector judges against the learned baseline (and so cannot judge before it is
/// ready).
fn needs_baseline(detector: DetectorKind) -> bool {
    matches!(
        detector,
        DetectorKind::LatencyTail
            | DetectorKind::ErrorRate
            | DetectorKind::TimeoutRate
            | DetectorKind::TrafficDrop
            | DetectorKind::TrafficSurge
    )
}

/// The sequential statistics behind a baseline detector's finding: for a latency shift, those
/// of the quantiles found shifted.
fn sequential_streams(f: &Finding, base: &BaselineStats) -> Vec<Stream> {
    match f.detector {
        DetectorKind::ErrorRate => vec![Stream::Errors],
        DetectorKind::TimeoutRate => vec![Stream::Timeouts],
        _ => {
            let shifted = f.evidence["shifted_quantiles"]
                .as_array()
                .map_or(&[][..], |v| v.as_slice());
            let is_shifted = |q: f64| {
                shifted
                    .iter()
                    .any(|s| s["quantile"] == detectors::quantile_name(q))
            };
            (0..base.quantiles.len())
                .filter(|&i| is_shifted(base.quantiles[i].quantile))
                .map(Stream::Slower)
                .collect()
        }
    }
}

/// A window's calls for the traffic detectors.
fn call_count(name: &'static str, w: &Snapshot) -> traffic::CallCount {
    traffic::CallCount {
        name,
        calls: w.total(),
        span_ms: w.to_ms - w.from_ms,
    }
}

/// Steps every machine that has a finding or is not idle. With `hold` (after a restart, while
/// the baseline relearns), a machine of a baseline detector holds: no verdict is not a clear
/// verdict. Machines that fired recently are kept while inactive, so flap damping lengthens
/// the next resolve delay.
fn step_machines(
    state: &mut DependencyState,
    mut findings: HashMap<Key, Finding>,
    hold: bool,
    now: i64,
    h: &Hysteresis,
) {
    let mut keys: Vec<Key> = state.tracked.keys().cloned().collect();
    keys.extend(
        findings
            .keys()
            .filter(|k| !state.tracked.contains_key(*k))
            .cloned(),
    );
    for key in keys {
        let finding = findings.remove(&key);
        if finding.is_none() && hold && needs_baseline(key.1) {
            continue;
        }
        // Evidence that is conclusive by itself (a hard failure over two whole seconds)
        // needs no hold: the breakers of clients wait on it.
        let crossed = finding.as_ref().is_some_and(Finding::sequential_crossed);
        let fast;
        let h = if finding.as_ref().is_some_and(Finding::is_fast) {
            fast = Hysteresis {
                fire_after_ms: 0,
                ..*h
            };
            &fast
        } else {
            h
        };
        let tracked = state.tracked.entry(key).or_default();
        match tracked
            .machine
            .step_with(finding.is_some(), crossed, now, h)
        {
            Step::Unchanged | Step::Fired { .. } => {
                if tracked.machine.is_firing() && finding.is_some() {
                    tracked.fired = finding;
                }
            }
            Step::Resolved { .. } => tracked.fired = None,
        }
    }
    state.tracked.retain(|_, t| t.machine.worth_keeping());
}

/// Groups the firing machines of each subject into its incident and emits what changed.
/// Dependency incidents get `dependency_evidence` (window stats, baseline) merged in.
fn step_incidents(
    name: &str,
    state: &mut DependencyState,
    dependency_evidence: Option<&dyn Fn() -> serde_json::Value>,
    now: i64,
    out: &mut Vec<Transition>,
) {
    let mut firing: BTreeMap<Scope, BTreeMap<(DetectorKind, Severity), Finding>> = BTreeMap::new();
    for ((scope, detector, severity), t) in &state.tracked {
        if let (true, Some(f)) = (t.machine.is_firing(), &t.fired) {
            firing
                .entry(scope.clone())
                .or_default()
                .insert((*detector, *severity), f.clone());
        }
    }
    let mut scopes: Vec<Scope> = state.incidents.keys().cloned().collect();
    scopes.extend(firing.keys().cloned());
    scopes.sort();
    scopes.dedup();
    for scope in scopes {
        let mut slot = state.incidents.remove(&scope);
        let change = incident::step(&mut slot, firing.remove(&scope).unwrap_or_default(), now);
        let Some(open) = slot else { continue };
        let (status, previous, resolved) = match change {
            None => {
                state.incidents.insert(scope, open);
                continue;
            }
            Some(Change::Fired) => (AlertStatus::Firing, None, None),
            Some(Change::Updated { previous_severity }) => {
                (AlertStatus::Updated, Some(previous_severity), None)
            }
            Some(Change::Resolved) => (AlertStatus::Resolved, None, Some(now)),
        };
        let mut evidence = open.evidence();
        if let (Scope::Dependency, Some(extra)) = (&scope, dependency_evidence)
            && let serde_json::Value::Object(extra) = extra()
        {
            for (k, v) in extra {
                evidence[k] = v;
            }
        }
        let (mut instance, mut zone, mut source) = (None, None, None);
        match &scope {
            Scope::Dependency => {}
            Scope::Instance(i) => instance = Some(i.clone()),
            Scope::Zone(z) => zone = Some(z.clone()),
            Scope::Source(c) => source = Some(c.clone()),
        }
        let detectors = open.detectors();
        out.push(Transition {
            at_ms: now,
            status,
            dependency: name.to_string(),
            instance,
            zone,
            source,
            detector: detectors[0],
            detectors,
            severity: open.severity(),
            previous_severity: previous,
            summary: open.summary(),
            evidence,
            started_ms: open.started_ms,
            resolved_ms: resolved,
        });
        if status == AlertStatus::Resolved {
            // An instance, zone or source that held the dependency's own conditions (moved
            // there by attribution) took its evidence along: the dependency must not fire on it next.
            // So did one that held only peer conditions at the end: the dependency's long
            // windows still hold its calls.
            if scope != Scope::Dependency {
                state.resolved_ms.insert(Scope::Dependency, now);
            }
            state.resolved_ms.insert(scope, now);
        } else {
            state.incidents.insert(scope, open);
        }
    }
}

/// Detector families: a dependency-wide and a local condition of the same family may be one
/// problem seen from two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Latency,
    Failures,
    /// Always the dependency's own: no instance or zone explains a change of its calls.
    Traffic,
}

fn family(d: DetectorKind) -> Family {
    match d {
        DetectorKind::LatencyTail
        | DetectorKind::SlowCalls
        | DetectorKind::SloLatency
        | DetectorKind::PeerLatency => Family::Latency,
        DetectorKind::ErrorRate
        | DetectorKind::TimeoutRate
        | DetectorKind::SloErrors
        | DetectorKind::SloTimeouts
        | DetectorKind::PeerErrors
        | DetectorKind::HardFailure => Family::Failures,
        DetectorKind::TrafficDrop | DetectorKind::TrafficSurge => Family::Traffic,
    }
}

/// Decides, per family, whether the dependency or a local subject owns its conditions, so
/// that one problem is one incident. Local subjects count when they have a finding now or an
/// active machine (a finding that flickers keeps its owner).
///
/// - One local subject (instance, zone or source) that holds at least half of the
///   dependency's offending calls of the family over the last minute, with other peers of
///   its kind judged: the cause is local. Places (instances and zones) and callers are
///   weighed apart: a caller's calls spread over every instance, so one bad place and one
///   bad caller are each the single suspect of their own kind. The dependency's conditions of the family move to it (one
///   slow replica of two drags the dependency's tail too).
/// - Otherwise, when the dependency has a condition of the family (now or active) or an
///   open incident, the problem is dependency-wide: local conditions of the family go, and
///   the subjects they named are returned, to be listed in the dependency incident's evidence.
fn attribute(
    findings: &mut HashMap<Key, Finding>,
    tracked: &BTreeMap<Key, Tracked>,
    dependency_incident_open: bool,
    dependency_resolved_ms: Option<i64>,
    now: i64,
    view: &DetectionView,
    settings: &DetectionSettings,
) -> Vec<String> {
    let (min_calls, alpha) = (settings.peer_min_calls, settings.alpha);
    let mut absorbed = Vec::new();
    let active = |k: &&Key| tracked.get(*k).is_some_and(|t| t.machine.is_active());
    // Subjects under suspicion for any reason: one bad instance may show only slow calls
    // itself while its errors are too few to judge alone, yet explain the dependency's rise.
    let mut suspects: Vec<Scope> = findings
        .keys()
        .chain(tracked.keys().filter(active))
        .filter(|k| k.0 != Scope::Dependency)
        .map(|k| k.0.clone())
        .collect();
    suspects.sort();
    suspects.dedup();
    for fam in [Family::Latency, Family::Failures] {
        let in_family = |k: &Key| family(k.1) == fam;
        let mut local: Vec<Scope> = findings
            .keys()
            .chain(tracked.keys().filter(active))
            .filter(|k| in_family(k) && k.0 != Scope::Dependency)
            .map(|k| k.0.clone())
            .collect();
        local.sort();
        local.dedup();
        let dependency_wide = dependency_incident_open
            || findings
                .keys()
                .chain(tracked.keys().filter(active))
                .any(|k| in_family(k) && k.0 == Scope::Dependency);
        if !dependency_wide {
            continue;
        }
        let dependency_findings: Vec<&Finding> = findings
            .iter()
            .filter(|(k, _)| in_family(k) && k.0 == Scope::Dependency)
            .map(|(_, f)| f)
            .collect();
        // With `level`, a peer no detector flagged must also stand out significantly from
        // the rest.
        let explained_at = |scope: &Scope, level: Option<f64>| {
            let Some((peers, name)) = peers_of(view, scope) else {
                return false;
            };
            explains(
                fam,
                peers,
                name,
                &view.m1,
                &dependency_findings,
                min_calls,
                level,
            )
        };
        let explained_by = |scope: &Scope| explained_at(scope, None);
        let significantly_explained_by = |scope: &Scope| explained_at(scope, Some(alpha));
        // A peer that already leans that way: its own test needs some seconds more.
        let plausibly_explained_by =
            |scope: &Scope| explained_at(scope, Some(PLAUSIBLE_CAUSE_LEVEL));
        // The one suspect, when it explains the dependency's findings; else, when no peer
        // detector has spoken yet (a dependency-wide shift is seen in seconds, a peer's in
        // its minute), the one peer whose calls explain them.
        let owner = single_suspects(&suspects, view)
            .into_iter()
            .find(|s| explained_by(s))
            .cloned()
            .or_else(|| {
                // Only on fresh evidence: findings of the long windows after a recovery, or
                // from before the dependency's last resolution, must not move to whichever
                // peer their remains happen to favour.
                let fresh = |f: &&Finding| {
                    f.window_ms() <= MINUTE_MS
                        && dependency_resolved_ms.is_none_or(|r| now - f.window_ms() >= r)
                };
                if dependency_findings.is_empty() || !dependency_findings.iter().all(fresh) {
                    return None;
                }
                explaining_peer_of_any_kind(view, &significantly_explained_by, min_calls)
            });
        let local_cause = owner.is_some();
        if local_cause {
            local = suspects.clone();
        } else if !dependency_findings.is_empty() {
            // No owner yet, but one peer plausibly is: the dependency's conditions wait out
            // the longest hold instead of firing on sequential evidence, giving the peer's
            // evidence the seconds it needs, so that one problem does not page twice.
            let plausible = explaining_peer_of_any_kind(view, &plausibly_explained_by, min_calls);
            if plausible.is_some() {
                for (k, f) in findings.iter_mut() {
                    if k.0 == Scope::Dependency && in_family(k) && f.sequential_crossed() {
                        f.evidence["sequential"]["crossed"] = serde_json::json!(false);
                        f.evidence["sequential"]["held_for_local_cause"] = serde_json::json!(true);
                    }
                }
            }
        }
        let keys: Vec<Key> = findings.keys().filter(|k| in_family(k)).cloned().collect();
        for key in keys {
            match (&key.0, &owner) {
                (Scope::Dependency, Some(owner)) => {
                    let f = findings.remove(&key).expect("listed above");
                    findings.insert((owner.clone(), key.1, key.2), f);
                }
                (Scope::Instance(_) | Scope::Zone(_) | Scope::Source(_), None) => {
                    findings.remove(&key);
                }
                _ => {}
            }
        }
        if !local_cause {
            for scope in local.iter().filter(|s| **s != Scope::Dependency) {
                let label = scope.label();
                if !absorbed.contains(&label) {
                    absorbed.push(label);
                }
            }
        }
    }
    absorbed
}

/// Significance at which a peer not yet flagged counts as a plausible cause of a dependency's
/// shift (see [`attribute`]).
const PLAUSIBLE_CAUSE_LEVEL: f64 = 0.05;

/// The one peer (instance or zone, by `scope`) among those judged whose calls explain the
/// dependency's findings (see [`explains`]); `None` when none or several do.
fn explaining_peer(
    peers: &[PeerView],
    scope: fn(String) -> Scope,
    explained_by: &dyn Fn(&Scope) -> bool,
    min_calls: u64,
) -> Option<Scope> {
    let mut found = peers
        .iter()
        .filter(|p| p.m1.total() >= min_calls)
        .map(|p| scope(p.name.to_string()))
        .filter(|s| explained_by(s));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// The peers of the family of `scope`, with the peer's name; `None` for the dependency.
fn peers_of<'v, 's>(
    view: &'v DetectionView,
    scope: &'s Scope,
) -> Option<(&'v [PeerView], &'s str)> {
    match scope {
        Scope::Instance(name) => Some((&view.instances, name)),
        Scope::Zone(name) => Some((&view.zones, name)),
        Scope::Source(name) => Some((&view.sources, name)),
        Scope::Dependency => None,
    }
}

/// [`explaining_peer`] among instances, then zones, then sources: the first family with
/// exactly one explaining peer names it.
fn explaining_peer_of_any_kind(
    view: &DetectionView,
    explained_by: &dyn Fn(&Scope) -> bool,
    min_calls: u64,
) -> Option<Scope> {
    explaining_peer(&view.instances, Scope::Instance, explained_by, min_calls)
        .or_else(|| explaining_peer(&view.zones, Scope::Zone, explained_by, min_calls))
        .or_else(|| explaining_peer(&view.sources, Scope::Source, explained_by, min_calls))
}

/// The subjects that are alone under suspicion in their kind, the place (instance or zone)
/// first, then the caller: a bad caller's calls reach every instance, so a suspected place
/// and a suspected caller do not make each other ambiguous; which one explains the
/// dependency's findings decides.
fn single_suspects<'a>(suspects: &'a [Scope], view: &DetectionView) -> Vec<&'a Scope> {
    let (sources, places): (Vec<&Scope>, Vec<&Scope>) =
        suspects.iter().partition(|s| matches!(s, Scope::Source(_)));
    let mut out: Vec<&Scope> = single_place(&places, view).into_iter().collect();
    if let [only] = sources.as_slice() {
        out.push(only);
    }
    out
}

/// The one place under suspicion: one instance (its own zone may be suspected too, as a bad
/// instance makes its zone look bad), or one zone.
fn single_place<'a>(suspects: &[&'a Scope], view: &DetectionView) -> Option<&'a Scope> {
    let instances: Vec<&Scope> = suspects
        .iter()
        .copied()
        .filter(|s| matches!(s, Scope::Instance(_)))
        .collect();
    match instances.as_slice() {
        [] => match suspects {
            [zone] => Some(*zone),
            _ => None,
        },
        [only @ Scope::Instance(name)] => {
            let zone = view
                .instances
                .iter()
                .find(|p| *p.name == **name)
                .and_then(|p| p.zone)
                .map(|z| &*view.zones[z].name);
            let others_in_its_zone = suspects.iter().all(|s| match s {
                Scope::Zone(z) => Some(z.as_str()) == zone,
                _ => true,
            });
            others_in_its_zone.then_some(*only)
        }
        _ => None,
    }
}

/// Whether peer `name` explains the dependency's findings of family `fam`: other peers of
/// its kind are judged, and without the peer's calls of the last minute the rest of the
/// dependency keeps less than half of each finding's excess over its reference rate (the
/// rest would not have fired). Findings without a reference (hard failures) are never
/// explained by one peer; with no dependency finding now, an active one is taken as
/// explained when the peer holds half the offending calls. With `significance`, the peer's
/// share of offending calls must also be above the rest's by a two-proportion test at that
/// level (for a peer that no peer detector has flagged yet).
fn explains(
    fam: Family,
    peers: &[PeerView],
    name: &str,
    total: &Snapshot,
    dependency_findings: &[&Finding],
    min_calls: u64,
    significance: Option<f64>,
) -> bool {
    if fam == Family::Traffic || peers.iter().filter(|p| p.m1.total() >= min_calls).count() < 2 {
        return false;
    }
    let Some(peer) = peers.iter().find(|p| &*p.name == name) else {
        return false;
    };
    // Offending calls of the dependency and of the peer, given a latency threshold.
    let offending = |threshold_us: Option<u64>| match (fam, threshold_us) {
        (Family::Failures | Family::Traffic, _) => (
            total.counts.error + total.counts.timeout,
            peer.m1.counts().error + peer.m1.counts().timeout,
        ),
        (Family::Latency, Some(t)) => (total.count_above(t), peer.m1.count_above(t)),
        (Family::Latency, None) => {
            let p99 = if total.hist.is_empty() {
                u64::MAX
            } else {
                total.hist.value_at_quantile(0.99)
            };
            (total.count_above(p99), peer.m1.count_above(p99))
        }
    };
    // The calls those are a share of: latency is of the successful calls only.
    let (n, local_n) = if fam == Family::Latency {
        (total.successful(), peer.m1.successful())
    } else {
        (total.total(), peer.m1.total())
    };
    if dependency_findings.is_empty() {
        let (all, local) = offending(None);
        return all > 0 && 2 * local >= all;
    }
    dependency_findings.iter().all(|f| {
        let Some(reference) = f.evidence.get("reference_rate").and_then(|v| v.as_f64()) else {
            return false;
        };
        // A latency shift names the quantile it found shifted (the body's p50 or p90, the
        // p99, the far tail's p99.9): the peer must explain the share above that one.
        let threshold_ms = [
            "threshold_ms",
            "baseline_p99_ms",
            "slow_call_ms",
            "bound_p99_ms",
        ]
        .iter()
        .find_map(|k| f.evidence.get(*k).and_then(|v| v.as_f64()));
        let (all, local) = offending(threshold_ms.map(|ms| (ms * 1000.0) as u64));
        if n <= local_n || all == 0 {
            return false;
        }
        let rate = all as f64 / n as f64;
        let local = local.min(all);
        let rest = (all - local) as f64 / (n - local_n) as f64;
        let stands_out = significance.is_none_or(|alpha| {
            two_proportion_p_value(local, local_n, all - local, n - local_n) < alpha
        });
        stands_out && rest - reference <= (rate - reference) / 2.0
    })
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
        |peers: &[PeerView], name: &str| peers.binary_search_by(|p| (*p.name).cmp(name)).ok();
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
    // What is older than `baseline_max_age` is forgotten even when nothing new is learnt
    // (a long incident or a long silence).
    state.baseline.expire(now, max_age_ms(s));
    state.anchor.expire(now);
    let newest = (now - BASELINE_LAG_MS).div_euclid(MINUTE_MS) * MINUTE_MS - MINUTE_MS;
    // The first time, learn from all the minutes the store holds (roll-ups reloaded after a
    // restart); then only the few that completed since the last evaluation.
    let lookback = if state.baseline.last_minute_ms == i64::MIN {
        i64::from(s.baseline_minutes) * MINUTE_MS
    } else {
        5 * MINUTE_MS
    };
    let oldest = state
        .baseline
        .last_minute_ms
        .saturating_add(MINUTE_MS)
        .max(newest - lookback);
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
        // Skip minutes during or after which something was suspected, and those of an
        // incident restored after a restart.
        if state.last_active_ms >= minute
            || snap.total() == 0
            || state
                .restored_since_ms
                .is_some_and(|since| minute + MINUTE_MS > since)
        {
            continue;
        }
        // A minute that is itself clearly worse than the baseline does not join it, so a
        // slow creep cannot teach the baseline its own decay.
        if let Some(base) = state
            .baseline
            .ready(s.baseline_min_minutes, s.baseline_min_calls)
            && worse_than_baseline(&snap, &base)
        {
            continue;
        }
        // Nor one clearly worse than the dependency stood over the last day: a creep too slow
        // for the 30-minute baseline to see moves it, but not the anchor.
        if let Some(anchor) = state.anchor.ready(snap.to_ms)
            && worse_than_anchor(&snap, &anchor, state.baseline.stats(), s.tail_quantile)
        {
            continue;
        }
        state.baseline.absorb(&snap, s.tail_quantile);
        state.anchor.absorb(&snap, s.tail_quantile);
    }
}

fn max_age_ms(s: &DetectionSettings) -> i64 {
    i64::try_from(s.baseline_max_age.as_millis()).unwrap_or(i64::MAX)
}

/// Feeds completed minutes into the traffic baseline: the calls of each minute, silent
/// minutes included once the dependency has been seen (a caller that comes and goes is
/// usual for it), except minutes during or after which a traffic condition was active, or
/// an incident restored after a restart was open.
fn learn_traffic(
    state: &mut DependencyState,
    store: &WindowStore,
    name: &str,
    now: i64,
    s: &DetectionSettings,
) {
    let newest = (now - BASELINE_LAG_MS).div_euclid(MINUTE_MS) * MINUTE_MS - MINUTE_MS;
    if state.traffic_minute_ms >= newest {
        return;
    }
    // The minute ring holds 16 minutes: older ones are unknown here, not silent.
    let lookback = i64::from(s.baseline_minutes).min(TRAFFIC_LOOKBACK_MINUTES) * MINUTE_MS;
    let oldest = state
        .traffic_minute_ms
        .saturating_add(MINUTE_MS)
        .max(newest - lookback);
    state.traffic_minute_ms = newest;
    if state.traffic_active() {
        state.traffic_active_ms = now;
    }
    let key = SeriesKey {
        dependency: name.to_string(),
        kind: SeriesKind::Dependency,
        label: String::new(),
    };
    let Some(buckets) = store.buckets(&key, 1, oldest, newest, now) else {
        return;
    };
    let mut minute = oldest;
    while minute <= newest {
        let calls = buckets.get(&minute).map_or(0, Snapshot::total);
        let skip = state.traffic_active_ms >= minute
            || (calls == 0 && state.traffic.is_empty())
            || state
                .restored_since_ms
                .is_some_and(|since| minute + MINUTE_MS > since);
        if !skip {
            state.traffic.absorb(calls);
        }
        minute += MINUTE_MS;
    }
}

/// Most minutes back the traffic baseline reads at once (the store's minute ring).
const TRAFFIC_LOOKBACK_MINUTES: i64 = 15;

/// How much worse than the baseline a minute's rate must be, and how significantly, to be
/// kept out of it. Looser than the detectors (a minute left out costs nothing), but with an
/// effect floor so that ordinary minute-to-minute noise still joins.
const CREEP_RATIO: f64 = 1.25;
const CREEP_ALPHA: f64 = 1e-3;
const CREEP_MIN_CALLS: u64 = 5;

/// The creep guards' test: `k` of `n` calls at least `ratio` times the reference rate `p0`,
/// and significantly above it (quasi-binomial with dispersion `phi`). Latency shares count
/// among the successful calls, errors and timeouts among all.
fn creep_worse(k: u64, n: u64, p0: f64, ratio: f64, phi: f64) -> bool {
    k >= CREEP_MIN_CALLS
        && k as f64 >= p0 * ratio * n as f64
        && quasi_binomial_upper_p_value(k, n, p0, phi) < CREEP_ALPHA
}

/// Whether a completed minute is significantly worse than the baseline: more calls slower
/// than the baseline's tail quantile, or more errors or timeouts (one-sided binomial tests).
fn worse_than_baseline(minute: &Snapshot, base: &BaselineStats) -> bool {
    let (n, timed) = (minute.total(), minute.successful());
    // Errors and timeouts with the baseline's dispersion, as the detectors judge them, but
    // never below the prior's: a minute holding one retried request is a usual minute, and
    // must be learnt for the baseline to know that its errors come in bursts. Judged with the
    // baseline's own estimate, a baseline that happened to learn only independent errors
    // (phi near 1) would turn away every burst after, and never learn how its errors cluster.
    let worse = |k: u64, p0: f64, phi: f64| creep_worse(k, n, p0, CREEP_RATIO, phi);
    creep_worse(
        minute.count_above(base.tail_us),
        timed,
        base.tail_share,
        CREEP_RATIO,
        1.0,
    ) || worse(
        minute.counts.error,
        base.error_rate,
        base.error_dispersion.max(PRIOR_DISPERSION),
    ) || worse(
        minute.counts.timeout,
        base.timeout_rate,
        base.timeout_dispersion.max(PRIOR_DISPERSION),
    )
}

/// Against the anchor the bar is higher than against the baseline (it spans a whole day, so
/// a busy hour's minutes differ from it more than from the last half hour): the minute's
/// tail quantile must reach 1.25x the anchor's and its share above it twice the anchor's, or
/// its errors or timeouts 1.5x the anchor's rate, each significant as in the creep guard.
const ANCHOR_TAIL_RATIO: f64 = 1.25;
const ANCHOR_SHARE_RATIO: f64 = 2.0;
const ANCHOR_RATE_RATIO: f64 = 1.5;

/// Whether a completed minute is significantly worse than the anchor (the last day).
fn worse_than_anchor(
    minute: &Snapshot,
    anchor: &AnchorStats,
    base: Option<BaselineStats>,
    tail_quantile: f64,
) -> bool {
    let (n, timed) = (minute.total(), minute.successful());
    if n == 0 {
        return false;
    }
    let worse = |k: u64, p0: f64, ratio: f64, phi: f64| creep_worse(k, n, p0, ratio, phi);
    // Errors cluster as the baseline has seen them cluster, and at least as the prior says
    // (as in the baseline's own guard).
    let (error_phi, timeout_phi) = base.map_or((PRIOR_DISPERSION, PRIOR_DISPERSION), |b| {
        (
            b.error_dispersion.max(PRIOR_DISPERSION),
            b.timeout_dispersion.max(PRIOR_DISPERSION),
        )
    });
    // A minute without a successful call has no tail to judge (its failures are judged).
    let tail = !minute.hist.is_empty()
        && minute.hist.value_at_quantile(tail_quantile) as f64
            >= ANCHOR_TAIL_RATIO * anchor.tail_us as f64
        && creep_worse(
            minute.count_above(anchor.tail_us),
            timed,
            anchor.tail_share,
            ANCHOR_SHARE_RATIO,
            1.0,
        );
    tail || worse(
        minute.counts.error,
        anchor.error_rate,
        ANCHOR_RATE_RATIO,
        error_phi,
    ) || worse(
        minute.counts.timeout,
        anchor.timeout_rate,
        ANCHOR_RATE_RATIO,
        timeout_phi,
    )
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
    for (scope, incident) in &state.incidents {
        // Traffic conditions alert but leave the health alone (see `DependencyHealth`).
        let own = incident
            .conditions
            .keys()
            .filter(|(d, _)| !d.is_traffic())
            .map(|(_, s)| *s)
            .max();
        if *scope == Scope::Dependency {
            out.traffic = incident
                .conditions
                .keys()
                .map(|(d, _)| *d)
                .find(|d| d.is_traffic());
        }
        let Some(own) = own else { continue };
        let h = Health::from(own);
        let slot = match scope {
            Scope::Dependency => &mut out.state,
            Scope::Instance(i) => out.instances.entry(i.clone()).or_default(),
            Scope::Zone(z) => out.zones.entry(z.clone()).or_default(),
            Scope::Source(c) => out.sources.entry(c.clone()).or_default(),
        };
        *slot = (*slot).max(h);
    }
    // A problem of one instance or zone degrades the dependency as a whole too; one of a
    // caller does not (see `DependencyHealth::sources`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DependencyName, Event, Outcome};
    use crate::window::Limits;

    const T0: i64 = 1_800_000_000_000;

    /// `n` healthy 20 ms calls of `name` spread over the second starting at `at_ms`.
    fn feed(store: &WindowStore, name: &str, at_ms: i64, n: i64) {
        for i in 0..n {
            let e = Event {
                dependency: DependencyName::parse(name).expect("valid name"),
                duration_us: 20_000 + (i as u64 % 7) * 1_000,
                outcome: Outcome::Ok,
                ts_ms: at_ms + i * 1000 / n,
                instance: None,
                zone: None,
                source: None,
            };
            store.record(&e, at_ms + 999).expect("recorded");
        }
    }

    /// Which of a call's instance (of 6), zone (of 3) and caller fails: the fault of a
    /// stream of [`run_with_callers`].
    #[derive(Clone, Copy)]
    enum Bad {
        Caller(usize),
        Instance(usize),
        Everyone,
    }

    const CALLERS: [&str; 4] = ["checkout", "search", "billing-batch", "mobile-bff"];

    /// Twelve healthy minutes at 120 calls/s from four callers over six instances in three
    /// zones (0.2% errors), then four minutes in which `bad` fails `rate` of its calls, then
    /// six healthy minutes, evaluated every second. Returns every transition, the health and
    /// raw conditions at the end of the fault, and the fault's start.
    fn run_with_callers(
        bad: Bad,
        rate: f64,
    ) -> (Vec<Transition>, DependencyHealth, Conditions, i64) {
        let store = WindowStore::new(Limits::default());
        let mut engine = Engine::new(DetectionSettings::default(), Specs::default());
        let (onset, recovery, end) = (T0 + 12 * 60_000, T0 + 16 * 60_000, T0 + 22 * 60_000);
        let mut out = Vec::new();
        let mut at_fault_end = None;
        // A fixed pseudo-random sequence, so that runs repeat exactly.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut now = T0;
        while now < end {
            for i in 0..120i64 {
                let (caller, instance) = ((i % 4) as usize, ((i / 4) % 6) as usize);
                let faulty = (onset..recovery).contains(&now)
                    && match bad {
                        Bad::Caller(c) => c == caller,
                        Bad::Instance(n) => n == instance,
                        Bad::Everyone => true,
                    };
                let p = if faulty { rate } else { 0.002 };
                let label = |s: String| Some(crate::domain::Label::parse(s).expect("valid"));
                let e = Event {
                    dependency: DependencyName::parse("ledger").expect("valid name"),
                    duration_us: 15_000 + (uniform() * 10_000.0) as u64,
                    outcome: if uniform() < p {
                        Outcome::Error
                    } else {
                        Outcome::Ok
                    },
                    ts_ms: now + i * 1000 / 120,
                    instance: label(format!("i-{instance}")),
                    zone: label(format!("z-{}", instance % 3)),
                    source: label(CALLERS[caller].to_string()),
                };
                store.record(&e, now + 999).expect("recorded");
            }
            now += 1000;
            out.extend(engine.evaluate(&store, now));
            if now == recovery {
                let (_, health, conditions) = engine
                    .conditions()
                    .into_iter()
                    .find(|c| c.0 == "ledger")
                    .expect("ledger evaluated");
                at_fault_end = Some((health.clone(), conditions.clone()));
            }
        }
        let (health, conditions) = at_fault_end.expect("evaluated at the end of the fault");
        (out, health, conditions, onset)
    }

    fn firing(transitions: &[Transition]) -> Vec<&Transition> {
        transitions
            .iter()
            .filter(|t| t.status == AlertStatus::Firing)
            .collect()
    }

    #[test]
    fn a_caller_with_a_bad_key_is_named_by_one_alert_and_opens_no_breaker() {
        let (transitions, health, conditions, onset) = run_with_callers(Bad::Caller(2), 0.12);
        let fired = firing(&transitions);
        assert_eq!(fired.len(), 1, "one incident, one alert: {transitions:#?}");
        let t = fired[0];
        assert_eq!(t.scope(), Scope::Source("billing-batch".into()), "{t:?}");
        assert_eq!(t.fingerprint(), "ledger/source=billing-batch");
        assert!(t.at_ms >= onset && t.at_ms - onset <= 20_000, "{t:?}");
        assert!(
            t.detectors.contains(&DetectorKind::PeerErrors)
                || t.detectors.contains(&DetectorKind::ErrorRate),
            "{t:?}"
        );
        // Its callers' problem: the dependency is healthy to the others, and no breaker is
        // fed a bad condition of the dependency or of an instance.
        assert_eq!(health.state, Health::Healthy);
        assert_eq!(
            health.sources.get("billing-batch").copied(),
            Some(Health::Degraded)
        );
        assert!(health.instances.is_empty() && health.zones.is_empty());
        assert_eq!(conditions.dependency, None);
        assert!(conditions.instances.is_empty(), "{conditions:?}");
        assert!(
            transitions
                .iter()
                .any(|r| r.status == AlertStatus::Resolved && r.scope() == t.scope()),
            "resolves after recovery"
        );
    }

    #[test]
    fn a_bad_instance_is_not_blamed_on_a_caller() {
        let (transitions, health, _, _) = run_with_callers(Bad::Instance(4), 0.12);
        let fired = firing(&transitions);
        assert_eq!(fired.len(), 1, "{transitions:#?}");
        assert_eq!(fired[0].scope(), Scope::Instance("i-4".into()));
        assert!(health.sources.is_empty(), "{health:?}");
    }

    #[test]
    fn errors_of_every_caller_are_the_dependency_s_own() {
        let (transitions, health, _, _) = run_with_callers(Bad::Everyone, 0.05);
        let fired = firing(&transitions);
        assert_eq!(fired.len(), 1, "{transitions:#?}");
        assert_eq!(fired[0].scope(), Scope::Dependency);
        assert!(health.sources.is_empty(), "{health:?}");
        assert_eq!(health.state, Health::Degraded);
    }

    #[test]
    fn every_caller_failing_at_once_is_one_failing_alert_of_the_dependency() {
        let (transitions, health, conditions, onset) = run_with_callers(Bad::Everyone, 0.9);
        let fired = firing(&transitions);
        assert_eq!(fired.len(), 1, "{transitions:#?}");
        assert_eq!(fired[0].scope(), Scope::Dependency);
        assert_eq!(fired[0].severity, Severity::Failing);
        assert!(fired[0].at_ms - onset <= 3_000, "{:?}", fired[0]);
        assert!(health.sources.is_empty(), "{health:?}");
        assert_eq!(health.state, Health::Failing);
        assert_eq!(conditions.dependency, Some(Severity::Failing));
    }

    #[test]
    fn a_stored_alert_of_a_caller_is_restored_on_its_caller() {
        let mut engine = Engine::new(DetectionSettings::default(), Specs::default());
        assert!(engine.restore_firing(
            "ledger",
            None,
            None,
            Some("billing-batch"),
            &["peer_errors".to_string()],
            "degraded",
            T0,
            "fails more",
            serde_json::json!({}),
        ));
        let health = engine.health_of("ledger").expect("restored");
        assert_eq!(
            health.sources.get("billing-batch").copied(),
            Some(Health::Degraded)
        );
        assert_eq!(health.state, Health::Healthy);
    }

    #[test]
    fn a_restored_baseline_alert_holds_while_nothing_can_judge_it_then_resolves() {
        let store = WindowStore::new(Limits::default());
        let mut engine = Engine::new(DetectionSettings::default(), Specs::default());
        assert!(engine.restore_firing(
            "payments-api",
            None,
            None,
            None,
            &["latency_tail".to_string()],
            "degraded",
            T0 - 120_000,
            "slow",
            serde_json::json!({}),
        ));
        let mut resolved_at = None;
        for s in 0..900 {
            let now = T0 + s * 1000;
            feed(&store, "payments-api", now, 20);
            for t in engine.evaluate(&store, now + 1000) {
                assert_ne!(t.status, AlertStatus::Firing, "fired again: {t:?}");
                if t.status == AlertStatus::Resolved {
                    resolved_at.get_or_insert(s);
                }
            }
        }
        // The baseline cannot be ready: the store holds only the incident's minutes. So the
        // alert holds for the restore hold (10 minutes), then resolves after its clear spell.
        let s = resolved_at.expect("the alert resolves once the hold is over");
        assert!((600..700).contains(&s), "resolved after {s} s");
    }

    /// `n` calls of `name` in the second starting at `at_ms`, log-normal around `median_us`
    /// (a fixed pseudo-random sequence, so runs repeat exactly).
    fn feed_lognormal(store: &WindowStore, name: &str, at_ms: i64, n: i64, median_us: f64) {
        for i in 0..n {
            // Sum of four uniforms from a hash of the call's time: about normal, spread 0.3.
            let mut x = (at_ms as u64 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut z = 0.0;
            for _ in 0..4 {
                x ^= x >> 31;
                x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
                z += (x >> 11) as f64 / (1u64 << 53) as f64;
            }
            let z = (z - 2.0) * 3f64.sqrt();
            let e = Event {
                dependency: DependencyName::parse(name).expect("valid name"),
                duration_us: (median_us * (0.3 * z).exp()) as u64,
                outcome: Outcome::Ok,
                ts_ms: at_ms + i * 1000 / n,
                instance: None,
                zone: None,
                source: None,
            };
            store.record(&e, at_ms + 999).expect("recorded");
        }
    }

    /// Five hours of steady calls, then latency creeping 0.2% a minute: each minute is too
    /// close to the last half hour for the baseline's own guard (and the half hour too close
    /// to its own baseline for the detectors), so without a longer memory the baseline
    /// follows the creep for ever. Returns the minutes from the creep's start to the first
    /// `latency_tail` alert, if one fired within five hours.
    fn creep_detected_after(max_age: std::time::Duration) -> Option<i64> {
        let settings = DetectionSettings {
            baseline_max_age: max_age,
            ..DetectionSettings::default()
        };
        let store = WindowStore::new(Limits::default());
        let mut engine = Engine::new(settings, Specs::default());
        let creep_from = T0 + 5 * 3_600_000;
        let mut now = T0;
        while now < creep_from + 5 * 3_600_000 {
            let minutes = (now - creep_from).max(0) as f64 / 60_000.0;
            feed_lognormal(&store, "ledger", now, 20, 20_000.0 * 1.002f64.powf(minutes));
            now += 1000;
            // Every other second is enough to judge and learn, and halves the test's time.
            if (now / 1000) % 2 == 0 {
                for t in engine.evaluate(&store, now) {
                    assert!(now >= creep_from, "an alert before the creep: {t:?}");
                    if t.status == AlertStatus::Firing
                        && t.detectors.contains(&DetectorKind::LatencyTail)
                    {
                        return Some((now - creep_from) / 60_000);
                    }
                }
            }
        }
        None
    }

    #[test]
    fn a_creep_too_slow_for_the_baseline_is_caught_against_the_days_anchor() {
        // With an anchor of six hours, minutes stop joining the baseline once they are
        // clearly worse than the anchor, and the frozen baseline then sees the creep.
        let caught = creep_detected_after(std::time::Duration::from_secs(6 * 3600))
            .expect("the creep is caught within five hours");
        eprintln!("the creep was caught after {caught} minutes");
        assert!((90..300).contains(&caught), "caught after {caught} minutes");
        // The same stream with an anchor no longer than the baseline: the baseline learns
        // each minute of the creep and nothing fires in five hours (latency 1.8x by then).
        assert_eq!(
            creep_detected_after(std::time::Duration::from_secs(30 * 60)),
            None
        );
    }

    /// The baseline a fresh engine (a restart) learns from 30 stored minutes, of which minutes
    /// 10 to 19 were an incident (calls three times slower), told or not of the alert that
    /// resolved at the end of minute 19.
    fn relearnt_tail_us(told_of_the_resolved_alert: bool) -> u64 {
        let store = WindowStore::new(Limits::default());
        for s in 0..30 * 60 {
            let slow = (600..1200).contains(&s);
            let median = if slow { 60_000.0 } else { 20_000.0 };
            feed_lognormal(&store, "ledger", T0 + s * 1000, 20, median);
        }
        let now = T0 + 30 * 60_000 + BASELINE_LAG_MS + 1000;
        feed_lognormal(&store, "ledger", now - 1000, 20, 20_000.0);
        let mut engine = Engine::new(DetectionSettings::default(), Specs::default());
        if told_of_the_resolved_alert {
            assert!(engine.restore_resolved(
                "ledger",
                None,
                None,
                None,
                &["latency_tail".to_string()],
                T0 + 20 * 60_000,
            ));
        }
        engine.evaluate(&store, now);
        let base = engine.deps["ledger"].baseline.stats().expect("learnt");
        base.tail_us
    }

    #[test]
    fn after_a_restart_the_baseline_leaves_out_the_minutes_of_a_resolved_incident() {
        let told = relearnt_tail_us(true);
        let untold = relearnt_tail_us(false);
        // Only the ten healthy minutes after the incident: p99 of a log-normal around 20 ms.
        assert!(told < 45_000, "{told}");
        // Without the stored alert, the slow minutes become part of "usual".
        assert!(untold > 80_000, "{untold}");
    }

    #[test]
    fn a_minute_clearly_worse_than_the_baseline_is_not_learnt() {
        use crate::detect::baseline::QuantileShare;
        let base = BaselineStats {
            minutes: 10,
            calls: 60_000,
            successful_calls: 60_000,
            tail_us: 50_000,
            p50_us: 20_000,
            tail_share: 0.01,
            tail_above: 600,
            error_rate: 0.001,
            timeout_rate: 0.0005,
            error_dispersion: 1.0,
            timeout_dispersion: 1.0,
            quantiles: [0.5, 0.9, 0.99, 0.999].map(|quantile| QuantileShare {
                quantile,
                threshold_us: (20_000.0 / (1.0 - quantile).sqrt()) as u64,
                above: (60_000.0 * (1.0 - quantile)) as u64,
                share: 1.0 - quantile,
            }),
        };
        let minute = |slow: u64, errors: u64| {
            let mut slot = crate::window::Slot::new(0);
            for i in 0..6_000u64 {
                let us = if i < slow { 80_000 } else { 20_000 };
                let outcome = if i >= 6_000 - errors {
                    Outcome::Error
                } else {
                    Outcome::Ok
                };
                slot.record(us, outcome);
            }
            let mut s = Snapshot::empty(0, 60_000);
            s.add_slot(&slot);
            s
        };
        // About the usual share above the baseline p99 and the usual errors: learnt.
        assert!(!worse_than_baseline(&minute(60, 6), &base));
        // 2% above the old p99 (a creeping tail), or 1% errors: kept out.
        assert!(worse_than_baseline(&minute(120, 6), &base));
        assert!(worse_than_baseline(&minute(60, 60), &base));
    }

    #[test]
    fn a_minute_holding_one_retried_request_is_learnt_by_a_baseline_that_has_seen_no_burst() {
        // Half an hour at one call a second whose few errors came one at a time: its measured
        // design effect is near 1 (shrunk towards the prior: about 2).
        let base = BaselineStats {
            minutes: 30,
            calls: 1_800,
            successful_calls: 1_800,
            tail_us: 50_000,
            p50_us: 20_000,
            tail_share: 0.01,
            tail_above: 18,
            error_rate: 7.0 / 1_802.0,
            timeout_rate: 1.0 / 1_802.0,
            error_dispersion: 2.0,
            timeout_dispersion: 4.0,
            quantiles: [0.5, 0.9, 0.99, 0.999].map(|quantile| {
                crate::detect::baseline::QuantileShare {
                    quantile,
                    threshold_us: (20_000.0 / (1.0 - quantile).sqrt()) as u64,
                    above: (1_800.0 * (1.0 - quantile)) as u64,
                    share: 1.0 - quantile,
                }
            }),
        };
        let minute = |calls: u64, errors: u64| {
            let mut slot = crate::window::Slot::new(0);
            for i in 0..calls {
                let outcome = if i < errors {
                    Outcome::Error
                } else {
                    Outcome::Ok
                };
                slot.record(20_000, outcome);
            }
            let mut s = Snapshot::empty(0, 60_000);
            s.add_slot(&slot);
            s
        };
        // One request failing 7 times among 60 calls: judged with the baseline's own 2, it
        // would be kept out (and so would every burst after it); it must be learnt.
        assert!(quasi_binomial_upper_p_value(7, 60, base.error_rate, 2.0) < CREEP_ALPHA);
        assert!(!worse_than_baseline(&minute(60, 7), &base));
        // A minute with a fifth of its calls failing is still kept out.
        assert!(worse_than_baseline(&minute(60, 24), &base));
    }
}
