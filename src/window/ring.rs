//! A fixed ring of time slots of one width. Slots are allocated on first use and recycled in
//! place, so a quiet series costs little and a busy one never reallocates.

use super::slot::Slot;

/// What a ring holds: a slot that knows its start and can be emptied for reuse.
pub(crate) trait RingSlot {
    fn new(start_ms: i64) -> Self;
    fn start_ms(&self) -> i64;
    fn is_empty(&self) -> bool;
    fn reset(&mut self, start_ms: i64);
    /// Bytes the slot holds on the heap, beyond its own struct.
    fn heap_bytes(&self) -> usize;
}

impl RingSlot for Slot {
    fn new(start_ms: i64) -> Self {
        Slot::new(start_ms)
    }
    fn start_ms(&self) -> i64 {
        self.start_ms
    }
    fn is_empty(&self) -> bool {
        Slot::is_empty(self)
    }
    fn reset(&mut self, start_ms: i64) {
        Slot::reset(self, start_ms)
    }
    fn heap_bytes(&self) -> usize {
        Slot::heap_bytes(self)
    }
}

/// Where a ring keeps its slot pointers: a table of its own (any length), or an array held
/// inline in the ring, and so in the series that owns it.
pub(crate) trait SlotTable<S>: AsRef<[Option<Box<S>>]> + AsMut<[Option<Box<S>>]> {
    fn with_len(len: usize) -> Self;
    /// Bytes the table itself holds on the heap.
    fn heap_bytes(&self) -> usize;
}

impl<S> SlotTable<S> for Box<[Option<Box<S>>]> {
    fn with_len(len: usize) -> Self {
        (0..len).map(|_| None).collect()
    }
    fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Option<Box<S>>]>(self)
    }
}

impl<S, const N: usize> SlotTable<S> for [Option<Box<S>>; N] {
    fn with_len(len: usize) -> Self {
        assert_eq!(len, N, "an inline slot table has the length of its array");
        std::array::from_fn(|_| None)
    }
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// A ring whose slot pointers live inline: the series' 1-second ring, which every call
/// visits. Reaching a slot then takes one load from memory the series already touches,
/// instead of a second dependent cache miss on a separate table.
pub(crate) type InlineRing<S, const N: usize> = Ring<S, [Option<Box<S>>; N]>;

#[derive(Debug, Clone)]
pub(crate) struct Ring<S = Slot, T = Box<[Option<Box<S>>]>> {
    pub width_ms: i64,
    slots: T,
    _slot: std::marker::PhantomData<S>,
}

impl<S: RingSlot, T: SlotTable<S>> Ring<S, T> {
    pub fn new(width_ms: i64, len: usize) -> Self {
        Self {
            width_ms,
            slots: T::with_len(len),
            _slot: std::marker::PhantomData,
        }
    }

    #[inline]
    pub fn align(&self, ts_ms: i64) -> i64 {
        ts_ms - ts_ms.rem_euclid(self.width_ms)
    }

    /// The slot at ring index `i`, whatever its time.
    #[inline]
    pub fn at(&self, i: usize) -> Option<&S> {
        self.slots.as_ref().get(i)?.as_deref()
    }

    /// The slot at ring index `i`, whatever its time.
    #[inline]
    pub fn at_mut(&mut self, i: usize) -> Option<&mut S> {
        self.slots.as_mut().get_mut(i)?.as_deref_mut()
    }

    #[inline]
    pub fn index(&self, start_ms: i64) -> usize {
        start_ms
            .div_euclid(self.width_ms)
            .rem_euclid(self.slots.as_ref().len() as i64) as usize
    }

    /// Oldest slot start this ring can still hold when the clock reads `now_ms`.
    pub fn horizon_start(&self, now_ms: i64) -> i64 {
        self.align(now_ms) - (self.slots.as_ref().len() as i64 - 1) * self.width_ms
    }

    /// The slot starting at `start_ms` (aligned), recycling whatever older slot shares its
    /// index. `None` when the index already holds a newer slot: the time is past this ring.
    #[cfg(test)]
    pub fn slot_mut(&mut self, start_ms: i64) -> Option<&mut S> {
        self.slot_mut_evicting(start_ms, |_| {})
    }

    /// Like [`Ring::slot_mut`], handing a non-empty slot to `evict` before it is recycled.
    #[inline]
    pub fn slot_mut_evicting(
        &mut self,
        start_ms: i64,
        evict: impl FnOnce(&mut S),
    ) -> Option<&mut S> {
        let i = self.index(start_ms);
        let entry = &mut self.slots.as_mut()[i];
        match entry {
            Some(slot) if slot.start_ms() == start_ms => {}
            Some(slot) if slot.start_ms() < start_ms => {
                if !slot.is_empty() {
                    evict(slot);
                }
                slot.reset(start_ms);
            }
            Some(_) => return None,
            None => *entry = Some(Box::new(S::new(start_ms))),
        }
        entry.as_deref_mut()
    }

    /// The slot starting exactly at `start_ms`, if the ring still holds it.
    pub fn get_mut(&mut self, start_ms: i64) -> Option<&mut S> {
        let i = self.index(start_ms);
        self.slots.as_mut()[i]
            .as_deref_mut()
            .filter(|s| s.start_ms() == start_ms)
    }

    /// The slot starting exactly at `start_ms`, if the ring holds it.
    #[inline]
    pub fn get(&self, start_ms: i64) -> Option<&S> {
        self.slots.as_ref()[self.index(start_ms)]
            .as_deref()
            .filter(|s| s.start_ms() == start_ms)
    }

    pub fn iter(&self) -> impl Iterator<Item = &S> {
        self.slots.as_ref().iter().filter_map(|s| s.as_deref())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.slots
            .as_mut()
            .iter_mut()
            .filter_map(|s| s.as_deref_mut())
    }

    /// Slots holding data whose start lies in `[from_ms, to_ms]`.
    pub fn in_range(&self, from_ms: i64, to_ms: i64) -> impl Iterator<Item = &S> {
        self.iter()
            .filter(move |s| s.start_ms() >= from_ms && s.start_ms() <= to_ms && !s.is_empty())
    }

    pub fn allocated(&self) -> usize {
        self.iter().count()
    }

    /// Bytes the ring holds on the heap: its slot table (unless inline) and every allocated
    /// slot.
    pub fn heap_bytes(&self) -> usize {
        self.slots.heap_bytes()
            + self
                .iter()
                .map(|s| std::mem::size_of::<S>() + s.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;

    #[test]
    fn a_slot_is_recycled_only_by_newer_time() {
        let mut ring: Ring = Ring::new(1_000, 4);
        ring.slot_mut(10_000).unwrap().record(5, Outcome::Ok);
        // 14_000 shares the index of 10_000 and is newer: the slot is recycled.
        let s = ring.slot_mut(14_000).unwrap();
        assert_eq!(s.start_ms, 14_000);
        assert!(s.is_empty());
        // 10_000 is older than what the index now holds: refused.
        assert!(ring.slot_mut(10_000).is_none());
        assert_eq!(ring.horizon_start(14_500), 11_000);
    }

    #[test]
    fn an_inline_table_answers_as_a_boxed_one_and_keeps_no_table_on_the_heap() {
        let mut boxed: Ring = Ring::new(1_000, 4);
        let mut inline: InlineRing<Slot, 4> = Ring::new(1_000, 4);
        assert_eq!(
            boxed.heap_bytes(),
            4 * std::mem::size_of::<Option<Box<Slot>>>()
        );
        assert_eq!(inline.heap_bytes(), 0);
        for (ts, d) in [
            (10_000, 5),
            (11_500, 7),
            (14_200, 9),
            (12_000, 3),
            (9_000, 1),
        ] {
            let a = boxed
                .slot_mut(boxed.align(ts))
                .map(|s| s.record(d, Outcome::Ok));
            let b = inline
                .slot_mut(inline.align(ts))
                .map(|s| s.record(d, Outcome::Ok));
            assert_eq!(a.is_some(), b.is_some(), "at {ts}");
        }
        let a: Vec<(i64, u64)> = boxed
            .iter()
            .map(|s| (s.start_ms, s.counts.total()))
            .collect();
        let b: Vec<(i64, u64)> = inline
            .iter()
            .map(|s| (s.start_ms, s.counts.total()))
            .collect();
        assert_eq!(a, b);
        // By ring index: 14,000 recycled 10,000's slot; 9,000 took an empty one.
        assert_eq!(a, vec![(12_000, 1), (9_000, 1), (14_000, 1), (11_000, 1)]);
        assert_eq!(boxed.horizon_start(14_500), inline.horizon_start(14_500));
        // The slots count alike; only the boxed table is on the heap besides.
        assert_eq!(
            boxed.heap_bytes() - inline.heap_bytes(),
            4 * std::mem::size_of::<Option<Box<Slot>>>()
        );
    }

    #[test]
    fn negative_times_align_downwards() {
        let ring: Ring = Ring::new(1_000, 4);
        assert_eq!(ring.align(-1), -1_000);
        assert_eq!(ring.align(1_999), 1_000);
    }
}
