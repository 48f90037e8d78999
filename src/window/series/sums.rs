//! The running sums of a series: its 1-minute and 5-minute windows whole, kept summed as calls
//! arrive and the windows slide, so that reading one of them is one histogram copy instead of
//! a sum over its slots.
//!
//! A window holds three kinds of parts: the coarse slots of its ring, the 10-second slots not
//! yet passed on to that ring (for the 5-minute window), and the live seconds of the fine
//! ring. A sum holds every call of those parts that start at or after its `from_ms`. A call
//! joins the sum when it is recorded, and stays in it while its second is folded into a
//! 10-second slot and that slot is passed on to the minute ring: each step keeps the call in a
//! part of the same window (`from_ms` is aligned to every finer ring's slots). It leaves when
//! the window slides past its part. The detectors read a busy dependency's windows every
//! second; summing its live seconds into each of them at every read (up to ten lists of
//! durations and a histogram of the dense seconds, twice) cost more than recording each call
//! twice more as it arrives.

use super::super::fine::{FineData, FineSlot};
use super::super::ring::{InlineRing, Ring, RingSlot};
use super::super::slot::{Counts, Slot};
use super::owed::Owed;
use super::{FINE_LEN, SUMMED, Series, window_start};
use crate::domain::Outcome;

/// Most durations a running sum is rebuilt from instead of subtracting the slots that leave it
/// (about the cost of one subtraction).
const REBUILD_MAX: usize = 512;

/// Calls from which a running sum is kept dense. A sum is added to with every call and read
/// every second (a dependency's 1-minute and 5-minute windows): sparse, each record walks its
/// string to the call's bucket (a kilobyte or two for a dependency at 20 calls a second) and
/// each read decodes it into a fresh histogram; dense, a record is a counter increment and a
/// read one copy. A quiet series (under about 1.7 calls a second over 5 minutes) keeps its
/// sums sparse, and so within its memory bound.
const DENSE_SUM_CALLS: u64 = 512;

/// Calls recorded into a sparse sum between two folds (about a second) from which it turns
/// dense at once, before it holds [`DENSE_SUM_CALLS`]: a series that starts busy would
/// otherwise walk a growing string with every call for half a minute (in a replay of 3,400
/// series that start together, 17% of all instructions).
const DENSE_SUM_BURST: u32 = 16;

/// The running sum of the parts of one window that start at or after `from_ms` (see the
/// module documentation).
#[derive(Debug, Clone)]
pub(super) struct WindowSum {
    pub(super) sum: Slot,
    pub(super) from_ms: i64,
    /// Calls recorded while sparse since the last [`WindowSum::settle`].
    pub(super) burst: u32,
    /// Durations counted into the dense sum but not yet in its histogram (see [`super::owed`]).
    pub(super) owed: Owed,
}

impl WindowSum {
    /// Counts a call recorded into a live second starting at `second_ms`.
    #[inline]
    pub(super) fn record(&mut self, second_ms: i64, duration_us: u64, outcome: Outcome) {
        if second_ms < self.from_ms {
            return;
        }
        if self.sum.hist.is_dense() {
            self.owed.record(&mut self.sum, duration_us, outcome);
            return;
        }
        self.burst += 1;
        if self.burst >= DENSE_SUM_BURST || self.sum.counts.total() >= DENSE_SUM_CALLS {
            self.sum.hist.make_dense();
        }
        self.sum.record(duration_us, outcome);
    }

    /// Turns the sum dense once it holds [`DENSE_SUM_CALLS`] calls (see there), and starts
    /// counting a new burst. It turns sparse again only when it is rebuilt from few calls.
    #[inline]
    pub(super) fn settle(&mut self) {
        if !self.sum.hist.is_dense() && self.sum.counts.total() >= DENSE_SUM_CALLS {
            self.sum.hist.make_dense();
        }
        self.burst = 0;
    }
}

/// One part of a window, in the form it keeps its calls.
enum Part<'a> {
    /// A coarse or 10-second slot.
    Slot(&'a Slot),
    /// A live second.
    Fine(&'a FineSlot),
}

impl Part<'_> {
    /// The durations of the part's successful calls, when it keeps them as a list.
    fn values(&self) -> Option<(&[u32], &Counts)> {
        match self {
            Part::Slot(slot) => slot.values().map(|v| (v, &slot.counts)),
            Part::Fine(fine) => match fine.data() {
                FineData::Sparse(v) => Some((v, &fine.counts)),
                FineData::Dense(_) => None,
            },
        }
    }

    fn add_to(&self, sum: &mut Slot) {
        match self {
            Part::Slot(slot) => match slot.values() {
                Some(values) => sum.absorb_values(values, &slot.counts),
                None => sum.absorb(&slot.hist, &slot.counts),
            },
            Part::Fine(fine) => sum.absorb_fine(fine),
        }
    }
}

/// The parts holding calls of the window of coarse ring `tier` that start at or after
/// `from_ms`: its coarse slots, for the rings above the 10-second one the 10-second slots not
/// yet passed on, and the live seconds.
fn parts<'a>(
    tiers: &'a [Ring; 3],
    fine: &'a InlineRing<FineSlot, FINE_LEN>,
    tier: usize,
    from_ms: i64,
) -> impl Iterator<Item = Part<'a>> {
    let coarse = tiers[tier].iter().filter(move |s| s.start_ms >= from_ms);
    let pending = tiers[0]
        .iter()
        .filter(move |s| tier > 0 && s.pending && s.start_ms >= from_ms);
    let fine = fine.iter().filter(move |s| s.start_ms >= from_ms);
    coarse
        .chain(pending)
        .filter(|s| !s.is_empty())
        .map(Part::Slot)
        .chain(fine.filter(|s| !s.is_empty()).map(Part::Fine))
}

impl Series {
    /// Starts the running sum of the 1-minute window ending at `now_ms` (a series that kept
    /// none). Call after [`Series::advance`].
    pub(super) fn start_minute_sum(&mut self, now_ms: i64) {
        debug_assert!(self.sums.is_empty());
        let from_ms = window_start(&self.tiers[0], SUMMED[0], now_ms);
        let mut sum = Slot::new(0);
        for part in parts(&self.tiers, &self.fine, 0, from_ms) {
            part.add_to(&mut sum);
        }
        let mut s = WindowSum {
            sum,
            from_ms,
            burst: 0,
            owed: Owed::default(),
        };
        s.settle();
        self.sums.push(s);
    }

    /// Moves the window sums forward to the windows ending at `now_ms`: parts the windows no
    /// longer span leave their sums. Must run before anything is folded at `now_ms`, so that a
    /// slot is recycled only after it left its sum.
    pub(super) fn slide(&mut self, now_ms: i64) {
        // Windows move at 10-second boundaries: nothing to do before the next one.
        if now_ms < self.next_slide_ms {
            return;
        }
        self.next_slide_ms = self.tiers[0].align(now_ms) + self.tiers[0].width_ms;
        for (tier, (window, s)) in SUMMED.iter().zip(&mut self.sums).enumerate() {
            let ring = &self.tiers[tier];
            let from = window_start(ring, *window, now_ms);
            if from <= s.from_ms {
                continue;
            }
            let leaving = |start: i64| start >= s.from_ms && start < from;
            let slot_leaves = |slot: &Slot| leaving(slot.start_ms) && !slot.is_empty();
            // Usually only coarse slots leave. A live second or a 10-second slot not yet
            // passed on leaves only after a gap without ticks.
            let other_leaves = (self.fine_floor_ms < from
                && self
                    .fine
                    .iter()
                    .any(|f| leaving(f.start_ms) && !f.is_empty()))
                || (tier > 0 && self.tiers[0].iter().any(|p| p.pending && slot_leaves(p)));
            if !other_leaves && !ring.iter().any(slot_leaves) {
                s.from_ms = from;
                continue;
            }
            // The sum is the parts from `from` on. When those all keep their durations and
            // are few, recording them afresh is cheaper than HdrHistogram's subtraction (a
            // pass over the counters, often a second one to find min and max).
            let staying = || parts(&self.tiers, &self.fine, tier, from);
            let listed: Option<usize> = staying().map(|p| p.values().map(|(v, _)| v.len())).sum();
            if other_leaves || listed.is_some_and(|n| n <= REBUILD_MAX) {
                // The parts hold the owed calls too.
                s.owed.forgive();
                s.sum.reset(0);
                for part in staying() {
                    part.add_to(&mut s.sum);
                }
            } else {
                s.owed.pay(&mut s.sum);
                for slot in ring.iter().filter(|slot| slot_leaves(slot)) {
                    s.sum.remove(slot);
                }
            }
            s.from_ms = from;
            s.settle();
        }
    }
}
