//! The 1-minute window of an instance or a zone, kept as the list of its durations while
//! calls arrive and the window slides, so that the peer detectors' read every second is one
//! copy of a short list instead of a walk over up to sixteen boxed slots.
//!
//! The list holds the calls whose 10-second block lies in the window: the blocks are kept in
//! time order, each with its calls' counts and its stretch of the list, and a block leaves
//! whole when the window moves past it (every 10 seconds). It answers exactly as the window
//! read from the slots would (a property test in the parent module holds the two together),
//! and is dropped whenever that cannot be kept cheaply: more than [`SAMPLE_MAX`] durations, a
//! loaded minute, a clock that stepped back. The series then reads its slots again and starts
//! a new list when they allow it (see [`super::Series::minute_sample`]).

use std::collections::VecDeque;
use std::sync::Arc;

use super::super::histogram::{HIGHEST_US, list_value};
use super::super::sample::SAMPLE_MAX;
use super::super::slot::Counts;
use super::TIERS;
use crate::domain::Outcome;

/// Width of a block: the 10-second slots the minute window is made of.
const BLOCK_MS: i64 = TIERS[0].0;
/// Blocks a minute window spans.
const BLOCKS: i64 = TIERS[0].1 as i64;

#[derive(Debug, Clone)]
struct Block {
    start_ms: i64,
    /// Durations of the block's successful calls in the list.
    len: usize,
    counts: Counts,
}

#[derive(Debug, Clone, Default)]
pub(super) struct MinuteList {
    /// Oldest first, every one starting at or after `from_ms`.
    blocks: VecDeque<Block>,
    /// The blocks' durations, in block order.
    values: Vec<u32>,
    /// The same durations in ascending order, shared with the samples read from the list
    /// (see [`MinuteList::sorted`]): a quantile is an index and a count above a threshold a
    /// binary search. Changed in place once the samples read from it are gone. Holds every
    /// duration but those in `fresh`.
    sorted: Arc<Vec<u32>>,
    /// Durations recorded since the list was last read, in arrival order: merged into
    /// `sorted` by the next read (a peer's minute takes a few calls a second and is read
    /// once a second, so one merge replaces a binary search and a shift per call).
    fresh: Vec<u32>,
    counts: Counts,
    /// Start of the window the list was last moved to.
    from_ms: i64,
}

/// Start of the 1-minute window ending at `now_ms` (the first of its 10-second slots).
pub(super) fn minute_start(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(BLOCK_MS) - (BLOCKS - 1) * BLOCK_MS
}

impl MinuteList {
    /// An empty list for the window starting at `from_ms`.
    pub(super) fn new(from_ms: i64) -> Self {
        Self {
            from_ms,
            ..Self::default()
        }
    }

    /// Adds one block's calls (blocks given oldest first), for a list built from slots.
    /// False when the list would outgrow [`SAMPLE_MAX`].
    pub(super) fn push_block(&mut self, start_ms: i64, values: &[u32], counts: &Counts) -> bool {
        if self.values.len() + values.len() > SAMPLE_MAX {
            return false;
        }
        match self.blocks.back_mut() {
            Some(b) if b.start_ms == start_ms => {
                b.len += values.len();
                b.counts.add(counts);
            }
            _ => {
                debug_assert!(self.blocks.back().is_none_or(|b| b.start_ms < start_ms));
                self.blocks.push_back(Block {
                    start_ms,
                    len: values.len(),
                    counts: *counts,
                });
            }
        }
        self.values.extend_from_slice(values);
        let sorted = Arc::make_mut(&mut self.sorted);
        sorted.extend_from_slice(values);
        sorted.sort_unstable();
        self.counts.add(counts);
        true
    }

    /// Moves the window to the one ending at `now_ms`: blocks before it leave. False when the
    /// window would move back (a clock that stepped back): the list no longer knows it.
    pub(super) fn slide(&mut self, now_ms: i64) -> bool {
        let from = minute_start(now_ms);
        if from < self.from_ms {
            return false;
        }
        if from > self.from_ms {
            self.from_ms = from;
            let mut gone = 0;
            while let Some(b) = self.blocks.front().filter(|b| b.start_ms < from) {
                gone += b.len;
                self.counts.subtract(&b.counts);
                self.blocks.pop_front();
            }
            self.forget_sorted(gone);
            self.values.drain(..gone);
        }
        true
    }

    /// Adds a call recorded at `ts_ms` (as the series recorded it: no later than `now_ms`).
    /// False when the list cannot keep it (see the module documentation).
    pub(super) fn record(
        &mut self,
        ts_ms: i64,
        duration_us: u64,
        outcome: Outcome,
        now_ms: i64,
    ) -> bool {
        if !self.slide(now_ms) {
            return false;
        }
        let start = ts_ms - ts_ms.rem_euclid(BLOCK_MS);
        if start < self.from_ms {
            // Older than the window: it went to the coarser rings.
            return true;
        }
        let timed = Counts::timed(outcome);
        if timed && self.values.len() >= SAMPLE_MAX {
            return false;
        }
        let mut counts = Counts::default();
        counts.count(outcome, timed && duration_us > HIGHEST_US);
        self.counts.add(&counts);
        // Where the block's stretch ends, from the newest block back (calls mostly land in
        // the newest block).
        let mut end = self.values.len();
        let mut at = self.blocks.len();
        while at > 0 && self.blocks[at - 1].start_ms > start {
            at -= 1;
            end -= self.blocks[at].len;
        }
        let add = usize::from(timed);
        match at.checked_sub(1).map(|i| &mut self.blocks[i]) {
            Some(b) if b.start_ms == start => {
                b.len += add;
                b.counts.add(&counts);
            }
            _ => self.blocks.insert(
                at,
                Block {
                    start_ms: start,
                    len: add,
                    counts,
                },
            ),
        }
        if timed {
            let value = list_value(duration_us);
            self.values.insert(end, value);
            self.fresh.push(value);
        }
        true
    }

    /// Merges the durations recorded since the last read into the sorted list.
    fn settle(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        let sorted = Arc::make_mut(&mut self.sorted);
        if self.fresh.len() <= 4 {
            // A quiet minute's one or two calls: a search and a shift each.
            for &value in &self.fresh {
                let at = sorted.partition_point(|&v| v <= value);
                sorted.insert(at, value);
            }
            self.fresh.clear();
            return;
        }
        self.fresh.sort_unstable();
        let (n, k) = (sorted.len(), self.fresh.len());
        sorted.resize(n + k, 0);
        // From the back, the larger of the two next values first: each write lands at or
        // after every value of `sorted` still to be read.
        let (mut i, mut j) = (n, k);
        while j > 0 {
            let next = self.fresh[j - 1];
            if i > 0 && sorted[i - 1] > next {
                sorted[i + j - 1] = sorted[i - 1];
                i -= 1;
            } else {
                sorted[i + j - 1] = next;
                j -= 1;
            }
        }
        self.fresh.clear();
    }

    /// Takes the first `gone` durations of the block-ordered list out of the sorted one.
    fn forget_sorted(&mut self, gone: usize) {
        if gone == 0 {
            return;
        }
        self.settle();
        let sorted = Arc::make_mut(&mut self.sorted);
        if gone == self.values.len() {
            sorted.clear();
            return;
        }
        let mut leaving = self.values[..gone].to_vec();
        leaving.sort_unstable();
        // Both ascending, and `leaving` a part of `sorted`: each leaving value meets its
        // equal before any larger value of `sorted`.
        let mut next = leaving.iter().copied().peekable();
        sorted.retain(|&v| {
            if next.peek() == Some(&v) {
                next.next();
                false
            } else {
                true
            }
        });
        debug_assert!(next.peek().is_none());
    }

    pub(super) fn start_ms(&self) -> i64 {
        self.from_ms
    }

    #[cfg(test)]
    pub(super) fn values(&self) -> &[u32] {
        &self.values
    }

    /// The durations in ascending order, shared (see [`super::super::sample::Sample`]).
    pub(super) fn sorted(&mut self) -> &Arc<Vec<u32>> {
        self.settle();
        &self.sorted
    }

    pub(super) fn counts(&self) -> Counts {
        self.counts
    }

    /// Bytes held on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.values.capacity() * 4
            + self.blocks.capacity() * std::mem::size_of::<Block>()
            // The shared vector and the `Arc`'s two counters.
            + std::mem::size_of::<Vec<u32>>()
            + 16
            + self.sorted.capacity() * 4
            + self.fresh.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn blocks_leave_whole_as_the_window_moves() {
        let mut l = MinuteList::new(minute_start(T0));
        assert!(l.record(T0 + 1_000, 5, Outcome::Ok, T0 + 1_000));
        assert!(l.record(T0 + 12_000, 7, Outcome::Error, T0 + 12_000));
        assert!(l.record(T0 + 13_000, 9, Outcome::Ok, T0 + 13_000));
        // Late, into the first block.
        assert!(l.record(T0 + 2_000, 6, Outcome::Ok, T0 + 13_000));
        assert_eq!(l.values(), &[5, 6, 9]);
        assert_eq!(l.sorted().as_slice(), &[5, 6, 9]);
        assert_eq!(l.counts().total(), 4);
        // Recorded after a read: merged by the next read, in order.
        assert!(l.record(T0 + 14_000, 1, Outcome::Ok, T0 + 14_000));
        assert!(l.record(T0 + 14_000, 7, Outcome::Ok, T0 + 14_000));
        assert!(l.record(T0 + 14_000, 9, Outcome::Ok, T0 + 14_000));
        assert_eq!(l.sorted().as_slice(), &[1, 5, 6, 7, 9, 9]);
        assert_eq!(l.values(), &[5, 6, 9, 1, 7, 9]);
        assert_eq!(l.counts().total(), 7);
        assert!(l.slide(T0 + 60_000));
        assert_eq!(l.values(), &[9, 1, 7, 9]);
        assert_eq!(l.sorted().as_slice(), &[1, 7, 9, 9]);
        assert_eq!(l.counts().total(), 5);
        assert!(!l.slide(T0));
    }

    #[test]
    fn many_calls_between_reads_are_merged_in_order() {
        let mut l = MinuteList::new(minute_start(T0));
        let mut all = Vec::new();
        // Reads after 1, 3, 5, 7, ... calls: both the shift and the merge, with repeats.
        let mut read_after = 1;
        let mut since = 0;
        for i in 0..200u64 {
            let d = (i * 7919) % 97 + 1;
            assert!(l.record(T0 + 1_000 + i as i64 * 100, d, Outcome::Ok, T0 + 30_000));
            all.push(d as u32);
            since += 1;
            if since == read_after {
                let mut want = all.clone();
                want.sort_unstable();
                assert_eq!(l.sorted().as_slice(), want.as_slice());
                read_after += 2;
                since = 0;
            }
        }
        let mut want = all;
        want.sort_unstable();
        assert_eq!(l.sorted().as_slice(), want.as_slice());
        assert_eq!(l.values().len(), 200);
    }
}
