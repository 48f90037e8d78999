//! The window store: every series of every dependency, sharded by dependency name.
//!
//! Each shard is a `parking_lot::Mutex` over the dependencies that hash to it. A batch is
//! sorted by shard and each shard is locked once per batch, so ingest takes no global lock and
//! two batches for different dependencies rarely meet. All series of a dependency (its total,
//! its instances, its zones, its sources) live in the same shard so that one event is recorded
//! under one lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use smol_str::SmolStr;

use super::Window;
use super::sample::Sample;
use super::series::{MinuteRollup, Series};
use super::slot::{Counts, Slot};
use super::snapshot::Snapshot;
use super::totals::Totals;
use crate::domain::Event;

/// Dependencies by name. A name of up to 23 bytes is kept in the key itself, so a lookup
/// compares it where the hash table's slot already is, not in an allocation of its own.
type Map<V> = HashMap<SmolStr, V, foldhash::fast::RandomState>;
/// Instances, zones or sources by name, kept in the key as for [`Map`]; a detection view's
/// copy of a short name is a copy of 24 bytes, a long one shares the key's allocation (see
/// [`PeerView::name`]).
type PeerMap = HashMap<SmolStr, Series, foldhash::fast::RandomState>;

/// Cardinality limits. A new series beyond a limit is refused; existing series keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Series of all kinds together: the bound on memory. A series under one call a second
    /// takes about 12 KiB, a busy one (hundreds of calls a second) about 200 KiB, one whose
    /// every slot spans over 1,400 distinct latency buckets up to ~650 KiB (README, "Memory
    /// and limits").
    pub max_series: usize,
    pub max_dependencies: usize,
    pub max_instances_per_dependency: usize,
    pub max_zones_per_dependency: usize,
    /// Sources (callers) of one dependency: the services or jobs that make its calls.
    pub max_sources_per_dependency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: 100_000,
            max_dependencies: 1000,
            max_instances_per_dependency: 100,
            max_zones_per_dependency: 16,
            max_sources_per_dependency: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("ts: older than the longest window (1h)")]
    TooOld,
    #[error(
        "{field}: limit of {max} series in total reached (limits.max_series); new series are refused"
    )]
    SeriesLimit { field: &'static str, max: usize },
    #[error("dependency: limit of {0} dependencies reached; new dependencies are refused")]
    DependencyLimit(usize),
    #[error(
        "instance: limit of {0} instances for this dependency reached; new instances are refused"
    )]
    InstanceLimit(usize),
    #[error("zone: limit of {0} zones for this dependency reached; new zones are refused")]
    ZoneLimit(usize),
    #[error("source: limit of {0} sources for this dependency reached; new sources are refused")]
    SourceLimit(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKind {
    Dependency,
    Instance,
    Zone,
    /// A caller of the dependency. Orthogonal to instances and zones: a caller's calls spread
    /// over every instance.
    Source,
}

impl SeriesKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Dependency => "dependency",
            SeriesKind::Instance => "instance",
            SeriesKind::Zone => "zone",
            SeriesKind::Source => "source",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dependency" => Some(SeriesKind::Dependency),
            "instance" => Some(SeriesKind::Instance),
            "zone" => Some(SeriesKind::Zone),
            "source" => Some(SeriesKind::Source),
            _ => None,
        }
    }
}

/// Names one series: a dependency's total (`label` empty), or one of its instances, zones or
/// sources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub dependency: String,
    pub kind: SeriesKind,
    pub label: String,
}

/// All series of one dependency.
#[derive(Debug, Default)]
pub struct DependencySeries {
    pub total: Series,
    pub instances: PeerMap,
    pub zones: PeerMap,
    /// Its callers, as sparse as instances: a source costs what its calls need.
    pub sources: PeerMap,
    /// The zone each instance reported (first seen), so detection can tell a bad instance
    /// from a bad zone.
    pub instance_zone: Map<Box<str>>,
    /// For zones, instances and sources: the positions, in the map's iteration order, of
    /// its peers sorted by name, as the last detection read found them (see
    /// [`name_order`]).
    peer_order: [Vec<u32>; 3],
    /// Bumped whenever a peer, or an instance's zone, is added or removed: while it stands
    /// still, the maps iterate in the same order and `peer_order` and `zone_of` hold.
    layout: u64,
    /// `layout` when `peer_order` and `zone_of` were computed.
    read_layout: Option<u64>,
    /// For each instance in name order, the position of its zone among the zones in name
    /// order.
    zone_of: Vec<Option<u32>>,
}

impl DependencySeries {
    fn for_each_mut(&mut self, mut f: impl FnMut(SeriesKind, &str, &mut Series)) {
        f(SeriesKind::Dependency, "", &mut self.total);
        for (k, s) in self.instances.iter_mut() {
            f(SeriesKind::Instance, k, s);
        }
        for (k, s) in self.zones.iter_mut() {
            f(SeriesKind::Zone, k, s);
        }
        for (k, s) in self.sources.iter_mut() {
            f(SeriesKind::Source, k, s);
        }
    }

    /// The zone of each instance that reported one.
    fn instance_zones(&self) -> std::collections::HashMap<String, String> {
        self.instance_zone
            .iter()
            .map(|(i, z)| (i.to_string(), z.to_string()))
            .collect()
    }

    fn series_mut(&mut self, kind: SeriesKind, label: &str) -> Option<&mut Series> {
        match kind {
            SeriesKind::Dependency => Some(&mut self.total),
            SeriesKind::Instance => self.instances.get_mut(label),
            SeriesKind::Zone => self.zones.get_mut(label),
            SeriesKind::Source => self.sources.get_mut(label),
        }
    }
}

/// One dependency over one window: its total and each instance, zone and source.
#[derive(Debug, Clone)]
pub struct DependencyView {
    pub total: Snapshot,
    pub instances: Vec<(String, Snapshot)>,
    pub zones: Vec<(String, Snapshot)>,
    pub sources: Vec<(String, Snapshot)>,
    /// Zone of each instance that reported one.
    pub instance_zone: std::collections::HashMap<String, String>,
}

/// What detection reads of one dependency at one evaluation: its total over 10 s, 1 m and
/// 5 m, and each instance, zone and source over 1 m with the calls of its last 10 s as counts only.
/// A peer's recent latencies matter only once it already stands out over the minute, so they
/// are not summed for every peer every second: [`WindowStore::series_window`] reads them, a
/// moment later under its own lock (live, calls that arrived in between are included; a
/// replay records nothing in between, so it stays deterministic).
#[derive(Debug, Clone)]
pub struct DetectionView {
    /// The two complete seconds before now, the older first (see
    /// [`Series::last_complete_seconds`]): a hard failure shows there first.
    pub last_seconds: [Counts; 2],
    /// The calls of the newer of those two seconds, with their durations (as a list while
    /// the second keeps them so).
    pub last_second: Sample,
    /// The last 10 seconds, as their durations while every live second keeps them and they
    /// are few (see [`Series::sample`]). The window's seconds change with every read, so its
    /// histogram was built afresh each time: 13 KiB zeroed and every call recorded again. The
    /// detectors ask a few counts above a threshold of it (a pass over a few hundred
    /// durations) and, only when a latency share has risen, a quantile.
    pub s10: Sample,
    pub m1: Snapshot,
    pub m5: Snapshot,
    /// Sorted by name.
    pub instances: Vec<PeerView>,
    /// Sorted by name.
    pub zones: Vec<PeerView>,
    /// Sorted by name.
    pub sources: Vec<PeerView>,
}

/// The total of a dependency without calls in the last minute (see
/// [`WindowStore::active_detection_view`]).
#[derive(Debug, Clone)]
pub struct IdleTotal {
    pub m1: Snapshot,
    pub m5: Snapshot,
}

/// One instance, zone or source of a [`DetectionView`].
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The store's key: a short name is copied inline, with no separate allocation to
    /// visit; a long one shares the key's allocation and counts a reference there.
    pub name: SmolStr,
    /// Its two complete seconds before now, the older first.
    pub last_seconds: [Counts; 2],
    /// Calls of the last 10 seconds (the 10-second window's counts).
    pub s10: Counts,
    /// The last minute, as durations when the peer is quiet (see [`Sample`]).
    pub m1: Sample,
    /// For an instance that reported its zone: that zone's index in
    /// [`DetectionView::zones`].
    pub zone: Option<usize>,
}

/// One dependency as the metrics exposition reads it (see [`WindowStore::exposition`]).
#[derive(Debug, Clone)]
pub struct DependencyTotals {
    pub name: String,
    /// Everything recorded since the dependency's series was created.
    pub totals: Totals,
    /// The last minute.
    pub m1: Snapshot,
    /// Sorted by name.
    pub instances: Vec<PeerTotals>,
    /// Sorted by name.
    pub zones: Vec<PeerTotals>,
    /// Sorted by name.
    pub sources: Vec<PeerTotals>,
}

/// One instance, zone or source of a [`DependencyTotals`].
#[derive(Debug, Clone)]
pub struct PeerTotals {
    pub name: String,
    pub totals: Totals,
    /// The last minute, as durations when the peer is quiet.
    pub m1: Sample,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StoreStats {
    pub dependencies: usize,
    pub series: usize,
    pub allocated_slots: usize,
    pub approx_bytes: usize,
}

#[derive(Default)]
struct Shard {
    deps: Map<DependencySeries>,
}

pub struct WindowStore {
    /// Sharded by dependency; see the module docs for why a mutex per shard.
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    limits: Limits,
    /// Dependencies across all shards, reserved before insertion so that the limit holds even
    /// when two shards add a dependency at once.
    dependency_count: AtomicUsize,
    /// Series of all kinds, reserved the same way.
    series_count: AtomicUsize,
    /// Unsaved minutes dropped by [`Series::bound_unsaved`] since start.
    rollups_dropped: std::sync::atomic::AtomicU64,
    /// Whether detection reads keep peers' 1-minute durations as lists from one read to the
    /// next (see [`Series::minute_sample`]); off only to check that keeping them changes no
    /// verdict.
    reuse_samples: std::sync::atomic::AtomicBool,
    /// Peer samples that detection reads took from a kept list since start.
    samples_reused: std::sync::atomic::AtomicU64,
    /// Stored minutes loaded while the clock was before them (it stepped back across a
    /// restart): each joins its series once the clock reaches it (see
    /// [`WindowStore::load_minute`]). Empty but for that.
    ahead: Mutex<Vec<(SeriesKey, Slot)>>,
}

const SHARDS: usize = 64;
/// How many events ahead [`WindowStore::record_batch`] hints an event's series to the cache;
/// the slots it will visit follow at half the distance (see [`prefetch_event`]).
const RECORD_AHEAD: usize = 4;
/// Series below which a batch hints nothing: their memory stays in the caches, and the
/// hints' lookups would only add work (23% more instructions on the ingest loop of
/// `benches/ingest_count.rs`, which records into a few dozen series).
const RECORD_AHEAD_MIN_SERIES: usize = 1_000;
// `record_batch` keeps a shard index in a byte.
const _: () = assert!(SHARDS <= 256);

/// What recording an event may create (see [`WindowStore::record_into`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creating {
    /// Nothing: an event that would create a series is left for later.
    Nothing,
    /// Series, each reserved under the node's limits.
    Series,
    /// The dependency was just created, its series reserved with it.
    Dependency,
}

impl WindowStore {
    pub fn new(limits: Limits) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            limits,
            dependency_count: AtomicUsize::new(0),
            series_count: AtomicUsize::new(0),
            rollups_dropped: std::sync::atomic::AtomicU64::new(0),
            reuse_samples: std::sync::atomic::AtomicBool::new(true),
            samples_reused: std::sync::atomic::AtomicU64::new(0),
            ahead: Mutex::new(Vec::new()),
        }
    }

    /// Turns the kept lists of peers' 1-minute durations read by
    /// [`WindowStore::detection_view`] on (the default) or off: every read then builds every
    /// sample from the slots. Verdicts are the same either way; the switch exists to check
    /// exactly that.
    pub fn set_reuse_samples(&self, reuse: bool) {
        self.reuse_samples.store(reuse, Ordering::Relaxed);
    }

    /// Peer samples that detection reads took from a kept list instead of the slots since
    /// start.
    pub fn samples_reused(&self) -> u64 {
        self.samples_reused.load(Ordering::Relaxed)
    }

    /// Unsaved minutes dropped since start because too many piled up in a series while
    /// roll-ups could not be written.
    pub fn rollups_dropped(&self) -> u64 {
        self.rollups_dropped.load(Ordering::Relaxed)
    }

    /// Series of all kinds held now (one atomic read, unlike [`WindowStore::stats`]).
    pub fn series_count(&self) -> usize {
        self.series_count.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn shard_of(&self, dependency: &str) -> usize {
        (self.hasher.hash_one(dependency) as usize) % SHARDS
    }

    /// Records a batch of events at wall-clock (or replay) time `now_ms`. Returns the indexes
    /// of events that were refused, with the reason; all others were recorded.
    ///
    /// The events are recorded shard by shard, so that each shard is locked once and each
    /// dependency's series are visited while they are in cache. A dependency's events keep
    /// their batch order. An event that would create a dependency or a series waits, with
    /// every later event of its dependency, until the rest are recorded, and these are then
    /// recorded in batch order: the node-wide limits (dependencies, series) refuse the same
    /// events as recording the batch one event at a time would.
    pub fn record_batch(&self, events: &[Event<'_>], now_ms: i64) -> Vec<(usize, RecordError)> {
        // Group the events by shard with a counting sort (one pass to count, one to place),
        // keeping batch order within a shard.
        let shard_of: Vec<u8> = events
            .iter()
            .map(|e| self.shard_of(e.dependency.as_str()) as u8)
            .collect();
        let mut starts = [0u32; SHARDS + 1];
        for &s in &shard_of {
            starts[usize::from(s) + 1] += 1;
        }
        for s in 0..SHARDS {
            starts[s + 1] += starts[s];
        }
        let mut next = starts;
        let mut order = vec![0u32; events.len()];
        for (i, &s) in shard_of.iter().enumerate() {
            let at = &mut next[usize::from(s)];
            order[*at as usize] = i as u32;
            *at += 1;
        }
        let hint_ahead = self.series_count.load(Ordering::Relaxed) >= RECORD_AHEAD_MIN_SERIES;
        let mut refused = Vec::new();
        let mut waiting: Vec<u32> = Vec::new();
        // Dependencies of the current shard with an event waiting.
        let mut held: Vec<&str> = Vec::new();
        for s in 0..SHARDS {
            let group = &order[starts[s] as usize..starts[s + 1] as usize];
            if group.is_empty() {
                continue;
            }
            let mut shard = self.shards[s].lock();
            held.clear();
            for (at, &idx) in group.iter().enumerate() {
                if hint_ahead {
                    if let Some(&ahead) = group.get(at + RECORD_AHEAD) {
                        prefetch_event(&shard, &events[ahead as usize], Series::prefetch_record);
                    }
                    if let Some(&ahead) = group.get(at + RECORD_AHEAD / 2) {
                        let e = &events[ahead as usize];
                        prefetch_event(&shard, e, |s| s.prefetch_record_slots(e.ts_ms));
                    }
                }
                let e = &events[idx as usize];
                let name = e.dependency.as_str();
                if !held.contains(&name) {
                    match self.record_one(&mut shard, e, now_ms, false) {
                        Ok(true) => continue,
                        Ok(false) => held.push(name),
                        Err(error) => {
                            refused.push((idx as usize, error));
                            continue;
                        }
                    }
                }
                waiting.push(idx);
            }
        }
        waiting.sort_unstable();
        for idx in waiting {
            let e = &events[idx as usize];
            let mut shard = self.shards[self.shard_of(e.dependency.as_str())].lock();
            if let Err(error) = self.record_one(&mut shard, e, now_ms, true) {
                refused.push((idx as usize, error));
            }
        }
        refused.sort_unstable_by_key(|r| r.0);
        refused
    }

    /// Records a single event (used by `replay`, which feeds events one by one).
    pub fn record(&self, event: &Event<'_>, now_ms: i64) -> Result<(), RecordError> {
        let mut shard = self.shards[self.shard_of(event.dependency.as_str())].lock();
        self.record_one(&mut shard, event, now_ms, true).map(|_| ())
    }

    /// Records one event into its shard. Without `create`, an event that would create its
    /// dependency or any series is not recorded: false (see [`WindowStore::record_batch`]).
    #[inline]
    fn record_one(
        &self,
        shard: &mut Shard,
        e: &Event<'_>,
        now_ms: i64,
        create: bool,
    ) -> Result<bool, RecordError> {
        if e.ts_ms < now_ms - Window::LONGEST_MS {
            return Err(RecordError::TooOld);
        }
        let name = e.dependency.as_str();
        if let Some(dep) = shard.deps.get_mut(name) {
            let creating = if create {
                Creating::Series
            } else {
                Creating::Nothing
            };
            return self.record_into(dep, e, now_ms, creating);
        }
        if !create {
            return Ok(false);
        }
        // Reserve the dependency and every series it brings before inserting anything, so a
        // refusal leaves no empty dependency behind.
        let series = 1
            + usize::from(e.instance.is_some())
            + usize::from(e.zone.is_some())
            + usize::from(e.source.is_some());
        self.reserve_dependency(series)?;
        let dep = shard.deps.entry(name.into()).or_default();
        self.record_into(dep, e, now_ms, Creating::Dependency)
    }

    /// Records into a dependency's series. The common case (known instance, zone and source)
    /// looks each series up once; an event without a source pays nothing for sources. False
    /// (nothing recorded) for an event that would create a series when `creating` allows
    /// none.
    #[inline]
    fn record_into(
        &self,
        dep: &mut DependencySeries,
        e: &Event<'_>,
        now_ms: i64,
        creating: Creating,
    ) -> Result<bool, RecordError> {
        let instance = e.instance.as_ref().map(|l| l.as_str());
        let zone = e.zone.as_ref().map(|l| l.as_str());
        let source = e.source.as_ref().map(|l| l.as_str());
        let (instance_count, zone_count, source_count) =
            (dep.instances.len(), dep.zones.len(), dep.sources.len());
        let known_instance = instance.and_then(|i| dep.instances.get_mut(i));
        let known_zone = zone.and_then(|z| dep.zones.get_mut(z));
        let known_source = source.and_then(|c| dep.sources.get_mut(c));
        // Check every limit before recording anything, so a refused event leaves no trace.
        let new_instance = instance.filter(|_| known_instance.is_none());
        let new_zone = zone.filter(|_| known_zone.is_none());
        let new_source = source.filter(|_| known_source.is_none());
        if creating == Creating::Nothing
            && (new_instance.is_some() || new_zone.is_some() || new_source.is_some())
        {
            return Ok(false);
        }
        if new_instance.is_some() && instance_count >= self.limits.max_instances_per_dependency {
            return Err(RecordError::InstanceLimit(
                self.limits.max_instances_per_dependency,
            ));
        }
        if new_zone.is_some() && zone_count >= self.limits.max_zones_per_dependency {
            return Err(RecordError::ZoneLimit(self.limits.max_zones_per_dependency));
        }
        if new_source.is_some() && source_count >= self.limits.max_sources_per_dependency {
            return Err(RecordError::SourceLimit(
                self.limits.max_sources_per_dependency,
            ));
        }
        let new_series = usize::from(new_instance.is_some())
            + usize::from(new_zone.is_some())
            + usize::from(new_source.is_some());
        if new_series > 0 && creating == Creating::Series {
            let field = if new_instance.is_some() {
                "instance"
            } else if new_zone.is_some() {
                "zone"
            } else {
                "source"
            };
            self.reserve_series(new_series, field)?;
        }
        let (ts, d, o) = (e.ts_ms, e.duration_us, e.outcome);
        if let Some(s) = known_instance {
            s.record(ts, d, o, now_ms);
        }
        if let Some(s) = known_zone {
            s.record(ts, d, o, now_ms);
        }
        if let Some(s) = known_source {
            s.record(ts, d, o, now_ms);
        }
        dep.total.record(ts, d, o, now_ms);
        for (new, map) in [
            (new_instance, &mut dep.instances),
            (new_zone, &mut dep.zones),
            (new_source, &mut dep.sources),
        ] {
            if let Some(label) = new {
                map.entry(label.into())
                    .or_insert_with(|| Series::peer().staggered(e.dependency.as_str(), label))
                    .record(ts, d, o, now_ms);
            }
        }
        if new_series > 0 {
            dep.layout += 1;
        }
        // Every instance with a zone on record leaves nothing to look up (the map's keys are
        // a subset of the instances').
        if let (Some(i), Some(z)) = (instance, zone)
            && dep.instance_zone.len() < dep.instances.len()
            && !dep.instance_zone.contains_key(i)
        {
            dep.instance_zone.insert(i.into(), z.into());
            dep.layout += 1;
        }
        Ok(true)
    }

    /// Reserves room for a new dependency and `series` series (its total and any instance,
    /// zone or source it arrives with) under all limits, or nothing.
    fn reserve_dependency(&self, series: usize) -> Result<(), RecordError> {
        let max = self.limits.max_dependencies;
        self.dependency_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| RecordError::DependencyLimit(max))?;
        self.reserve_series(series, "dependency").inspect_err(|_| {
            self.dependency_count.fetch_sub(1, Ordering::AcqRel);
        })
    }

    fn reserve_series(&self, n: usize, field: &'static str) -> Result<(), RecordError> {
        let max = self.limits.max_series;
        self.series_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c + n <= max).then_some(c + n)
            })
            .map(|_| ())
            .map_err(|_| RecordError::SeriesLimit { field, max })
    }

    /// Rolls every series forward to `now_ms`, but for quiet peers read from their kept
    /// minutes (see [`Series::fold_may_wait`]), and drops series idle for longer than the
    /// longest window whose data is persisted. Run once a second by the daemon.
    pub fn advance_all(&self, now_ms: i64) {
        self.load_due(now_ms);
        let idle_before = now_ms - Window::LONGEST_MS - super::series::MINUTE_MS * 5;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let (mut dropped_deps, mut dropped_series) = (0, 0);
            shard.deps.retain(|name, dep| {
                dep.for_each_mut(|kind, label, s| {
                    // A quiet peer read from its kept minute folds when later calls take its
                    // seconds' slots, or when the roll-ups or a read roll it forward.
                    if !s.fold_may_wait(now_ms) {
                        s.advance(now_ms);
                    }
                    let dropped = s.bound_unsaved();
                    if dropped > 0 {
                        self.rollups_dropped
                            .fetch_add(dropped as u64, Ordering::Relaxed);
                        tracing::warn!(
                            dependency = %name,
                            kind = kind.as_str(),
                            label,
                            dropped,
                            kept = super::series::MAX_UNSAVED_MINUTES,
                            "Roll-ups cannot be written and too many minutes are waiting: dropped the oldest unsaved minutes."
                        );
                    }
                });
                let idle = |s: &Series| s.last_event_ms < idle_before && s.is_clean();
                let peers = |d: &DependencySeries| d.instances.len() + d.zones.len() + d.sources.len();
                let before = peers(dep);
                dep.instances.retain(|_, s| !idle(s));
                let instances = &dep.instances;
                dep.instance_zone.retain(|i, _| instances.contains_key(&**i));
                dep.zones.retain(|_, s| !idle(s));
                dep.sources.retain(|_, s| !idle(s));
                if peers(dep) != before {
                    dep.layout += 1;
                }
                dropped_series += before - peers(dep);
                let keep = !(idle(&dep.total) && peers(dep) == 0);
                if !keep {
                    dropped_deps += 1;
                    dropped_series += 1;
                }
                keep
            });
            self.dependency_count
                .fetch_sub(dropped_deps, Ordering::AcqRel);
            self.series_count
                .fetch_sub(dropped_series, Ordering::AcqRel);
        }
    }

    /// Runs `f` on one dependency's series, rolled forward to `now_ms`, under its shard's lock.
    fn with_dependency<R>(
        &self,
        name: &str,
        now_ms: i64,
        f: impl FnOnce(&DependencySeries) -> R,
    ) -> Option<R> {
        let mut shard = self.shards[self.shard_of(name)].lock();
        let dep = shard.deps.get_mut(name)?;
        dep.for_each_mut(|_, _, s| s.advance(now_ms));
        Some(f(dep))
    }

    /// Stats of one dependency over `window` ending at `now_ms`.
    pub fn dependency(&self, name: &str, window: Window, now_ms: i64) -> Option<DependencyView> {
        self.with_dependency(name, now_ms, |dep| {
            let view = |m: &PeerMap| {
                let mut v: Vec<(String, Snapshot)> = m
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.window(window, now_ms)))
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            DependencyView {
                total: dep.total.window(window, now_ms),
                instances: view(&dep.instances),
                zones: view(&dep.zones),
                sources: view(&dep.sources),
                instance_zone: dep.instance_zones(),
            }
        })
    }

    /// What detection reads of one dependency at one evaluation, under one lock (see
    /// [`DetectionView`]).
    pub fn detection_view(&self, name: &str, now_ms: i64) -> Option<DetectionView> {
        let mut shard = self.shards[self.shard_of(name)].lock();
        let dep = shard.deps.get_mut(name)?;
        dep.total.advance(now_ms);
        let m1 = dep.total.window(Window::M1, now_ms);
        Some(self.build_view(dep, m1, now_ms))
    }

    /// [`WindowStore::detection_view`] of a dependency called in the last minute. For one that
    /// was not (idle), `Err` holds its total's 1-minute and 5-minute windows, and nothing else
    /// is read or rolled forward: an idle dependency's instances, zones and callers cost
    /// nothing at an evaluation, however many it has. `None` for an unknown dependency.
    pub fn active_detection_view(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Option<Result<DetectionView, IdleTotal>> {
        let mut shard = self.shards[self.shard_of(name)].lock();
        let dep = shard.deps.get_mut(name)?;
        dep.total.advance(now_ms);
        let m1 = dep.total.window(Window::M1, now_ms);
        if m1.total() == 0 {
            let m5 = dep.total.window(Window::M5, now_ms);
            return Some(Err(IdleTotal { m1, m5 }));
        }
        Some(Ok(self.build_view(dep, m1, now_ms)))
    }

    /// The [`DetectionView`] of `dep`, whose total is rolled forward to `now_ms` and read over
    /// its last minute as `m1`.
    fn build_view(&self, dep: &mut DependencySeries, m1: Snapshot, now_ms: i64) -> DetectionView {
        let reuse = self.reuse_samples.load(Ordering::Relaxed);
        dep.total.advance(now_ms);
        let mut reused = 0;
        let laid_out = dep.read_layout == Some(dep.layout);
        let mut peers = |m: &mut PeerMap, order: &mut Vec<u32>| {
            let mut entries: Vec<(&SmolStr, &mut Series)> = m.iter_mut().collect();
            if !laid_out {
                name_order(&entries, order);
            }
            debug_assert!(
                order
                    .windows(2)
                    .all(|w| entries[w[0] as usize].0 < entries[w[1] as usize].0)
            );
            // Peers lie in the table in hash order and their lists behind pointers: each
            // step hints the next peers' memory in four stages (the series, its list, the
            // list's shared vector, its first durations), so that their loads overlap this
            // peer's read.
            let ahead = |entries: &[(&SmolStr, &mut Series)], at: usize| {
                let peer = |d: usize| order.get(at + d).map(|&j| &*entries[j as usize].1);
                if let Some(s) = peer(4) {
                    s.prefetch_read();
                }
                if let Some(s) = peer(3) {
                    s.prefetch_list();
                }
                if let Some(s) = peer(2) {
                    s.prefetch_sorted();
                }
                if let Some(s) = peer(1) {
                    s.prefetch_values();
                }
            };
            // The first peers' series, which no earlier step hinted.
            for &j in order.iter().take(4) {
                entries[j as usize].1.prefetch_read();
            }
            (0..order.len())
                .map(|at| {
                    ahead(&entries, at);
                    let (k, s) = &mut entries[order[at] as usize];
                    // A peer whose minute is kept as a list is read without rolling it
                    // forward: its seconds fold when later calls take their slots.
                    let unfolded = reuse.then(|| s.read_unfolded(now_ms)).flatten();
                    let s10 = unfolded.unwrap_or_else(|| {
                        s.advance(now_ms);
                        s.recent_counts()
                    });
                    let (m1, kept) = s.minute_sample(now_ms, reuse);
                    reused += u64::from(kept);
                    PeerView {
                        name: SmolStr::clone(k),
                        last_seconds: s.last_complete_seconds(now_ms),
                        s10,
                        m1,
                        zone: None,
                    }
                })
                .collect::<Vec<PeerView>>()
        };
        let [zone_order, instance_order, source_order] = &mut dep.peer_order;
        let zones = peers(&mut dep.zones, zone_order);
        let mut instances = peers(&mut dep.instances, instance_order);
        let sources = peers(&mut dep.sources, source_order);
        if reused > 0 {
            self.samples_reused.fetch_add(reused, Ordering::Relaxed);
        }
        if !laid_out {
            dep.zone_of.clear();
            dep.zone_of.extend(instances.iter().map(|p| {
                dep.instance_zone
                    .get(&*p.name)
                    .and_then(|z| zones.binary_search_by(|q| (*q.name).cmp(z)).ok())
                    .map(|i| i as u32)
            }));
            dep.read_layout = Some(dep.layout);
        }
        for (p, zone) in instances.iter_mut().zip(&dep.zone_of) {
            p.zone = zone.map(|i| i as usize);
        }
        let total = &dep.total;
        DetectionView {
            last_seconds: total.last_complete_seconds(now_ms),
            last_second: total.last_complete_second(now_ms),
            s10: total.sample(Window::S10, now_ms),
            m1,
            m5: total.window(Window::M5, now_ms),
            instances,
            zones,
            sources,
        }
    }

    /// One series over `window` ending at `now_ms`.
    pub fn series_window(&self, key: &SeriesKey, window: Window, now_ms: i64) -> Option<Snapshot> {
        self.with_series(key, now_ms, |series| series.window(window, now_ms))
    }

    /// Runs `f` on one series, rolled forward to `now_ms`, under its shard's lock.
    fn with_series<R>(
        &self,
        key: &SeriesKey,
        now_ms: i64,
        f: impl FnOnce(&Series) -> R,
    ) -> Option<R> {
        let mut shard = self.shards[self.shard_of(&key.dependency)].lock();
        let series = shard
            .deps
            .get_mut(key.dependency.as_str())?
            .series_mut(key.kind, &key.label)?;
        series.advance(now_ms);
        Some(f(series))
    }

    /// Every dependency's total over `window`, sorted by name.
    pub fn dependencies(&self, window: Window, now_ms: i64) -> Vec<(String, Snapshot)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for (name, dep) in shard.deps.iter_mut() {
                dep.total.advance(now_ms);
                out.push((name.to_string(), dep.total.window(window, now_ms)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// In-memory buckets of one series (10-second buckets with `tier` 0, minutes with 1).
    pub fn buckets(
        &self,
        key: &SeriesKey,
        tier: usize,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Option<std::collections::BTreeMap<i64, Snapshot>> {
        self.with_series(key, now_ms, |series| series.buckets(tier, from_ms, to_ms))
    }

    /// Names of all dependencies, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .deps
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shards[self.shard_of(name)]
            .lock()
            .deps
            .contains_key(name)
    }

    /// Minutes to persist (see [`Series::take_rollups`]).
    pub fn take_rollups(&self, now_ms: i64, force: bool) -> Vec<(SeriesKey, MinuteRollup)> {
        // A minute loaded ahead of the clock is in its row: writing the minute without it
        // would replace that row by less.
        self.load_due(now_ms);
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for (name, dep) in shard.deps.iter_mut() {
                dep.for_each_mut(|kind, label, s| {
                    for r in s.take_rollups(now_ms, force) {
                        let key = SeriesKey {
                            dependency: name.to_string(),
                            kind,
                            label: label.into(),
                        };
                        out.push((key, r));
                    }
                });
            }
        }
        out
    }

    /// Marks every minute [`WindowStore::take_rollups`] would hand out (without `force`) as
    /// persisted, copying nothing: `replay` keeps no history but must bound memory alike.
    pub fn discard_rollups(&self, now_ms: i64) {
        for shard in self.shards.iter() {
            for dep in shard.lock().deps.values_mut() {
                dep.for_each_mut(|_, _, s| s.discard_rollups(now_ms));
            }
        }
    }

    /// Hands back roll-ups whose write failed.
    pub fn restore_unsaved(&self, rollups: Vec<(SeriesKey, MinuteRollup)>) {
        for (key, r) in rollups {
            let mut shard = self.shards[self.shard_of(&key.dependency)].lock();
            if let Some(s) = shard
                .deps
                .get_mut(key.dependency.as_str())
                .and_then(|d| d.series_mut(key.kind, &key.label))
            {
                s.restore_unsaved(vec![r]);
            }
        }
    }

    /// Loads a persisted minute into its series (at start-up), within the cardinality limits.
    ///
    /// A minute that begins after `now_ms` (stored before the clock stepped back) is held
    /// aside until the clock reaches it: put in its ring now, it would take the slot of the
    /// minute a ring's length before it, which the windows still read. The caller bounds how
    /// far ahead it loads; the cardinality limits are checked when the minute joins.
    pub fn load_minute(
        &self,
        key: &SeriesKey,
        slot: &Slot,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        if slot.start_ms < now_ms - Window::LONGEST_MS {
            return Err(RecordError::TooOld);
        }
        if slot.start_ms > now_ms {
            self.ahead.lock().push((key.clone(), slot.clone()));
            return Ok(());
        }
        self.load_now(key, slot, now_ms)
    }

    /// Minutes loaded ahead of the clock that still wait for it.
    pub fn minutes_ahead(&self) -> usize {
        self.ahead.lock().len()
    }

    /// Loads the minutes held aside by [`WindowStore::load_minute`] that the clock has
    /// reached.
    fn load_due(&self, now_ms: i64) {
        let due: Vec<(SeriesKey, Slot)> = self
            .ahead
            .lock()
            .extract_if(.., |(_, slot)| slot.start_ms <= now_ms)
            .collect();
        let mut refused = 0;
        for (key, slot) in &due {
            if let Err(error) = self.load_now(key, slot, now_ms) {
                refused += 1;
                tracing::debug!(dependency = %key.dependency, %error, "Stored minute not loaded.");
            }
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                "Stored minutes loaded ahead of the clock were refused by the series limits when the clock reached them."
            );
        }
    }

    fn load_now(&self, key: &SeriesKey, slot: &Slot, now_ms: i64) -> Result<(), RecordError> {
        let mut shard = self.shards[self.shard_of(&key.dependency)].lock();
        let name = key.dependency.as_str();
        let new_dependency = !shard.deps.contains_key(name);
        if new_dependency {
            self.reserve_dependency(1 + usize::from(key.kind != SeriesKind::Dependency))?;
            shard.deps.insert(name.into(), DependencySeries::default());
        }
        let dep = shard.deps.get_mut(name).expect("present or inserted above");
        let (map, max, err): (_, _, fn(usize) -> RecordError) = match key.kind {
            SeriesKind::Dependency => {
                dep.total.load_minute(slot.start_ms, slot, now_ms);
                return Ok(());
            }
            SeriesKind::Instance => (
                &mut dep.instances,
                self.limits.max_instances_per_dependency,
                RecordError::InstanceLimit,
            ),
            SeriesKind::Zone => (
                &mut dep.zones,
                self.limits.max_zones_per_dependency,
                RecordError::ZoneLimit,
            ),
            SeriesKind::Source => (
                &mut dep.sources,
                self.limits.max_sources_per_dependency,
                RecordError::SourceLimit,
            ),
        };
        if !map.contains_key(key.label.as_str()) && !new_dependency {
            if map.len() >= max {
                return Err(err(max));
            }
            self.reserve_series(1, key.kind.as_str())?;
        }
        let series = series_entry(map, name, &key.label);
        series.load_minute(slot.start_ms, slot, now_ms);
        dep.layout += 1;
        Ok(())
    }

    /// Every dependency with its running totals and its last minute, each instance, zone and
    /// source too, sorted by name: what `GET /metrics` exports. One shard lock at a time, each held
    /// for copies only (quantiles are the caller's to compute).
    pub fn exposition(&self, now_ms: i64) -> Vec<DependencyTotals> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for (name, dep) in shard.deps.iter_mut() {
                dep.for_each_mut(|_, _, s| s.advance(now_ms));
                let peers = |m: &PeerMap| {
                    let mut v: Vec<PeerTotals> = m
                        .iter()
                        .map(|(k, s)| PeerTotals {
                            name: k.to_string(),
                            totals: s.totals(),
                            m1: s.sample(Window::M1, now_ms),
                        })
                        .collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    v
                };
                out.push(DependencyTotals {
                    name: name.to_string(),
                    totals: dep.total.totals(),
                    m1: dep.total.window(Window::M1, now_ms),
                    instances: peers(&dep.instances),
                    zones: peers(&dep.zones),
                    sources: peers(&dep.sources),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn stats(&self) -> StoreStats {
        let mut st = StoreStats::default();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            st.dependencies += shard.deps.len();
            for dep in shard.deps.values_mut() {
                dep.for_each_mut(|_, _, s| {
                    st.series += 1;
                    st.allocated_slots += s.allocated_slots();
                    st.approx_bytes += s.heap_bytes();
                });
            }
        }
        st
    }
}

/// Brings `order` to the positions of `entries` sorted by name. A map iterates in the same
/// order from one read to the next while no peer comes or goes, so the order of the last read
/// is checked (one comparison per peer) before the entries are sorted again: names are
/// unique, so a permutation that reads them in ascending order is the sorted one.
fn name_order<T>(entries: &[(&SmolStr, T)], order: &mut Vec<u32>) {
    let name = |i: u32| &**entries[i as usize].0;
    let still_sorted =
        order.len() == entries.len() && order.windows(2).all(|w| name(w[0]) < name(w[1]));
    if !still_sorted {
        order.clear();
        order.extend(0..entries.len() as u32);
        order.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
    }
}

fn series_entry<'m>(map: &'m mut PeerMap, dependency: &str, label: &str) -> &'m mut Series {
    if !map.contains_key(label) {
        map.insert(label.into(), Series::peer().staggered(dependency, label));
    }
    map.get_mut(label).expect("inserted above")
}

/// Hints the series an event will be recorded into to the cache with `hint` (see
/// [`Series::prefetch_record`]), a few events before it is: a batch's events mostly go to
/// different series, each a few cache lines somewhere in its dependency's tables, and
/// recording one after the other would wait for each in turn. Looks the series up again
/// (each of the two steps does, so three lookups an event in all) but changes nothing.
fn prefetch_event(shard: &Shard, e: &Event<'_>, hint: impl Fn(&Series)) {
    let Some(dep) = shard.deps.get(e.dependency.as_str()) else {
        return;
    };
    hint(&dep.total);
    for (peers, label) in [
        (&dep.instances, &e.instance),
        (&dep.zones, &e.zone),
        (&dep.sources, &e.source),
    ] {
        if let Some(s) = label.as_ref().and_then(|l| peers.get(l.as_str())) {
            hint(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DependencyName, Label, Outcome};

    const NOW: i64 = 1_800_000_000_000;

    fn ev<'a>(dep: &'a str, instance: Option<&'a str>) -> Event<'a> {
        Event {
            dependency: DependencyName::parse(dep).unwrap(),
            duration_us: 1_000,
            outcome: Outcome::Ok,
            ts_ms: NOW,
            instance: instance.map(|i| Label::parse(i).unwrap()),
            zone: None,
            source: None,
        }
    }

    /// A quiet instance read from its kept minute every second is left unfolded by the
    /// daemon's per-second pass; its calls still reach every window and the stored minutes.
    #[test]
    fn quiet_peers_left_unfolded_by_the_per_second_pass_lose_no_call() {
        let store = WindowStore::new(Limits::default());
        let mut calls = 0;
        // One call every three seconds for three minutes; a detection read and the pass
        // every second, as the daemon does.
        for second in 0..180 {
            let at = NOW + second * 1_000;
            if second % 3 == 0 {
                let call = Event {
                    ts_ms: at - 200,
                    ..ev("a", Some("i-1"))
                };
                store.record(&call, at).unwrap();
                calls += 1;
            }
            store.detection_view("a", at).unwrap();
            store.advance_all(at);
        }
        let end = NOW + 179_000;
        let owed = {
            let shard = store.shards[store.shard_of("a")].lock();
            shard.deps["a"].instances["i-1"].owes_fold()
        };
        assert!(owed, "the pass left the quiet instance alone");
        let key = SeriesKey {
            dependency: "a".into(),
            kind: SeriesKind::Instance,
            label: "i-1".into(),
        };
        // The roll-ups first: they, not a window read before them, must pay the fold.
        let stored: u64 = store
            .take_rollups(end + 120_000, true)
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, r)| r.slot.counts.ok)
            .sum();
        assert_eq!(stored, calls);
        let m15 = store.series_window(&key, Window::M15, end).unwrap();
        assert_eq!(m15.counts.ok, calls);
    }

    /// The peers' name order and each instance's zone are kept from one detection read to
    /// the next, and follow peers that arrive (sorting anywhere) or leave.
    #[test]
    fn detection_views_name_peers_in_order_with_their_zones_as_peers_come_and_go() {
        let store = WindowStore::new(Limits::default());
        let call = |instance: &'static str, zone: &'static str, at: i64| Event {
            zone: Some(Label::parse(zone).unwrap()),
            ts_ms: at,
            ..ev("a", Some(instance))
        };
        let seen = |at: i64| {
            let v = store.detection_view("a", at).unwrap();
            let zones: Vec<String> = v.zones.iter().map(|z| z.name.to_string()).collect();
            v.instances
                .iter()
                .map(|p| {
                    let zone = p.zone.map(|z| zones[z].clone()).unwrap_or_default();
                    format!("{}@{zone}", p.name)
                })
                .collect::<Vec<_>>()
        };
        for (i, z) in [("i-5", "z-b"), ("i-3", "z-c")] {
            store.record(&call(i, z, NOW), NOW).unwrap();
        }
        assert_eq!(seen(NOW), ["i-3@z-c", "i-5@z-b"]);
        assert_eq!(seen(NOW + 1_000), ["i-3@z-c", "i-5@z-b"]);
        // A new instance that sorts first, in a zone that sorts first.
        store
            .record(&call("i-1", "z-a", NOW + 1_500), NOW + 1_500)
            .unwrap();
        assert_eq!(seen(NOW + 2_000), ["i-1@z-a", "i-3@z-c", "i-5@z-b"]);
        // Past the longest window only i-5 keeps calling: the others leave, and a newcomer
        // joins the zone that is left.
        let later = NOW + Window::LONGEST_MS + 10 * 60_000;
        for at in (NOW + 60_000..later).step_by(60_000) {
            store.record(&call("i-5", "z-b", at), at).unwrap();
            // As if written: an unsaved minute keeps its series.
            store.discard_rollups(at);
            store.advance_all(at);
        }
        assert_eq!(seen(later), ["i-5@z-b"]);
        store.record(&call("i-4", "z-b", later), later).unwrap();
        assert_eq!(seen(later), ["i-4@z-b", "i-5@z-b"]);
    }

    /// Names are kept in the map keys inline up to 23 bytes and on the heap beyond: both
    /// kinds are found, counted and ordered alike, in the maps and in the detection views.
    #[test]
    fn names_either_side_of_the_inline_length_are_found_and_ordered_alike() {
        let store = WindowStore::new(Limits::default());
        let name = |len: usize, c: char| -> String { std::iter::repeat_n(c, len).collect() };
        // 23 bytes fit inline, 24 and the longest allowed do not.
        let lengths = [1, 22, 23, 24, 25, Label::MAX_LEN];
        let deps: Vec<String> = lengths.iter().map(|&n| name(n, 'd')).collect();
        let peers: Vec<String> = lengths.iter().map(|&n| name(n, 'p')).collect();
        for dep in &deps {
            for (i, peer) in peers.iter().enumerate() {
                for _ in 0..=i {
                    store.record(&ev(dep, Some(peer)), NOW).unwrap();
                }
            }
        }
        let mut sorted_peers = peers.clone();
        sorted_peers.sort();
        for dep in &deps {
            assert!(store.contains(dep), "{} bytes", dep.len());
            let view = store.detection_view(dep, NOW + 1_000).unwrap();
            let names: Vec<&str> = view.instances.iter().map(|p| &*p.name).collect();
            assert_eq!(names, sorted_peers);
            // Each peer holds its own calls: one more for each longer name.
            for p in &view.instances {
                let i = peers.iter().position(|q| **q == *p.name).unwrap();
                assert_eq!(p.m1.total(), i as u64 + 1, "{} bytes", p.name.len());
            }
            let by_window = store.dependency(dep, Window::M1, NOW + 1_000).unwrap();
            assert_eq!(by_window.total.total(), 21);
        }
        let names = store.names();
        let mut want = deps.clone();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(store.stats().series, deps.len() * (1 + peers.len()));
    }

    #[test]
    fn the_total_series_limit_refuses_new_series_but_not_known_ones() {
        let store = WindowStore::new(Limits {
            max_series: 3,
            ..Limits::default()
        });
        assert!(
            store
                .record_batch(&[ev("a", Some("1")), ev("a", Some("2"))], NOW)
                .is_empty()
        );
        let refused = store.record_batch(&[ev("b", None), ev("a", Some("1"))], NOW);
        assert_eq!(
            refused,
            vec![(
                0,
                RecordError::SeriesLimit {
                    field: "dependency",
                    max: 3
                }
            )]
        );
        assert_eq!(
            store
                .dependency("a", Window::M1, NOW)
                .unwrap()
                .total
                .total(),
            3
        );
        assert!(!store.contains("b"));
        assert_eq!(store.stats().series, 3);
    }

    #[test]
    fn a_stored_minute_ahead_of_the_clock_waits_for_it_and_takes_no_minute_s_place() {
        // Minutes of `NOW - 13 min` and `NOW + 3 min` share a slot of the 16-minute ring.
        let store = WindowStore::new(Limits::default());
        let minute = |start_ms: i64, calls: usize| {
            let mut slot = Slot::new(start_ms);
            for _ in 0..calls {
                slot.record(1_000, Outcome::Ok);
            }
            slot
        };
        let key = SeriesKey {
            dependency: "a".into(),
            kind: SeriesKind::Instance,
            label: "i-1".into(),
        };
        let total = SeriesKey {
            kind: SeriesKind::Dependency,
            label: String::new(),
            ..key.clone()
        };
        let (before, ahead) = (NOW - 13 * 60_000, NOW + 3 * 60_000);
        for k in [&key, &total] {
            store.load_minute(k, &minute(before, 2), NOW).unwrap();
            store.load_minute(k, &minute(ahead, 5), NOW).unwrap();
        }
        assert_eq!(store.minutes_ahead(), 2);
        let m15 = |now| store.dependency("a", Window::M15, now).unwrap();
        assert_eq!(m15(NOW).total.total(), 2);
        assert_eq!(m15(NOW).instances[0].1.total(), 2);
        // The clock reaches the minute: the next roll forward loads it, without making it a
        // minute to write again.
        let reached = ahead + 1_000;
        store.advance_all(reached);
        assert_eq!(store.minutes_ahead(), 0);
        // Sixteen minutes apart, the two are never in one 15-minute window; the hour holds both.
        assert_eq!(m15(reached).total.total(), 5);
        assert_eq!(m15(reached).instances[0].1.total(), 5);
        let h1 = store.dependency("a", Window::H1, reached).unwrap();
        assert_eq!((h1.total.total(), h1.instances[0].1.total()), (7, 7));
        assert!(store.take_rollups(reached + 60_000, true).is_empty());
    }

    #[test]
    fn sources_are_peers_with_their_own_limit_counted_in_the_series_limit_and_persisted() {
        let store = WindowStore::new(Limits {
            max_series: 5,
            max_sources_per_dependency: 2,
            ..Limits::default()
        });
        let call = |dep: &'static str, source: Option<&'static str>| Event {
            source: source.map(|c| Label::parse(c).unwrap()),
            ..ev(dep, Some("i-1"))
        };
        // The total, i-1 and web: three series; a call without a source adds none.
        for e in [
            call("a", Some("web")),
            call("a", None),
            call("a", Some("batch")),
        ] {
            store.record(&e, NOW).unwrap();
        }
        assert_eq!(store.series_count(), 4);
        let refused = store.record(&call("a", Some("cron")), NOW).unwrap_err();
        assert_eq!(refused, RecordError::SourceLimit(2));
        assert!(
            refused
                .to_string()
                .starts_with("source: limit of 2 sources for this dependency"),
            "{refused}"
        );
        // A new dependency with an instance and a source needs three series; one is left.
        assert_eq!(
            store.record(&call("b", Some("web")), NOW),
            Err(RecordError::SeriesLimit {
                field: "dependency",
                max: 5
            })
        );
        let view = store.dependency("a", Window::M1, NOW).unwrap();
        let sources: Vec<(&str, u64)> = view
            .sources
            .iter()
            .map(|(k, s)| (k.as_str(), s.total()))
            .collect();
        assert_eq!(sources, [("batch", 1), ("web", 1)]);
        assert_eq!(view.total.total(), 3);
        assert_eq!(view.instances[0].1.total(), 3);
        let detection = store.detection_view("a", NOW).unwrap();
        let names: Vec<&str> = detection.sources.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["batch", "web"]);

        // Roll-ups name the kind `source`, and load back as a source.
        assert_eq!(SeriesKind::parse("source"), Some(SeriesKind::Source));
        let rollups = store.take_rollups(NOW + 120_000, true);
        let web: Vec<&(SeriesKey, MinuteRollup)> = rollups
            .iter()
            .filter(|(k, _)| k.kind == SeriesKind::Source && k.label == "web")
            .collect();
        assert_eq!(web.len(), 1);
        let reloaded = WindowStore::new(Limits::default());
        for (key, r) in &rollups {
            reloaded
                .load_minute(key, &r.slot, NOW + 120_000)
                .expect("within the limits");
        }
        let view = reloaded.dependency("a", Window::M5, NOW + 120_000).unwrap();
        let sources: Vec<(&str, u64)> = view
            .sources
            .iter()
            .map(|(k, s)| (k.as_str(), s.total()))
            .collect();
        assert_eq!(sources, [("batch", 1), ("web", 1)]);
        assert_eq!(reloaded.series_count(), 4);
    }

    /// `events` recorded as one batch into a new store, and one at a time into another: each
    /// store with the events it refused.
    fn batched_and_single(
        limits: Limits,
        events: &[Event],
    ) -> [(WindowStore, Vec<(usize, RecordError)>); 2] {
        let batched = WindowStore::new(limits);
        let refused = batched.record_batch(events, NOW);
        let single = WindowStore::new(limits);
        let one_by_one = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| single.record(e, NOW).err().map(|err| (i, err)))
            .collect();
        [(batched, refused), (single, one_by_one)]
    }

    #[test]
    fn a_batch_records_and_refuses_exactly_as_events_one_by_one() {
        let limits = Limits {
            max_instances_per_dependency: 3,
            ..Limits::default()
        };
        let names: Vec<String> = (0..40).map(|i| format!("dep-{i}")).collect();
        let instances: Vec<String> = (0..5).map(|i| format!("i-{i}")).collect();
        let events: Vec<Event> = (0..600)
            .map(|k| {
                let mut e = ev(&names[k * 7 % 40], Some(&instances[k / 40 % 5]));
                e.duration_us = 100 + k as u64;
                e
            })
            .collect();
        let [(batched, refused), (single, expected)] = batched_and_single(limits, &events);
        assert!(!expected.is_empty(), "the instance limit must refuse some");
        assert_eq!(refused, expected);
        for name in &names {
            let a = batched.dependency(name, Window::M1, NOW).unwrap();
            let b = single.dependency(name, Window::M1, NOW).unwrap();
            assert_eq!(a.total.counts, b.total.counts, "{name}");
            assert_eq!(a.total.hist, b.total.hist, "{name}");
            let labels =
                |v: &DependencyView| v.instances.iter().map(|i| i.0.clone()).collect::<Vec<_>>();
            assert_eq!(labels(&a), labels(&b), "{name}");
        }
    }

    /// The node-wide limits count what a batch creates in batch order, though the batch is
    /// recorded shard by shard: the same events are refused as one event at a time, and the
    /// same dependencies and instances exist after it.
    #[test]
    fn a_batch_reaches_the_node_limits_where_events_one_by_one_would() {
        for (max_dependencies, max_series) in [(25, 10_000), (1_000, 70)] {
            let limits = Limits {
                max_dependencies,
                max_series,
                ..Limits::default()
            };
            let names: Vec<String> = (0..40).map(|i| format!("dep-{i}")).collect();
            let instances: Vec<String> = (0..4).map(|i| format!("i-{i}")).collect();
            // Dependencies in an order no shard order follows, each with more instances as
            // the batch goes on: both limits are reached halfway through.
            let events: Vec<Event> = (0..400)
                .map(|k| ev(&names[k * 13 % 40], Some(&instances[k / 100])))
                .collect();
            let [(batched, refused), (single, expected)] = batched_and_single(limits, &events);
            assert!(expected.len() > 50, "the limits must refuse some");
            assert_eq!(refused, expected, "{max_dependencies} {max_series}");
            assert_eq!(batched.series_count(), single.series_count());
            for name in &names {
                let a = batched.dependency(name, Window::M1, NOW);
                let b = single.dependency(name, Window::M1, NOW);
                assert_eq!(a.is_some(), b.is_some(), "{name}");
                if let (Some(a), Some(b)) = (a, b) {
                    assert_eq!(a.total.counts, b.total.counts, "{name}");
                    assert_eq!(a.instances.len(), b.instances.len(), "{name}");
                }
            }
        }
    }

    #[test]
    fn an_instance_keeps_the_first_zone_it_reports_even_after_calls_without_one() {
        let store = WindowStore::new(Limits::default());
        let with_zone = |i: &'static str, z: Option<&'static str>| Event {
            zone: z.map(|z| Label::parse(z).unwrap()),
            ..ev("a", Some(i))
        };
        for e in [
            with_zone("1", None),
            with_zone("2", Some("z2")),
            with_zone("1", Some("z1")),
            with_zone("1", Some("z9")),
            with_zone("2", Some("z9")),
        ] {
            store.record(&e, NOW).unwrap();
        }
        let view = store.dependency("a", Window::M1, NOW).unwrap();
        assert_eq!(view.instance_zone.get("1").map(String::as_str), Some("z1"));
        assert_eq!(view.instance_zone.get("2").map(String::as_str), Some("z2"));
        assert_eq!(view.instance_zone.len(), 2);
    }

    #[test]
    fn exported_totals_count_every_call_once_and_never_decrease_late_calls_included() {
        let store = WindowStore::new(Limits::default());
        let mut recorded = 0u64;
        let mut last = (0u64, 0u64);
        // Two minutes of calls, busy enough for some seconds to turn into histograms, with
        // calls 3 s, 30 s and 5 min late, read after every step.
        for step in 0..120i64 {
            let now = NOW + step * 1_000 + 500;
            let mut events = Vec::new();
            let n = if step % 7 == 0 { 300 } else { 5 };
            for k in 0..n {
                let ts = match k % 10 {
                    0 => now - 3_000,
                    1 => now - 30_000,
                    2 => now - 300_000,
                    _ => now,
                };
                events.push(Event {
                    ts_ms: ts,
                    duration_us: 500 + (k as u64) * 997,
                    // Failures are counted, not timed.
                    outcome: if k % 10 == 9 {
                        Outcome::Error
                    } else {
                        Outcome::Ok
                    },
                    instance: Some(Label::parse(["a", "b"][k % 2]).unwrap()),
                    ..ev("dep", None)
                });
            }
            assert!(store.record_batch(&events, now).is_empty());
            recorded += events.len() as u64;
            if step % 3 == 0 {
                store.advance_all(now);
            }
            let view = store.exposition(now);
            let dep = &view[0];
            let calls = dep.totals.counts.total();
            let buckets = dep.totals.latency.as_ref().unwrap().cumulative();
            assert_eq!(calls, recorded, "step {step}");
            assert_eq!(
                buckets[buckets.len() - 1],
                dep.totals.counts.ok,
                "step {step}"
            );
            assert!(dep.totals.counts.ok < calls, "step {step}");
            let peers: u64 = dep.instances.iter().map(|p| p.totals.counts.total()).sum();
            assert_eq!(peers, recorded, "step {step}");
            assert!(calls >= last.0 && peers >= last.1, "step {step}");
            last = (calls, peers);
        }
    }

    #[test]
    fn idle_series_are_evicted_and_free_their_quota() {
        let store = WindowStore::new(Limits {
            max_series: 2,
            max_dependencies: 1,
            ..Limits::default()
        });
        assert!(store.record(&ev("a", Some("1")), NOW).is_ok());
        assert_eq!(
            store.record(&ev("b", None), NOW),
            Err(RecordError::DependencyLimit(1))
        );
        // Persist everything, then let more than an hour pass without events.
        let later = NOW + Window::LONGEST_MS + 10 * 60_000;
        assert!(!store.take_rollups(later, true).is_empty());
        store.advance_all(later);
        assert_eq!(store.stats().series, 0);
        let e = Event {
            ts_ms: later,
            ..ev("b", Some("x"))
        };
        assert!(store.record(&e, later).is_ok());
    }

    proptest::proptest! {
        /// A detection read that reuses unchanged peer samples answers every question the
        /// detectors ask exactly as one that builds every sample afresh: whatever the gaps
        /// between reads (within a second, across window starts, idle minutes) and the
        /// lateness of calls, and for quiet peers and busy ones alike. The total's 10-second
        /// window answers as the histogram of that window.
        #[test]
        fn reused_peer_samples_answer_as_fresh_ones(
            steps in proptest::collection::vec(
                (0i64..25_000, proptest::collection::vec((0usize..4, 0i64..90_000, 1u64..400_000, 0u8..3), 0..40)),
                1..60,
            ),
        ) {
            let (reusing, fresh) = (WindowStore::new(Limits::default()), WindowStore::new(Limits::default()));
            fresh.set_reuse_samples(false);
            let mut now = NOW;
            for (step, calls) in &steps {
                now += step;
                for &(peer, late, duration_us, o) in calls {
                    let instance = ["a", "b", "c", "d"][peer];
                    let e = Event {
                        duration_us,
                        outcome: [Outcome::Ok, Outcome::Error, Outcome::Timeout][o as usize],
                        // Most calls are on time; some are seconds or a minute late.
                        ts_ms: now - if late < 60_000 { late % 900 } else { late },
                        instance: Some(Label::parse(instance).unwrap()),
                        zone: Some(Label::parse(["z1", "z2"][peer % 2]).unwrap()),
                        ..ev("dep", None)
                    };
                    let (x, y) = (reusing.record(&e, now), fresh.record(&e, now));
                    proptest::prop_assert_eq!(x, y);
                }
                let (Some(a), Some(b)) = (reusing.detection_view("dep", now), fresh.detection_view("dep", now)) else {
                    continue;
                };
                for (pa, pb) in a.instances.iter().chain(&a.zones).zip(b.instances.iter().chain(&b.zones)) {
                    proptest::prop_assert_eq!(&pa.name, &pb.name);
                    proptest::prop_assert_eq!(pa.last_seconds, pb.last_seconds);
                    proptest::prop_assert_eq!(pa.s10, pb.s10);
                    proptest::prop_assert_eq!(pa.m1.counts(), pb.m1.counts());
                    for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                        proptest::prop_assert_eq!(pa.m1.value_at_quantile(q), pb.m1.value_at_quantile(q));
                    }
                    for t in [1_000, 50_000, 200_000] {
                        proptest::prop_assert_eq!(pa.m1.count_above(t), pb.m1.count_above(t));
                    }
                }
                proptest::prop_assert_eq!(a.instances.len() + a.zones.len(), b.instances.len() + b.zones.len());
                // The total's 10-second window, read as its durations while they are few,
                // answers as its histogram.
                let key = SeriesKey { dependency: "dep".into(), kind: SeriesKind::Dependency, label: String::new() };
                let s10 = Sample::Histogram(fresh.series_window(&key, Window::S10, now).unwrap());
                proptest::prop_assert_eq!(a.s10.counts(), s10.counts());
                proptest::prop_assert_eq!(a.s10.successful(), s10.successful());
                for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    proptest::prop_assert_eq!(a.s10.value_at_quantile(q), s10.value_at_quantile(q));
                }
                for t in [0, 1_000, 50_000, 200_000] {
                    proptest::prop_assert_eq!(a.s10.count_above(t), s10.count_above(t));
                }
            }
        }
    }

    proptest::proptest! {
        /// The order kept from read to read is the sorted order of the peers' names whatever
        /// peers come and go in between (the map then iterates in another order).
        #[test]
        fn the_kept_peer_order_is_the_sorted_order(
            steps in proptest::collection::vec(
                proptest::collection::vec((proptest::bool::ANY, 0u32..40), 0..6),
                1..30,
            ),
        ) {
            let mut map = PeerMap::default();
            let mut order = Vec::new();
            for changes in &steps {
                for &(add, n) in changes {
                    let name = format!("i-{n}");
                    if add {
                        series_entry(&mut map, "dep", &name);
                    } else {
                        map.remove(name.as_str());
                    }
                }
                let entries: Vec<(&SmolStr, &Series)> = map.iter().collect();
                name_order(&entries, &mut order);
                let read: Vec<&str> = order.iter().map(|&i| &**entries[i as usize].0).collect();
                let mut sorted: Vec<&str> = map.keys().map(|k| &**k).collect();
                sorted.sort_unstable();
                proptest::prop_assert_eq!(read, sorted);
            }
        }
    }

    #[test]
    fn a_quiet_peer_s_minute_is_kept_as_a_list_across_calls_and_window_moves() {
        let store = WindowStore::new(Limits::default());
        let now = NOW - NOW.rem_euclid(10_000) + 1_000;
        store.record(&ev("dep", Some("a")), now).unwrap();
        store.detection_view("dep", now).unwrap();
        assert_eq!(store.samples_reused(), 0);
        // Nothing new: read from the list the first read started.
        store.detection_view("dep", now + 1_000).unwrap();
        assert_eq!(store.samples_reused(), 1);
        // A call joins the list.
        store.record(&ev("dep", Some("a")), now + 2_000).unwrap();
        let v = store.detection_view("dep", now + 2_000).unwrap();
        assert_eq!(v.instances[0].m1.total(), 2);
        assert_eq!(store.samples_reused(), 2);
        // The window moves on (a 10-second boundary), and later past both calls.
        let v = store.detection_view("dep", now + 10_000).unwrap();
        assert_eq!((v.instances[0].m1.total(), store.samples_reused()), (2, 3));
        let v = store.detection_view("dep", now + 60_000).unwrap();
        assert_eq!((v.instances[0].m1.total(), store.samples_reused()), (0, 4));
        // Off: always read from the slots.
        store.set_reuse_samples(false);
        store.detection_view("dep", now + 60_500).unwrap();
        assert_eq!(store.samples_reused(), 4);
    }

    #[test]
    fn an_idle_dependency_s_peers_are_not_read_and_answer_right_when_it_is_called_again() {
        let store = WindowStore::new(Limits::default());
        let now = NOW - NOW.rem_euclid(10_000) + 1_000;
        let at = |ts_ms: i64| Event {
            ts_ms,
            ..ev("dep", Some("a"))
        };
        store.record(&at(now), now).unwrap();
        let Some(Ok(v)) = store.active_detection_view("dep", now + 1_000) else {
            panic!("a dependency called a second ago is active");
        };
        assert_eq!((v.m1.total(), v.instances.len()), (1, 1));
        let reads = store.samples_reused();
        // Over a minute without calls: the total's windows, and no peer read.
        let Some(Err(idle)) = store.active_detection_view("dep", now + 70_000) else {
            panic!("a dependency without calls for a minute is idle");
        };
        assert_eq!((idle.m1.total(), idle.m5.total()), (0, 1));
        assert_eq!(
            store.samples_reused(),
            reads,
            "an idle dependency's peer was read"
        );
        assert!(store.active_detection_view("nobody", now).is_none());
        // Called again: its peers answer as if they had been read all along.
        store.record(&at(now + 71_000), now + 71_000).unwrap();
        let Some(Ok(v)) = store.active_detection_view("dep", now + 72_000) else {
            panic!("called again, the dependency is active");
        };
        let fresh = store.detection_view("dep", now + 72_000).unwrap();
        assert_eq!(v.instances[0].m1.total(), 1);
        assert_eq!(v.instances[0].m1.counts(), fresh.instances[0].m1.counts());
        assert_eq!((v.m1.total(), v.m5.total()), (1, 2));
    }

    #[test]
    fn unsaved_minutes_beyond_the_bound_are_dropped_and_counted() {
        use super::super::series::MAX_UNSAVED_MINUTES;
        let store = WindowStore::new(Limits::default());
        assert!(store.record(&ev("a", None), NOW).is_ok());
        let key = SeriesKey {
            dependency: "a".into(),
            kind: SeriesKind::Dependency,
            label: String::new(),
        };
        let old = NOW - NOW.rem_euclid(60_000) - 24 * 3_600_000;
        let n = MAX_UNSAVED_MINUTES + 10;
        store.restore_unsaved(
            (0..n as i64)
                .map(|i| {
                    let minute_ms = old + i * 60_000;
                    let r = MinuteRollup {
                        minute_ms,
                        late_part: false,
                        slot: Slot::new(minute_ms),
                    };
                    (key.clone(), r)
                })
                .collect(),
        );
        assert_eq!(store.rollups_dropped(), 0);
        store.advance_all(NOW);
        assert_eq!(store.rollups_dropped(), 10);
        store.advance_all(NOW + 1_000);
        assert_eq!(store.rollups_dropped(), 10);
    }
}
