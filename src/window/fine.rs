//! The 1-second slots of a series.
//!
//! Most series see a few calls a second: an instance among forty, a dependency called now and
//! then. A histogram slot costs a pass over its 3,328 counters every time it is folded,
//! summed into a window or taken out of one, whatever it holds. A fine slot therefore keeps
//! the raw durations of its calls until it holds [`SPARSE_MAX`] of them and only then turns
//! into a histogram. Windows and folds then cost a few records for a quiet series and a few
//! counter passes a second for a busy one, where they are shared by many calls.

use super::histogram::{SlotHistogram, new_histogram, record_clamped};
use super::ring::RingSlot;
use super::slot::{Counts, Slot};
use crate::domain::Outcome;

/// Successful calls a fine slot keeps as raw durations before it switches to a histogram. A
/// histogram slot costs a few counter passes a second (folding it, the 1-minute sum, leaving
/// the running total of dense seconds); a sparse call costs a record when it is folded, and a
/// record at each window read that includes it (the detectors read a peer's minute as
/// durations, and a dependency's windows as histograms). Against 48, a limit of 128 replayed the 40-instance
/// benchmark recording 10-15% faster and the 4,000-calls/s one 20-30% faster; 256 was no
/// better.
pub(crate) const SPARSE_MAX: usize = 128;

#[derive(Debug, Clone)]
pub(crate) struct FineSlot {
    pub start_ms: i64,
    pub counts: Counts,
    /// Durations of the successful calls in microseconds, clamped to the histogram's range,
    /// while the slot is sparse (failed calls are counted, not timed: see [`super::slot`]).
    values: Vec<u32>,
    /// The slot's histogram once it holds more than [`SPARSE_MAX`] calls. The allocation is
    /// kept when the slot is recycled so a busy series does not reallocate every second.
    hist: Option<Box<SlotHistogram>>,
    dense: bool,
}

/// What a fine slot holds, for those who add it up.
pub(crate) enum FineData<'a> {
    /// Raw durations in microseconds.
    Sparse(&'a [u32]),
    Dense(&'a SlotHistogram),
}

impl FineSlot {
    /// Records one call (timed only when it succeeded). Returns whether the slot is a
    /// histogram: the call is then the caller's to add to `dense_total`, the running sum of
    /// the histogram fine slots of the series (which may owe it, see `series::owed`). The
    /// calls of a slot that turns into a histogram with this one go into `dense_total` here.
    #[inline]
    pub fn record(&mut self, duration_us: u64, outcome: Outcome, dense_total: &mut Slot) -> bool {
        if !Counts::timed(outcome) {
            self.counts.count(outcome, false);
            return self.dense;
        }
        if self.dense {
            let hist = self.hist.as_mut().expect("a dense slot has a histogram");
            let clamped = record_clamped(hist, duration_us);
            self.counts.count(outcome, clamped);
            return true;
        }
        let clamped = duration_us > super::histogram::HIGHEST_US;
        self.counts.count(outcome, clamped);
        if self.values.len() == self.values.capacity() {
            self.grow();
        }
        self.values.push(super::histogram::list_value(duration_us));
        if self.values.len() > SPARSE_MAX {
            self.densify(dense_total);
        }
        false
    }

    /// Makes room for more durations: doubling from 8, up to exactly the most a sparse slot
    /// holds, so that a quiet second costs a few bytes and a busy one never reallocates once
    /// its recycled slot reached that size.
    #[cold]
    fn grow(&mut self) {
        let len = self.values.len();
        let cap = (2 * len).clamp(8, SPARSE_MAX + 1);
        self.values.reserve_exact(cap - len);
    }

    /// Turns the slot into a histogram and hands its calls to `dense_total`.
    fn densify(&mut self, dense_total: &mut Slot) {
        let hist = self.hist.get_or_insert_with(|| Box::new(new_histogram()));
        // Every call of a busy second passes through the total: keep it a plain histogram.
        dense_total.hist.make_dense();
        for &v in &self.values {
            record_clamped(hist, u64::from(v));
            dense_total.hist.record(u64::from(v));
        }
        dense_total.counts.add(&self.counts);
        dense_total.dirty = true;
        self.values.clear();
        self.dense = true;
    }

    pub fn data(&self) -> FineData<'_> {
        if self.dense {
            FineData::Dense(self.hist.as_ref().expect("a dense slot has a histogram"))
        } else {
            FineData::Sparse(&self.values)
        }
    }

    pub fn is_dense(&self) -> bool {
        self.dense
    }

    /// Bytes the slot holds on the heap, beyond its own struct.
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * 4
            + self.hist.as_ref().map_or(0, |h| {
                h.distinct_values() * 4 + std::mem::size_of::<SlotHistogram>()
            })
    }

    /// Adds the slot's durations into `hist` (its counts are the caller's to add).
    pub fn add_to(&self, hist: &mut SlotHistogram) {
        match self.data() {
            FineData::Sparse(values) => {
                for &v in values {
                    record_clamped(hist, u64::from(v));
                }
            }
            FineData::Dense(dense) => hist.add(dense).expect("slot histograms share bounds"),
        }
    }
}

impl RingSlot for FineSlot {
    fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            counts: Counts::default(),
            values: Vec::new(),
            hist: None,
            dense: false,
        }
    }

    fn start_ms(&self) -> i64 {
        self.start_ms
    }

    fn is_empty(&self) -> bool {
        self.counts.total() == 0
    }

    fn heap_bytes(&self) -> usize {
        FineSlot::heap_bytes(self)
    }

    fn reset(&mut self, start_ms: i64) {
        self.start_ms = start_ms;
        self.counts = Counts::default();
        self.values.clear();
        if self.dense {
            if let Some(h) = self.hist.as_mut() {
                h.reset();
            }
            self.dense = false;
        }
    }
}

impl Slot {
    /// Adds a fine slot's calls.
    pub(crate) fn absorb_fine(&mut self, fine: &FineSlot) {
        match fine.data() {
            FineData::Sparse(values) => self.absorb_values(values, &fine.counts),
            FineData::Dense(hist) => self.absorb_histogram(hist, &fine.counts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as a series does: a call of a dense slot goes into the dense total too.
    fn record(fine: &mut FineSlot, duration_us: u64, outcome: Outcome, dense_total: &mut Slot) {
        if fine.record(duration_us, outcome, dense_total) {
            dense_total.record(duration_us, outcome);
        }
    }

    fn filled(n: usize, dense_total: &mut Slot) -> FineSlot {
        let mut s = FineSlot::new(0);
        for i in 0..n {
            record(&mut s, 1_000 + i as u64, Outcome::Ok, dense_total);
        }
        s
    }

    #[test]
    fn a_slot_stays_sparse_up_to_its_limit_and_then_counts_in_the_dense_total() {
        let mut total = Slot::new(0);
        let sparse = filled(SPARSE_MAX, &mut total);
        assert!(!sparse.is_dense());
        assert!(total.is_empty());
        let dense = filled(SPARSE_MAX + 1, &mut total);
        assert!(dense.is_dense());
        assert_eq!(total.counts.ok, SPARSE_MAX as u64 + 1);
        assert_eq!(total.hist.len(), SPARSE_MAX as u64 + 1);
    }

    #[test]
    fn sparse_and_dense_slots_absorb_into_the_same_histogram() {
        let mut total = Slot::new(0);
        for n in [3, SPARSE_MAX + 5] {
            let fine = filled(n, &mut total);
            let mut via_fine = Slot::new(0);
            via_fine.absorb_fine(&fine);
            let mut direct = Slot::new(0);
            for i in 0..n {
                direct.record(1_000 + i as u64, Outcome::Ok);
            }
            assert_eq!(via_fine.hist, direct.hist, "{n} calls");
            assert_eq!(via_fine.counts, direct.counts);
        }
    }

    #[test]
    fn clamped_durations_are_counted_once_and_recorded_at_the_top() {
        let mut total = Slot::new(0);
        let mut fine = FineSlot::new(0);
        record(
            &mut fine,
            super::super::histogram::HIGHEST_US * 3,
            Outcome::Ok,
            &mut total,
        );
        let mut slot = Slot::new(0);
        slot.absorb_fine(&fine);
        assert_eq!(slot.counts.clamped, 1);
        assert_eq!(slot.counts.ok, 1);
        assert!(slot.hist.to_dense().max() >= super::super::histogram::HIGHEST_US);
    }

    #[test]
    fn failed_calls_are_counted_in_sparse_and_dense_slots_but_never_timed() {
        let mut total = Slot::new(0);
        let mut fine = FineSlot::new(0);
        // Failures do not fill the list: only timed calls turn a slot into a histogram.
        for i in 0..(2 * SPARSE_MAX) as u64 {
            record(&mut fine, 2_000 + i, Outcome::Error, &mut total);
        }
        assert!(!fine.is_dense() && total.is_empty());
        let fine = filled(SPARSE_MAX + 1, &mut total);
        assert!(fine.is_dense());
        let mut fine = fine;
        record(&mut fine, 2_000_000, Outcome::Timeout, &mut total);
        record(&mut fine, 3, Outcome::Error, &mut total);
        // The dense total counts them as the slot does, and times neither.
        assert_eq!(total.counts, fine.counts);
        assert_eq!((total.counts.timeout, total.counts.error), (1, 1));
        assert_eq!(total.hist.len(), SPARSE_MAX as u64 + 1);
        let mut slot = Slot::new(0);
        slot.absorb_fine(&fine);
        assert_eq!(slot.hist.len(), SPARSE_MAX as u64 + 1);
        assert_eq!(slot.counts.total(), SPARSE_MAX as u64 + 3);
    }

    #[test]
    fn a_recycled_slot_is_sparse_again() {
        let mut total = Slot::new(0);
        let mut s = filled(SPARSE_MAX + 1, &mut total);
        s.reset(1_000);
        assert!(!s.is_dense());
        assert!(s.is_empty());
        record(&mut s, 5, Outcome::Ok, &mut total);
        assert!(matches!(s.data(), FineData::Sparse(v) if v == [5]));
    }
}
