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

use std::sync::Arc;

use super::super::histogram::{HIGHEST_US, list_value};
use super::super::prefetch::prefetch_at;
use super::super::sample::SAMPLE_MAX;
use super::super::slot::Counts;
use super::TIERS;
use crate::domain::Outcome;

/// Width of a block: the 10-second slots the minute window is made of.
const BLOCK_MS: i64 = TIERS[0].0;
/// Blocks a minute window spans.
const BLOCKS: i64 = TIERS[0].1 as i64;
/// Calls recorded since the last read that wait, unmerged, inside the list; one more merges
/// them into the sorted durations first. An instance's minute takes fewer than a call a
/// second, a zone's a few: most reads find them here. Ten share the list's second cache
/// line with the end of the durations' vector.
const FRESH_MAX: usize = 10;

/// Durations of a kept list hinted to the cache ahead of a read (eight or nine cache lines): a quiet
/// peer's minute holds fewer, and of a longer one the detectors read only a few lines.
const PREFETCH_VALUES: usize = 128;

/// 32 bytes, aligned to 32: a block never straddles two cache lines, so a call recorded
/// into one visits a single line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Block {
    start_ms: i64,
    /// Durations of the block's successful calls in the list (at most [`SAMPLE_MAX`]).
    len: u32,
    counts: BlockCounts,
}

/// A block's calls by outcome in the order of [`Counts`]' fields, narrowed to 32 bits: a
/// block that would count past `u32::MAX` of one outcome is not kept, and the list with it.
#[derive(Debug, Clone, Copy, Default)]
struct BlockCounts([u32; 4]);

impl BlockCounts {
    /// Adds `c`; false, with nothing added, when a count would not fit.
    fn add(&mut self, c: &Counts) -> bool {
        let mut sum = self.0;
        for (s, v) in sum.iter_mut().zip([c.ok, c.error, c.timeout, c.clamped]) {
            match u32::try_from(v).ok().and_then(|v| s.checked_add(v)) {
                Some(v) => *s = v,
                None => return false,
            }
        }
        self.0 = sum;
        true
    }

    fn widen(&self) -> Counts {
        let [ok, error, timeout, clamped] = self.0.map(u64::from);
        Counts {
            ok,
            error,
            timeout,
            clamped,
        }
    }
}

/// The list is read and written a few times a second for each of thousands of peers, so
/// all but its durations live in one allocation with the list itself (its owner boxes it):
/// the blocks (at most the window's six) and the calls not yet merged are arrays here,
/// where separate vectors each cost a visit to their own allocation. The fields are laid
/// out by use: a read needs the first cache line (and the second when calls wait to be
/// merged) and the shared durations; a call recorded needs the first two lines and its
/// block's.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub(super) struct MinuteList {
    /// Start of the window the list was last moved to.
    from_ms: i64,
    /// The durations in ascending order, shared with the samples read from the list
    /// (see [`MinuteList::sorted`]): a quantile is an index and a count above a threshold a
    /// binary search. Changed in place once the samples read from it are gone. Holds every
    /// duration but the `fresh` ones.
    sorted: Arc<Vec<u32>>,
    counts: Counts,
    /// Blocks in use, at the front of `blocks`.
    block_count: u8,
    /// Durations in use at the front of `fresh`.
    fresh_len: u8,
    /// The blocks' durations, in block order.
    values: Vec<u32>,
    /// Durations recorded since the list was last read, in arrival order: merged into
    /// `sorted` by the next read, or first when there is no room for one more (a peer's
    /// minute takes a few calls a second and is read once a second, so one merge replaces
    /// a binary search and a shift per call).
    fresh: [u32; FRESH_MAX],
    /// Oldest first, every one starting at or after `from_ms`.
    blocks: [Block; BLOCKS as usize],
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
        debug_assert!(self.blocks().last().is_none_or(|b| b.start_ms <= start_ms));
        if !self.count_in_block(
            self.block_count as usize,
            start_ms,
            values.len() as u32,
            counts,
        ) {
            return false;
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
            let leaving = self.blocks().partition_point(|b| b.start_ms < from);
            let mut gone = 0;
            for b in &self.blocks[..leaving] {
                gone += b.len as usize;
                self.counts.subtract(&b.counts.widen());
            }
            self.blocks
                .copy_within(leaving..self.block_count as usize, 0);
            self.block_count -= leaving as u8;
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
        // Where the block's stretch ends, from the newest block back (calls mostly land in
        // the newest block).
        let mut end = self.values.len();
        let mut at = self.block_count as usize;
        while at > 0 && self.blocks[at - 1].start_ms > start {
            at -= 1;
            end -= self.blocks[at].len as usize;
        }
        if !self.count_in_block(at, start, u32::from(timed), &counts) {
            return false;
        }
        self.counts.add(&counts);
        if timed {
            let value = list_value(duration_us);
            self.values.insert(end, value);
            if self.fresh_len as usize == FRESH_MAX {
                self.settle();
            }
            self.fresh[self.fresh_len as usize] = value;
            self.fresh_len += 1;
        }
        true
    }

    /// The blocks in use, oldest first.
    fn blocks(&self) -> &[Block] {
        &self.blocks[..self.block_count as usize]
    }

    /// Counts `len` durations and `counts` in the block starting at `start_ms`: the block
    /// before `at` when it starts there, else a new one inserted at `at` (the blocks before
    /// `at` start no later). False, with nothing counted, when a count would not fit or
    /// every block is in use (blocks outside the window the list was built for: the list no
    /// longer knows the window).
    fn count_in_block(&mut self, at: usize, start_ms: i64, len: u32, counts: &Counts) -> bool {
        if let Some(b) = at
            .checked_sub(1)
            .map(|i| &mut self.blocks[i])
            .filter(|b| b.start_ms == start_ms)
        {
            if !b.counts.add(counts) {
                return false;
            }
            b.len += len;
            return true;
        }
        let n = self.block_count as usize;
        let mut block = Block {
            start_ms,
            len,
            counts: BlockCounts::default(),
        };
        if n == self.blocks.len() || !block.counts.add(counts) {
            return false;
        }
        self.blocks.copy_within(at..n, at + 1);
        self.blocks[at] = block;
        self.block_count += 1;
        true
    }

    /// Merges the durations recorded since the last read into the sorted list.
    fn settle(&mut self) {
        let fresh = &mut self.fresh[..self.fresh_len as usize];
        if fresh.is_empty() {
            return;
        }
        self.fresh_len = 0;
        let sorted = Arc::make_mut(&mut self.sorted);
        fresh.sort_unstable();
        let n = sorted.len();
        sorted.resize(n + fresh.len(), 0);
        // From the largest new value down: each finds its place among the values not yet
        // moved by a binary search, and the run of larger ones moves up past the new values
        // still to place in one copy. A few calls join a minute of hundreds, so a copy per
        // call beats a comparison per value.
        let mut end = n;
        for (j, &value) in fresh.iter().enumerate().rev() {
            let at = sorted[..end].partition_point(|&v| v <= value);
            sorted.copy_within(at..end, at + j + 1);
            sorted[at + j] = value;
            end = at;
        }
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

    /// Hints the shared durations' allocation (its counters and the vector's header, which a
    /// read visits) to the cache.
    #[inline]
    pub(super) fn prefetch_sorted(&self) {
        // The counters lie just before the vector, on its line or the one before.
        let header = Arc::as_ptr(&self.sorted).cast::<u8>().wrapping_sub(16);
        prefetch_at(header, 16 + std::mem::size_of::<Vec<u32>>());
    }

    /// Hints the durations themselves, up to [`PREFETCH_VALUES`] of them: the peer detectors
    /// read a quantile and count the durations above a threshold right after the read.
    #[inline]
    pub(super) fn prefetch_values(&self) {
        let values = self.sorted.len().min(PREFETCH_VALUES);
        prefetch_at(self.sorted.as_ptr().cast::<u8>(), values * 4);
    }

    /// Bytes held on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.values.capacity() * 4
            // The shared vector and the `Arc`'s two counters.
            + std::mem::size_of::<Vec<u32>>()
            + 16
            + self.sorted.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_finds_what_it_needs_in_the_first_cache_line_and_a_block_in_one() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(align_of::<MinuteList>(), 64);
        for end in [
            offset_of!(MinuteList, from_ms) + 8,
            offset_of!(MinuteList, sorted) + 8,
            offset_of!(MinuteList, counts) + size_of::<Counts>(),
            offset_of!(MinuteList, block_count) + 1,
            offset_of!(MinuteList, fresh_len) + 1,
        ] {
            assert!(end <= 64, "a read's field ends at {end}");
        }
        let fresh = offset_of!(MinuteList, fresh);
        assert!(
            fresh >= 64 && fresh + 4 * FRESH_MAX <= 128,
            "fresh at {fresh}"
        );
        assert_eq!(size_of::<Block>(), 32);
        assert_eq!(offset_of!(MinuteList, blocks) % 32, 0);
    }

    #[test]
    fn a_block_that_would_count_past_32_bits_drops_the_list() {
        let from = minute_start(T0);
        let many = Counts {
            error: u64::from(u32::MAX),
            ..Counts::default()
        };
        let mut l = MinuteList::new(from);
        // The window's newest block, where the calls below land.
        assert!(l.push_block(T0, &[], &many));
        assert_eq!(l.counts().error, u64::from(u32::MAX));
        // One more error in the same block does not fit; one in the next block does.
        assert!(!l.clone().record(T0 + 1_000, 5, Outcome::Error, T0 + 1_000));
        assert!(l.record(T0 + 11_000, 5, Outcome::Error, T0 + 11_000));
        assert_eq!(l.counts().error, u64::from(u32::MAX) + 1);
        // Past 32 bits at once.
        let more = Counts {
            ok: u64::from(u32::MAX) + 1,
            ..Counts::default()
        };
        assert!(!MinuteList::new(from).push_block(from, &[], &more));
    }

    #[test]
    fn blocks_leave_together_while_calls_wait_to_be_merged() {
        let from = minute_start(T0);
        let mut l = MinuteList::new(from);
        // Calls in three blocks, the last ones not yet merged when the window moves.
        for (at, d) in [
            (1_000, 40),
            (12_000, 30),
            (13_000, 35),
            (24_000, 20),
            (25_000, 10),
        ] {
            assert!(l.record(T0 + at, d, Outcome::Ok, T0 + at));
        }
        assert_eq!(l.sorted().as_slice(), &[10, 20, 30, 35, 40]);
        assert!(l.record(T0 + 26_000, 5, Outcome::Ok, T0 + 26_000));
        assert!(l.record(T0 + 27_000, 50, Outcome::Error, T0 + 27_000));
        // Two blocks leave at once; the waiting call stays, merged in order.
        assert!(l.slide(T0 + 70_000));
        assert_eq!(l.sorted().as_slice(), &[5, 10, 20]);
        assert_eq!(l.values(), &[20, 10, 5]);
        assert_eq!(l.counts().ok, 3);
        assert_eq!(l.counts().error, 1);
        // The rest leave, waiting calls with them.
        assert!(l.record(T0 + 71_000, 7, Outcome::Ok, T0 + 71_000));
        assert!(l.slide(T0 + 200_000));
        assert!(l.sorted().is_empty());
        assert!(l.values().is_empty());
        assert_eq!(l.counts(), Counts::default());
        assert!(l.record(T0 + 200_000, 9, Outcome::Ok, T0 + 200_000));
        assert_eq!(l.sorted().as_slice(), &[9]);
    }

    #[test]
    fn a_list_holds_the_six_blocks_of_its_window_and_no_more() {
        let from = minute_start(T0 + 50_000);
        let mut l = MinuteList::new(from);
        let one = Counts {
            ok: 1,
            ..Counts::default()
        };
        for b in 0..BLOCKS {
            assert!(l.push_block(from + b * BLOCK_MS, &[b as u32 + 1], &one));
        }
        // A seventh block cannot be kept: a list built from slots outside its window.
        assert!(!l.clone().push_block(from + BLOCKS * BLOCK_MS, &[9], &one));
        assert_eq!(l.counts().ok, BLOCKS as u64);
        // The window moves by a block: the oldest leaves and a new one fits.
        let now = T0 + 60_000;
        assert!(l.record(now, 7, Outcome::Ok, now));
        assert_eq!(l.sorted().as_slice(), &[2, 3, 4, 5, 6, 7]);
        assert_eq!(l.values(), &[2, 3, 4, 5, 6, 7]);
        assert_eq!(l.counts().ok, BLOCKS as u64);
    }

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
