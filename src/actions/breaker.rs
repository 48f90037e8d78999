//! Circuit-breaker signals: turns detection health into a breaker state per dependency, and
//! per instance when the failure is localized, for clients to act on (eject, fall back).
//!
//! ```text
//! detect (health + raw conditions) -> BreakerBoard::observe -> changes -> API / SSE / webhooks
//!                                      ^ set_override / remove_override (operators)
//! ```
//!
//! Pure and deterministic like the rest of the core: no wall clock, no I/O, no global RNG.
//! Time comes in as epoch milliseconds and the cool-down jitter is a hash of the subject.
//!
//! Each breaker runs this machine (the automatic state):
//!
//! ```text
//! Closed --health at the policy's threshold--> Open --cool-down over--> HalfOpen
//!   ^   (instances: within max_open_share)      ^                          |
//!   |                                           +---any bad condition------+
//!   +------------no bad condition for probe_healthy_for--------------------+
//! ```
//!
//! - Opening follows the firing alerts ([`DependencyHealth`]), so it inherits their hysteresis:
//!   a blip does not open a breaker. Which health opens it is the dependency's
//!   [`BreakerPolicy`]: `failing` (default), `degraded` (degraded opens too) or `never`.
//! - Judging a half-open breaker uses the raw condition of the instant (`bad_now`,
//!   `bad_instances_now`), not the alerts: an alert resolves only after a clear spell (30 s or
//!   more, longer when flapping), while a probe must be judged on the fresh calls it let
//!   through. For the same reason a breaker whose probe succeeded while its alert still fires
//!   opens again only on a fresh bad condition, not on the stale alert.
//! - A breaker never jumps from open to closed, even when the alert resolves during the
//!   cool-down: clients must probe first, so it goes through half-open.
//! - The cool-down is `base_cooldown * 2^(trips-1)`, capped at `max_cooldown`, times a jitter
//!   factor in `[1 - jitter, 1 + jitter]` so that breakers opened together do not all probe at
//!   once. Trips count from 1 again after a closed spell of `reset_trips_after`.
//! - A localized problem (an instance failing while the dependency as a whole is not at the
//!   threshold) opens that instance's breaker only: clients eject one host, not the
//!   dependency. At most `max_open_share` of a dependency's instances are open at once; the
//!   others stay closed with the refusal in their reason.
//! - Operators may force a breaker open or closed until an expiry. The automatic machine keeps
//!   running underneath, so the effective state is right when the override ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::{BreakerPolicy, Conditions, DependencyHealth, Health, Severity, Specs};

/// State of a breaker, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow normally.
    Closed,
    /// Calls should not be sent (fail fast or fall back).
    Open,
    /// A few trial calls may be sent to see whether the subject has recovered.
    HalfOpen,
}

impl BreakerState {
    /// The wire name: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A state an operator may force: `open` or `closed` (half-open is the machine's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForcedState {
    /// Force the breaker open.
    Open,
    /// Force the breaker closed.
    Closed,
}

impl ForcedState {
    /// The wire name: `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        BreakerState::from(self).as_str()
    }
}

impl From<ForcedState> for BreakerState {
    fn from(f: ForcedState) -> Self {
        match f {
            ForcedState::Open => BreakerState::Open,
            ForcedState::Closed => BreakerState::Closed,
        }
    }
}

/// Why an override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// The expiry is not after the current time.
    #[error("the override would expire at {expires_ms}, which is not after now ({now_ms})")]
    AlreadyExpired {
        /// The requested expiry, epoch ms.
        expires_ms: i64,
        /// The current time, epoch ms.
        now_ms: i64,
    },
    /// Overrides must say why.
    #[error("an override needs a reason")]
    EmptyReason,
}

/// Breaker settings, global for all dependencies (durations written as "30s", "10m").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Largest share of a dependency's known instances whose breakers may be open at once:
    /// `floor(share * known)`, but at least 1 when two or more instances are known.
    pub max_open_share: f64,
    /// Cool-down of the first trip.
    #[serde(with = "crate::config::duration")]
    pub base_cooldown: Duration,
    /// Longest cool-down, however many trips.
    #[serde(with = "crate::config::duration")]
    pub max_cooldown: Duration,
    /// Relative spread of cool-downs: each is multiplied by a factor in `[1-jitter, 1+jitter]`.
    pub jitter: f64,
    /// How long a half-open subject must show no bad condition before its breaker closes.
    #[serde(with = "crate::config::duration")]
    pub probe_healthy_for: Duration,
    /// A breaker closed this long forgets its trips: the next trip counts as the first.
    #[serde(with = "crate::config::duration")]
    pub reset_trips_after: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            max_open_share: 0.5,
            base_cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
            jitter: 0.2,
            probe_healthy_for: Duration::from_secs(10),
            reset_trips_after: Duration::from_secs(3600),
        }
    }
}

impl BreakerSettings {
    /// Problems with the values, as (key, value, why), keys under `breakers.`.
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, why: &str| {
            if !ok {
                out.push((format!("breakers.{key}"), value, why.to_string()));
            }
        };
        let human = |d: Duration| humantime::format_duration(d).to_string();
        check(
            self.max_open_share > 0.0 && self.max_open_share <= 1.0,
            "max_open_share",
            self.max_open_share.to_string(),
            "must be in (0, 1]",
        );
        check(
            self.base_cooldown >= Duration::from_secs(1),
            "base_cooldown",
            human(self.base_cooldown),
            "must be at least 1s",
        );
        check(
            self.max_cooldown >= self.base_cooldown,
            "max_cooldown",
            human(self.max_cooldown),
            "must be >= base_cooldown",
        );
        check(
            (0.0..1.0).contains(&self.jitter),
            "jitter",
            self.jitter.to_string(),
            "must be in [0, 1)",
        );
        check(
            self.reset_trips_after > Duration::ZERO,
            "reset_trips_after",
            human(self.reset_trips_after),
            "must be > 0",
        );
        out
    }

    /// How many of `known_instances` may have their breaker open at once.
    pub fn max_open_instances(&self, known_instances: usize) -> usize {
        let share = if self.max_open_share >= 0.0 {
            self.max_open_share.min(1.0)
        } else {
            0.0 // negative or NaN
        };
        // The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
        let cap = (share * known_instances as f64 + 1e-9).floor() as usize;
        if known_instances >= 2 {
            cap.max(1)
        } else {
            cap
        }
    }

    /// The cool-down of trip number `trips` (1 for the first) of a subject, in ms:
    /// `base * 2^(trips-1)` capped at `max`, times the subject's jitter factor. A jittered
    /// value above the cap is mirrored below the nominal one (`nominal * (2 - factor)`), so
    /// capped cool-downs stay spread out and never exceed the cap.
    pub fn cooldown_ms(&self, dependency: &str, instance: Option<&str>, trips: u32) -> i64 {
        let base = ms(self.base_cooldown).max(1);
        let max = ms(self.max_cooldown).max(base);
        let exp = trips.saturating_sub(1).min(62);
        let nominal = if base <= max >> exp { base << exp } else { max };
        let f = jitter_factor(dependency, instance, trips, self.jitter);
        let jittered = nominal as f64 * f;
        let v = if jittered > max as f64 {
            nominal as f64 * (2.0 - f)
        } else {
            jittered
        };
        (v.round() as i64).clamp(1, max)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// 64-bit FNV-1a: tiny, and stable across Rust versions and platforms (unlike std's hashers).
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The jitter factor of one trip of one subject, in `[1 - jitter, 1 + jitter]`.
fn jitter_factor(dependency: &str, instance: Option<&str>, trips: u32, jitter: f64) -> f64 {
    let j = if jitter >= 0.0 { jitter.min(1.0) } else { 0.0 };
    // 0xff never occurs in UTF-8, so the fields cannot run into each other.
    let (tag, inst) = match instance {
        Some(i) => (1u8, i),
        None => (0u8, ""),
    };
    let bytes = dependency
        .bytes()
        .chain([0xff, tag])
        .chain(inst.bytes())
        .chain([0xff])
        .chain(trips.to_le_bytes());
    let u = (fnv1a64(bytes) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    1.0 - j + 2.0 * j * u
}

/// A breaker as published: the effective state (override included) and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    /// The dependency.
    pub dependency: String,
    /// The instance, for an instance's breaker; `None` for the dependency's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The effective state: the forced one while an override is active.
    pub state: BreakerState,
    /// The automatic machine's state (differs from `state` only under an override).
    pub automatic: BreakerState,
    /// Why the breaker is in this state.
    pub reason: String,
    /// When the effective state was entered, epoch ms.
    pub since_ms: i64,
    /// When the open breaker goes half-open (probing), epoch ms; `None` unless open
    /// automatically.
    pub next_probe_ms: Option<i64>,
    /// Trips counted towards the cool-down (back to 1 at the first trip after a closed spell
    /// of `reset_trips_after`).
    pub trips: u32,
    /// True while an operator override is active.
    pub forced: bool,
    /// When the active override expires, epoch ms.
    pub override_expires_ms: Option<i64>,
}

impl BreakerView {
    /// The view as JSON with the times also as RFC 3339 (`since`, `next_probe_at`,
    /// `override_expires_at`), for the API and notifications.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["since"] = crate::time::to_rfc3339(self.since_ms).into();
        if let Some(t) = self.next_probe_ms {
            v["next_probe_at"] = crate::time::to_rfc3339(t).into();
        }
        if let Some(t) = self.override_expires_ms {
            v["override_expires_at"] = crate::time::to_rfc3339(t).into();
        }
        v
    }
}

/// A change of a published breaker: of its effective state, reason, next probe or override.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerChange {
    /// The view before; `None` when the breaker was not on the board (implicitly closed).
    pub before: Option<BreakerView>,
    /// The view after.
    pub after: BreakerView,
}

/// What detection says about one dependency at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The dependency.
    pub dependency: &'a str,
    /// Health from the firing alerts, with its unhealthy instances (what opens breakers).
    pub health: &'a DependencyHealth,
    /// How many instances of the dependency are known (reporting), for `max_open_share`.
    /// At least the number of instances in `health` is assumed.
    pub known_instances: usize,
    /// The dependency's breaker policy (from its spec; default `failing`).
    pub policy: BreakerPolicy,
    /// A bad condition holds right now for the dependency as a whole: the raw signal of this
    /// evaluation, before hysteresis (judges half-open dependency breakers).
    pub bad_now: bool,
    /// Instances for which a bad condition holds right now (judges half-open instance
    /// breakers).
    pub bad_instances_now: &'a [String],
}

/// An operator override.
#[derive(Debug, Clone, PartialEq)]
struct Override {
    state: ForcedState,
    reason: String,
    expires_ms: i64,
}

/// The automatic machine's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auto {
    Closed,
    Open { next_probe_ms: i64 },
    HalfOpen,
}

#[derive(Debug, Clone)]
struct Breaker {
    auto: Auto,
    auto_since_ms: i64,
    auto_reason: String,
    trips: u32,
    /// A probe succeeded while the alert that opened the breaker was still firing: until that
    /// alert resolves, only a fresh bad condition opens the breaker again.
    stale_alert: bool,
    /// Set for this observation when the open cap kept the breaker closed: why.
    held: Option<String>,
    manual: Option<Override>,
    /// Last published view (`None` before the first publication).
    published: Option<BreakerView>,
}

const NO_PROBLEM: &str = "no problem detected";

impl Breaker {
    fn new(now_ms: i64) -> Self {
        Self {
            auto: Auto::Closed,
            auto_since_ms: now_ms,
            auto_reason: NO_PROBLEM.into(),
            trips: 0,
            stale_alert: false,
            held: None,
            manual: None,
            published: None,
        }
    }

    fn auto_state(&self) -> BreakerState {
        match self.auto {
            Auto::Closed => BreakerState::Closed,
            Auto::Open { .. } => BreakerState::Open,
            Auto::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Counts towards the open cap: not closed automatically, or forced open.
    fn occupies_slot(&self) -> bool {
        self.auto != Auto::Closed
            || self
                .manual
                .as_ref()
                .is_some_and(|o| o.state == ForcedState::Open)
    }

    /// Time- and probe-driven moves of a breaker that is not closed. `at_threshold`: its
    /// health would open it; `bad_now`: the raw condition of this instant.
    fn advance(&mut self, key: Key<'_>, at_threshold: bool, bad_now: bool, now: i64, s: &Set) {
        if !at_threshold {
            self.stale_alert = false;
        }
        match self.auto {
            Auto::Closed => {}
            Auto::Open { next_probe_ms } => {
                // The condition at this instant predates the probe calls: judged from the
                // next evaluation on.
                if now >= next_probe_ms {
                    self.set_auto(
                        Auto::HalfOpen,
                        now,
                        "cool-down over: probing with fresh calls",
                    );
                }
            }
            Auto::HalfOpen => {
                if bad_now {
                    self.trip(
                        key,
                        "probe failed: a bad condition was seen while half-open".into(),
                        now,
                        s,
                    );
                } else if now - self.auto_since_ms >= s.probe_healthy_for_ms {
                    let why = format!(
                        "probe succeeded: no bad condition for {}",
                        humantime::format_duration(s.settings.probe_healthy_for)
                    );
                    self.set_auto(Auto::Closed, now, &why);
                    self.stale_alert = at_threshold;
                }
            }
        }
    }

    /// Whether a closed breaker should open now (cap aside).
    fn wants_to_open(&self, at_threshold: bool, bad_now: bool) -> bool {
        self.auto == Auto::Closed && at_threshold && (!self.stale_alert || bad_now)
    }

    /// Opens the breaker (from closed or half-open), counting the trip.
    fn trip(&mut self, key: Key<'_>, reason: String, now: i64, s: &Set) {
        let decayed =
            self.auto == Auto::Closed && now - self.auto_since_ms >= s.reset_trips_after_ms;
        self.trips = if decayed {
            1
        } else {
            self.trips.saturating_add(1)
        };
        let cooldown = s.settings.cooldown_ms(key.0, key.1, self.trips);
        self.stale_alert = false;
        self.set_auto(
            Auto::Open {
                next_probe_ms: now.saturating_add(cooldown),
            },
            now,
            &reason,
        );
    }

    fn set_auto(&mut self, auto: Auto, now: i64, reason: &str) {
        self.auto = auto;
        self.auto_since_ms = now;
        self.auto_reason = reason.to_string();
    }

    /// The view as it stands, `since` carried over from the last publication.
    fn view(&self, key: Key<'_>, now: i64) -> BreakerView {
        let automatic = self.auto_state();
        let (state, reason, next_probe_ms, override_expires_ms) = match &self.manual {
            Some(o) => (
                BreakerState::from(o.state),
                format!(
                    "forced {} by an operator: {}",
                    BreakerState::from(o.state).as_str(),
                    o.reason
                ),
                None,
                Some(o.expires_ms),
            ),
            None => (
                automatic,
                self.held
                    .clone()
                    .unwrap_or_else(|| self.auto_reason.clone()),
                match self.auto {
                    Auto::Open { next_probe_ms } => Some(next_probe_ms),
                    _ => None,
                },
                None,
            ),
        };
        let since_ms = match &self.published {
            Some(p) if p.state == state => p.since_ms,
            _ => now,
        };
        BreakerView {
            dependency: key.0.to_string(),
            instance: key.1.map(str::to_string),
            state,
            automatic,
            reason,
            since_ms,
            next_probe_ms,
            trips: self.trips,
            forced: self.manual.is_some(),
            override_expires_ms,
        }
    }

    /// Publishes the current view; returns the change if what clients see changed (state,
    /// reason, next probe or override; not the automatic state hidden under an override).
    fn publish(&mut self, key: Key<'_>, now: i64) -> Option<BreakerChange> {
        let after = self.view(key, now);
        let before = self.published.replace(after.clone());
        let visible = |v: &BreakerView| {
            (
                v.state,
                v.reason.clone(),
                v.next_probe_ms,
                v.forced,
                v.override_expires_ms,
            )
        };
        match &before {
            Some(b) if visible(b) == visible(&after) => None,
            // A breaker appearing closed and untouched is not news.
            None if after.state == BreakerState::Closed && !after.forced && self.held.is_none() => {
                None
            }
            _ => Some(BreakerChange { before, after }),
        }
    }
}

/// (dependency, instance) of a breaker.
type Key<'a> = (&'a str, Option<&'a str>);

/// Settings with the durations in ms, computed once.
#[derive(Debug, Clone)]
struct Set {
    settings: BreakerSettings,
    probe_healthy_for_ms: i64,
    reset_trips_after_ms: i64,
}

#[derive(Debug, Clone)]
struct DependencyBreakers {
    breaker: Breaker,
    instances: BTreeMap<String, Breaker>,
}

impl DependencyBreakers {
    /// A dependency's breakers, its own published (closed) at once so it is on the board.
    fn new(dependency: &str, now: i64) -> Self {
        let mut breaker = Breaker::new(now);
        breaker.publish((dependency, None), now);
        Self {
            breaker,
            instances: BTreeMap::new(),
        }
    }

    fn breaker_mut(&mut self, instance: Option<&str>, now: i64) -> &mut Breaker {
        match instance {
            None => &mut self.breaker,
            Some(i) => self
                .instances
                .entry(i.to_string())
                .or_insert_with(|| Breaker::new(now)),
        }
    }

    fn publish_all(&mut self, dependency: &str, now: i64, out: &mut Vec<BreakerChange>) {
        out.extend(self.breaker.publish((dependency, None), now));
        for (name, b) in self.instances.iter_mut() {
            out.extend(b.publish((dependency, Some(name)), now));
        }
    }
}

/// All breakers: one per dependency ever observed, plus one per instance that has had a
/// localized problem (or an override) recently.
#[derive(Debug, Clone)]
pub struct BreakerBoard {
    set: Set,
    deps: BTreeMap<String, DependencyBreakers>,
}

impl BreakerBoard {
    /// An empty board.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            set: Set {
                probe_healthy_for_ms: ms(settings.probe_healthy_for),
                reset_trips_after_ms: ms(settings.reset_trips_after),
                settings,
            },
            deps: BTreeMap::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &BreakerSettings {
        &self.set.settings
    }

    /// Feeds an evaluation's health and raw conditions (see [`Engine::conditions`]) at
    /// `now_ms`, judging each dependency by the breaker policy of its spec.
    ///
    /// [`Engine::conditions`]: crate::detect::Engine::conditions
    pub fn observe_conditions(
        &mut self,
        conditions: &[(&str, &DependencyHealth, &Conditions)],
        specs: &Specs,
        now_ms: i64,
    ) -> Vec<BreakerChange> {
        let policy_of = |name: &str| {
            specs
                .get(name)
                .map(|s| s.on_breach.breaker)
                .unwrap_or_default()
        };
        let bad: Vec<(bool, Vec<String>)> = conditions
            .iter()
            .map(|(name, _, c)| {
                let policy = policy_of(name);
                let opens = |s: Severity| match policy {
                    BreakerPolicy::Failing => s == Severity::Failing,
                    BreakerPolicy::Degraded => true,
                    BreakerPolicy::Never => false,
                };
                let instances = c
                    .instances
                    .iter()
                    .filter(|(_, s)| opens(**s))
                    .map(|(i, _)| i.clone())
                    .collect();
                (c.dependency.is_some_and(opens), instances)
            })
            .collect();
        let observations: Vec<Observation> = conditions
            .iter()
            .zip(&bad)
            .map(
                |((name, health, c), (bad_now, bad_instances))| Observation {
                    dependency: name,
                    health,
                    known_instances: c.known_instances,
                    policy: policy_of(name),
                    bad_now: *bad_now,
                    bad_instances_now: bad_instances,
                },
            )
            .collect();
        self.observe(&observations, now_ms)
    }

    /// Feeds one evaluation at `now_ms` and returns the changes of what clients see, ordered
    /// by (dependency, instance) after those of expired overrides.
    ///
    /// Dependencies on the board but missing from `obs` are stepped as healthy with no bad
    /// condition (no data is no evidence of a problem), so their breakers still go half-open
    /// and close. Instances absent from `health.instances` are healthy. Instance breakers
    /// that stayed closed (without override) for `reset_trips_after` are dropped.
    pub fn observe(&mut self, obs: &[Observation<'_>], now_ms: i64) -> Vec<BreakerChange> {
        let mut out = self.expire_overrides(now_ms);
        let seen: BTreeSet<&str> = obs.iter().map(|o| o.dependency).collect();
        for o in obs {
            let d = self
                .deps
                .entry(o.dependency.to_string())
                .or_insert_with(|| DependencyBreakers::new(o.dependency, now_ms));
            step_dependency(d, o, now_ms, &self.set);
        }
        let healthy = DependencyHealth::default();
        for (name, d) in self.deps.iter_mut() {
            if !seen.contains(name.as_str()) {
                let o = Observation {
                    dependency: name,
                    health: &healthy,
                    known_instances: 0,
                    policy: BreakerPolicy::Never,
                    bad_now: false,
                    bad_instances_now: &[],
                };
                step_dependency(d, &o, now_ms, &self.set);
            }
        }
        for (name, d) in self.deps.iter_mut() {
            d.publish_all(name, now_ms, &mut out);
            let reset = self.set.reset_trips_after_ms;
            d.instances.retain(|_, b| {
                b.auto != Auto::Closed
                    || b.manual.is_some()
                    || b.held.is_some()
                    || now_ms - b.auto_since_ms < reset
            });
        }
        out
    }

    /// Forces a breaker open or closed until `expires_ms` (epoch ms), replacing any override
    /// of it. The breaker is created if needed (any instance name is accepted). Forced opens
    /// are not refused by `max_open_share`, but count towards it. Returns the change, if
    /// what clients see changed.
    pub fn set_override(
        &mut self,
        dependency: &str,
        instance: Option<&str>,
        state: ForcedState,
        reason: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Option<BreakerChange>, OverrideError> {
        Self::check_override(reason, expires_ms, now_ms)?;
        let d = self
            .deps
            .entry(dependency.to_string())
            .or_insert_with(|| DependencyBreakers::new(dependency, now_ms));
        let b = d.breaker_mut(instance, now_ms);
        b.manual = Some(Override {
            state,
            reason: reason.trim().to_string(),
            expires_ms,
        });
        Ok(b.publish((dependency, instance), now_ms))
    }

    /// Whether [`BreakerBoard::set_override`] would accept these values (checked before the
    /// override is written to the database, which comes before the board).
    pub fn check_override(reason: &str, expires_ms: i64, now_ms: i64) -> Result<(), OverrideError> {
        if expires_ms <= now_ms {
            return Err(OverrideError::AlreadyExpired { expires_ms, now_ms });
        }
        if reason.trim().is_empty() {
            return Err(OverrideError::EmptyReason);
        }
        Ok(())
    }

    /// Whether the breaker has an override (that [`BreakerBoard::remove_override`] would
    /// remove).
    pub fn has_override(&self, dependency: &str, instance: Option<&str>) -> bool {
        let Some(d) = self.deps.get(dependency) else {
            return false;
        };
        let b = match instance {
            None => Some(&d.breaker),
            Some(i) => d.instances.get(i),
        };
        b.is_some_and(|b| b.manual.is_some())
    }

    /// Removes a breaker's override; the automatic state shows again. `None` when there was
    /// no override to remove.
    pub fn remove_override(
        &mut self,
        dependency: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> Option<BreakerChange> {
        let d = self.deps.get_mut(dependency)?;
        let b = match instance {
            None => &mut d.breaker,
            Some(i) => d.instances.get_mut(i)?,
        };
        b.manual.take()?;
        b.publish((dependency, instance), now_ms)
    }

    /// Ends the overrides whose expiry is at or before `now_ms` (also done by
    /// [`BreakerBoard::observe`]); returns the changes.
    pub fn expire_overrides(&mut self, now_ms: i64) -> Vec<BreakerChange> {
        let mut out = Vec::new();
        for (name, d) in self.deps.iter_mut() {
            let subjects = std::iter::once((None, &mut d.breaker))
                .chain(d.instances.iter_mut().map(|(i, b)| (Some(i.as_str()), b)));
            for (instance, b) in subjects {
                if b.manual.as_ref().is_some_and(|o| o.expires_ms <= now_ms) {
                    b.manual = None;
                    out.extend(b.publish((name, instance), now_ms));
                }
            }
        }
        out
    }

    /// Every breaker, sorted by (dependency, instance): each dependency ever observed (closed
    /// ones too), its breaker before its instances'.
    pub fn snapshot(&self) -> Vec<BreakerView> {
        self.deps
            .values()
            .flat_map(|d| std::iter::once(&d.breaker).chain(d.instances.values()))
            .filter_map(|b| b.published.clone())
            .collect()
    }

    /// A dependency's breakers: its own first, then its instances' by name. Empty if unknown.
    pub fn get(&self, dependency: &str) -> Vec<BreakerView> {
        self.deps
            .get(dependency)
            .map(|d| {
                std::iter::once(&d.breaker)
                    .chain(d.instances.values())
                    .filter_map(|b| b.published.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Dependencies on the board.
    pub fn dependencies(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(String::as_str)
    }

    /// Whether every breaker of the dependency (its own and its instances') is closed with
    /// no override: then forgetting it loses nothing a client could see change. Unknown
    /// dependencies are idle.
    pub fn is_idle(&self, dependency: &str) -> bool {
        self.deps.get(dependency).is_none_or(|d| {
            std::iter::once(&d.breaker)
                .chain(d.instances.values())
                .all(|b| b.auto == Auto::Closed && b.manual.is_none())
        })
    }

    /// Drops a dependency's breakers and overrides (e.g. when it is forgotten by detection).
    /// Returns whether it was on the board.
    pub fn forget(&mut self, dependency: &str) -> bool {
        self.deps.remove(dependency).is_some()
    }
}

fn health_str(h: Health) -> &'static str {
    match h {
        Health::NoData => "no_data",
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Failing => "failing",
    }
}

fn policy_str(p: BreakerPolicy) -> &'static str {
    match p {
        BreakerPolicy::Failing => "failing",
        BreakerPolicy::Degraded => "degraded",
        BreakerPolicy::Never => "never",
    }
}

/// Whether `h` opens a breaker under `policy`.
fn at_threshold(policy: BreakerPolicy, h: Health) -> bool {
    match policy {
        BreakerPolicy::Failing => h == Health::Failing,
        BreakerPolicy::Degraded => h >= Health::Degraded,
        BreakerPolicy::Never => false,
    }
}

/// The health of the dependency as a whole, leaving out the roll-up of localized problems:
/// the engine marks a dependency `degraded` whenever one of its instances is unhealthy, so a
/// `degraded` dependency with an unhealthy instance is taken as a localized problem (else
/// policy `degraded` would open the whole dependency for one bad host). A `failing`
/// dependency is failing as a whole (the roll-up never exceeds `degraded`).
fn dependency_level(health: &DependencyHealth) -> Health {
    let localized = health.instances.values().any(|h| *h >= Health::Degraded);
    if health.state == Health::Degraded && localized {
        Health::Healthy
    } else {
        health.state
    }
}

fn step_dependency(d: &mut DependencyBreakers, o: &Observation<'_>, now: i64, s: &Set) {
    let name = o.dependency;
    let own = dependency_level(o.health);
    let dep_at = at_threshold(o.policy, own);
    d.breaker.advance((name, None), dep_at, o.bad_now, now, s);
    if d.breaker.wants_to_open(dep_at, o.bad_now) {
        let why = format!(
            "{name} is {} (breaker policy: {})",
            health_str(own),
            policy_str(o.policy)
        );
        d.breaker.trip((name, None), why, now, s);
    }

    // Instances: only when the dependency as a whole would not open on its own.
    let inst_health = |i: &str| o.health.instances.get(i).copied().unwrap_or_default();
    let inst_at = |h: Health| !dep_at && at_threshold(o.policy, h);
    let bad = |i: &str| o.bad_instances_now.iter().any(|b| b == i);
    for (i, b) in d.instances.iter_mut() {
        b.held = None;
        b.advance((name, Some(i)), inst_at(inst_health(i)), bad(i), now, s);
    }
    let known = o.known_instances.max(o.health.instances.len());
    let cap = s.settings.max_open_instances(known);
    let mut open = d.instances.values().filter(|b| b.occupies_slot()).count();
    // Worst first, then by name: deterministic, and the worst get the slots.
    let mut candidates: Vec<(&String, Health)> = o
        .health
        .instances
        .iter()
        .filter(|(_, h)| inst_at(**h))
        .map(|(i, h)| (i, *h))
        .collect();
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    for (i, h) in candidates {
        let b = d
            .instances
            .entry(i.clone())
            .or_insert_with(|| Breaker::new(now));
        if !b.wants_to_open(true, bad(i)) {
            continue;
        }
        if b.occupies_slot() || open < cap {
            if !b.occupies_slot() {
                open += 1;
            }
            let why = format!(
                "instance {i} is {}: a localized problem, so only this instance's breaker opens",
                health_str(h)
            );
            b.trip((name, Some(i)), why, now, s);
        } else {
            b.held = Some(format!(
                "held closed: instance {i} is {}, but at most {cap} of {known} instances' \
                 breakers may be open at once (max_open_share {}) and that many are",
                health_str(h),
                s.settings.max_open_share
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000;
    const S: i64 = 1000;

    fn no_jitter() -> BreakerSettings {
        BreakerSettings {
            jitter: 0.0,
            ..BreakerSettings::default()
        }
    }

    fn health(state: Health, instances: &[(&str, Health)]) -> DependencyHealth {
        DependencyHealth {
            state,
            instances: instances.iter().map(|(i, h)| (i.to_string(), *h)).collect(),
            ..DependencyHealth::default()
        }
    }

    /// Feeds one observation of `dep` (bad_now = health not healthy, instances bad as listed).
    fn feed(
        board: &mut BreakerBoard,
        dep: &str,
        h: &DependencyHealth,
        policy: BreakerPolicy,
        bad_now: bool,
        now: i64,
    ) -> Vec<BreakerChange> {
        let bad: Vec<String> = h
            .instances
            .iter()
            .filter(|(_, s)| **s > Health::Healthy)
            .map(|(i, _)| i.clone())
            .collect();
        let bad_instances: &[String] = if bad_now { &bad } else { &[] };
        board.observe(
            &[Observation {
                dependency: dep,
                health: h,
                known_instances: 4,
                policy,
                bad_now,
                bad_instances_now: bad_instances,
            }],
            now,
        )
    }

    fn state_of(board: &BreakerBoard, dep: &str, instance: Option<&str>) -> BreakerState {
        board
            .get(dep)
            .into_iter()
            .find(|v| v.instance.as_deref() == instance)
            .map(|v| v.state)
            .unwrap_or(BreakerState::Closed)
    }

    fn view_of(board: &BreakerBoard, dep: &str, instance: Option<&str>) -> BreakerView {
        board
            .get(dep)
            .into_iter()
            .find(|v| v.instance.as_deref() == instance)
            .expect("breaker on the board")
    }

    /// Opens the dependency breaker of "db" at T0 under policy Failing.
    fn open_db(board: &mut BreakerBoard) {
        let failing = health(Health::Failing, &[]);
        feed(board, "db", &failing, BreakerPolicy::Failing, true, T0);
        assert_eq!(state_of(board, "db", None), BreakerState::Open);
    }

    #[test]
    fn opens_on_failing_by_default_but_not_on_degraded() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let degraded = health(Health::Degraded, &[]);
        let policy = BreakerPolicy::default();
        assert!(feed(&mut board, "db", &degraded, policy, true, T0).is_empty());
        assert_eq!(state_of(&board, "db", None), BreakerState::Closed);

        let failing = health(Health::Failing, &[]);
        let changes = feed(&mut board, "db", &failing, policy, true, T0 + S);
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(c.before.as_ref().unwrap().state, BreakerState::Closed);
        assert_eq!(c.after.state, BreakerState::Open);
        assert_eq!(c.after.since_ms, T0 + S);
        assert_eq!(c.after.trips, 1);
        assert_eq!(c.after.reason, "db is failing (breaker policy: failing)");
        assert!(c.after.next_probe_ms.is_some());
    }

    #[test]
    fn degraded_opens_under_policy_degraded() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let degraded = health(Health::Degraded, &[]);
        let changes = feed(
            &mut board,
            "db",
            &degraded,
            BreakerPolicy::Degraded,
            true,
            T0,
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.state, BreakerState::Open);
        assert_eq!(
            changes[0].after.reason,
            "db is degraded (breaker policy: degraded)"
        );
    }

    #[test]
    fn policy_never_never_opens() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let h = health(Health::Failing, &[("i-1", Health::Failing)]);
        for t in 0..100 {
            assert!(feed(&mut board, "db", &h, BreakerPolicy::Never, true, T0 + t * S).is_empty());
        }
        let views = board.snapshot();
        assert!(views.iter().all(|v| v.state == BreakerState::Closed));
    }

    #[test]
    fn goes_half_open_when_the_jittered_cool_down_is_over() {
        let settings = BreakerSettings::default();
        let mut board = BreakerBoard::new(settings.clone());
        open_db(&mut board);
        let next = view_of(&board, "db", None).next_probe_ms.unwrap();
        let cooldown = next - T0;
        // 30 s +- 20 %.
        assert!((24_000..=36_000).contains(&cooldown), "{cooldown}");
        assert_eq!(cooldown, settings.cooldown_ms("db", None, 1));

        // Still failing and bad: nothing happens before the cool-down ends.
        let failing = health(Health::Failing, &[]);
        let policy = BreakerPolicy::Failing;
        let mut t = T0 + S;
        while t < next {
            assert!(feed(&mut board, "db", &failing, policy, true, t).is_empty());
            t += S;
        }
        let changes = feed(&mut board, "db", &failing, policy, true, next);
        assert_eq!(changes.len(), 1);
        let after = &changes[0].after;
        assert_eq!(after.state, BreakerState::HalfOpen);
        assert_eq!(after.since_ms, next);
        assert_eq!(after.next_probe_ms, None);
    }

    #[test]
    fn half_open_closes_after_probe_healthy_for_without_a_bad_condition() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let half = T0 + 30_000;
        let healthy = health(Health::Healthy, &[]);
        let policy = BreakerPolicy::Failing;
        assert_eq!(
            feed(&mut board, "db", &healthy, policy, false, half).len(),
            1
        );
        for t in (half + S..half + 10_000).step_by(1000) {
            assert!(feed(&mut board, "db", &healthy, policy, false, t).is_empty());
            assert_eq!(state_of(&board, "db", None), BreakerState::HalfOpen);
        }
        let changes = feed(&mut board, "db", &healthy, policy, false, half + 10_000);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.state, BreakerState::Closed);
        assert_eq!(
            changes[0].after.reason,
            "probe succeeded: no bad condition for 10s"
        );
    }

    #[test]
    fn a_resolved_alert_still_goes_through_half_open() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let healthy = health(Health::Healthy, &[]);
        let policy = BreakerPolicy::Failing;
        // The alert resolves during the cool-down: the breaker stays open.
        for t in (T0 + S..T0 + 30_000).step_by(1000) {
            assert!(feed(&mut board, "db", &healthy, policy, false, t).is_empty());
            assert_eq!(state_of(&board, "db", None), BreakerState::Open);
        }
        let changes = feed(&mut board, "db", &healthy, policy, false, T0 + 30_000);
        assert_eq!(changes[0].after.state, BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_reopens_on_a_bad_condition_with_a_doubled_cool_down() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let half = T0 + 30_000;
        // The alert still fires (hysteresis) but only the raw condition judges the probe.
        let failing = health(Health::Failing, &[]);
        let policy = BreakerPolicy::Failing;
        feed(&mut board, "db", &failing, policy, false, half);
        assert!(feed(&mut board, "db", &failing, policy, false, half + S).is_empty());
        let changes = feed(&mut board, "db", &failing, policy, true, half + 2 * S);
        assert_eq!(changes.len(), 1);
        let after = &changes[0].after;
        assert_eq!(after.state, BreakerState::Open);
        assert_eq!(after.trips, 2);
        assert_eq!(after.next_probe_ms, Some(half + 2 * S + 60_000));
        assert_eq!(
            after.reason,
            "probe failed: a bad condition was seen while half-open"
        );
    }

    #[test]
    fn cool_downs_double_within_the_jitter_and_never_exceed_the_cap() {
        let s = BreakerSettings::default();
        for dep in ["db", "cache", "payments-api"] {
            for inst in [None, Some("i-1"), Some("i-2")] {
                for trips in 1..=40u32 {
                    let nominal = (30_000i64 << (trips - 1).min(20)).min(600_000);
                    let c = s.cooldown_ms(dep, inst, trips);
                    let lo = (nominal as f64 * 0.8).floor() as i64;
                    let hi = ((nominal as f64 * 1.2).ceil() as i64).min(600_000);
                    assert!((lo..=hi).contains(&c), "{dep} {inst:?} {trips}: {c}");
                }
            }
        }
        // Capped cool-downs stay spread out rather than all sitting at the cap.
        let capped: BTreeSet<i64> = (0..20)
            .map(|i| s.cooldown_ms("db", Some(&format!("i-{i}")), 30))
            .collect();
        assert!(capped.len() > 10, "{capped:?}");
        assert_eq!(no_jitter().cooldown_ms("db", None, 3), 120_000);
        assert_eq!(no_jitter().cooldown_ms("db", None, 500), 600_000);
    }

    #[test]
    fn repeated_trips_reach_the_cap_in_the_machine() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let failing = health(Health::Failing, &[]);
        let policy = BreakerPolicy::Failing;
        let mut cooldowns = vec![];
        let mut t = T0;
        for _ in 0..6 {
            let v = view_of(&board, "db", None);
            let next = v.next_probe_ms.unwrap();
            cooldowns.push(next - t);
            feed(&mut board, "db", &failing, policy, true, next); // half-open
            t = next + S;
            feed(&mut board, "db", &failing, policy, true, t); // probe fails
        }
        assert_eq!(
            cooldowns,
            vec![30_000, 60_000, 120_000, 240_000, 480_000, 600_000]
        );
        assert_eq!(view_of(&board, "db", None).trips, 7);
    }

    /// Opens, probes successfully and closes "db" starting at `t`; returns when it closed.
    fn cycle(board: &mut BreakerBoard, t: i64) -> i64 {
        let failing = health(Health::Failing, &[]);
        let healthy = health(Health::Healthy, &[]);
        let policy = BreakerPolicy::Failing;
        feed(board, "db", &failing, policy, true, t);
        assert_eq!(state_of(board, "db", None), BreakerState::Open);
        let next = view_of(board, "db", None).next_probe_ms.unwrap();
        feed(board, "db", &healthy, policy, false, next);
        let closed = next + 10_000;
        feed(board, "db", &healthy, policy, false, closed);
        assert_eq!(state_of(board, "db", None), BreakerState::Closed);
        closed
    }

    #[test]
    fn trips_count_up_after_short_closed_spells_and_reset_after_a_long_one() {
        let mut board = BreakerBoard::new(no_jitter());
        let closed = cycle(&mut board, T0);
        assert_eq!(view_of(&board, "db", None).trips, 1);
        let closed = cycle(&mut board, closed + 60_000);
        assert_eq!(view_of(&board, "db", None).trips, 2);
        let v = view_of(&board, "db", None);
        assert_eq!(v.state, BreakerState::Closed);
        cycle(&mut board, closed + 3_600_000);
        let v = view_of(&board, "db", None);
        assert_eq!(v.trips, 1);
    }

    #[test]
    fn a_successful_probe_under_a_still_firing_alert_reopens_only_on_a_fresh_bad_condition() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let failing = health(Health::Failing, &[]);
        let policy = BreakerPolicy::Failing;
        feed(&mut board, "db", &failing, policy, false, T0 + 30_000);
        feed(&mut board, "db", &failing, policy, false, T0 + 40_000);
        assert_eq!(state_of(&board, "db", None), BreakerState::Closed);
        // The alert fires on through its clear spell: no re-opening on it alone.
        for t in (T0 + 41_000..T0 + 70_000).step_by(1000) {
            assert!(feed(&mut board, "db", &failing, policy, false, t).is_empty());
        }
        // A fresh bad condition re-opens it, as a second trip.
        let changes = feed(&mut board, "db", &failing, policy, true, T0 + 70_000);
        assert_eq!(changes[0].after.state, BreakerState::Open);
        assert_eq!(changes[0].after.trips, 2);
        // Once the alert resolved, the next firing alert opens it again by itself.
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        feed(&mut board, "db", &failing, policy, false, T0 + 30_000);
        feed(&mut board, "db", &failing, policy, false, T0 + 40_000);
        let healthy = health(Health::Healthy, &[]);
        feed(&mut board, "db", &healthy, policy, false, T0 + 50_000);
        feed(&mut board, "db", &failing, policy, false, T0 + 60_000);
        assert_eq!(state_of(&board, "db", None), BreakerState::Open);
    }

    #[test]
    fn a_localized_instance_problem_opens_only_that_instances_breaker() {
        for policy in [BreakerPolicy::Failing, BreakerPolicy::Degraded] {
            let mut board = BreakerBoard::new(BreakerSettings::default());
            // The engine rolls a localized problem up as a degraded dependency.
            let h = health(Health::Degraded, &[("i-2", Health::Failing)]);
            let changes = feed(&mut board, "db", &h, policy, true, T0);
            assert_eq!(changes.len(), 1, "{policy:?}");
            let after = &changes[0].after;
            assert!(changes[0].before.is_none());
            assert_eq!(after.instance.as_deref(), Some("i-2"));
            assert_eq!(after.state, BreakerState::Open);
            assert_eq!(
                after.reason,
                "instance i-2 is failing: a localized problem, so only this instance's breaker opens"
            );
            assert_eq!(state_of(&board, "db", None), BreakerState::Closed);
        }
    }

    #[test]
    fn a_degraded_instance_opens_its_breaker_under_policy_degraded_only() {
        let h = health(Health::Degraded, &[("i-2", Health::Degraded)]);
        let mut board = BreakerBoard::new(BreakerSettings::default());
        assert!(feed(&mut board, "db", &h, BreakerPolicy::Failing, true, T0).is_empty());
        let changes = feed(&mut board, "db", &h, BreakerPolicy::Degraded, true, T0 + S);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.instance.as_deref(), Some("i-2"));
    }

    #[test]
    fn a_dependency_wide_failure_opens_the_dependency_not_its_instances() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let h = health(Health::Failing, &[("i-1", Health::Failing)]);
        let changes = feed(&mut board, "db", &h, BreakerPolicy::Failing, true, T0);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.instance, None);
        assert_eq!(changes[0].after.state, BreakerState::Open);
        assert_eq!(state_of(&board, "db", Some("i-1")), BreakerState::Closed);
    }

    #[test]
    fn with_four_known_instances_and_three_bad_only_two_open_and_the_third_says_why() {
        let mut board = BreakerBoard::new(no_jitter());
        let h = health(
            Health::Degraded,
            &[
                ("i-1", Health::Failing),
                ("i-2", Health::Failing),
                ("i-3", Health::Failing),
            ],
        );
        let policy = BreakerPolicy::Failing;
        let changes = feed(&mut board, "db", &h, policy, true, T0);
        let opened: Vec<_> = changes
            .iter()
            .filter(|c| c.after.state == BreakerState::Open)
            .map(|c| c.after.instance.clone().unwrap())
            .collect();
        assert_eq!(opened, vec!["i-1", "i-2"]);
        let held = view_of(&board, "db", Some("i-3"));
        assert_eq!(held.state, BreakerState::Closed);
        assert_eq!(
            held.reason,
            "held closed: instance i-3 is failing, but at most 2 of 4 instances' breakers may \
             be open at once (max_open_share 0.5) and that many are"
        );
        // The refusal was published too.
        assert!(
            changes
                .iter()
                .any(|c| c.after.instance.as_deref() == Some("i-3"))
        );
        // Nothing new while nothing changes.
        assert!(feed(&mut board, "db", &h, policy, true, T0 + S).is_empty());

        // i-1 recovers and closes: i-3 gets the freed slot.
        let h2 = health(
            Health::Degraded,
            &[("i-2", Health::Failing), ("i-3", Health::Failing)],
        );
        let bad = vec!["i-2".to_string(), "i-3".to_string()];
        let o = |now: i64, board: &mut BreakerBoard| {
            board.observe(
                &[Observation {
                    dependency: "db",
                    health: &h2,
                    known_instances: 4,
                    policy,
                    bad_now: true,
                    bad_instances_now: &bad,
                }],
                now,
            )
        };
        o(T0 + 30_000, &mut board); // i-1 and i-2 half-open
        assert_eq!(state_of(&board, "db", Some("i-3")), BreakerState::Closed);
        let changes = o(T0 + 31_000, &mut board); // i-2 re-opens; i-1 still probing
        assert!(
            changes
                .iter()
                .all(|c| c.after.instance.as_deref() != Some("i-3"))
        );
        o(T0 + 40_000, &mut board); // i-1 closes, i-3 opens in the same evaluation
        assert_eq!(state_of(&board, "db", Some("i-1")), BreakerState::Closed);
        assert_eq!(state_of(&board, "db", Some("i-3")), BreakerState::Open);
        let open = board
            .get("db")
            .iter()
            .filter(|v| v.state != BreakerState::Closed)
            .count();
        assert_eq!(open, 2);
    }

    #[test]
    fn the_open_cap_is_a_floored_share_but_at_least_one_of_two_or_more() {
        let s = BreakerSettings::default();
        let caps: Vec<usize> = (0..=7).map(|n| s.max_open_instances(n)).collect();
        assert_eq!(caps, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        let s = BreakerSettings {
            max_open_share: 0.29,
            ..BreakerSettings::default()
        };
        assert_eq!(s.max_open_instances(100), 29);
        assert_eq!(s.max_open_instances(3), 1);
        // A lone instance is the whole dependency: it is never ejected on its own.
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let h = health(Health::Degraded, &[("i-1", Health::Failing)]);
        let bad = vec!["i-1".to_string()];
        board.observe(
            &[Observation {
                dependency: "db",
                health: &h,
                known_instances: 1,
                policy: BreakerPolicy::Failing,
                bad_now: true,
                bad_instances_now: &bad,
            }],
            T0,
        );
        let v = view_of(&board, "db", Some("i-1"));
        assert_eq!(v.state, BreakerState::Closed);
        assert!(v.reason.starts_with("held closed"), "{}", v.reason);
    }

    #[test]
    fn overrides_force_the_state_expire_and_removal_restores_the_automatic_state() {
        let mut board = BreakerBoard::new(no_jitter());
        let policy = BreakerPolicy::Failing;
        let healthy = health(Health::Healthy, &[]);
        feed(&mut board, "db", &healthy, policy, false, T0);

        // Forced open on a healthy dependency.
        let c = board
            .set_override(
                "db",
                None,
                ForcedState::Open,
                "maintenance",
                T0 + 60_000,
                T0,
            )
            .unwrap()
            .unwrap();
        assert_eq!(c.after.state, BreakerState::Open);
        assert_eq!(c.after.automatic, BreakerState::Closed);
        assert!(c.after.forced);
        assert_eq!(c.after.reason, "forced open by an operator: maintenance");
        assert_eq!(c.after.override_expires_ms, Some(T0 + 60_000));
        assert_eq!(c.after.next_probe_ms, None);
        assert!(feed(&mut board, "db", &healthy, policy, false, T0 + S).is_empty());

        // It expires at its time, through observe.
        assert!(feed(&mut board, "db", &healthy, policy, false, T0 + 59_000).is_empty());
        let changes = feed(&mut board, "db", &healthy, policy, false, T0 + 60_000);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].after.state, BreakerState::Closed);
        assert!(!changes[0].after.forced);
        assert_eq!(changes[0].after.since_ms, T0 + 60_000);

        // Forced closed while failing: the machine runs underneath.
        let t = T0 + 100_000;
        board
            .set_override(
                "db",
                None,
                ForcedState::Closed,
                "false alarm",
                t + 3_600_000,
                t,
            )
            .unwrap();
        let failing = health(Health::Failing, &[]);
        assert!(feed(&mut board, "db", &failing, policy, true, t + S).is_empty());
        let v = view_of(&board, "db", None);
        assert_eq!(v.state, BreakerState::Closed);
        assert_eq!(v.automatic, BreakerState::Open);
        assert_eq!(v.trips, 1);
        // Changes underneath stay hidden from clients.
        assert!(feed(&mut board, "db", &failing, policy, true, t + 31_000).is_empty());
        assert_eq!(
            view_of(&board, "db", None).automatic,
            BreakerState::HalfOpen
        );
        assert!(feed(&mut board, "db", &failing, policy, true, t + 32_000).is_empty());
        // Removal shows the automatic state (open again after the failed probe).
        let c = board.remove_override("db", None, t + 33_000).unwrap();
        assert_eq!(c.before.unwrap().state, BreakerState::Closed);
        assert_eq!(c.after.state, BreakerState::Open);
        assert_eq!(c.after.trips, 2);
        assert_eq!(c.after.next_probe_ms, Some(t + 32_000 + 60_000));
        assert_eq!(c.after.since_ms, t + 33_000);
        assert!(board.remove_override("db", None, t + 34_000).is_none());
    }

    #[test]
    fn overrides_need_a_future_expiry_and_a_reason_and_may_name_any_instance() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        assert_eq!(
            board.set_override("db", None, ForcedState::Open, "x", T0, T0),
            Err(OverrideError::AlreadyExpired {
                expires_ms: T0,
                now_ms: T0
            })
        );
        assert_eq!(
            board.set_override("db", None, ForcedState::Open, "  ", T0 + 1, T0),
            Err(OverrideError::EmptyReason)
        );
        assert!(board.snapshot().is_empty());
        let c = board
            .set_override("db", Some("i-9"), ForcedState::Open, "bad disk", T0 + 1, T0)
            .unwrap()
            .unwrap();
        assert!(c.before.is_none());
        assert_eq!(c.after.instance.as_deref(), Some("i-9"));
        // Forcing closed a closed breaker changes its reason: clients see who decided.
        let c = board
            .set_override("db", None, ForcedState::Closed, "keep", T0 + 10, T0)
            .unwrap()
            .unwrap();
        assert_eq!(c.after.state, BreakerState::Closed);
        assert!(c.after.forced);
        let changes = board.expire_overrides(T0 + 10);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].after.reason, NO_PROBLEM);
        assert_eq!(changes[1].after.instance.as_deref(), Some("i-9"));
        assert_eq!(changes[1].after.state, BreakerState::Closed);
    }

    #[test]
    fn forced_open_instances_count_towards_the_cap() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        for i in ["i-1", "i-2"] {
            board
                .set_override("db", Some(i), ForcedState::Open, "drain", T0 + 600_000, T0)
                .unwrap();
        }
        let h = health(Health::Degraded, &[("i-3", Health::Failing)]);
        feed(&mut board, "db", &h, BreakerPolicy::Failing, true, T0 + S);
        let v = view_of(&board, "db", Some("i-3"));
        assert_eq!(v.state, BreakerState::Closed);
        assert!(v.reason.starts_with("held closed"));
    }

    #[test]
    fn dependencies_missing_from_an_evaluation_still_probe_and_close() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        let changes = board.observe(&[], T0 + 30_000);
        assert_eq!(changes[0].after.state, BreakerState::HalfOpen);
        let changes = board.observe(&[], T0 + 40_000);
        assert_eq!(changes[0].after.state, BreakerState::Closed);
    }

    #[test]
    fn instance_breakers_closed_long_enough_leave_the_board() {
        let mut board = BreakerBoard::new(no_jitter());
        let h = health(Health::Degraded, &[("i-1", Health::Failing)]);
        feed(&mut board, "db", &h, BreakerPolicy::Failing, true, T0);
        let healthy = health(Health::Healthy, &[]);
        feed(
            &mut board,
            "db",
            &healthy,
            BreakerPolicy::Failing,
            false,
            T0 + 30_000,
        );
        feed(
            &mut board,
            "db",
            &healthy,
            BreakerPolicy::Failing,
            false,
            T0 + 40_000,
        );
        assert_eq!(board.get("db").len(), 2);
        assert_eq!(state_of(&board, "db", Some("i-1")), BreakerState::Closed);
        feed(
            &mut board,
            "db",
            &healthy,
            BreakerPolicy::Failing,
            false,
            T0 + 3_640_000,
        );
        assert_eq!(board.get("db").len(), 1);
        assert!(board.forget("db"));
        assert!(board.snapshot().is_empty());
    }

    /// A scripted hour with several dependencies, instances and overrides.
    fn scripted_run() -> (Vec<BreakerChange>, Vec<BreakerView>) {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let mut all = vec![];
        for step in 0..3600i64 {
            let now = T0 + step * S;
            let phase = step / 300;
            let dep_health = match phase % 3 {
                0 => Health::Healthy,
                1 => Health::Degraded,
                _ => Health::Failing,
            };
            let a = health(dep_health, &[]);
            let b = health(
                Health::Degraded,
                &[
                    ("i-1", Health::Failing),
                    (
                        "i-2",
                        if phase % 2 == 0 {
                            Health::Failing
                        } else {
                            Health::Healthy
                        },
                    ),
                    ("i-3", Health::Failing),
                ],
            );
            let bad_b: Vec<String> = if step % 7 == 0 {
                vec!["i-1".into(), "i-3".into()]
            } else {
                vec![]
            };
            let obs = [
                Observation {
                    dependency: "b-svc",
                    health: &b,
                    known_instances: 6,
                    policy: BreakerPolicy::Failing,
                    bad_now: false,
                    bad_instances_now: &bad_b,
                },
                Observation {
                    dependency: "a-svc",
                    health: &a,
                    known_instances: 0,
                    policy: BreakerPolicy::Degraded,
                    bad_now: dep_health != Health::Healthy && step % 5 == 0,
                    bad_instances_now: &[],
                },
            ];
            all.extend(board.observe(&obs, now));
            if step == 1000 {
                all.extend(
                    board
                        .set_override(
                            "a-svc",
                            None,
                            ForcedState::Closed,
                            "test",
                            now + 600_000,
                            now,
                        )
                        .unwrap(),
                );
            }
        }
        (all, board.snapshot())
    }

    #[test]
    fn the_same_inputs_give_the_same_outputs() {
        let (changes, snapshot) = scripted_run();
        assert!(changes.len() > 20, "{}", changes.len());
        assert_eq!(scripted_run(), (changes, snapshot));
        // Jitter is a function of the subject and trip only.
        assert_eq!(
            jitter_factor("db", Some("i-1"), 3, 0.2),
            jitter_factor("db", Some("i-1"), 3, 0.2)
        );
        assert_ne!(
            jitter_factor("db", Some("i-1"), 3, 0.2),
            jitter_factor("db", Some("i-2"), 3, 0.2)
        );
        assert_ne!(
            jitter_factor("db", None, 1, 0.2),
            jitter_factor("db", Some(""), 1, 0.2)
        );
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn snapshot_lists_every_observed_dependency_sorted_with_its_instances() {
        let mut board = BreakerBoard::new(BreakerSettings::default());
        let zeta = health(Health::Healthy, &[]);
        let alpha = health(
            Health::Degraded,
            &[("i-b", Health::Failing), ("i-a", Health::Failing)],
        );
        let mid = health(Health::Failing, &[]);
        let bad = vec!["i-a".to_string(), "i-b".to_string()];
        let o = |dependency, health| Observation {
            dependency,
            health,
            known_instances: 4,
            policy: BreakerPolicy::Failing,
            bad_now: true,
            bad_instances_now: &bad,
        };
        board.observe(&[o("zeta", &zeta), o("alpha", &alpha), o("mid", &mid)], T0);
        let keys: Vec<(String, Option<String>, BreakerState)> = board
            .snapshot()
            .into_iter()
            .map(|v| (v.dependency, v.instance, v.state))
            .collect();
        let k = |d: &str, i: Option<&str>, s| (d.to_string(), i.map(str::to_string), s);
        assert_eq!(
            keys,
            vec![
                k("alpha", None, BreakerState::Closed),
                k("alpha", Some("i-a"), BreakerState::Open),
                k("alpha", Some("i-b"), BreakerState::Open),
                k("mid", None, BreakerState::Open),
                k("zeta", None, BreakerState::Closed),
            ]
        );
        assert_eq!(board.get("alpha").len(), 3);
        assert_eq!(board.get("alpha")[0].instance, None);
        assert!(board.get("nope").is_empty());
    }

    #[test]
    fn views_serialize_in_snake_case_with_rfc3339_times() {
        let mut board = BreakerBoard::new(no_jitter());
        open_db(&mut board);
        board.observe(&[], T0 + 30_000);
        let v = view_of(&board, "db", None);
        let j = v.to_json();
        assert_eq!(j["state"], "half_open");
        assert_eq!(j["automatic"], "half_open");
        assert_eq!(j["since_ms"], T0 + 30_000);
        assert_eq!(j["since"], crate::time::to_rfc3339(T0 + 30_000));
        assert!(j.get("instance").is_none());
        assert!(j.get("next_probe_at").is_none());
        let c = serde_json::to_value(BreakerChange {
            before: None,
            after: v,
        })
        .unwrap();
        assert!(c["before"].is_null());
        assert_eq!(c["after"]["dependency"], "db");
    }

    #[test]
    fn settings_parse_with_durations_and_defaults_and_reject_unknown_keys() {
        let s: BreakerSettings = toml::from_str("").unwrap();
        assert_eq!(s, BreakerSettings::default());
        assert!(s.problems().is_empty());
        let s: BreakerSettings =
            toml::from_str("base_cooldown = \"1m\"\nmax_cooldown = \"1h\"\njitter = 0.1\n")
                .unwrap();
        assert_eq!(s.base_cooldown, Duration::from_secs(60));
        assert_eq!(s.max_cooldown, Duration::from_secs(3600));
        assert_eq!(s.probe_healthy_for, Duration::from_secs(10));
        assert!(toml::from_str::<BreakerSettings>("base_cooldown_ms = 5").is_err());
        let bad = BreakerSettings {
            max_open_share: 0.0,
            jitter: 1.0,
            max_cooldown: Duration::from_secs(1),
            ..BreakerSettings::default()
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            vec![
                "breakers.max_open_share",
                "breakers.max_cooldown",
                "breakers.jitter"
            ]
        );
    }
}
