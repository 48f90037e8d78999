//! One time slot of a series: a histogram of the durations of its successful calls plus
//! outcome counters.
//!
//! Only successful calls are timed. An error that comes back in 2 ms, or a timeout cut at the
//! client's deadline, says how the call failed, not how fast the dependency serves: mixed into
//! the histogram, fast errors pull the quantiles down and hide slow successes, and timeouts
//! raise the tail and fire a latency alert beside the timeout one. Failed calls are counted by
//! outcome only, so a slot's histogram holds exactly `counts.ok` calls.

use super::histogram::{HIGHEST_US, SlotHistogram};
use super::slot_hist::SlotHist;
use crate::domain::Outcome;

/// Outcome counters of a slot or window. `clamped` counts successful calls whose duration was
/// beyond the histogram range (recorded at the range's top), so nothing is silently dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub ok: u64,
    pub error: u64,
    pub timeout: u64,
    pub clamped: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.timeout
    }

    /// Whether a call of `outcome` is timed: only successful calls enter the histograms.
    #[inline]
    pub fn timed(outcome: Outcome) -> bool {
        outcome == Outcome::Ok
    }

    pub fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.error += other.error;
        self.timeout += other.timeout;
        self.clamped += other.clamped;
    }

    /// Takes counts back out (the inverse of [`Counts::add`]).
    pub fn subtract(&mut self, other: &Counts) {
        self.ok -= other.ok;
        self.error -= other.error;
        self.timeout -= other.timeout;
        self.clamped -= other.clamped;
    }

    /// Counts one call; `clamped` only for a timed call whose duration was clamped.
    #[inline]
    pub fn count(&mut self, outcome: Outcome, clamped: bool) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Error => self.error += 1,
            Outcome::Timeout => self.timeout += 1,
        }
        self.clamped += u64::from(clamped);
    }
}

#[derive(Debug, Clone)]
pub struct Slot {
    /// Start of the slot in epoch milliseconds, aligned to the ring's slot width.
    pub start_ms: i64,
    /// Sparse while the slot holds few distinct durations (see [`SlotHist`]).
    pub hist: SlotHist,
    pub counts: Counts,
    /// Set when the slot changed since it was last persisted (only read for minute slots).
    pub dirty: bool,
    /// Holds folded seconds not yet passed on to the coarser rings (10-second slots only).
    pub pending: bool,
    /// Every successful call's duration, while `values_complete` (see [`Slot::keep_values`]).
    values: Vec<u32>,
    values_complete: bool,
}

/// Most durations a slot keeps as a list (see [`Slot::keep_values`]).
pub(crate) const VALUES_MAX: usize = 256;

impl Slot {
    pub fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            hist: SlotHist::default(),
            counts: Counts::default(),
            dirty: false,
            pending: false,
            values: Vec::new(),
            values_complete: false,
        }
    }

    /// A clean slot holding a stored histogram and its counts (kept sparse when it is small).
    pub fn from_parts(start_ms: i64, hist: SlotHistogram, counts: Counts) -> Self {
        Self {
            start_ms,
            hist: SlotHist::from_histogram(&hist),
            counts,
            dirty: false,
            pending: false,
            values: Vec::new(),
            values_complete: false,
        }
    }

    /// Empties the slot for reuse at a new start time: its histogram turns sparse again.
    pub fn reset(&mut self, start_ms: i64) {
        self.start_ms = start_ms;
        self.hist.reset();
        self.counts = Counts::default();
        self.dirty = false;
        self.pending = false;
        self.values.clear();
        self.values_complete = false;
    }

    /// From now on, while it holds at most [`VALUES_MAX`] calls, the slot also keeps their
    /// durations as a list, so that passing it on to a coarser slot or rebuilding a sum from
    /// it costs a few records instead of a pass over every counter. For an empty slot (the
    /// 10-second slots of a series); anything but a record or a sparse fine slot (a whole
    /// histogram added or taken out) ends it. Does nothing to a slot that holds calls.
    pub(crate) fn keep_values(&mut self) {
        if self.is_empty() {
            self.values_complete = true;
        }
    }

    /// The durations of all the slot's successful calls, when it keeps them.
    pub(crate) fn values(&self) -> Option<&[u32]> {
        self.values_complete.then_some(&self.values[..])
    }

    /// Notes durations added to the slot for the list, or ends the list when they do not fit.
    #[inline]
    fn note_values(&mut self, values: &[u32]) {
        if self.values_complete {
            let len = self.values.len() + values.len();
            if len <= VALUES_MAX {
                // Grow by doubling, but never past the documented bound: a quiet slot keeps
                // a short list.
                if len > self.values.capacity() {
                    let cap = len.next_power_of_two().clamp(8, VALUES_MAX);
                    self.values.reserve_exact(cap - self.values.len());
                }
                self.values.extend_from_slice(values);
            } else {
                self.values_complete = false;
                self.values.clear();
            }
        }
    }

    /// Counts one call, and times it when it succeeded (see the module's notes).
    #[inline]
    pub fn record(&mut self, duration_us: u64, outcome: Outcome) {
        self.dirty = true;
        if !Counts::timed(outcome) {
            self.counts.count(outcome, false);
            return;
        }
        self.hist.record(duration_us);
        self.counts.count(outcome, duration_us > HIGHEST_US);
        if self.values_complete {
            self.note_values(&[super::histogram::list_value(duration_us)]);
        }
    }

    pub fn absorb(&mut self, hist: &SlotHist, counts: &Counts) {
        self.hist.add(hist);
        self.absorbed(counts);
    }

    /// Adds a dense histogram's calls (a busy fine slot) and their counts.
    pub(crate) fn absorb_histogram(&mut self, hist: &SlotHistogram, counts: &Counts) {
        self.hist.add_histogram(hist);
        self.absorbed(counts);
    }

    fn absorbed(&mut self, counts: &Counts) {
        self.counts.add(counts);
        self.dirty = true;
        self.values_complete = false;
        self.values.clear();
    }

    /// Adds calls given as the durations of the successful ones (clamped to the histogram's
    /// range) and the counts of all.
    pub(crate) fn absorb_values(&mut self, values: &[u32], counts: &Counts) {
        self.hist.add_values(values);
        self.counts.add(counts);
        self.dirty = true;
        self.note_values(values);
    }

    /// Takes a slot's calls back out (the inverse of [`Slot::absorb`]).
    pub fn remove(&mut self, other: &Slot) {
        self.remove_parts(&other.hist, &other.counts);
    }

    /// Takes calls back out, given as a histogram and their counts.
    pub fn remove_parts(&mut self, hist: &SlotHist, counts: &Counts) {
        if self.take_all(counts) {
            return;
        }
        self.hist.subtract(hist);
        self.removed(counts);
    }

    /// Takes a dense histogram's calls (a busy fine slot) back out.
    pub(crate) fn remove_histogram(&mut self, hist: &SlotHistogram, counts: &Counts) {
        if self.take_all(counts) {
            return;
        }
        self.hist.subtract_histogram(hist);
        self.removed(counts);
    }

    /// Empties the slot, keeping its histogram's form, when `counts` are all it holds:
    /// exact, and it skips HdrHistogram's re-scan of min and max.
    fn take_all(&mut self, counts: &Counts) -> bool {
        if self.counts != *counts {
            return false;
        }
        self.hist.clear();
        self.counts = Counts::default();
        self.dirty = false;
        self.pending = false;
        self.values.clear();
        self.values_complete = false;
        true
    }

    fn removed(&mut self, counts: &Counts) {
        self.values_complete = false;
        self.values.clear();
        self.counts.subtract(counts);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.total() == 0
    }

    /// Bytes the slot holds on the heap, beyond its own struct.
    pub fn heap_bytes(&self) -> usize {
        self.hist.heap_bytes() + self.values.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_are_counted_and_not_timed() {
        let mut slot = Slot::new(0);
        slot.keep_values();
        slot.record(20_000, Outcome::Ok);
        slot.record(2_000, Outcome::Error);
        // A timeout beyond the histogram's range is not clamped: it is not recorded at all.
        slot.record(HIGHEST_US * 2, Outcome::Timeout);
        slot.record(HIGHEST_US * 2, Outcome::Ok);
        let want = Counts {
            ok: 2,
            error: 1,
            timeout: 1,
            clamped: 1,
        };
        assert_eq!(slot.counts, want);
        assert_eq!(slot.hist.len(), 2);
        assert_eq!(slot.values(), Some(&[20_000, HIGHEST_US as u32][..]));
        // Passed on as its list, the slot gives the same histogram and counts.
        let mut coarse = Slot::new(0);
        coarse.absorb_values(slot.values().unwrap(), &slot.counts);
        assert_eq!(coarse.hist, slot.hist);
        assert_eq!(coarse.counts, want);
        // Taking the slot back out empties the coarse one.
        coarse.remove(&slot);
        assert!(coarse.is_empty() && coarse.hist.is_empty());
    }
}
