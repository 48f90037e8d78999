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
    /// Sparse while the slot holds few distinct durations (see [`SlotHist`]). Empty while
    /// the slot keeps its durations as a list (see [`Slot::keep_values`]): the list holds its
    /// successful calls then, and readers go through [`Slot::add_to`] or [`Slot::to_dense`].
    pub hist: SlotHist,
    pub counts: Counts,
    /// Set when the slot changed since it was last persisted (only read for minute slots).
    pub dirty: bool,
    /// Holds calls not yet passed on to the coarser rings: folded seconds of a 10-second
    /// slot, or the calls of a minute slot that has not gone up to the 5-minute ring.
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

    /// A clean slot holding a stored minute read back by [`super::decode_stored`].
    pub fn from_stored(start_ms: i64, hist: SlotHist, counts: Counts) -> Self {
        Self {
            start_ms,
            hist,
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

    /// From now on, while it holds at most [`VALUES_MAX`] calls, the slot keeps their
    /// durations as a list instead of a histogram, so that folding a second into it is an
    /// append, and passing it on to a coarser slot or rebuilding a sum from it costs a few
    /// records instead of a pass over every counter. For an empty slot (the 10-second slots of
    /// a series); anything but a record or a sparse fine slot (a whole histogram added or
    /// taken out) ends it, and the histogram is then built from the list once. Does nothing
    /// to a slot that holds calls.
    pub(crate) fn keep_values(&mut self) {
        if self.is_empty() {
            self.values_complete = true;
        }
    }

    /// The durations of all the slot's successful calls, when it keeps them.
    pub(crate) fn values(&self) -> Option<&[u32]> {
        self.values_complete.then_some(&self.values[..])
    }

    /// Adds durations to the list of a slot that keeps one, or, when they do not fit, ends
    /// the list and puts all of them into the histogram.
    #[inline]
    fn add_listed(&mut self, values: &[u32]) {
        debug_assert!(self.values_complete);
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
            self.end_list();
            self.hist.add_values(values);
        }
    }

    /// Stops keeping the durations as a list: the histogram takes them over.
    #[inline]
    fn end_list(&mut self) {
        if self.values_complete {
            self.values_complete = false;
            self.hist.add_values(&self.values);
        }
        self.values.clear();
    }

    /// Adds the slot's successful calls into a dense histogram (a snapshot's).
    pub fn add_to(&self, dst: &mut super::histogram::WideHistogram) {
        if self.values_complete {
            for &v in &self.values {
                dst.saturating_record(u64::from(v));
            }
        } else {
            self.hist.add_to(dst);
        }
    }

    /// The dense histogram of the slot's successful calls, shared with the slot when it
    /// keeps one (see [`SlotHist::shared`]).
    pub fn to_shared(&self) -> std::sync::Arc<SlotHistogram> {
        if self.values_complete {
            std::sync::Arc::new(self.to_dense())
        } else {
            self.hist.shared()
        }
    }

    /// The dense histogram of the slot's successful calls.
    pub fn to_dense(&self) -> SlotHistogram {
        if self.values_complete {
            let mut h = super::histogram::new_histogram();
            self.add_to(&mut h);
            h
        } else {
            self.hist.to_dense()
        }
    }

    /// The slot's histogram, in whichever form the slot keeps it.
    pub fn histogram(&self) -> std::borrow::Cow<'_, SlotHist> {
        if self.values_complete {
            let mut h = SlotHist::default();
            h.add_values(&self.values);
            std::borrow::Cow::Owned(h)
        } else {
            std::borrow::Cow::Borrowed(&self.hist)
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
        self.counts.count(outcome, duration_us > HIGHEST_US);
        if self.values_complete {
            self.add_listed(&[super::histogram::list_value(duration_us)]);
        } else {
            self.hist.record(duration_us);
        }
    }

    /// Counts one call as [`Slot::record`] does, without timing it: returns whether the call
    /// is timed, its duration then owed to the histogram (see `series::owed`). For a slot that
    /// keeps no list.
    #[inline]
    pub(crate) fn count(&mut self, duration_us: u64, outcome: Outcome) -> bool {
        debug_assert!(!self.values_complete);
        self.dirty = true;
        let timed = Counts::timed(outcome);
        self.counts
            .count(outcome, timed && duration_us > HIGHEST_US);
        timed
    }

    pub fn absorb(&mut self, hist: &SlotHist, counts: &Counts) {
        self.end_list();
        self.hist.add(hist);
        self.absorbed(counts);
    }

    /// Adds a dense histogram's calls (a busy fine slot) and their counts.
    pub(crate) fn absorb_histogram(&mut self, hist: &SlotHistogram, counts: &Counts) {
        self.end_list();
        self.hist.add_histogram(hist);
        self.absorbed(counts);
    }

    fn absorbed(&mut self, counts: &Counts) {
        self.counts.add(counts);
        self.dirty = true;
    }

    /// Adds calls given as the durations of the successful ones (clamped to the histogram's
    /// range) and the counts of all.
    pub(crate) fn absorb_values(&mut self, values: &[u32], counts: &Counts) {
        if self.values_complete {
            self.add_listed(values);
        } else {
            self.hist.add_values(values);
        }
        self.counts.add(counts);
        self.dirty = true;
    }

    /// [`Slot::absorb_values`] with the durations' sorted bucket indices at hand (see
    /// [`super::slot_hist::sorted_indices`]).
    pub(crate) fn absorb_indexed(&mut self, values: &[u32], indices: &[u32], counts: &Counts) {
        if self.values_complete {
            self.add_listed(values);
        } else {
            self.hist.add_indexed(values, indices);
        }
        self.counts.add(counts);
        self.dirty = true;
    }

    /// Takes a slot's calls back out (the inverse of [`Slot::absorb`]).
    pub fn remove(&mut self, other: &Slot) {
        if self.take_all(&other.counts) {
            return;
        }
        match other.values() {
            // No histogram of the list first: it would be sorted and merged, then made dense.
            Some(values) => {
                self.end_list();
                self.hist.subtract_values(values);
                self.removed(&other.counts);
            }
            None => self.remove_parts(&other.hist, &other.counts),
        }
    }

    /// Takes calls back out, given as a histogram and their counts.
    pub fn remove_parts(&mut self, hist: &SlotHist, counts: &Counts) {
        if self.take_all(counts) {
            return;
        }
        self.end_list();
        self.hist.subtract(hist);
        self.removed(counts);
    }

    /// Takes a dense histogram's calls (a busy fine slot) back out.
    pub(crate) fn remove_histogram(&mut self, hist: &SlotHistogram, counts: &Counts) {
        if self.take_all(counts) {
            return;
        }
        self.end_list();
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
        assert_eq!(slot.histogram().len(), 2);
        assert_eq!(slot.values(), Some(&[20_000, HIGHEST_US as u32][..]));
        // Passed on as its list, the slot gives the same histogram and counts.
        let mut coarse = Slot::new(0);
        coarse.absorb_values(slot.values().unwrap(), &slot.counts);
        assert_eq!(coarse.hist, *slot.histogram());
        assert_eq!(coarse.counts, want);
        // Taking the slot back out empties the coarse one.
        coarse.remove(&slot);
        assert!(coarse.is_empty() && coarse.hist.is_empty());
    }

    /// One change to a slot, for the property below.
    #[derive(Debug, Clone)]
    enum Step {
        Record(u64, u8),
        Values(Vec<u32>),
        Histogram(Vec<u64>),
        /// Takes out calls this slot absorbed earlier (the index of an earlier `Values`).
        Remove(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let duration = prop_oneof![
            6 => 0u64..200_000,
            1 => 0u64..=HIGHEST_US,
            1 => HIGHEST_US..HIGHEST_US * 2,
        ];
        prop_oneof![
            8 => (duration.clone(), 0u8..4).prop_map(|(d, o)| Step::Record(d, o)),
            6 => proptest::collection::vec(0u32..300_000, 0..90).prop_map(Step::Values),
            1 => proptest::collection::vec(duration, 0..20).prop_map(Step::Histogram),
            1 => (0usize..8).prop_map(Step::Remove),
        ]
    }

    proptest::proptest! {
        /// A slot that keeps its durations as a list (and its histogram only once the list
        /// ends) holds, after every change, exactly the calls of a slot that never keeps one:
        /// the same counts, the same histogram read every way, and the same string once both
        /// are histograms.
        #[test]
        fn a_listing_slot_equals_a_plain_one(steps in proptest::collection::vec(step(), 0..40)) {
            let (mut listing, mut plain) = (Slot::new(0), Slot::new(0));
            listing.keep_values();
            let mut absorbed: Vec<(Vec<u32>, Counts)> = Vec::new();
            for step in steps {
                match step {
                    Step::Record(d, o) => {
                        let outcome = [Outcome::Ok, Outcome::Ok, Outcome::Error, Outcome::Timeout]
                            [o as usize];
                        listing.record(d, outcome);
                        plain.record(d, outcome);
                    }
                    Step::Values(values) => {
                        let counts = Counts {
                            ok: values.len() as u64,
                            error: values.len() as u64 % 3,
                            ..Counts::default()
                        };
                        listing.absorb_values(&values, &counts);
                        plain.absorb_values(&values, &counts);
                        absorbed.push((values, counts));
                    }
                    Step::Histogram(values) => {
                        let mut other = Slot::new(0);
                        for d in values {
                            other.record(d, Outcome::Ok);
                        }
                        listing.absorb(&other.hist, &other.counts);
                        plain.absorb(&other.hist, &other.counts);
                    }
                    Step::Remove(i) => {
                        if absorbed.is_empty() {
                            continue;
                        }
                        let (values, counts) = absorbed.remove(i % absorbed.len());
                        let mut other = Slot::new(0);
                        other.keep_values();
                        other.absorb_values(&values, &counts);
                        listing.remove(&other);
                        plain.remove(&other);
                    }
                }
                proptest::prop_assert_eq!(listing.counts, plain.counts);
                proptest::prop_assert_eq!(listing.to_dense(), plain.hist.to_dense());
                proptest::prop_assert_eq!(&*listing.histogram(), &plain.hist);
                let mut wide = super::super::histogram::new_histogram::<u32>();
                listing.add_to(&mut wide);
                proptest::prop_assert_eq!(&wide, &plain.to_dense());
                match (listing.values(), &listing.hist, &plain.hist) {
                    (Some(values), hist, _) => {
                        proptest::prop_assert!(hist.is_empty());
                        proptest::prop_assert_eq!(values.len() as u64, plain.hist.len());
                    }
                    (None, SlotHist::Sparse(a), SlotHist::Sparse(b)) => {
                        proptest::prop_assert_eq!(a, b)
                    }
                    (None, a, b) => proptest::prop_assert_eq!(a, b),
                }
            }
        }
    }
}
