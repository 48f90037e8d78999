//! Durations owed to a dense histogram: calls counted at once but added to the histogram in
//! batches.
//!
//! A call of a busy series goes into its live second and into up to three dense histograms
//! besides (the sum of the dense seconds and the 1-minute and 5-minute running sums). Recorded
//! one by one, each of those is a copy-on-write check on a shared histogram (an atomic
//! compare-and-swap) and a counter in a 13 KiB array that the calls of other series have
//! pushed out of the cache. Owed, a call is a counter increment and a push onto a short list;
//! the list is paid in one pass over one histogram when it is full or before the histogram is
//! read, taken from, or rebuilt. Paying adds exactly what recording would have, so no read
//! can tell the two apart; reads that find durations still owed add them to their copy.

use super::super::histogram::list_value;
use super::super::slot::Slot;
use super::super::snapshot::Snapshot;
use crate::domain::Outcome;

/// Most durations owed to one histogram before they are paid (1 KiB): long enough that the
/// copy-on-write check and the cache misses are shared by many calls, short enough that a
/// batch stays in the cache while it is paid.
const OWED_MAX: usize = 256;

/// Durations of successful calls counted into a [`Slot`] but not yet in its histogram.
#[derive(Debug, Clone, Default)]
pub(super) struct Owed(Vec<u32>);

impl Owed {
    /// Counts a call into `slot` (which must keep a dense histogram, not a list) and owes its
    /// duration when it is timed; pays when the list is full.
    #[inline]
    pub(super) fn record(&mut self, slot: &mut Slot, duration_us: u64, outcome: Outcome) {
        debug_assert!(slot.hist.is_dense() && slot.values().is_none());
        if slot.count(duration_us, outcome) {
            self.0.push(list_value(duration_us));
            if self.0.len() >= OWED_MAX {
                self.pay(slot);
            }
        }
    }

    /// Adds every owed duration to `slot`'s histogram.
    #[inline]
    pub(super) fn pay(&mut self, slot: &mut Slot) {
        if !self.0.is_empty() {
            slot.hist.add_values(&self.0);
            self.0.clear();
        }
    }

    /// Forgets what is owed: for a slot about to be emptied or rebuilt from its parts.
    pub(super) fn forgive(&mut self) {
        self.0.clear();
    }

    /// Adds the owed durations to a copy of the slot being read (its counts have them).
    pub(super) fn add_to(&self, snap: &mut Snapshot) {
        if !self.0.is_empty() {
            snap.add_durations(&self.0);
        }
    }

    pub(super) fn values(&self) -> &[u32] {
        &self.0
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes held on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::slot_hist::SlotHist;

    fn dense_slot() -> Slot {
        let mut slot = Slot::new(0);
        slot.hist = SlotHist::default();
        slot.hist.make_dense();
        slot
    }

    #[test]
    fn paid_durations_equal_recorded_ones() {
        let (mut owing, mut recording) = (dense_slot(), dense_slot());
        let mut owed = Owed::default();
        let outcomes = [Outcome::Ok, Outcome::Error, Outcome::Timeout];
        for i in 0..1_000u64 {
            // Spread over the range, past its top, with every outcome.
            let duration = (i * i * 977) % 4_000_000_000;
            let outcome = outcomes[(i % 7 % 3) as usize];
            owed.record(&mut owing, duration, outcome);
            recording.record(duration, outcome);
        }
        assert!(
            !owed.is_empty(),
            "1,000 calls are not a whole number of batches"
        );
        assert_eq!(owing.counts, recording.counts);
        // A read before paying adds what is owed to its copy.
        let mut read = Snapshot::of_slot(&owing, 0, 1);
        owed.add_to(&mut read);
        assert_eq!(*read.hist, recording.to_dense());
        assert_ne!(owing.to_dense(), recording.to_dense());
        owed.pay(&mut owing);
        assert!(owed.is_empty());
        assert_eq!(owing.to_dense(), recording.to_dense());
    }
}
