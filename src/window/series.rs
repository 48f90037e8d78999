//! The rolling state of one series (a dependency, or one instance or zone of it).
//!
//! Four rings of slots, finest first:
//!
//! | ring   | width | slots | serves windows |
//! |--------|-------|-------|----------------|
//! | fine   | 1 s   | 10    | 10 s           |
//! | tier 0 | 10 s  | 6     | 1 m            |
//! | tier 1 | 1 m   | 16    | 5 m, 15 m      |
//! | tier 2 | 5 m   | 13    | 1 h            |
//!
//! An event is recorded into one histogram only: the fine slot of its second. When a fine slot
//! leaves the 10-second ring it is folded into the three coarse rings, which costs one counter
//! loop per second per series instead of three histogram writes per event. Windows therefore
//! read one coarse ring plus the still-unfolded fine slots, which never overlap.
//!
//! Events older than the fine ring go straight to the coarse rings that still cover their time.
//! Minutes older than the minute ring are kept in a small side map until they are persisted.
//! The minute ring has one slot more than its longest window (and the 5-minute ring one more
//! than 12) so that an event up to a full window late always has a slot to land in.

use std::collections::BTreeMap;

use super::Window;
use super::ring::Ring;
use super::slot::Slot;
use super::snapshot::Snapshot;
use crate::domain::Outcome;

pub(crate) const FINE_WIDTH_MS: i64 = 1_000;
pub(crate) const FINE_LEN: usize = 10;
const TIERS: [(i64, usize); 3] = [(10_000, 6), (60_000, 16), (300_000, 13)];
pub(crate) const MINUTE_TIER: usize = 1;
pub(crate) const MINUTE_MS: i64 = 60_000;

/// A minute of one series ready to be persisted.
#[derive(Debug, Clone)]
pub struct MinuteRollup {
    pub minute_ms: i64,
    /// `true` for a late-data part to be stored beside the minute's main row, `false` for the
    /// main row, which replaces the stored one.
    pub late_part: bool,
    pub slot: Slot,
}

#[derive(Debug, Clone)]
pub struct Series {
    fine: Ring,
    tiers: [Ring; 3],
    /// Late data for minutes the minute ring no longer covers, waiting to be persisted.
    late_minutes: BTreeMap<i64, Slot>,
    /// Newest event time recorded (event time, not wall clock).
    pub(crate) last_event_ms: i64,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    pub fn new() -> Self {
        Self {
            fine: Ring::new(FINE_WIDTH_MS, FINE_LEN),
            tiers: TIERS.map(|(w, n)| Ring::new(w, n)),
            late_minutes: BTreeMap::new(),
            last_event_ms: i64::MIN,
        }
    }

    /// Upper bound on the memory of one series in bytes, when every slot holds data.
    pub fn max_bytes() -> usize {
        let slots = FINE_LEN + TIERS.iter().map(|t| t.1).sum::<usize>();
        slots * (super::histogram::slot_histogram_bytes() + std::mem::size_of::<Slot>() + 16)
            + std::mem::size_of::<Series>()
    }

    /// Oldest event time any ring of this series accepts at `now_ms`.
    pub fn horizon_start(&self, now_ms: i64) -> i64 {
        self.tiers[2].horizon_start(now_ms)
    }

    /// Records one call. `ts_ms` later than `now_ms` is counted at `now_ms`: clocks of callers
    /// drift, and a future slot would evict live data. Returns false when the event is older
    /// than every ring (callers reject such events before they get here).
    #[inline]
    pub fn record(&mut self, ts_ms: i64, duration_us: u64, outcome: Outcome, now_ms: i64) -> bool {
        let ts_ms = ts_ms.min(now_ms);
        self.last_event_ms = self.last_event_ms.max(ts_ms);
        let second = self.fine.align(ts_ms);
        if second >= self.fine.horizon_start(now_ms) {
            if let Some(slot) = self
                .fine
                .slot_mut_evicting(second, |old| fold(old, &mut self.tiers))
            {
                slot.record(duration_us, outcome);
                return true;
            }
        }
        self.record_late(ts_ms, duration_us, outcome, now_ms)
    }

    fn record_late(&mut self, ts_ms: i64, duration_us: u64, outcome: Outcome, now_ms: i64) -> bool {
        let mut kept = false;
        for ring in &mut self.tiers {
            if ring.align(ts_ms) < ring.horizon_start(now_ms) {
                continue;
            }
            if let Some(slot) = ring.slot_mut(ring.align(ts_ms)) {
                slot.record(duration_us, outcome);
                kept = true;
            }
        }
        let minute = self.tiers[MINUTE_TIER].align(ts_ms);
        if kept && minute < self.tiers[MINUTE_TIER].horizon_start(now_ms) {
            self.late_minutes
                .entry(minute)
                .or_insert_with(|| Slot::new(minute))
                .record(duration_us, outcome);
        }
        kept
    }

    /// Folds every fine slot that has left the 10-second ring. Called before reading and by
    /// the periodic tick, so windows roll forward even when no events arrive.
    pub fn advance(&mut self, now_ms: i64) {
        let horizon = self.fine.horizon_start(now_ms);
        for slot in self.fine.iter_mut() {
            if slot.start_ms < horizon && !slot.is_empty() {
                fold(slot, &mut self.tiers);
                slot.reset(slot.start_ms);
            }
        }
    }

    /// Folds all fine slots regardless of age (before persisting at shutdown).
    pub fn fold_all(&mut self) {
        for slot in self.fine.iter_mut() {
            if !slot.is_empty() {
                fold(slot, &mut self.tiers);
                slot.reset(slot.start_ms);
            }
        }
    }

    /// The window ending at `now_ms`. Call [`Series::advance`] first.
    pub fn window(&self, window: Window, now_ms: i64) -> Snapshot {
        let (from, coarse) = match window.tier() {
            None => (self.fine.horizon_start(now_ms), None),
            Some(t) => {
                let ring = &self.tiers[t];
                let from = ring.align(now_ms) - (window.slots() as i64 - 1) * ring.width_ms;
                (from, Some(ring))
            }
        };
        let mut snap = Snapshot::empty(from, now_ms);
        if let Some(ring) = coarse {
            for slot in ring.in_range(from, now_ms) {
                snap.add_slot(slot);
            }
        }
        for slot in self.fine.in_range(from, now_ms) {
            snap.add_slot(slot);
        }
        snap
    }

    /// Per-bucket snapshots at the resolution of coarse tier `tier` for buckets starting in
    /// `[from_ms, to_ms]`, unfolded fine slots included. Call [`Series::advance`] first.
    pub fn buckets(&self, tier: usize, from_ms: i64, to_ms: i64) -> BTreeMap<i64, Snapshot> {
        let ring = &self.tiers[tier];
        let mut out: BTreeMap<i64, Snapshot> = BTreeMap::new();
        let slots = ring.in_range(from_ms, to_ms).chain(
            self.fine
                .iter()
                .filter(|s| !s.is_empty() && ring.align(s.start_ms) >= from_ms),
        );
        for slot in slots {
            let start = ring.align(slot.start_ms);
            if start > to_ms {
                continue;
            }
            out.entry(start)
                .or_insert_with(|| Snapshot::empty(start, start + ring.width_ms))
                .add_slot(slot);
        }
        out
    }

    /// Loads a persisted minute (at start-up) into the minute and 5-minute rings.
    pub fn load_minute(&mut self, minute_ms: i64, slot: &Slot, now_ms: i64) {
        for ring in &mut self.tiers[MINUTE_TIER..] {
            let start = ring.align(minute_ms);
            if start < ring.horizon_start(now_ms) {
                continue;
            }
            let is_minute_ring = ring.width_ms == MINUTE_MS;
            if let Some(dst) = ring.slot_mut(start) {
                dst.absorb(&slot.hist, &slot.counts);
                // Loaded data is already stored; only new data makes the minute dirty.
                if is_minute_ring {
                    dst.dirty = false;
                }
            }
        }
        self.last_event_ms = self.last_event_ms.max(minute_ms);
    }

    /// Minutes to persist. Without `force`, only minutes that are complete and fully folded
    /// (ended before the fine ring's horizon) are returned, so each is normally written once.
    /// The returned minutes are marked clean; on a failed write, hand them back through
    /// [`Series::restore_unsaved`].
    pub fn take_rollups(&mut self, now_ms: i64, force: bool) -> Vec<MinuteRollup> {
        let fine_horizon = self.fine.horizon_start(now_ms);
        let mut out = Vec::new();
        for slot in self.tiers[MINUTE_TIER].iter_mut() {
            if slot.dirty && (force || slot.start_ms + MINUTE_MS <= fine_horizon) {
                slot.dirty = false;
                out.push(MinuteRollup {
                    minute_ms: slot.start_ms,
                    late_part: false,
                    slot: slot.clone(),
                });
            }
        }
        for (minute_ms, slot) in std::mem::take(&mut self.late_minutes) {
            out.push(MinuteRollup {
                minute_ms,
                late_part: true,
                slot,
            });
        }
        out
    }

    /// Gives back rollups whose write failed so that the next flush retries them.
    pub fn restore_unsaved(&mut self, rollups: Vec<MinuteRollup>) {
        for r in rollups {
            if r.late_part {
                self.late_minutes
                    .entry(r.minute_ms)
                    .or_insert_with(|| Slot::new(r.minute_ms))
                    .absorb(&r.slot.hist, &r.slot.counts);
            } else if let Some(slot) = self.tiers[MINUTE_TIER].slot_mut(r.minute_ms) {
                slot.dirty = true;
            }
        }
    }

    /// True when nothing is left to persist.
    pub fn is_clean(&self) -> bool {
        self.late_minutes.is_empty() && self.tiers[MINUTE_TIER].iter().all(|s| !s.dirty)
    }

    /// Number of slots currently holding an allocation (for memory accounting).
    pub fn allocated_slots(&self) -> usize {
        self.fine.allocated() + self.tiers.iter().map(Ring::allocated).sum::<usize>()
    }
}

/// Adds a fine slot into the slot of each coarse ring that covers its second.
fn fold(fine: &Slot, tiers: &mut [Ring; 3]) {
    for ring in tiers.iter_mut() {
        let start = ring.align(fine.start_ms);
        // `None`: the coarse ring has moved past this second (only possible after a long gap
        // without ticks); the data is older than every window that ring serves.
        if let Some(dst) = ring.slot_mut(start) {
            dst.absorb(&fine.hist, &fine.counts);
        }
    }
}
