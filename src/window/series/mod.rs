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
//! An event is recorded into the fine slot of its second only. When a fine slot leaves the
//! 10-second ring it is folded into its 10-second slot, a complete 10-second slot is passed on
//! to the minute ring, and a whole minute goes up to the 5-minute ring in one merge (see
//! [`carry_up`]; only the hour window reads that ring). Windows therefore read one coarse
//! ring, the slots below it not yet passed on and the still-unfolded fine slots, which never
//! overlap.
//!
//! The detectors read a dependency's 10-second, 1-minute and 5-minute windows and each
//! instance's and zone's 1-minute window every second, so those are kept cheap to read: fine
//! slots stay lists of durations while they hold few calls (see [`super::fine`]), the fine
//! slots that did turn into histograms are kept summed, and the 1-minute and 5-minute windows'
//! coarse slots are kept summed too (a slot joins the sum when data is folded into it and
//! leaves it when the window slides past it). Reading one of those windows is then one
//! histogram copy plus the sparse fine calls; a quiet peer's minute is read as its durations
//! (see [`Series::sample`]), which an instance or a zone keeps as a list from one read to the
//! next (see [`minute`]). Such a peer is read without rolling it forward at all (see
//! [`Series::read_unfolded`]): its retired seconds fold when later calls take their slots.
//!
//! The other concerns live apart: the running sums in [`sums`], the kept minute lists in
//! [`minute`], persistence bookkeeping in [`persist`].
//!
//! Events older than the fine ring go straight to the coarse rings that still cover their time.
//! Minutes older than the minute ring are kept in a small side map until they are persisted.
//! The minute ring has one slot more than its longest window (and the 5-minute ring one more
//! than 12) so that an event up to a full window late always has a slot to land in.

use std::collections::BTreeMap;

use super::Window;
use super::fine::{FineData, FineSlot};
use super::histogram::HIGHEST_US;
use super::prefetch::{prefetch, prefetch_at};
use super::ring::{InlineRing, Ring, RingSlot};
use super::sample::{SAMPLE_MAX, Sample};
use super::slot::{Counts, Slot};
use super::snapshot::Snapshot;
use super::totals::Totals;
use crate::domain::Outcome;

mod minute;
mod owed;
mod persist;
mod sums;

use minute::MinuteList;
use owed::Owed;
pub use persist::{MAX_UNSAVED_MINUTES, MinuteRollup};
use sums::WindowSum;

pub(crate) const FINE_WIDTH_MS: i64 = 1_000;
pub(crate) const FINE_LEN: usize = 10;
const TIERS: [(i64, usize); 3] = [(10_000, 6), (60_000, 16), (300_000, 13)];
pub(crate) const MINUTE_TIER: usize = 1;
pub(crate) const MINUTE_MS: i64 = 60_000;
/// Windows whose coarse part is kept as a running sum; `SUMMED[t]` reads tier `t` (1 minute:
/// six 10-second slots; 5 minutes: five minute slots).
const SUMMED: [Window; 2] = [Window::M1, Window::M5];
/// How long a second may wait unfolded (see [`Series::read_unfolded`]): well inside the
/// minute ring's reach (15 minutes), since a second folded after the ring moved past its
/// minute would reach the 5-minute ring but no stored minute.
const MAX_UNFOLDED_MS: i64 = 5 * MINUTE_MS;

/// One series' rolling windows.
///
/// `repr(C)` keeps the fields in the order written: what recording a call and the peers'
/// read every second touch comes first, within its first 512 bytes (the clock marks, the
/// kept minute, the live counts and sums, then the per-second marks and counts and the
/// 1-second ring's table; a test holds the order), where the compiler's own order spread
/// them from byte 120 to 736.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Series {
    /// No fine slot that starts before this holds calls: rolling forward to a horizon at or
    /// before it has no second to fold (a lower bound, lowered by every call recorded, and
    /// the oldest second still holding calls after a fold).
    fine_floor_ms: i64,
    /// The sums are up to date for every `now` before this (see [`Series::slide`]).
    next_slide_ms: i64,
    /// The latest `now` the series was rolled forward to or read at (see
    /// [`Series::read_unfolded`]).
    read_ms: i64,
    /// A read at this time skipped rolling forward (see [`Series::read_unfolded`]): the
    /// seconds before its horizon are folded before the series rolls forward, or before it
    /// records at an earlier time (a clock that stepped back); `i64::MIN` when none is owed.
    fold_owed_ms: i64,
    /// Newest event time recorded (event time, not wall clock).
    pub(crate) last_event_ms: i64,
    /// Bumped by every change to the calls the series holds (a call recorded, a minute
    /// loaded): while it stands still, a window over the same span reads the same calls.
    pub(crate) changes: u64,
    /// An instance's or zone's 1-minute window as its durations, kept as calls arrive once a
    /// read started it (see [`Series::minute_sample`]); `None` for a dependency's total, and
    /// while the minute is too busy for a list.
    minute_list: Option<Box<MinuteList>>,
    /// Whether the 1-minute sum is kept only while the minute is busy (instances and zones).
    sum_on_demand: bool,
    /// The counts of the live fine slots, kept as calls are recorded into them and as they
    /// retire: the 10-second window's counts without a visit to each second.
    live: Counts,
    /// Running sums of the windows in [`SUMMED`], by tier (see [`sums`]): both for a
    /// dependency's total; for an instance or a zone the 1-minute one, and only while its
    /// minute is read as a histogram (see [`Series::minute_sample`]).
    sums: Vec<WindowSum>,
    /// No 10-second slot that starts before this waits to be passed on (a lower bound,
    /// lowered whenever a second is folded into a slot not yet passed on).
    pending_floor_ms: i64,
    /// How long after its last second is folded a minute's 10-second slots wait before they
    /// are passed on (0-9 s, see [`Series::staggered`]).
    pass_delay_ms: i64,
    /// Each fine slot's second and counts, by ring index (see [`SecondMark`]): a fold
    /// visits only the slots that have calls to fold, where the boxed slots themselves are
    /// a cache miss each, and the peer detectors read the last seconds' counts every
    /// second without a visit to them.
    fine_marks: [SecondMark; FINE_LEN],
    fine: InlineRing<FineSlot, FINE_LEN>,
    /// Durations counted into `dense_fine` but not yet in its histogram (see [`owed`]).
    dense_owed: Owed,
    /// The sum of the live fine slots that have turned into histograms, kept as events arrive
    /// and fine slots retire, so windows read one histogram for them instead of up to ten.
    dense_fine: Slot,
    tiers: [Ring; 3],
    /// Late data for minutes the minute ring no longer covers, waiting to be persisted.
    late_minutes: BTreeMap<i64, Slot>,
    /// Minute slots recycled before they were persisted (a flush fell behind): written as
    /// their minute's main row by the next flush, so recycling never loses stored data.
    evicted_minutes: Vec<Slot>,
    /// Everything recorded since the series was created, except the live fine slots (see
    /// [`super::totals`]).
    retired: Totals,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    /// The series of a dependency's total.
    pub fn new() -> Self {
        Self {
            retired: Totals::with_latency(),
            ..Self::with_sums(SUMMED.len())
        }
    }

    /// The series of an instance or a zone: no running sum until its minute is read as a
    /// histogram (see [`Series::minute_sample`]).
    pub fn peer() -> Self {
        Self {
            sum_on_demand: true,
            ..Self::with_sums(0)
        }
    }

    fn with_sums(n: usize) -> Self {
        Self {
            fine: Ring::new(FINE_WIDTH_MS, FINE_LEN),
            dense_fine: Slot::new(0),
            dense_owed: Owed::default(),
            tiers: TIERS.map(|(w, n)| Ring::new(w, n)),
            sums: (0..n)
                .map(|_| WindowSum {
                    sum: Slot::new(0),
                    from_ms: i64::MIN,
                    burst: 0,
                    owed: Owed::default(),
                })
                .collect(),
            sum_on_demand: false,
            minute_list: None,
            late_minutes: BTreeMap::new(),
            evicted_minutes: Vec::new(),
            next_slide_ms: i64::MIN,
            fine_floor_ms: i64::MAX,
            fine_marks: [SecondMark::EMPTY; FINE_LEN],
            pending_floor_ms: i64::MAX,
            pass_delay_ms: 0,
            read_ms: i64::MIN,
            fold_owed_ms: i64::MIN,
            last_event_ms: i64::MIN,
            live: Counts::default(),
            changes: 0,
            retired: Totals::default(),
        }
    }

    /// The series, passing a whole minute's 10-second slots on to the minute ring 0-9 seconds
    /// late, the delay chosen by its dependency and label: for instances, zones
    /// and sources. Passing on is the costliest step of rolling a series forward, and without
    /// a delay every series of the node would take it in the same second, the one that
    /// completes a minute: on a node with 100,000 series such a second cost more than twice
    /// the others. Windows are unchanged (they read the 10-second slots not yet passed on),
    /// and a minute is passed on whole before it is persisted ([`Series::take_rollups`]). A
    /// dependency's total is not staggered: its 5-minute window is read every second, and
    /// would add a waiting slot to each read.
    ///
    /// The 10-second ring holds one minute, so a delay of a second or more lets the fold of
    /// the next minute's first second recycle the minute's first 10-second slot before the
    /// minute's turn: that slot is passed on alone, into an empty minute, in the same second
    /// for every staggered series that rolls forward (a small merge, where the rest of the
    /// minute goes on staggered).
    pub fn staggered(mut self, dependency: &str, label: &str) -> Self {
        // FNV-1a: stable across runs and platforms, so a replay costs the same each time.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in dependency.bytes().chain([0xff]).chain(label.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        // Whole seconds, up to the width of a 10-second slot.
        let seconds = (TIERS[0].0 / FINE_WIDTH_MS) as u64;
        self.pass_delay_ms = (h % seconds) as i64 * FINE_WIDTH_MS;
        self
    }

    #[cfg(test)]
    fn with_pass_delay(mut self, ms: i64) -> Self {
        self.pass_delay_ms = ms;
        self
    }

    /// Bytes the series holds, its own struct included: what its calls need, since slots
    /// stay sparse while they hold few distinct durations.
    pub fn heap_bytes(&self) -> usize {
        let slot = |s: &Slot| std::mem::size_of::<Slot>() + s.heap_bytes();
        std::mem::size_of::<Series>()
            + self.fine.heap_bytes()
            + self.dense_fine.heap_bytes()
            + self.dense_owed.heap_bytes()
            + self.tiers.iter().map(Ring::heap_bytes).sum::<usize>()
            + self.sums.capacity() * std::mem::size_of::<WindowSum>()
            + self.sums.iter().map(|s| s.sum.heap_bytes() + s.owed.heap_bytes()).sum::<usize>()
            // A B-tree entry: key and value, and about as much again for the tree.
            + self.late_minutes.values().map(|s| 2 * (8 + slot(s))).sum::<usize>()
            + self.minute_list.as_ref().map_or(0, |l| {
                std::mem::size_of::<MinuteList>() + l.heap_bytes()
            })
            + self.evicted_minutes.capacity() * std::mem::size_of::<Slot>()
            + self.evicted_minutes.iter().map(Slot::heap_bytes).sum::<usize>()
            + self.retired.latency.as_ref().map_or(0, |_| {
                std::mem::size_of::<super::totals::LatencyBuckets>()
            })
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
        let kept = self.record_slots(ts_ms, duration_us, outcome, now_ms);
        if kept
            && let Some(list) = &mut self.minute_list
            && !list.record(ts_ms.min(now_ms), duration_us, outcome, now_ms)
        {
            self.minute_list = None;
        }
        kept
    }

    #[inline]
    fn record_slots(
        &mut self,
        ts_ms: i64,
        duration_us: u64,
        outcome: Outcome,
        now_ms: i64,
    ) -> bool {
        let ts_ms = ts_ms.min(now_ms);
        if now_ms < self.fold_owed_ms {
            // The clock stepped back past a read that did not roll forward: fold what that
            // read left, as rolling forward then would have, before a call lands in it.
            self.fold_owed();
        }
        self.changes = self.changes.wrapping_add(1);
        self.last_event_ms = self.last_event_ms.max(ts_ms);
        self.slide(now_ms);
        // Most events land in a live second whose slot exists: find it with the fine ring's
        // constant width and length (a multiply and shifts, where the general ring
        // arithmetic divides by its runtime width three times).
        let second = ts_ms.div_euclid(FINE_WIDTH_MS);
        let start = second * FINE_WIDTH_MS;
        // Set before the slot is known: a lower bound may be too low, never too high.
        self.fine_floor_ms = self.fine_floor_ms.min(start);
        let index = second.rem_euclid(FINE_LEN as i64) as usize;
        if now_ms < start + FINE_LEN as i64 * FINE_WIDTH_MS
            && let Some(slot) = self.fine.at_mut(index).filter(|s| s.start_ms == start)
        {
            if slot.record(duration_us, outcome, &mut self.dense_fine) {
                self.dense_owed
                    .record(&mut self.dense_fine, duration_us, outcome);
            }
            self.fine_marks[index] = SecondMark::of(start, &slot.counts);
            self.live
                .count(outcome, Counts::timed(outcome) && duration_us > HIGHEST_US);
            for s in &mut self.sums {
                s.record(start, duration_us, outcome);
            }
            return true;
        }
        let second = self.fine.align(ts_ms);
        debug_assert_eq!(self.fine.index(second), index);
        if second >= fine_horizon(now_ms) {
            // An older second with calls is about to fold into its 10-second slot (a quiet
            // peer's seconds fold here, not in a roll forward), which may recycle a slot of an
            // earlier minute: the minutes that ended before every second still unfolded are
            // whole, so their slots go on together first, not one by one as they are recycled.
            if self.fine_marks[index].start_ms < second {
                let unfolded = self
                    .fine_marks
                    .iter()
                    .fold(i64::MAX, |t, m| t.min(m.start_ms));
                self.pass_on_until(unfolded);
            }
            // An evicted second leaves `dense_fine`, which must hold its calls first.
            self.dense_owed.pay(&mut self.dense_fine);
            let (tiers, evicted, late, dense, retired) = (
                &mut self.tiers,
                &mut self.evicted_minutes,
                &mut self.late_minutes,
                &mut self.dense_fine,
                &mut self.retired,
            );
            let pending_floor = &mut self.pending_floor_ms;
            let live = &mut self.live;
            if let Some(slot) = self.fine.slot_mut_evicting(second, |old| {
                retire(old, tiers, evicted, late, dense, retired);
                live.subtract(&old.counts);
                *pending_floor = (*pending_floor).min(tiers[0].align(old.start_ms));
            }) {
                if slot.record(duration_us, outcome, &mut self.dense_fine) {
                    self.dense_owed
                        .record(&mut self.dense_fine, duration_us, outcome);
                }
                self.fine_marks[index] = SecondMark::of(second, &slot.counts);
                self.live
                    .count(outcome, Counts::timed(outcome) && duration_us > HIGHEST_US);
                for s in &mut self.sums {
                    s.record(second, duration_us, outcome);
                }
                return true;
            }
        }
        self.record_late(ts_ms, duration_us, outcome, now_ms)
    }

    fn record_late(&mut self, ts_ms: i64, duration_us: u64, outcome: Outcome, now_ms: i64) -> bool {
        let mut kept = false;
        for tier in 0..self.tiers.len() {
            let ring = &self.tiers[tier];
            let start = ring.align(ts_ms);
            if start < ring.horizon_start(now_ms) {
                continue;
            }
            let (rings, evicted) = (&mut self.tiers, &mut self.evicted_minutes);
            let slot = match tier {
                0 => ten_second_slot(rings, evicted, &mut self.late_minutes, start),
                MINUTE_TIER => minute_slot(&mut rings[MINUTE_TIER..], evicted, start).0,
                _ => coarse_slot(&mut rings[tier], tier, evicted, start),
            };
            if let Some(slot) = slot {
                slot.record(duration_us, outcome);
                kept = true;
                // A 10-second slot not yet passed on, or a minute not yet gone up, carries
                // the call up when it is.
                let carried = slot.pending;
                if let Some(s) = self.sums.get_mut(tier) {
                    s.record(start, duration_us, outcome);
                }
                if carried {
                    // The 5-minute window reads a 10-second slot until it is passed on.
                    if tier == 0
                        && let Some(s) = self.sums.get_mut(1)
                    {
                        s.record(start, duration_us, outcome);
                    }
                    break;
                }
            }
        }
        if kept {
            // The slow path of events over 10 s late: they never pass a fine slot.
            self.retired.record(duration_us, outcome);
        }
        let minute = self.tiers[MINUTE_TIER].align(ts_ms);
        if kept && minute < self.tiers[MINUTE_TIER].horizon_start(now_ms) {
            late_minute(&mut self.late_minutes, minute).record(duration_us, outcome);
        }
        kept
    }

    /// Folds every fine slot that has left the 10-second ring. Called before reading and by
    /// the periodic tick, so windows roll forward even when no events arrive.
    pub fn advance(&mut self, now_ms: i64) {
        self.pay_owed();
        self.slide(now_ms);
        // A read that skipped rolling forward at a later time owes its fold (a clock that
        // stepped back).
        let until = now_ms.max(self.fold_owed_ms);
        self.fold_owed_ms = i64::MIN;
        self.fold_before(fine_horizon(until));
        self.read_ms = self.read_ms.max(now_ms);
    }

    /// Folds what a read that did not roll forward left (see [`Series::read_unfolded`]).
    fn fold_owed(&mut self) {
        let until = fine_horizon(self.fold_owed_ms);
        self.fold_owed_ms = i64::MIN;
        self.fold_before(until);
    }

    /// Adds every owed duration to its histogram (see [`owed`]): before the series is read.
    fn pay_owed(&mut self) {
        self.dense_owed.pay(&mut self.dense_fine);
        for s in &mut self.sums {
            s.owed.pay(&mut s.sum);
        }
    }

    /// Retires every fine slot that starts before `until_ms`, then passes on the 10-second
    /// slots of every minute whose seconds are all folded (after the series' delay).
    fn fold_before(&mut self, until_ms: i64) {
        // A series without calls in the seconds leaving the ring costs two comparisons.
        if until_ms > self.fine_floor_ms {
            self.fold_fine_before(until_ms);
        }
        self.pass_on_until(until_ms.saturating_sub(self.pass_delay_ms));
    }

    /// Passes on, without the series' delay, the 10-second slots of every minute whose seconds
    /// are all folded at `now_ms`: before minutes are persisted, so that a complete minute is
    /// whole.
    pub(crate) fn pass_on_folded(&mut self, now_ms: i64) {
        self.pass_on_until(fine_horizon(now_ms));
    }

    /// Passes on the 10-second slots of the minutes that end at or before `until_ms`, when
    /// one may wait.
    fn pass_on_until(&mut self, until_ms: i64) {
        if self.pending_floor_ms != i64::MAX
            && whole_minute(self.pending_floor_ms).saturating_add(MINUTE_MS) <= until_ms
        {
            self.pass_on(until_ms);
        }
    }

    /// Retires the fine slots before `until_ms`, visiting only those that hold calls (see
    /// `fine_marks`), and notes the oldest second still holding calls.
    fn fold_fine_before(&mut self, until_ms: i64) {
        // Retiring a dense second takes its calls out of `dense_fine`.
        self.dense_owed.pay(&mut self.dense_fine);
        let mut floor = i64::MAX;
        for i in 0..FINE_LEN {
            let start = self.fine_marks[i].start_ms;
            if start >= until_ms {
                floor = floor.min(start);
                continue;
            }
            self.fine_marks[i] = SecondMark::EMPTY;
            let Some(slot) = self.fine.at_mut(i) else {
                continue;
            };
            if slot.start_ms < until_ms && !slot.is_empty() {
                retire(
                    slot,
                    &mut self.tiers,
                    &mut self.evicted_minutes,
                    &mut self.late_minutes,
                    &mut self.dense_fine,
                    &mut self.retired,
                );
                self.live.subtract(&slot.counts);
                slot.reset(slot.start_ms);
                let ten = self.tiers[0].align(slot.start_ms);
                self.pending_floor_ms = self.pending_floor_ms.min(ten);
            }
        }
        self.fine_floor_ms = floor;
        self.sums.iter_mut().for_each(WindowSum::settle);
    }

    /// Passes the 10-second slots of every minute that ends at or before `until_ms` (all its
    /// seconds folded) on to the minute ring, a minute's slots together, and the minutes
    /// then whole up to the 5-minute ring.
    fn pass_on(&mut self, until_ms: i64) {
        let (ten, upper) = self.tiers.split_first_mut().expect("three rings");
        // The oldest slot still waiting, once these are passed on (its minute ends after
        // `until_ms`): no visit until then.
        let mut floor = i64::MAX;
        // The waiting slots of the minutes that ended, as (start, ring index).
        let mut ready = [(0i64, 0usize); TIERS[0].1];
        let mut n = 0;
        for i in 0..TIERS[0].1 {
            let Some(slot) = ten.at_mut(i).filter(|s| s.pending) else {
                continue;
            };
            if whole_minute(slot.start_ms).saturating_add(MINUTE_MS) <= until_ms {
                ready[n] = (slot.start_ms, i);
                n += 1;
            } else {
                floor = floor.min(slot.start_ms);
            }
        }
        let ready = &mut ready[..n];
        ready.sort_unstable();
        let (evicted, late) = (&mut self.evicted_minutes, &mut self.late_minutes);
        for group in ready.chunk_by(|a, b| whole_minute(a.0) == whole_minute(b.0)) {
            pass_on_minute(ten, upper, group, evicted, late);
            // The minute is whole: it goes up (one whose calls all came as late seconds goes
            // up when its slot is recycled).
            let (minutes, five) = upper.split_first_mut().expect("two rings");
            if let Some(m) = minutes
                .get_mut(whole_minute(group[0].0))
                .filter(|m| m.pending)
            {
                pass_up(m, &mut five[0], evicted);
            }
        }
        self.pending_floor_ms = floor;
        self.sums.iter_mut().for_each(WindowSum::settle);
    }

    /// Folds all fine slots regardless of age (before persisting at shutdown).
    pub fn fold_all(&mut self) {
        self.fold_before(i64::MAX);
        // Nothing is left for a fold a read skipped.
        self.fold_owed_ms = i64::MIN;
    }

    /// The counts of the 10-second window, without summing its latencies. Call
    /// [`Series::advance`] first.
    pub fn recent_counts(&self) -> Counts {
        // Seconds a read left unfolded still count in `live` (see `read_unfolded`).
        debug_assert_eq!(self.fold_owed_ms, i64::MIN, "read before rolling forward");
        self.live
    }

    /// Everything recorded since the series was created: what retired plus the live fine
    /// slots. Never less than at an earlier call.
    pub fn totals(&self) -> Totals {
        let mut t = self.retired.clone();
        // Every second not yet retired, folded or not.
        t.counts.add(&self.live);
        if let Some(l) = &mut t.latency {
            for slot in self.fine.iter() {
                if let FineData::Sparse(values) = slot.data() {
                    l.add_values(values);
                }
            }
            // The dense fine slots, summed.
            if !self.dense_fine.is_empty() {
                l.add_slot_hist(&self.dense_fine.hist);
                // Counted at their buckets like the histogram's calls (normally none: reads
                // follow `advance`, which pays them).
                if !self.dense_owed.is_empty() {
                    let mut owed = super::slot_hist::SlotHist::default();
                    owed.make_dense();
                    owed.add_values(self.dense_owed.values());
                    l.add_slot_hist(&owed);
                }
            }
        }
        t
    }

    /// Whether rolling the series forward at `now_ms` may wait: a peer whose minute is kept as
    /// a list is read without it (see [`Series::read_unfolded`]), and every other read, the
    /// roll-ups included, rolls it forward first. The daemon's per-second pass then leaves
    /// it alone, for at most [`MAX_UNFOLDED_MS`] after its oldest unfolded second.
    pub fn fold_may_wait(&self, now_ms: i64) -> bool {
        self.minute_list.is_some()
            && self.sum_on_demand
            && self.sums.is_empty()
            && now_ms >= self.read_ms
            && self.fine_floor_ms >= now_ms - MAX_UNFOLDED_MS
    }

    /// Whether a read left a fold owed (see [`Series::read_unfolded`]).
    #[cfg(test)]
    pub(crate) fn owes_fold(&self) -> bool {
        self.fold_owed_ms != i64::MIN
    }

    /// Reads a peer whose minute is kept as a list (see [`Series::minute_sample`]) at `now_ms`
    /// without rolling it forward, returning the counts of its 10-second window; `None` when
    /// it must roll forward first ([`Series::advance`]): no kept list, one that no longer
    /// knows the window, a second whose counts are not kept inline, or a clock that stepped
    /// back since the last read.
    ///
    /// Rolling forward moves the seconds that left the 10-second ring into the coarser rings,
    /// which a kept minute does not read. Here they stay in the fine ring until a call of a
    /// later second takes their slot, which folds them then (`record_slots`), or until the
    /// series next rolls forward. A peer read this way costs its list and its inline counts,
    /// not a visit to each of its boxed slots, and every read and window of it holds what it
    /// would have held had it rolled forward.
    pub fn read_unfolded(&mut self, now_ms: i64) -> Option<Counts> {
        if !self.fold_may_wait(now_ms) {
            return None;
        }
        let list = self.minute_list.as_deref()?;
        if now_ms < self.next_slide_ms - TIERS[0].0
            || minute::minute_start(now_ms) < list.start_ms()
        {
            return None;
        }
        let from = fine_horizon(now_ms);
        // No second before the window holds calls (the series rolled forward this second, as
        // the daemon's per-second pass does): the live counts are the window's.
        let counts = if self.fine_floor_ms >= from {
            self.live
        } else {
            let mut counts = Counts::default();
            for mark in &self.fine_marks {
                if mark.start_ms >= from && mark.start_ms != i64::MAX {
                    counts.add(&mark.counts()?);
                }
            }
            counts
        };
        // What rolling forward does besides folding: no sums to move, the time they would
        // move next.
        self.slide(now_ms);
        self.read_ms = now_ms;
        self.fold_owed_ms = now_ms;
        Some(counts)
    }

    /// Hints the part of the series a peer read visits (the fields before the 1-second
    /// ring's table, see the struct's documentation) to the cache: the first of four steps
    /// a loop over peers takes a few peers ahead (see [`super::prefetch`]).
    #[inline]
    pub(crate) fn prefetch_read(&self) {
        prefetch(self, std::mem::offset_of!(Series, fine));
    }

    /// Hints what recording a call visits first to the cache: the hot part, the 1-second
    /// ring's table and the coarse rings' headers (see the struct's documentation). The first of two
    /// steps a loop over calls takes a few calls ahead (see [`super::prefetch`]).
    #[inline]
    pub(crate) fn prefetch_record(&self) {
        prefetch(
            self,
            std::mem::offset_of!(Series, fine)
                + std::mem::size_of::<InlineRing<FineSlot, FINE_LEN>>(),
        );
        prefetch(&self.tiers, std::mem::size_of::<[Ring; 3]>());
    }

    /// The second step of [`Series::prefetch_record`] for a call at `ts_ms`: the slot of its
    /// second, the kept minute list, and when the call's second takes the slot of an older
    /// one, the 10-second slot that second folds into.
    #[inline]
    pub(crate) fn prefetch_record_slots(&self, ts_ms: i64) {
        let second = ts_ms.div_euclid(FINE_WIDTH_MS);
        let index = second.rem_euclid(FINE_LEN as i64) as usize;
        if let Some(slot) = self.fine.at(index) {
            prefetch(slot, std::mem::size_of::<FineSlot>());
            let older = self.fine_marks[index].start_ms;
            // Saturating: the event may yet be refused as too old, at any time at all.
            if older < second.saturating_mul(FINE_WIDTH_MS) {
                // Folding the older second visits the rest of the series too: the dense
                // fine sum, the rings and the retired totals.
                let cold = std::mem::offset_of!(Series, dense_owed);
                prefetch_at(
                    std::ptr::from_ref(self).cast::<u8>().wrapping_add(cold),
                    std::mem::size_of::<Series>() - cold,
                );
                let ten = &self.tiers[0];
                if let Some(slot) = ten.at(ten.index(ten.align(older))) {
                    prefetch(slot, std::mem::size_of::<Slot>());
                }
            }
        }
        self.prefetch_list();
    }

    /// The second step of [`Series::prefetch_read`], once it has had time to arrive: the kept
    /// minute list, if any.
    #[inline]
    pub(crate) fn prefetch_list(&self) {
        if let Some(list) = self.minute_list.as_deref() {
            prefetch(list, std::mem::size_of::<MinuteList>());
        }
    }

    /// The third step: the list's shared durations' counters and vector, which a read
    /// shares.
    #[inline]
    pub(crate) fn prefetch_sorted(&self) {
        if let Some(list) = self.minute_list.as_deref() {
            list.prefetch_sorted();
        }
    }

    /// The last step: the list's durations, a short list's all and a longer one's first (the
    /// detectors next read a quantile of them and search them for a threshold).
    #[inline]
    pub(crate) fn prefetch_values(&self) {
        if let Some(list) = self.minute_list.as_deref() {
            list.prefetch_values();
        }
    }

    /// Counts of the two complete seconds before the second of `now_ms`, the older first
    /// (empty for a second without calls). Call [`Series::advance`] first.
    pub fn last_complete_seconds(&self, now_ms: i64) -> [Counts; 2] {
        let this_second = now_ms.div_euclid(1000) * 1000;
        // No call since before those seconds: both are empty, no visit to the ring.
        if self.last_event_ms < this_second - 2000 {
            return [Counts::default(); 2];
        }
        [2000, 1000].map(|ago| {
            let start = this_second - ago;
            let index = start.div_euclid(FINE_WIDTH_MS).rem_euclid(FINE_LEN as i64) as usize;
            // A second without calls is known without a visit to its boxed slot, and so are
            // the counts of one with calls, but for counts too large to keep inline.
            let mark = &self.fine_marks[index];
            if mark.start_ms != start {
                return Counts::default();
            }
            mark.counts().unwrap_or_else(|| {
                self.fine
                    .get(start)
                    .map_or_else(Counts::default, |s| s.counts)
            })
        })
    }

    /// The calls of the complete second before the second of `now_ms` (empty when it had
    /// none): what sequential evidence adds up, one second at a time. A second that keeps
    /// its durations as a list is read as that list (see [`Sample`]). Call
    /// [`Series::advance`] first.
    pub fn last_complete_second(&self, now_ms: i64) -> Sample {
        let start = now_ms.div_euclid(1000) * 1000 - 1000;
        let slot = self.fine.get(start).filter(|s| !s.is_empty());
        match slot.map(|s| (s, s.data())) {
            Some((slot, FineData::Dense(_))) => {
                let mut snap = Snapshot::empty(start, start + 1000);
                snap.add_fine(slot);
                Sample::Histogram(snap)
            }
            Some((slot, FineData::Sparse(values))) => Sample::Durations {
                from_ms: start,
                to_ms: start + 1000,
                values: values.to_vec(),
                counts: slot.counts,
            },
            None => Sample::Durations {
                from_ms: start,
                to_ms: start + 1000,
                values: Vec::new(),
                counts: Counts::default(),
            },
        }
    }

    /// Where `window` ending at `now_ms` starts: two reads of a window with the same start and
    /// the same [`Series::changes`] hold the same calls.
    pub fn window_start(&self, window: Window, now_ms: i64) -> i64 {
        match window.tier() {
            None => fine_horizon(now_ms),
            Some(t) => window_start(&self.tiers[t], window, now_ms),
        }
    }

    /// The window ending at `now_ms`. Call [`Series::advance`] first.
    pub fn window(&self, window: Window, now_ms: i64) -> Snapshot {
        debug_assert_eq!(self.fold_owed_ms, i64::MIN, "read before rolling forward");
        let mut snap = match window.tier() {
            None => Snapshot::empty(fine_horizon(now_ms), now_ms),
            Some(t) => {
                let ring = &self.tiers[t];
                let from = window_start(ring, window, now_ms);
                // The sum is exactly the window when it was slid to the same `now` (a clock
                // that stepped back takes the long way).
                if let Some(s) = self.sums.get(t)
                    && SUMMED[t] == window
                    && s.from_ms == from
                {
                    let mut snap = Snapshot::of_slot(&s.sum, from, now_ms);
                    s.owed.add_to(&mut snap);
                    return snap;
                }
                let mut snap = Snapshot::empty(from, now_ms);
                for slot in ring.in_range(from, now_ms) {
                    snap.add_slot(slot);
                }
                // Folded seconds not yet passed on to this ring, and minutes not yet gone up.
                for lower in &self.tiers[..t] {
                    for slot in lower.in_range(from, now_ms).filter(|s| s.pending) {
                        snap.add_slot(slot);
                    }
                }
                snap
            }
        };
        // After `advance`, every live fine slot lies inside any window's range.
        if !self.dense_fine.is_empty() {
            snap.add_slot(&self.dense_fine);
            self.dense_owed.add_to(&mut snap);
        }
        for slot in self.fine.iter() {
            if !slot.is_dense() && !slot.is_empty() {
                snap.add_fine(slot);
            }
        }
        snap
    }

    /// The window ending at `now_ms` as the peer detectors read it: the durations themselves
    /// when every part of the window still keeps them and they are few, else the histogram
    /// (see [`Sample`]). Call [`Series::advance`] first.
    pub fn sample(&self, window: Window, now_ms: i64) -> Sample {
        match self.durations(window, now_ms) {
            Some((from_ms, values, counts)) => Sample::Durations {
                from_ms,
                to_ms: now_ms,
                values,
                counts,
            },
            None => Sample::Histogram(self.window(window, now_ms)),
        }
    }

    /// The 1-minute window ending at `now_ms` as the peer detectors read it (see
    /// [`Series::sample`]), for an instance or a zone read every second. A quiet minute is
    /// read as its durations, which need no running sum: the series keeps its 1-minute sum
    /// only while its minute is read as a histogram, starting it from the 10-second slots when
    /// the minute turns busy and dropping it when it turns quiet. Call [`Series::advance`]
    /// first.
    ///
    /// With `keep`, the durations are kept as a list from this read on, updated by every call
    /// recorded and every move of the window (see [`minute`]), so that the next reads share
    /// that list, sorted, instead of walking the slots (the sample holds it until it is
    /// dropped: drop it before the next call is recorded, or that call copies the list); the
    /// second value says whether this read did.
    pub fn minute_sample(&mut self, now_ms: i64, keep: bool) -> (Sample, bool) {
        if keep && self.sum_on_demand {
            let kept = self.kept_minute(now_ms);
            if let Some(list) = self.minute_list.as_deref_mut() {
                self.sums.clear();
                let sample = Sample::Sorted {
                    from_ms: list.start_ms(),
                    to_ms: now_ms,
                    values: list.sorted().clone(),
                    counts: list.counts(),
                };
                return (sample, kept);
            }
        } else {
            self.minute_list = None;
        }
        (self.minute_sample_from_slots(now_ms), false)
    }

    /// Brings the kept list of the minute up to `now_ms`, or starts one from the slots (false)
    /// when there was none, or the one there was no longer knows the window.
    fn kept_minute(&mut self, now_ms: i64) -> bool {
        // The slots reach past this clock (it stepped back): only they know its window.
        if now_ms < self.next_slide_ms - TIERS[0].0 {
            self.minute_list = None;
            return false;
        }
        if let Some(list) = self.minute_list.as_deref_mut() {
            if list.slide(now_ms) {
                return true;
            }
            self.minute_list = None;
        }
        self.minute_list = self.list_minute(now_ms).map(Box::new);
        false
    }

    /// The durations of the 1-minute window by 10-second block, when every slot it reads keeps
    /// them and they number at most [`SAMPLE_MAX`].
    fn list_minute(&self, now_ms: i64) -> Option<MinuteList> {
        if !self.dense_fine.is_empty() {
            return None;
        }
        let from = minute::minute_start(now_ms);
        debug_assert_eq!(from, window_start(&self.tiers[0], Window::M1, now_ms));
        let mut parts: Vec<(i64, &[u32], &Counts)> = Vec::with_capacity(16);
        for slot in self.tiers[0].in_range(from, now_ms) {
            parts.push((slot.start_ms, slot.values()?, &slot.counts));
        }
        for slot in self.fine.iter().filter(|s| !s.is_empty()) {
            let FineData::Sparse(values) = slot.data() else {
                return None;
            };
            parts.push((self.tiers[0].align(slot.start_ms), values, &slot.counts));
        }
        parts.sort_by_key(|p| p.0);
        let mut list = MinuteList::new(from);
        for (start, values, counts) in parts {
            if !list.push_block(start, values, counts) {
                return None;
            }
        }
        Some(list)
    }

    /// [`Series::minute_sample`] read from the slots.
    fn minute_sample_from_slots(&mut self, now_ms: i64) -> Sample {
        if let Some((from_ms, values, counts)) = self.durations(Window::M1, now_ms) {
            if self.sum_on_demand {
                self.sums.clear();
            }
            return Sample::Durations {
                from_ms,
                to_ms: now_ms,
                values,
                counts,
            };
        }
        if self.sum_on_demand && self.sums.is_empty() {
            self.start_minute_sum(now_ms);
        }
        Sample::Histogram(self.window(Window::M1, now_ms))
    }

    /// The durations of the 10-second or 1-minute window, when every slot it reads keeps them
    /// and they number at most [`SAMPLE_MAX`].
    fn durations(&self, window: Window, now_ms: i64) -> Option<(i64, Vec<u32>, Counts)> {
        debug_assert_eq!(self.fold_owed_ms, i64::MIN, "read before rolling forward");
        // A fine slot that turned into a histogram has its calls in `dense_fine`.
        if !self.dense_fine.is_empty() {
            return None;
        }
        let (from, tens) = match window.tier() {
            None => (fine_horizon(now_ms), false),
            Some(0) => (window_start(&self.tiers[0], window, now_ms), true),
            Some(_) => return None,
        };
        // Each part of the window as its list of durations, or `None` for a part without one.
        let parts = || {
            let ten = self.tiers[0]
                .in_range(from, now_ms)
                .filter(move |_| tens)
                .map(|slot| slot.values().map(|v| (v, &slot.counts)));
            let fine = self
                .fine
                .iter()
                .filter(|s| !s.is_empty())
                .map(|slot| match slot.data() {
                    FineData::Sparse(v) => Some((v, &slot.counts)),
                    FineData::Dense(_) => None,
                });
            ten.chain(fine)
        };
        // Check every part and the total before copying anything: a busier peer is read as a
        // histogram every second, and should not pay for a list first.
        let mut n = 0;
        for part in parts() {
            n += part?.0.len();
        }
        if n > SAMPLE_MAX {
            return None;
        }
        let mut values = Vec::with_capacity(n);
        let mut counts = Counts::default();
        for (list, c) in parts().flatten() {
            values.extend_from_slice(list);
            counts.add(c);
        }
        Some((from, values, counts))
    }

    /// Per-bucket snapshots at the resolution of coarse tier `tier` for buckets starting in
    /// `[from_ms, to_ms]`, unfolded fine slots included. Call [`Series::advance`] first.
    pub fn buckets(&self, tier: usize, from_ms: i64, to_ms: i64) -> BTreeMap<i64, Snapshot> {
        let ring = &self.tiers[tier];
        let mut out: BTreeMap<i64, Snapshot> = BTreeMap::new();
        let in_range = |start: i64| start >= from_ms && start <= to_ms;
        let empty = |start: i64| Snapshot::empty(start, start + ring.width_ms);
        for slot in ring.in_range(from_ms, to_ms) {
            let start = slot.start_ms;
            out.entry(start)
                .or_insert_with(|| empty(start))
                .add_slot(slot);
        }
        for lower in &self.tiers[..tier] {
            for slot in lower.iter().filter(|s| s.pending && !s.is_empty()) {
                let start = ring.align(slot.start_ms);
                if in_range(start) {
                    out.entry(start)
                        .or_insert_with(|| empty(start))
                        .add_slot(slot);
                }
            }
        }
        for slot in self.fine.iter().filter(|s| !s.is_empty()) {
            let start = ring.align(slot.start_ms);
            if in_range(start) {
                out.entry(start)
                    .or_insert_with(|| empty(start))
                    .add_fine(slot);
            }
        }
        out
    }

    /// Number of slots currently holding an allocation (for memory accounting).
    pub fn allocated_slots(&self) -> usize {
        self.fine.allocated() + self.tiers.iter().map(Ring::allocated).sum::<usize>()
    }
}

/// The second a fine slot holds calls of (`i64::MAX` for a slot without calls) and its
/// counts, narrowed to 16 bits: 16 bytes, so that a call or a read of one second finds
/// both on one cache line (unless the mark straddles two), and the ten take 160 bytes
/// where two arrays took 240. A count that does not fit is
/// kept as `u16::MAX`: the slot itself must then be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SecondMark {
    start_ms: i64,
    counts: [u16; 4],
}

impl SecondMark {
    const EMPTY: Self = Self {
        start_ms: i64::MAX,
        counts: [0; 4],
    };

    #[inline]
    fn of(start_ms: i64, c: &Counts) -> Self {
        let narrow = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
        Self {
            start_ms,
            counts: [c.ok, c.error, c.timeout, c.clamped].map(narrow),
        }
    }

    /// The counts, or `None` when one of them did not fit.
    #[inline]
    fn counts(&self) -> Option<Counts> {
        if self.counts.contains(&u16::MAX) {
            return None;
        }
        let [ok, error, timeout, clamped] = self.counts.map(u64::from);
        Some(Counts {
            ok,
            error,
            timeout,
            clamped,
        })
    }
}

/// Oldest second the 1-second ring holds at `now_ms`: [`Ring::horizon_start`] from the
/// ring's constant width and length, without a read of the ring.
#[inline]
fn fine_horizon(now_ms: i64) -> i64 {
    now_ms.div_euclid(FINE_WIDTH_MS) * FINE_WIDTH_MS - (FINE_LEN as i64 - 1) * FINE_WIDTH_MS
}

/// Start of the first slot of `ring` that `window` (read from that ring) spans at `now_ms`.
fn window_start(ring: &Ring, window: Window, now_ms: i64) -> i64 {
    ring.align(now_ms) - (window.slots() as i64 - 1) * ring.width_ms
}

/// A fine slot leaving the 10-second ring: folded into the coarse rings and, if it was a
/// histogram, taken out of the running total of dense fine slots.
fn retire(
    fine: &FineSlot,
    tiers: &mut [Ring; 3],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
    dense: &mut Slot,
    retired: &mut Totals,
) {
    retired.add_fine(fine);
    fold(fine, tiers, evicted, late);
    if let FineData::Dense(hist) = fine.data() {
        dense.remove_histogram(hist, &fine.counts);
    }
}

/// Adds a retired fine slot into its 10-second slot. The coarser rings get it when the
/// 10-second slot is passed on, unless that already happened (a late second), in which case
/// its minute gets it now, and the 5-minute ring now or when the minute goes up (see
/// [`carry_up`]). The running sums have its calls already, and keep them (see [`sums`]).
fn fold(
    fine: &FineSlot,
    tiers: &mut [Ring; 3],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
) {
    let start = tiers[0].align(fine.start_ms);
    // `None`: the 10-second ring has moved past this second (after a gap without ticks, a
    // late second); the data is older than its windows, but the coarser rings may cover it.
    let passed_on = match ten_second_slot(tiers, evicted, late, start) {
        Some(dst) => {
            let passed_on = !dst.pending && !dst.is_empty();
            dst.absorb_fine(fine);
            dst.pending = !passed_on;
            passed_on
        }
        None => true,
    };
    if passed_on {
        carry_up(&mut tiers[1..], evicted, late, fine.start_ms, |dst| {
            dst.absorb_fine(fine);
        });
    }
}

/// The minute `start` among those waiting to be persisted that the minute ring no longer
/// covers: a second folded or a 10-second slot passed on after the ring moved past its minute
/// (the process slept, or the clock jumped ahead) still reaches the stored minutes.
pub(super) fn late_minute(late: &mut BTreeMap<i64, Slot>, start: i64) -> &mut Slot {
    late.entry(start).or_insert_with(|| Slot::new(start))
}

/// Adds a complete 10-second slot into its minute (`upper` holds the minute and 5-minute
/// rings; see [`carry_up`]): ten seconds pass on at once, as a counter loop, or as a few
/// records when the slot still keeps its durations as a list. The 5-minute sum has its calls
/// already (see [`sums`]).
fn pass_on(
    slot: &mut Slot,
    upper: &mut [Ring],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
) {
    // A quiet slot still has its durations as a list: recording them beats a counter pass.
    // Sorted once for the two or three sparse slots they go to.
    let indices = slot.values().and_then(super::slot_hist::sorted_indices);
    let add = |dst: &mut Slot| match (slot.values(), &indices) {
        (Some(values), Some(indices)) => dst.absorb_indexed(values, indices, &slot.counts),
        (Some(values), None) => dst.absorb_values(values, &slot.counts),
        (None, _) => dst.absorb(&slot.hist, &slot.counts),
    };
    carry_up(upper, evicted, late, slot.start_ms, add);
    slot.pending = false;
}

/// Passes on the waiting 10-second slots of one whole minute (ring indices in `ten`): those
/// that keep their durations as a list together, sorted once and merged into the minute in
/// one go where one by one each merge would walk the growing minute again, and the others
/// one by one.
fn pass_on_minute(
    ten: &mut Ring,
    upper: &mut [Ring],
    group: &[(i64, usize)],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
) {
    let mut listed = [false; TIERS[0].1];
    for (k, &(_, i)) in group.iter().enumerate() {
        listed[k] = ten.at_mut(i).is_some_and(|s| s.values().is_some());
    }
    if listed.iter().filter(|&&l| l).count() > 1 {
        let mut values: Vec<u32> = Vec::new();
        let mut counts = Counts::default();
        for (k, &(_, i)) in group.iter().enumerate() {
            if let Some(slot) = ten.at_mut(i).filter(|_| listed[k]) {
                values.extend_from_slice(slot.values().unwrap_or_default());
                counts.add(&slot.counts);
                slot.pending = false;
            }
        }
        let indices = super::slot_hist::sorted_indices(&values);
        let add = |dst: &mut Slot| match &indices {
            Some(indices) => dst.absorb_indexed(&values, indices, &counts),
            None => dst.absorb_values(&values, &counts),
        };
        carry_up(upper, evicted, late, group[0].0, add);
    }
    for &(_, i) in group {
        if let Some(slot) = ten.at_mut(i).filter(|s| s.pending) {
            pass_on(slot, upper, evicted, late);
        }
    }
}

/// Start of the minute holding `ts_ms`.
#[inline]
fn whole_minute(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(MINUTE_MS)
}

/// Adds calls of the time `at_ms` (a 10-second slot passed on, or a late second) to their
/// minute slot and, when that minute has already gone up to the 5-minute ring, to their
/// 5-minute slot too. A minute that has not gone up (it was empty, or waits) carries them
/// up with the rest of its calls when it does (see [`pass_up`]): a 5-minute slot then takes
/// one merge a minute instead of one every ten seconds. A minute the ring has moved past
/// gets them as a stored minute's late part.
fn carry_up(
    upper: &mut [Ring],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
    at_ms: i64,
    add: impl Fn(&mut Slot),
) {
    let start = upper[0].align(at_ms);
    let (minute, five) = minute_slot(upper, evicted, start);
    let direct = match minute {
        Some(dst) => {
            // Holds calls and is not waiting: they are in the 5-minute ring already.
            let gone_up = !dst.pending && !dst.is_empty();
            add(dst);
            dst.pending = !gone_up;
            gone_up
        }
        None => {
            add(late_minute(late, start));
            true
        }
    };
    if direct && let Some(dst) = coarse_slot(five, 2, evicted, five.align(at_ms)) {
        add(dst);
    }
}

/// The minute slot for `start` and the 5-minute ring; a minute slot recycled while it still
/// waits to go up is passed up first, and one not yet persisted is stashed.
fn minute_slot<'a>(
    upper: &'a mut [Ring],
    evicted: &mut Vec<Slot>,
    start: i64,
) -> (Option<&'a mut Slot>, &'a mut Ring) {
    let (minutes, rest) = upper
        .split_first_mut()
        .expect("two rings above the 10-second one");
    let five = &mut rest[0];
    let slot = minutes.slot_mut_evicting(start, |old| {
        if old.pending {
            pass_up(old, five, evicted);
        }
        if old.dirty {
            evicted.push(old.clone());
        }
    });
    (slot, five)
}

/// Adds a minute slot that waits to go up (see [`carry_up`]) into its 5-minute slot.
fn pass_up(minute: &mut Slot, five: &mut Ring, evicted: &mut Vec<Slot>) {
    debug_assert!(minute.values().is_none(), "minute slots keep no list");
    if let Some(dst) = coarse_slot(five, 2, evicted, five.align(minute.start_ms)) {
        dst.absorb(&minute.hist, &minute.counts);
    }
    minute.pending = false;
}

/// The 10-second slot for `start`; a slot recycled before it was passed on is passed on first.
fn ten_second_slot<'a>(
    tiers: &'a mut [Ring; 3],
    evicted: &mut Vec<Slot>,
    late: &mut BTreeMap<i64, Slot>,
    start: i64,
) -> Option<&'a mut Slot> {
    let (ten, upper) = tiers.split_first_mut().expect("three rings");
    let slot = ten.slot_mut_evicting(start, |old| {
        if old.pending {
            pass_on(old, upper, evicted, late);
        }
    })?;
    slot.keep_values();
    Some(slot)
}

/// The slot for `start` in coarse ring `tier`, stashing an unsaved minute slot before it is
/// recycled.
fn coarse_slot<'a>(
    ring: &'a mut Ring,
    tier: usize,
    evicted: &mut Vec<Slot>,
    start: i64,
) -> Option<&'a mut Slot> {
    ring.slot_mut_evicting(start, |old| {
        if tier == MINUTE_TIER && old.dirty {
            evicted.push(old.clone());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::fine::SPARSE_MAX;
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_800_000_000_000; // minute-aligned

    fn total(s: &mut Series, w: Window, now: i64) -> u64 {
        s.advance(now);
        s.window(w, now).total()
    }

    /// The calls of one step of the property tests that replay generated steps at `now`:
    /// each `(late, duration, outcome)` mostly within the last second and sometimes a minute
    /// or more late, some of the successful ones slow, then `burst` quick calls.
    fn step_calls(
        now: i64,
        calls: &[(i64, u64, u8)],
        burst: usize,
    ) -> impl Iterator<Item = (i64, u64, Outcome)> + '_ {
        let burst = (0..burst).map(|k| (k as i64 % 900, 1_000 + 7 * k as u64, 0u8));
        calls.iter().copied().chain(burst).map(move |(late, d, o)| {
            let ts = now
                - if late < 60_000 {
                    late % 1_500
                } else {
                    late - 50_000
                };
            let outcome = [Outcome::Ok, Outcome::Ok, Outcome::Error, Outcome::Timeout][o as usize];
            let d = if o == 1 { d * 20_000 } else { d };
            (ts, d, outcome)
        })
    }

    #[test]
    fn the_constant_fine_horizon_is_the_rings() {
        let s = Series::new();
        for now in [
            T0,
            T0 + 999,
            T0 + 1_000,
            T0 - 1,
            -1,
            0,
            1,
            -9_001,
            -10_000,
            12_345,
        ] {
            assert_eq!(fine_horizon(now), s.fine.horizon_start(now), "at {now}");
        }
    }

    #[test]
    fn what_a_call_and_a_peer_read_touch_comes_before_the_rest() {
        use std::mem::offset_of;
        // The fields a peer read and a recorded call visit (see the struct's documentation).
        let hot = [
            offset_of!(Series, fine_floor_ms),
            offset_of!(Series, next_slide_ms),
            offset_of!(Series, read_ms),
            offset_of!(Series, fold_owed_ms),
            offset_of!(Series, last_event_ms),
            offset_of!(Series, changes),
            offset_of!(Series, minute_list),
            offset_of!(Series, sum_on_demand),
            offset_of!(Series, live),
            offset_of!(Series, sums),
            offset_of!(Series, fine_marks),
        ];
        let cold = [
            offset_of!(Series, dense_owed),
            offset_of!(Series, dense_fine),
            offset_of!(Series, tiers),
            offset_of!(Series, late_minutes),
            offset_of!(Series, evicted_minutes),
            offset_of!(Series, retired),
        ];
        let fine = offset_of!(Series, fine);
        assert!(hot.iter().all(|&o| o < fine), "{hot:?} before {fine}");
        assert!(cold.iter().all(|&o| o > fine), "{cold:?} after {fine}");
        // The hot part and the 1-second ring's table lie in the first 512 bytes.
        assert!(fine + std::mem::size_of::<InlineRing<FineSlot, FINE_LEN>>() <= 512);
    }

    #[test]
    fn a_quiet_peer_with_a_kept_minute_is_read_without_rolling_forward() {
        let mut s = Series::peer();
        let mut now = T0 + 500;
        // No kept list yet: the first read rolls forward and starts one.
        s.record(now - 100, 2_000, Outcome::Ok, now);
        assert_eq!(s.read_unfolded(now), None);
        s.advance(now);
        s.minute_sample(now, true);
        for second in 1..40 {
            now += 1_000;
            s.record(now - 100, 2_000 + second, Outcome::Ok, now);
            let counts = s
                .read_unfolded(now)
                .expect("a kept minute reads without rolling forward");
            // One call a second: the 10-second window holds ten of them, although seconds
            // older than that were never folded by a read.
            assert_eq!(counts.ok, 10.min(second + 1));
            s.minute_sample(now, true);
        }
        assert_eq!(s.fold_owed_ms, now, "the last read did not roll forward");
        // A clock that stepped back: the series must roll forward, and it folds what the
        // reads left first.
        assert_eq!(s.read_unfolded(now - 2_000), None);
        s.advance(now - 2_000);
        assert_eq!(s.fold_owed_ms, i64::MIN);
        assert!(s.fine_floor_ms >= s.fine.horizon_start(now));
    }

    #[test]
    fn unsaved_evicted_minutes_are_bounded_keeping_the_newest() {
        let now = T0 + 10 * 24 * 60 * MINUTE_MS;
        let mut s = Series::new();
        // A day of minutes whose writes failed, long out of the minute ring, handed back in
        // no particular order.
        let minutes: Vec<i64> = (0..1_440)
            .map(|i| T0 + ((i * 7) % 1_440) * MINUTE_MS)
            .collect();
        s.restore_unsaved(
            minutes
                .iter()
                .map(|&m| {
                    let mut slot = Slot::new(m);
                    slot.record(1_000, Outcome::Ok);
                    MinuteRollup {
                        minute_ms: m,
                        late_part: false,
                        slot,
                    }
                })
                .collect(),
        );
        assert_eq!(s.bound_unsaved(), 1_440 - MAX_UNSAVED_MINUTES);
        assert_eq!(s.bound_unsaved(), 0);
        let kept: Vec<i64> = s
            .take_rollups(now, false)
            .into_iter()
            .map(|r| r.minute_ms)
            .collect();
        let newest: Vec<i64> = (1_440 - MAX_UNSAVED_MINUTES as i64..1_440)
            .map(|i| T0 + i * MINUTE_MS)
            .collect();
        assert_eq!(kept, newest);
        assert!(s.is_clean());
    }

    #[test]
    fn series_pass_on_in_different_seconds_and_persist_whole_minutes() {
        let delays: std::collections::BTreeSet<i64> = (0..100)
            .map(|i| {
                Series::peer()
                    .staggered("db", &format!("10.0.0.{i}"))
                    .pass_delay_ms
            })
            .collect();
        assert_eq!(delays, (0..10).map(|s| s * 1000).collect());
        for delay in [0, 9_000] {
            let mut s = Series::new().with_pass_delay(delay);
            // A call every second of one minute, then the clock runs on second by second.
            for second in 0..60 {
                let t = T0 + second * 1000;
                s.record(t, 5_000, Outcome::Ok, t);
                s.advance(t);
            }
            let mut now = T0 + 60_000;
            let taken = loop {
                s.advance(now);
                let taken = s.take_rollups(now, false);
                if !taken.is_empty() {
                    break taken;
                }
                now += 1000;
            };
            // Taken as soon as its seconds are all folded, whatever the delay, and whole.
            assert_eq!(now, T0 + 60_000 + 9_000, "delay {delay}");
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].slot.counts.total(), 60, "delay {delay}");
        }
    }

    #[test]
    fn an_event_is_in_every_window_at_once() {
        let mut s = Series::new();
        s.record(T0 + 500, 1_000, Outcome::Ok, T0 + 500);
        for w in Window::ALL {
            assert_eq!(total(&mut s, w, T0 + 600), 1, "{w}");
        }
    }

    #[test]
    fn the_ten_second_window_empties_on_an_idle_clock_but_longer_windows_keep_the_data() {
        let mut s = Series::new();
        s.record(T0, 1_000, Outcome::Error, T0);
        assert_eq!(total(&mut s, Window::S10, T0 + 9_999), 1);
        assert_eq!(total(&mut s, Window::S10, T0 + 10_000), 0);
        assert_eq!(total(&mut s, Window::M1, T0 + 10_000), 1);
        assert_eq!(total(&mut s, Window::M1, T0 + 70_000), 0);
        assert_eq!(total(&mut s, Window::M15, T0 + 70_000), 1);
        assert_eq!(total(&mut s, Window::H1, T0 + 3_000_000), 1);
        assert_eq!(total(&mut s, Window::H1, T0 + 3_600_000), 0);
    }

    #[test]
    fn late_events_land_in_the_bucket_of_their_own_time() {
        let now = T0 + 30 * MINUTE_MS;
        let mut s = Series::new();
        s.record(now - 30_000, 1, Outcome::Ok, now);
        s.record(now - 180_000, 1, Outcome::Ok, now);
        s.record(now - 40 * MINUTE_MS, 1, Outcome::Ok, now);
        assert_eq!(total(&mut s, Window::S10, now), 0);
        assert_eq!(total(&mut s, Window::M1, now), 1);
        assert_eq!(total(&mut s, Window::M5, now), 2);
        assert_eq!(total(&mut s, Window::M15, now), 2);
        assert_eq!(total(&mut s, Window::H1, now), 3);
        // The 40-minute-old event is beyond the minute ring: it is persisted as a late part.
        let rollups = s.take_rollups(now, false);
        let late: Vec<_> = rollups.iter().filter(|r| r.late_part).collect();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].minute_ms, now - 40 * MINUTE_MS);
    }

    #[test]
    fn a_window_read_from_a_sum_keeps_its_calls_and_changing_it_leaves_the_series_alone() {
        let now = T0 + 30_000;
        let mut s = Series::new();
        for i in 0..2_000u64 {
            s.record(now - (i as i64 % 5_000), 1_000 + i, Outcome::Ok, now);
        }
        for w in [Window::M1, Window::M5] {
            // As every reader does: a read follows `advance`.
            s.advance(now);
            let mut read = s.window(w, now);
            // Shared with the running sum, not copied.
            assert!(std::sync::Arc::strong_count(&read.hist) > 1, "{w}");
            let before = (*read.hist).clone();
            s.record(now, 5_000_000, Outcome::Ok, now);
            assert_eq!(
                *read.hist, before,
                "{w}: a later call changed an earlier read"
            );
            s.advance(now);
            let after = s.window(w, now);
            assert_eq!(after.hist.len(), before.len() + 1, "{w}");
            // A reader that changes its copy (a merge) leaves the series' windows alone.
            read.merge_data(&after);
            assert_eq!(s.window(w, now).hist.len(), before.len() + 1, "{w}");
            assert_eq!(read.hist.len(), 2 * before.len() + 1, "{w}");
        }
    }

    #[test]
    fn a_busy_dependency_keeps_dense_sums_and_exact_windows_and_a_quiet_one_sparse_sums() {
        for (per_second, dense) in [(20i64, true), (1, false)] {
            let mut s = Series::new();
            let mut expected: Vec<(i64, u64)> = Vec::new();
            for second in 0..400i64 {
                let now = T0 + second * 1_000;
                for k in 0..per_second {
                    let ts = now + k * 1_000 / per_second;
                    let d = 1_000 + ((second * 7_919 + k * 104_729) % 90_000) as u64;
                    s.record(ts, d, Outcome::Ok, now + 999);
                    expected.push((ts, d));
                }
                s.advance(now + 999);
                // The windows read every second, as the detectors read a dependency's.
                for w in [Window::M1, Window::M5] {
                    let snap = s.window(w, now + 999);
                    let mut want = crate::window::new_histogram::<u32>();
                    for &(ts, d) in &expected {
                        if ts >= snap.from_ms && ts <= now + 999 {
                            want.record(d).unwrap();
                        }
                    }
                    assert_eq!(*snap.hist, want, "{w} at second {second}");
                }
            }
            assert_eq!(
                s.sums
                    .iter()
                    .map(|x| x.sum.hist.is_dense())
                    .collect::<Vec<_>>(),
                vec![dense; 2],
                "{per_second} calls/s"
            );
        }
    }

    #[test]
    fn the_last_complete_second_answers_as_its_histogram_in_either_form() {
        // Every fourth call fails: the largest second times more than a sparse slot holds.
        for n in [0u64, 3, 2 * SPARSE_MAX as u64] {
            let mut s = Series::new();
            let second = T0 + 5_000;
            for k in 0..n {
                let outcome = if k % 4 == 0 {
                    Outcome::Error
                } else {
                    Outcome::Ok
                };
                s.record(
                    second + k as i64 % 1_000,
                    900 + k * 1_013,
                    outcome,
                    second + 999,
                );
            }
            let now = second + 1_500;
            s.advance(now);
            let sample = s.last_complete_second(now);
            assert_eq!(sample.from_ms(), second);
            assert_eq!(
                matches!(sample, Sample::Durations { .. }),
                n - n.div_ceil(4) <= SPARSE_MAX as u64,
                "{n} calls"
            );
            // Only the successful calls are timed.
            let mut hist = Snapshot::empty(second, second + 1_000);
            for k in (0..n).filter(|k| k % 4 != 0) {
                std::sync::Arc::make_mut(&mut hist.hist)
                    .record(900 + k * 1_013)
                    .unwrap();
            }
            hist.counts = *sample.counts();
            let hist = Sample::Histogram(hist);
            assert_eq!(sample.total(), n);
            assert_eq!(sample.counts().error, n.div_ceil(4));
            for t in [0, 1_000, 50_000, 1_000_000] {
                assert_eq!(
                    sample.count_above(t),
                    hist.count_above(t),
                    "{n} calls, above {t}"
                );
            }
            // The 10-second counts, kept as calls come and go, are the second's.
            assert_eq!(s.recent_counts(), *sample.counts());
        }
    }

    #[test]
    fn events_from_the_future_count_at_now() {
        let mut s = Series::new();
        s.record(T0 + 120_000, 1, Outcome::Ok, T0);
        assert_eq!(total(&mut s, Window::S10, T0), 1);
    }

    #[test]
    fn minutes_are_persisted_once_complete_or_when_forced() {
        let mut s = Series::new();
        s.record(T0 + 1_000, 1, Outcome::Ok, T0 + 1_000);
        assert!(s.take_rollups(T0 + 30_000, false).is_empty());
        // Complete, but its last seconds are still unfolded until 10 s after the minute.
        assert!(s.take_rollups(T0 + 65_000, false).is_empty());
        let r = s.take_rollups(T0 + 71_000, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].slot.counts.ok, 1);
        assert!(s.is_clean());
        assert!(s.take_rollups(T0 + 72_000, false).is_empty());
        s.record(T0 + 72_500, 1, Outcome::Ok, T0 + 72_500);
        let forced = s.take_rollups(T0 + 73_000, true);
        assert_eq!(forced.len(), 1);
        assert_eq!(forced[0].minute_ms, T0 + MINUTE_MS);
    }

    /// A call whose second folds after the minute ring moved past its minute (here a clock
    /// that stepped back over a quarter of an hour; a process that slept does the same) is
    /// stored as a late part of its minute, not only kept in the 5-minute ring.
    #[test]
    fn a_second_folded_after_its_minute_left_the_ring_is_still_stored() {
        let mut s = Series::new();
        let later = T0 + 16 * MINUTE_MS;
        s.record(later + 2_000, 1, Outcome::Ok, later + 2_000);
        s.advance(later + 70_000);
        // The minute 16 minutes on, whole, takes the ring's place of the minute at T0.
        s.pass_on_folded(later + 70_000);
        s.record(T0 + 5_000, 7, Outcome::Ok, T0 + 5_000);
        let rollups = s.take_rollups(later + 80_000, false);
        let stored = |minute: i64| -> u64 {
            rollups
                .iter()
                .filter(|r| r.minute_ms == minute)
                .map(|r| r.slot.counts.total())
                .sum()
        };
        assert_eq!(stored(T0), 1, "{rollups:?}");
        assert!(rollups.iter().any(|r| r.minute_ms == T0 && r.late_part));
        assert_eq!(s.window(Window::H1, later + 80_000).total(), 2);
    }

    #[test]
    fn a_failed_write_is_retried() {
        let mut s = Series::new();
        s.record(T0, 1, Outcome::Ok, T0);
        let taken = s.take_rollups(T0 + 80_000, false);
        assert!(s.is_clean());
        s.restore_unsaved(taken);
        assert!(!s.is_clean());
        assert_eq!(s.take_rollups(T0 + 80_000, false).len(), 1);
    }

    #[test]
    fn a_loaded_minute_is_clean_and_counts_in_long_windows() {
        let mut src = Series::new();
        for i in 0..10 {
            src.record(T0 + i * 100, 5_000 + i as u64, Outcome::Ok, T0 + 1_000);
        }
        let minute = src.take_rollups(T0 + 2 * MINUTE_MS, true).remove(0);
        let mut s = Series::new();
        s.load_minute(minute.minute_ms, &minute.slot, T0 + 5 * MINUTE_MS);
        assert!(s.is_clean());
        assert_eq!(total(&mut s, Window::M15, T0 + 5 * MINUTE_MS), 10);
        assert_eq!(total(&mut s, Window::H1, T0 + 5 * MINUTE_MS), 10);
    }

    /// The calls of the 5-minute slot holding `at`, when the ring has it.
    fn five_minute_calls(s: &Series, at: i64) -> u64 {
        s.tiers[2]
            .get(s.tiers[2].align(at))
            .map_or(0, |slot| slot.counts.total())
    }

    #[test]
    fn a_minute_is_passed_on_and_goes_up_to_the_five_minute_ring_once_whole() {
        let mut s = Series::new();
        let minute_calls =
            |s: &Series| s.tiers[MINUTE_TIER].get(T0).map_or(0, |m| m.counts.total());
        // A call every second of the first minute, read every second as the detectors do.
        for i in 0..60 {
            let now = T0 + i * 1_000 + 500;
            s.record(now, 2_000 + i as u64, Outcome::Ok, now);
            s.advance(now);
            // Five of its six 10-second slots are complete by the end, and wait: the
            // minute takes them together, and goes up whole.
            assert_eq!(minute_calls(&s), 0, "at second {i}");
            assert_eq!(five_minute_calls(&s, T0), 0, "at second {i}");
            assert_eq!(s.window(Window::H1, now).total(), i as u64 + 1);
            assert_eq!(s.window(Window::M5, now).total(), i as u64 + 1);
        }
        let minute_passed = T0 + MINUTE_MS + 10_000;
        s.advance(minute_passed);
        assert!(!s.tiers[MINUTE_TIER].get(T0).unwrap().pending);
        assert!(s.tiers[0].iter().all(|ten| !ten.pending));
        assert_eq!(minute_calls(&s), 60);
        assert_eq!(five_minute_calls(&s, T0), 60);
        assert_eq!(s.window(Window::H1, minute_passed).total(), 60);
        // A late call for a minute that went up goes to both rings at once.
        s.record(T0 + 30_000, 7, Outcome::Error, minute_passed);
        assert_eq!(five_minute_calls(&s, T0), 61);
        assert_eq!(total(&mut s, Window::H1, minute_passed), 61);
        assert_eq!(total(&mut s, Window::M5, minute_passed), 61);
    }

    #[test]
    fn a_peer_whose_seconds_fold_as_calls_arrive_passes_a_whole_minute_on_at_once() {
        // Never rolled forward: each call folds the second its ring slot held, ten seconds
        // earlier, as a quiet peer's calls do.
        let mut s = Series::peer().with_pass_delay(9_000);
        let minute_calls =
            |s: &Series| s.tiers[MINUTE_TIER].get(T0).map_or(0, |m| m.counts.total());
        for k in 0..7 {
            let at = T0 + k * 10_000 + 500;
            s.record(at, 1_000 + k as u64, Outcome::Ok, at);
            // Up to the call in the minute's last second plus ten, the minute is not whole.
            assert_eq!(minute_calls(&s), 0, "after the call at {}", at - T0);
        }
        // The call at 70.5 s folds the second of 60 s: every second before it is folded, so
        // the minute's six 10-second slots go on together before that fold recycles one.
        s.record(T0 + 70_500, 2_000, Outcome::Ok, T0 + 70_500);
        assert_eq!(minute_calls(&s), 6);
        assert!(
            s.tiers[0]
                .iter()
                .filter(|ten| ten.start_ms < T0 + MINUTE_MS)
                .all(|ten| !ten.pending)
        );
        assert_eq!(five_minute_calls(&s, T0), 6);
        // The 10-second window starts at 61 s, the minute at 20 s.
        let expected = |w: Window| match w {
            Window::S10 => 1,
            Window::M1 => 6,
            _ => 8,
        };
        for w in Window::ALL {
            assert_eq!(total(&mut s, w, T0 + 70_500), expected(w), "{w}");
        }
    }

    /// A series whose first minute waits to go up: a 10-second slot passed on alone because
    /// its ring slot was taken before its minute's turn came (the series passes on 9 seconds
    /// late), and no other slot of that minute left to pass on with it.
    fn series_with_a_waiting_minute() -> Series {
        let mut s = Series::new().with_pass_delay(9_000);
        s.record(T0 + 1_000, 3_000, Outcome::Ok, T0 + 1_000);
        s.advance(T0 + 61_000);
        s.record(T0 + 61_000, 3_500, Outcome::Ok, T0 + 61_000);
        s.advance(T0 + 90_000);
        assert!(s.tiers[MINUTE_TIER].get(T0).unwrap().pending);
        assert_eq!(five_minute_calls(&s, T0), 0);
        s
    }

    /// Records a call at `at` (16 minutes or more after T0) and rolls forward until its
    /// minute has been passed on, which recycles the ring slot of the minute at T0; returns
    /// that time.
    fn recycle_the_first_minute(s: &mut Series, at: i64) -> i64 {
        s.record(at, 4_000, Outcome::Ok, at);
        let passed = at + 90_000;
        s.advance(passed);
        assert!(s.tiers[MINUTE_TIER].get(T0).is_none());
        passed
    }

    #[test]
    fn a_minute_that_waits_for_nothing_goes_up_when_its_slot_is_recycled() {
        let mut s = series_with_a_waiting_minute();
        let mut now = T0 + 90_000;
        while now < T0 + 16 * MINUTE_MS {
            now += 20_000;
            assert_eq!(total(&mut s, Window::H1, now), 2, "at {}", now - T0);
            // The second minute went up once whole; the first still waits.
            let second_minute_up = now >= T0 + 2 * MINUTE_MS + 18_000;
            assert_eq!(five_minute_calls(&s, T0), u64::from(second_minute_up));
        }
        // The minute ring holds 16 minutes: a call 16 minutes on, once passed on to its
        // minute, recycles the waiting one.
        let passed = recycle_the_first_minute(&mut s, now);
        assert_eq!(five_minute_calls(&s, T0), 2);
        assert_eq!(total(&mut s, Window::H1, passed), 3);
    }

    #[test]
    fn a_minute_loaded_into_one_that_waits_to_go_up_is_counted_once() {
        let mut src = Series::new();
        for i in 0..10 {
            src.record(
                T0 + 40_000 + i * 100,
                5_000 + i as u64,
                Outcome::Ok,
                T0 + 41_000,
            );
        }
        let stored = src.take_rollups(T0 + 2 * MINUTE_MS, true).remove(0);
        let mut s = series_with_a_waiting_minute();
        s.load_minute(stored.minute_ms, &stored.slot, T0 + 90_000);
        assert_eq!(five_minute_calls(&s, T0), 0);
        assert_eq!(total(&mut s, Window::H1, T0 + 90_000), 12);
        // Recycled 16 minutes on, the minute goes up with its loaded calls (the second
        // minute went up on its own).
        let passed = recycle_the_first_minute(&mut s, T0 + 16 * MINUTE_MS + 20_000);
        assert_eq!(five_minute_calls(&s, T0), 12);
        assert_eq!(total(&mut s, Window::H1, passed), 13);
        assert_eq!(total(&mut s, Window::M15, passed), 1);
    }

    #[test]
    fn discarding_rollups_leaves_the_series_as_taking_them_does() {
        let (mut taken, mut discarded) = (Series::new(), Series::new());
        let mut now = T0;
        for step in 0..400 {
            now = T0 + step * 1_700;
            for s in [&mut taken, &mut discarded] {
                s.record(now, 1_000 + step as u64, Outcome::Ok, now);
                // Late calls: into the minute ring, and past it (kept apart until persisted).
                s.record(now - 90_000, 7, Outcome::Error, now);
                s.record(now - 40 * 60_000, 9, Outcome::Timeout, now);
            }
            if step % 37 == 0 {
                assert!(!taken.take_rollups(now, false).is_empty());
                discarded.discard_rollups(now);
                assert_eq!(taken.is_clean(), discarded.is_clean());
                assert!(discarded.late_minutes.is_empty() && discarded.evicted_minutes.is_empty());
            }
        }
        for w in Window::ALL {
            assert_eq!(
                taken.window(w, now).hist,
                discarded.window(w, now).hist,
                "{w}"
            );
        }
        taken.take_rollups(now, false);
        discarded.discard_rollups(now);
        assert!(taken.is_clean() && discarded.is_clean());
    }

    #[test]
    fn a_quiet_minute_is_read_as_durations_and_a_busy_one_as_a_histogram() {
        let mut quiet = Series::peer();
        let mut busy = Series::peer();
        let mut failing = Series::peer();
        let mut now = T0;
        for second in 0..60 {
            now = T0 + second * 1_000;
            for k in 0..5 {
                quiet.record(now, 1_000 + k as u64, Outcome::Ok, now);
            }
            for k in 0..(SPARSE_MAX as i64 + 2) {
                busy.record(now, 1_000 + k as u64, Outcome::Ok, now);
                // Failures are counted, not timed: a minute of them stays a short list.
                failing.record(now, 1_000 + k as u64, Outcome::Error, now);
            }
            busy.record(now, 2_000, Outcome::Error, now);
        }
        quiet.advance(now);
        busy.advance(now);
        let q = quiet.sample(Window::M1, now);
        assert!(
            matches!(&q, Sample::Durations { values, .. } if values.len() == 300),
            "{q:?}"
        );
        assert_eq!(q.total(), quiet.window(Window::M1, now).total());
        let b = busy.sample(Window::M1, now);
        assert!(matches!(b, Sample::Histogram(_)));
        assert_eq!(b.counts().ok, 60 * (SPARSE_MAX as u64 + 2));
        assert_eq!(b.counts().error, 60);
        assert_eq!(b.successful(), 60 * (SPARSE_MAX as u64 + 2));
        failing.advance(now);
        let f = failing.sample(Window::M1, now);
        assert!(
            matches!(&f, Sample::Durations { values, .. } if values.is_empty()),
            "{f:?}"
        );
        assert_eq!(f.counts().error, 60 * (SPARSE_MAX as u64 + 2));
    }

    #[test]
    fn a_peer_keeps_its_minute_sum_only_while_its_minute_is_busy() {
        let mut s = Series::peer();
        let mut now = T0;
        let read = |s: &mut Series, now: i64| {
            s.advance(now);
            let (sample, _) = s.minute_sample(now, false);
            assert_eq!(sample.counts(), &s.window(Window::M1, now).counts);
            (matches!(sample, Sample::Histogram(_)), s.sums.len())
        };
        // Busy seconds: read as a histogram, through a running sum from then on.
        for second in 0..30 {
            now = T0 + second * 1_000;
            for k in 0..(SPARSE_MAX as i64 + 2) {
                s.record(now, 1_000 + k as u64, Outcome::Ok, now);
            }
            assert_eq!(read(&mut s, now), (true, 1), "second {second}");
        }
        // Two quiet minutes later the minute is a short list again: the sum is dropped.
        for second in 30..150 {
            now = T0 + second * 1_000;
            s.record(now, 2_000, Outcome::Ok, now);
            read(&mut s, now);
        }
        assert_eq!(read(&mut s, now), (false, 0));
        assert_eq!(s.window(Window::M1, now).total(), 60);
    }

    proptest! {
        /// Whatever the order and lateness of events, every window holds exactly the events
        /// whose time falls inside it, and the histogram agrees with the counters.
        #[test]
        fn windows_hold_exactly_the_events_in_their_range(
            offsets in proptest::collection::vec((0i64..3_600_000, 0u64..5_000_000, 0u8..3), 1..300),
            steps in proptest::collection::vec(0i64..90_000, 1..40),
            delay_s in 0i64..10,
        ) {
            let mut s = Series::new().with_pass_delay(delay_s * 1000);
            let mut now = T0 + 3_600_000;
            let mut seen: Vec<(i64, Outcome)> = Vec::new();
            let per_step = offsets.len().div_ceil(steps.len());
            for (chunk, step) in offsets.chunks(per_step).zip(&steps) {
                now += step;
                for (off, dur, o) in chunk {
                    let ts = now - off;
                    let outcome = [Outcome::Ok, Outcome::Error, Outcome::Timeout][*o as usize];
                    if s.record(ts, *dur, outcome, now) {
                        seen.push((ts, outcome));
                    }
                }
            }
            s.advance(now);
            for w in Window::ALL {
                let snap = s.window(w, now);
                let in_range = || seen.iter().filter(|(t, _)| *t >= snap.from_ms && *t <= now);
                let expected = in_range().count() as u64;
                let ok = in_range().filter(|(_, o)| *o == Outcome::Ok).count() as u64;
                prop_assert_eq!(snap.total(), expected, "window {}", w);
                prop_assert_eq!(snap.counts.ok, ok);
                // Only successful calls are timed.
                prop_assert_eq!(snap.hist.len(), ok);
            }
        }

        /// Busy seconds (fine slots that turn into histograms), quiet ones, late events (some
        /// past the fine ring), durations beyond the hour, failed calls among them, and a clock
        /// that moves in uneven steps: every window, read through the running sums or the
        /// slots, counts exactly the events in its range and holds exactly the histogram of
        /// the successful ones, with long calls clamped to the hour.
        #[test]
        fn window_sums_equal_the_events_in_range(
            bursts in proptest::collection::vec(
                (
                    0i64..120_000,
                    0usize..(2 * SPARSE_MAX),
                    prop_oneof![
                        4 => 0u64..2_000_000,
                        1 => (super::super::histogram::HIGHEST_US - 1_000)
                            ..(super::super::histogram::HIGHEST_US + 600_000_000),
                    ],
                    prop_oneof![3 => 0i64..3_000, 1 => 0i64..70_000],
                    // Every how many calls one fails (0: none does).
                    prop_oneof![2 => Just(0usize), 1 => 1usize..5],
                ),
                1..25,
            ),
        ) {
            // The last two read their minute as the peer detectors do at every step, which
            // starts and drops its running sum as the minute turns busy and quiet, and keeps
            // the minute's durations as a list (the last one) while it is quiet.
            for (mut s, read_minute) in [
                (Series::new(), None),
                (Series::peer(), None),
                (Series::peer(), Some(false)),
                (Series::peer(), Some(true)),
                // Passing on 10-second slots late changes no window.
                (Series::new().with_pass_delay(9_000), None),
                (Series::peer().with_pass_delay(4_000), Some(true)),
            ] {
                let mut now = T0;
                let mut seen: Vec<(i64, u64, Outcome)> = Vec::new();
                for (step, n, base, lateness, fail_every) in &bursts {
                    now += step;
                    for k in 0..*n {
                        let ts = now - lateness - (k as i64 % 7) * 100;
                        let d = base + k as u64 * 37;
                        let outcome = match (*fail_every, k % 2) {
                            (0, _) => Outcome::Ok,
                            (every, _) if k % (every + 1) != 0 => Outcome::Ok,
                            (_, 0) => Outcome::Error,
                            _ => Outcome::Timeout,
                        };
                        if s.record(ts, d, outcome, now) {
                            seen.push((ts, d, outcome));
                        }
                    }
                    s.advance(now);
                    // The two complete seconds before now, as the peer detectors count them.
                    let second = now.div_euclid(1000) * 1000;
                    let counted = |from: i64| {
                        let mut c = Counts::default();
                        let in_second = seen.iter().filter(|(ts, ..)| (from..from + 1000).contains(ts));
                        for (_, d, o) in in_second {
                            let clamped = *d > super::super::histogram::HIGHEST_US;
                            c.count(*o, *o == Outcome::Ok && clamped);
                        }
                        c
                    };
                    prop_assert_eq!(
                        s.last_complete_seconds(now),
                        [counted(second - 2000), counted(second - 1000)]
                    );
                    if let Some(keep) = read_minute {
                        let (minute, _) = s.minute_sample(now, keep);
                        let snap = s.window(Window::M1, now);
                        let as_hist = Sample::Histogram(snap.clone());
                        prop_assert_eq!(minute.counts(), &snap.counts);
                        for q in [0.5, 0.99, 1.0] {
                            prop_assert_eq!(minute.value_at_quantile(q), as_hist.value_at_quantile(q));
                        }
                    }
                    for w in Window::ALL {
                        let snap = s.window(w, now);
                        let mut expected = crate::window::new_histogram::<u32>();
                        let mut calls = 0;
                        for (ts, d, outcome) in &seen {
                            if *ts >= snap.from_ms && *ts <= now {
                                calls += 1;
                                if *outcome == Outcome::Ok {
                                    expected
                                        .record((*d).min(super::super::histogram::HIGHEST_US))
                                        .unwrap();
                                }
                            }
                        }
                        prop_assert_eq!(&*snap.hist, &expected, "window {} at {}", w, now - T0);
                        prop_assert_eq!(snap.total(), calls);
                        prop_assert_eq!(snap.successful(), expected.len());
                        // The form the peer detectors read answers like the histogram.
                        let sample = s.sample(w, now);
                        let as_hist = Sample::Histogram(snap.clone());
                        prop_assert_eq!(sample.counts(), &snap.counts);
                        prop_assert_eq!(sample.successful(), snap.successful());
                        for q in [0.5, 0.99, 1.0] {
                            prop_assert_eq!(sample.value_at_quantile(q), as_hist.value_at_quantile(q));
                        }
                        for t in [0, 20_000, 1_000_000, *base + 500] {
                            prop_assert_eq!(sample.count_above(t), as_hist.count_above(t));
                        }
                        if w == Window::S10 {
                            prop_assert_eq!(s.recent_counts(), snap.counts);
                        }
                    }
                }
            }
        }

        /// A minute list kept from read to read (see [`minute`]) answers exactly as the minute
        /// read from the slots afresh, and holds the same durations when both are lists:
        /// whatever the lateness of calls (some older than the minute), busy seconds and busy
        /// minutes (past what a list holds), failed calls, reads a few milliseconds or minutes
        /// apart, and a clock that sometimes steps back.
        #[test]
        fn a_kept_minute_list_equals_the_minute_read_from_the_slots(
            steps in proptest::collection::vec(
                (
                    prop_oneof![6 => 0i64..15_000, 1 => 15_000i64..200_000, 1 => -4_000i64..0],
                    proptest::collection::vec((0i64..90_000, 0u64..400_000, 0u8..4), 0..30),
                    prop_oneof![4 => Just(0usize), 1 => 0usize..(2 * SPARSE_MAX)],
                ),
                1..60,
            ),
        ) {
            let (mut kept, mut fresh) = (Series::peer(), Series::peer());
            let mut now = T0;
            for (step, calls, burst) in &steps {
                now += step;
                for (ts, d, outcome) in step_calls(now, calls, *burst) {
                    prop_assert_eq!(kept.record(ts, d, outcome, now), fresh.record(ts, d, outcome, now));
                }
                kept.advance(now);
                fresh.advance(now);
                let (a, _) = kept.minute_sample(now, true);
                let (b, _) = fresh.minute_sample(now, false);
                prop_assert_eq!(a.counts(), b.counts());
                prop_assert_eq!(a.from_ms(), b.from_ms());
                prop_assert_eq!(a.successful(), b.successful());
                for q in [0.0, 0.5, 0.99, 1.0] {
                    prop_assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q));
                }
                for t in [0, 900, 20_000, 150_000, 1_000_000] {
                    prop_assert_eq!(a.count_above(t), b.count_above(t));
                }
                if let (Sample::Sorted { values: x, .. }, Sample::Durations { values: y, .. }) =
                    (&a, &b)
                {
                    let mut y = y.clone();
                    y.sort_unstable();
                    prop_assert_eq!(x.as_slice(), y.as_slice());
                }
            }
        }

        /// A peer whose minute is kept as a list is read without rolling it forward (see
        /// [`Series::read_unfolded`]): what it reads is what a peer rolled forward
        /// before every read reads, and once both roll forward every window holds the same
        /// calls, whatever the lateness of calls, busy seconds and a clock that steps back.
        #[test]
        fn a_peer_read_without_rolling_forward_reads_what_a_rolled_one_reads(
            steps in proptest::collection::vec(
                (
                    // Clocks that step back by up to 15 s: further than the fine ring.
                    prop_oneof![6 => 0i64..4_000, 1 => 4_000i64..200_000, 1 => -15_000i64..0],
                    proptest::collection::vec((0i64..90_000, 0u64..400_000, 0u8..4), 0..12),
                    prop_oneof![6 => Just(0usize), 1 => 0usize..(2 * SPARSE_MAX)],
                ),
                1..120,
            ),
        ) {
            let (mut lazy, mut eager) = (Series::peer(), Series::peer());
            let mut now = T0;
            let mut steps_latest = now;
            for (step, calls, burst) in &steps {
                now += step;
                steps_latest = steps_latest.max(now);
                for (ts, d, outcome) in step_calls(now, calls, *burst) {
                    prop_assert_eq!(lazy.record(ts, d, outcome, now), eager.record(ts, d, outcome, now));
                }
                let s10 = match lazy.read_unfolded(now) {
                    Some(counts) => counts,
                    None => {
                        lazy.advance(now);
                        lazy.recent_counts()
                    }
                };
                eager.advance(now);
                prop_assert_eq!(s10, eager.recent_counts());
                prop_assert_eq!(lazy.last_complete_seconds(now), eager.last_complete_seconds(now));
                let (a, _) = lazy.minute_sample(now, true);
                let (b, _) = eager.minute_sample(now, true);
                prop_assert_eq!(a.counts(), b.counts());
                prop_assert_eq!(a.from_ms(), b.from_ms());
                for q in [0.0, 0.5, 0.99, 1.0] {
                    prop_assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q));
                }
            }
            // Read where no call lies ahead of the clock: where a window read on a clock
            // that stepped back ends inside a 10-second slot, calls after its end count or
            // not by whether the slot had been passed on, live or not.
            let latest = now.max(steps_latest);
            lazy.advance(latest);
            eager.advance(latest);
            for w in [Window::S10, Window::M1, Window::M5, Window::M15, Window::H1] {
                let (a, b) = (lazy.window(w, latest), eager.window(w, latest));
                prop_assert_eq!(a.counts, b.counts);
                prop_assert_eq!(&a.hist, &b.hist);
            }
            // And both would store the same minutes (main rows and late parts together).
            let stored = |s: &mut Series| {
                let mut by_minute: BTreeMap<i64, Snapshot> = BTreeMap::new();
                for r in s.take_rollups(latest, true) {
                    let part = Snapshot::of_slot(&r.slot, r.minute_ms, r.minute_ms + MINUTE_MS);
                    by_minute
                        .entry(r.minute_ms)
                        .and_modify(|m| m.merge(&part))
                        .or_insert(part);
                }
                by_minute
                    .into_iter()
                    .map(|(m, s)| (m, s.counts, s.hist))
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(stored(&mut lazy), stored(&mut eager));
        }

        /// Merging the snapshots of two series equals the snapshot of one series fed both.
        #[test]
        fn merging_snapshots_equals_recording_everything_in_one(
            a in proptest::collection::vec((0i64..600_000, 0u64..10_000_000), 0..200),
            b in proptest::collection::vec((0i64..600_000, 0u64..10_000_000), 0..200),
        ) {
            let now = T0 + 600_000;
            let (mut sa, mut sb, mut both) = (Series::new(), Series::new(), Series::new());
            for (off, d) in &a {
                sa.record(now - off, *d, Outcome::Ok, now);
                both.record(now - off, *d, Outcome::Ok, now);
            }
            for (off, d) in &b {
                let outcome = if d % 3 == 0 { Outcome::Ok } else { Outcome::Timeout };
                sb.record(now - off, *d, outcome, now);
                both.record(now - off, *d, outcome, now);
            }
            for s in [&mut sa, &mut sb, &mut both] {
                s.advance(now);
            }
            let mut merged = sa.window(Window::M15, now);
            merged.merge(&sb.window(Window::M15, now));
            let whole = both.window(Window::M15, now);
            prop_assert_eq!(&merged.hist, &whole.hist);
            prop_assert_eq!(merged.counts, whole.counts);
        }
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    /// A deterministic log-normal latency around `median_us` (sigma 0.4, as the fleet
    /// recording in `benches/` draws them), from a xorshift generator.
    struct Latencies(u64, f64);

    impl Latencies {
        fn next_us(&mut self) -> u64 {
            let mut uniform = || {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 11) as f64 / (1u64 << 53) as f64
            };
            let (u1, u2) = (uniform().max(1e-12), uniform());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (self.1 * (0.4 * z).exp()) as u64
        }
    }

    /// Feeds `per_second` calls a second (fractions spread over seconds) for 65 minutes, so
    /// that every window and every ring is full, and returns the series' bytes.
    fn bytes_after_an_hour(mut s: Series, per_second: f64) -> usize {
        let t0 = 1_800_000_000_000i64;
        let mut lat = Latencies(0x9e37_79b9_7f4a_7c15, 20_000.0);
        let mut owed = 0.0;
        for second in 0..65 * 60 {
            let now = t0 + second * 1_000;
            owed += per_second;
            let n = owed as i64;
            owed -= n as f64;
            for k in 0..n {
                s.record(
                    now + k * 1_000 / n.max(1),
                    lat.next_us(),
                    Outcome::Ok,
                    now + 999,
                );
            }
            s.advance(now + 999);
            if second % 60 == 0 {
                s.discard_rollups(now + 999);
            }
        }
        s.heap_bytes()
    }

    /// The README's memory figures: a series that sees under one call a second costs at
    /// most 16 KiB, a busy one (200 calls a second, every slot in use) at most 200 KiB, and
    /// a busy dependency's total 24 KiB more for its two running sums, dense once busy (see
    /// `sums::DENSE_SUM_CALLS`).
    #[test]
    fn a_quiet_series_stays_within_16_kib() {
        for (kind, s) in [("dependency", Series::new()), ("peer", Series::peer())] {
            let bytes = bytes_after_an_hour(s, 0.9);
            println!("{kind} at 0.9 calls/s: {bytes} bytes");
            assert!(bytes <= 16 * 1024, "{kind}: {bytes}");
        }
    }

    #[test]
    fn a_busy_series_stays_within_its_documented_bound() {
        for (kind, s, kib) in [
            ("dependency", Series::new(), 224),
            ("peer", Series::peer(), 200),
        ] {
            let bytes = bytes_after_an_hour(s, 200.0);
            println!("{kind} at 200 calls/s: {bytes} bytes");
            assert!(bytes <= kib * 1024, "{kind}: {bytes}");
        }
    }
}

#[cfg(test)]
mod second_counts {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn counts_kept_inline_read_back_exactly_or_not_at_all() {
        let c = Counts {
            ok: 7,
            error: 2,
            timeout: 1,
            clamped: 3,
        };
        assert_eq!(SecondMark::of(T0, &c).counts(), Some(c));
        assert_eq!(SecondMark::EMPTY.counts(), Some(Counts::default()));
        assert_eq!(SecondMark::of(T0, &c).start_ms, T0);
        // Past 16 bits the slot itself is read.
        for big in [
            u64::from(u16::MAX),
            u64::from(u16::MAX) + 5,
            u64::from(u32::MAX) + 5,
        ] {
            let c = Counts { timeout: big, ..c };
            assert_eq!(SecondMark::of(T0, &c).counts(), None);
        }
    }

    #[test]
    fn a_mark_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<SecondMark>(), 16);
    }

    /// A second with more calls than a mark keeps is read from its slot: the last seconds'
    /// counts and the 10-second window stay exact, and a peer read without rolling forward,
    /// which adds up the marks when an older second is still in the ring, declines rather
    /// than guess (where it reads a quieter second's marks).
    #[test]
    fn a_second_with_more_calls_than_a_mark_keeps_is_read_exactly() {
        for errors in [10, u64::from(u16::MAX) - 1, u64::from(u16::MAX) + 10] {
            let mut s = Series::peer();
            let busy = T0 + 3_000;
            // An older second, still in the ring but out of the 10-second window read below.
            s.record(busy - 5_000, 2_000, Outcome::Ok, busy - 5_000);
            for i in 0..errors {
                s.record(busy + (i % 1000) as i64, 1_000, Outcome::Error, busy + 999);
            }
            s.record(busy + 500, 2_000, Outcome::Ok, busy + 999);
            let want = Counts {
                ok: 1,
                error: errors,
                ..Counts::default()
            };
            let mut now = busy + 2_000;
            s.advance(now);
            assert_eq!(s.last_complete_seconds(now), [want, Counts::default()]);
            // Read once so that the minute is kept as a list (errors are counts, not
            // durations, so the list holds two durations).
            s.minute_sample(now, true);
            now = busy + 6_000;
            let unfolded = s.read_unfolded(now);
            if errors < u64::from(u16::MAX) {
                assert_eq!(unfolded, Some(want), "{errors} errors");
            } else {
                assert_eq!(unfolded, None, "{errors} errors");
            }
            s.advance(now);
            assert_eq!(s.recent_counts(), want);
            assert_eq!(s.window(Window::S10, now).counts, want);
        }
    }
}
