//! One time slot of a series: a histogram of call durations plus outcome counters.

use super::histogram::{SlotHistogram, new_histogram, record_clamped};
use crate::domain::Outcome;

/// Outcome counters of a slot or window. `clamped` counts durations beyond the histogram
/// range (recorded at the range's top), so nothing is silently dropped.
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

    pub fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.error += other.error;
        self.timeout += other.timeout;
        self.clamped += other.clamped;
    }

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
    pub hist: SlotHistogram,
    pub counts: Counts,
    /// Set when the slot changed since it was last persisted (only read for minute slots).
    pub dirty: bool,
    /// Holds folded seconds not yet passed on to the coarser rings (10-second slots only).
    pub pending: bool,
}

impl Slot {
    pub fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            hist: new_histogram(),
            counts: Counts::default(),
            dirty: false,
            pending: false,
        }
    }

    /// A clean slot holding a stored histogram and its counts.
    pub fn from_parts(start_ms: i64, hist: SlotHistogram, counts: Counts) -> Self {
        Self {
            start_ms,
            hist,
            counts,
            dirty: false,
            pending: false,
        }
    }

    /// Empties the slot for reuse at a new start time, keeping its allocation.
    pub fn reset(&mut self, start_ms: i64) {
        self.start_ms = start_ms;
        self.hist.reset();
        self.counts = Counts::default();
        self.dirty = false;
        self.pending = false;
    }

    #[inline]
    pub fn record(&mut self, duration_us: u64, outcome: Outcome) {
        let clamped = record_clamped(&mut self.hist, duration_us);
        self.counts.count(outcome, clamped);
        self.dirty = true;
    }

    pub fn absorb(&mut self, hist: &SlotHistogram, counts: &Counts) {
        self.hist.add(hist).expect("slot histograms share bounds");
        self.counts.add(counts);
        self.dirty = true;
    }

    /// Takes a slot's calls back out (the inverse of [`Slot::absorb`]).
    pub fn remove(&mut self, other: &Slot) {
        self.remove_parts(&other.hist, &other.counts);
    }

    /// Takes calls back out, given as a histogram and their counts.
    pub fn remove_parts(&mut self, hist: &SlotHistogram, counts: &Counts) {
        if self.counts == *counts {
            // Everything goes: resetting is exact and skips HdrHistogram's re-scan of min/max.
            self.reset(self.start_ms);
            return;
        }
        self.hist
            .subtract(hist)
            .expect("a slot only removes calls it absorbed");
        self.counts.ok -= counts.ok;
        self.counts.error -= counts.error;
        self.counts.timeout -= counts.timeout;
        self.counts.clamped -= counts.clamped;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.total() == 0
    }
}
