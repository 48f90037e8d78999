//! The running sums of a series: the coarse part of its 1-minute and 5-minute windows, kept
//! summed as data is folded in and the windows slide, so that reading one of them is one
//! histogram copy instead of a sum over its slots.

use super::super::slot::{Counts, Slot};
use super::{SUMMED, Series, window_start};

/// Most durations a running sum is rebuilt from instead of subtracting the slots that leave it
/// (about the cost of one subtraction).
const REBUILD_MAX: usize = 512;

/// Calls from which a running sum is kept dense. A sum is added to every second (each folded
/// second) and read every second (a dependency's 1-minute and 5-minute windows): sparse, each
/// fold decodes and rewrites its whole string (a kilobyte or two for a dependency at 20 calls
/// a second) and each read decodes it into a fresh histogram; dense, a fold is a record per
/// call and a read one copy. A quiet series (under about 1.7 calls a second over 5 minutes)
/// keeps its sums sparse, and so within its memory bound.
const DENSE_SUM_CALLS: u64 = 512;

/// The running sum of the coarse slots of one tier that start at or after `from_ms`.
#[derive(Debug, Clone)]
pub(super) struct CoarseSum {
    pub(super) sum: Slot,
    pub(super) from_ms: i64,
}

impl CoarseSum {
    /// Turns the sum dense once it holds [`DENSE_SUM_CALLS`] calls (see there). It turns
    /// sparse again only when it is rebuilt from few calls.
    pub(super) fn settle(&mut self) {
        if !self.sum.hist.is_dense() && self.sum.counts.total() >= DENSE_SUM_CALLS {
            self.sum.hist.make_dense();
        }
    }
}

impl Series {
    /// Starts the running sum of the 1-minute window ending at `now_ms` (a series that kept
    /// none): the 10-second slots it spans, added up. Call after [`Series::advance`].
    pub(super) fn start_minute_sum(&mut self, now_ms: i64) {
        debug_assert!(self.sums.is_empty());
        let ring = &self.tiers[0];
        let from_ms = window_start(ring, SUMMED[0], now_ms);
        let mut sum = Slot::new(0);
        for slot in ring
            .iter()
            .filter(|s| s.start_ms >= from_ms && !s.is_empty())
        {
            match slot.values() {
                Some(values) => sum.absorb_values(values, &slot.counts),
                None => sum.absorb(&slot.hist, &slot.counts),
            }
        }
        self.sums.push(CoarseSum { sum, from_ms });
    }

    /// Moves the window sums forward to the windows ending at `now_ms`: coarse slots the
    /// windows no longer span leave their sums. Must run before anything is folded at
    /// `now_ms`, so that a slot is recycled only after it left its sum.
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
            let leaving = |slot: &&Slot| {
                slot.start_ms >= s.from_ms && slot.start_ms < from && !slot.is_empty()
            };
            if !ring.iter().any(|slot| leaving(&slot)) {
                s.from_ms = from;
                continue;
            }
            // The sum is the slots from `from_ms` on. When those that stay all keep their
            // durations and are few, recording them afresh is cheaper than HdrHistogram's
            // subtraction (a pass over the counters, often a second one to find min and max).
            let staying: Option<Vec<(&[u32], &Counts)>> = ring
                .iter()
                .filter(|slot| slot.start_ms >= from && !slot.is_empty())
                .map(|slot| slot.values().map(|v| (v, &slot.counts)))
                .collect();
            match staying {
                Some(staying)
                    if staying.iter().map(|(v, _)| v.len()).sum::<usize>() <= REBUILD_MAX =>
                {
                    s.sum.reset(0);
                    for (values, counts) in staying {
                        s.sum.absorb_values(values, counts);
                    }
                }
                _ => {
                    for slot in ring.iter().filter(|slot| leaving(slot)) {
                        s.sum.remove(slot);
                    }
                }
            }
            s.from_ms = from;
        }
    }
}
