//! The histogram of one slot: sparse while it holds few distinct durations, dense after.
//!
//! A dense slot histogram is 3,328 counters (13 KiB) whatever it holds, and a series has 35
//! coarse slots: most of them, for a series that sees a call every few seconds, hold a handful
//! of durations. A sparse slot keeps only the buckets it uses, as a byte string of (bucket
//! index, count) entries in bucket order, each the distance from the previous bucket and the
//! count as LEB128 varints: two bytes for a bucket a quiet slot uses once or a few times,
//! three or four for a busy one. It turns dense when that string would outgrow
//! [`SPARSE_BYTES_MAX`] (past that, rewriting it to add calls costs more than it saves).
//! Adding two sparse slots is one merge of their strings, so minute and 5-minute slots are
//! built from sparse children without expanding them.
//!
//! The bucket of a value is computed exactly as HdrHistogram computes it for the shared
//! bounds (1 µs .. 1 h, two significant digits), so converting a sparse slot into a dense
//! `Histogram<u32>` for a snapshot, a quantile or persistence gives the very histogram that
//! recording the same values into it would have.

use std::sync::Arc;

use super::histogram::{HIGHEST_US, LOWEST_US, SIGFIG, SlotHistogram, new_histogram};

/// Most bytes a sparse histogram holds (against 13 KiB dense).
pub(crate) const SPARSE_BYTES_MAX: usize = 4_096;
/// A dense histogram's counters hold 32 bits; a sparse count past that turns dense (and
/// saturates there, as dense slots always have).
const COUNT_MAX: u64 = u32::MAX as u64;

/// HdrHistogram's layout for the shared bounds: lowest 1 µs (unit magnitude 0), two
/// significant digits (256 sub-buckets, the upper 128 of which each power of two adds).
const SUB_BUCKET_HALF_MAGNITUDE: u32 = 7;
const SUB_BUCKET_HALF_COUNT: u64 = 1 << SUB_BUCKET_HALF_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = 2 * SUB_BUCKET_HALF_COUNT - 1;
const LEADING_ZERO_COUNT_BASE: u32 = 64 - SUB_BUCKET_HALF_MAGNITUDE - 1;

/// The counter index HdrHistogram uses for `value_us` (clamped to [`HIGHEST_US`]).
#[inline]
pub(crate) fn bucket_index(value_us: u64) -> u32 {
    let v = value_us.min(HIGHEST_US);
    let bucket = LEADING_ZERO_COUNT_BASE - (v | SUB_BUCKET_MASK).leading_zeros();
    let sub = (v >> bucket) as u32;
    ((bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE) + sub - SUB_BUCKET_HALF_COUNT as u32
}

/// The lowest value of the bucket at `index` (the inverse of [`bucket_index`]).
#[inline]
pub(crate) fn bucket_value(index: u32) -> u64 {
    let bucket = (index >> SUB_BUCKET_HALF_MAGNITUDE) as i64 - 1;
    let sub = u64::from(index) & (SUB_BUCKET_HALF_COUNT - 1);
    if bucket < 0 {
        sub
    } else {
        (sub + SUB_BUCKET_HALF_COUNT) << bucket
    }
}

#[derive(Debug, Clone)]
pub enum SlotHist {
    /// Entries in bucket order, no zero counts (see the module documentation).
    Sparse(Vec<u8>),
    /// Shared, copied on write: a running window sum lends its counters to the snapshots read
    /// from it (see [`SlotHist::shared`]), which are dropped before the sum changes again.
    Dense(Arc<SlotHistogram>),
}

impl Default for SlotHist {
    fn default() -> Self {
        SlotHist::Sparse(Vec::new())
    }
}

impl PartialEq for SlotHist {
    /// Equal when they hold the same calls, whatever their form.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // The encoding of a set of entries is unique.
            (SlotHist::Sparse(a), SlotHist::Sparse(b)) => a == b,
            _ => self.to_dense() == other.to_dense(),
        }
    }
}

impl SlotHist {
    /// An empty dense histogram, for a sum that every call of a busy series passes through.
    pub fn dense() -> Self {
        SlotHist::Dense(Arc::new(new_histogram()))
    }

    /// The compact form of `hist`: sparse when it uses few buckets.
    pub fn from_histogram(hist: &SlotHistogram) -> Self {
        let mut out = SlotHist::default();
        out.add_histogram(hist);
        out
    }

    pub fn is_dense(&self) -> bool {
        matches!(self, SlotHist::Dense(_))
    }

    /// Number of calls held.
    pub fn len(&self) -> u64 {
        match self {
            SlotHist::Sparse(b) => Entries::new(b).map(|(_, n)| n).sum(),
            SlotHist::Dense(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            SlotHist::Sparse(b) => b.is_empty(),
            SlotHist::Dense(h) => h.is_empty(),
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            SlotHist::Sparse(b) => b.capacity(),
            SlotHist::Dense(h) => h.distinct_values() * 4 + std::mem::size_of::<SlotHistogram>(),
        }
    }

    /// Empties the histogram, keeping its form (and a sparse string's allocation).
    pub fn clear(&mut self) {
        match self {
            SlotHist::Sparse(b) => b.clear(),
            SlotHist::Dense(h) => Arc::make_mut(h).reset(),
        }
    }

    /// Empties the histogram and returns it to the sparse form, keeping a small string's
    /// allocation: for a slot recycled at a new time, which may hold far fewer calls.
    pub fn reset(&mut self) {
        match self {
            SlotHist::Sparse(b) if b.capacity() <= 64 => b.clear(),
            _ => *self = SlotHist::default(),
        }
    }

    /// Turns the histogram dense (no-op if it is).
    pub fn make_dense(&mut self) {
        if let SlotHist::Sparse(b) = self {
            let mut h = new_histogram::<u32>();
            for (i, n) in Entries::new(b) {
                h.saturating_record_n(bucket_value(i), n as u32);
            }
            *self = SlotHist::Dense(Arc::new(h));
        }
    }

    /// Records one call of `value_us`, clamped to [`HIGHEST_US`]. Rewrites a sparse string:
    /// for the few calls recorded into coarse slots one by one (late events).
    #[inline]
    pub fn record(&mut self, value_us: u64) {
        match self {
            SlotHist::Dense(h) => Arc::make_mut(h).saturating_record(value_us.min(HIGHEST_US)),
            SlotHist::Sparse(b) => {
                let index = bucket_index(value_us);
                if !add_in_place(b, index, 1) {
                    self.add_entries(std::iter::once((index, 1)), 3)
                }
            }
        }
    }

    /// Records durations given as a list (clamped as [`SlotHist::record`] clamps).
    pub fn add_values(&mut self, values: &[u32]) {
        match self {
            SlotHist::Dense(h) => {
                let h = Arc::make_mut(h);
                for &v in values {
                    h.saturating_record(u64::from(v).min(HIGHEST_US));
                }
            }
            SlotHist::Sparse(b) => {
                // A few calls (a quiet second folded into its slots): edited in place,
                // where a merge would decode and rewrite the whole string.
                let mut rest = values;
                while let [v, tail @ ..] = rest
                    && values.len() <= IN_PLACE_MAX
                    && add_in_place(b, bucket_index(u64::from(*v)), 1)
                {
                    rest = tail;
                }
                if !rest.is_empty() {
                    self.add_values_merged(rest);
                }
            }
        }
    }

    /// [`SlotHist::add_values`] into a sparse string by one merge, whatever the number of values.
    fn add_values_merged(&mut self, values: &[u32]) {
        let indices = bucket_indices(values);
        self.add_entries(Runs(&indices), 2 * indices.len());
    }

    /// [`SlotHist::add_values`] for durations whose bucket indices, sorted, are at hand
    /// (see [`sorted_indices`]): durations passed on to several slots are sorted once.
    pub(crate) fn add_indexed(&mut self, values: &[u32], indices: &[u32]) {
        debug_assert_eq!(values.len(), indices.len());
        match self {
            SlotHist::Sparse(_) if values.len() > IN_PLACE_MAX => {
                self.add_entries(Runs(indices), 2 * indices.len())
            }
            _ => self.add_values(values),
        }
    }

    /// Adds another slot's calls.
    pub fn add(&mut self, other: &SlotHist) {
        match other {
            SlotHist::Sparse(b) => self.add_entries(Entries::new(b), b.len()),
            SlotHist::Dense(src) => self.add_histogram(src),
        }
    }

    /// Adds a dense histogram's calls.
    pub fn add_histogram(&mut self, src: &SlotHistogram) {
        match self {
            SlotHist::Dense(h) => Arc::make_mut(h)
                .add(src)
                .expect("slot histograms share bounds"),
            SlotHist::Sparse(_) => self.add_entries(dense_entries(src), 64),
        }
    }

    /// The histogram of (bucket index, count) entries sorted by bucket, no index past
    /// `bucket_index(HIGHEST_US)`: sparse unless they need the dense form.
    pub(crate) fn from_entries(entries: &[(u32, u64)]) -> Self {
        let mut out = SlotHist::default();
        out.add_entries(entries.iter().copied(), entries.len() * 3);
        out
    }

    /// Adds (bucket index, count) entries sorted by bucket.
    /// `bytes_hint` estimates the bytes they take encoded.
    fn add_entries(&mut self, src: impl Iterator<Item = (u32, u64)> + Clone, bytes_hint: usize) {
        let dst = match self {
            SlotHist::Dense(h) => {
                let h = Arc::make_mut(h);
                for (i, n) in src {
                    h.saturating_record_n(bucket_value(i), n as u32);
                }
                return;
            }
            SlotHist::Sparse(dst) => dst,
        };
        match merge(dst, src.clone(), bytes_hint, |a, b| a + b) {
            Some(merged) => *dst = merged,
            // Too many buckets, or a count past 32 bits: dense from now on.
            None => {
                self.make_dense();
                self.add_entries(src, 0);
            }
        }
    }

    /// Takes another slot's calls back out (the inverse of [`SlotHist::add`]). Panics if they
    /// were not all added.
    pub fn subtract(&mut self, other: &SlotHist) {
        match (&mut *self, other) {
            (SlotHist::Dense(h), SlotHist::Dense(src)) => Arc::make_mut(h)
                .subtract(&**src)
                .expect("a slot only removes calls it absorbed"),
            (SlotHist::Dense(h), SlotHist::Sparse(b)) => Arc::make_mut(h)
                .subtract(bounded_histogram(Entries::new(b)))
                .expect("a slot only removes calls it absorbed"),
            (SlotHist::Sparse(dst), SlotHist::Sparse(b)) => subtract_entries(dst, Entries::new(b)),
            (SlotHist::Sparse(dst), SlotHist::Dense(src)) => {
                subtract_entries(dst, dense_entries(src))
            }
        }
    }

    /// Takes calls given as their durations back out (the inverse of
    /// [`SlotHist::add_values`]). Panics if they were not all added.
    pub fn subtract_values(&mut self, values: &[u32]) {
        match self {
            SlotHist::Dense(h) => {
                let indices = bucket_indices(values);
                Arc::make_mut(h)
                    .subtract(bounded_histogram(Runs(&indices)))
                    .expect("a slot only removes calls it absorbed");
            }
            SlotHist::Sparse(_) => {
                let mut listed = SlotHist::default();
                listed.add_values(values);
                self.subtract(&listed);
            }
        }
    }

    /// Takes a dense histogram's calls back out.
    pub fn subtract_histogram(&mut self, src: &SlotHistogram) {
        match self {
            SlotHist::Dense(h) => Arc::make_mut(h)
                .subtract(src)
                .expect("a slot only removes calls it absorbed"),
            SlotHist::Sparse(dst) => subtract_entries(dst, dense_entries(src)),
        }
    }

    /// Adds the calls into a dense histogram (a snapshot's).
    pub fn add_to(&self, dst: &mut SlotHistogram) {
        match self {
            SlotHist::Dense(h) => dst.add(&**h).expect("slot histograms share bounds"),
            SlotHist::Sparse(b) => {
                for (i, n) in Entries::new(b) {
                    dst.saturating_record_n(bucket_value(i), n as u32);
                }
            }
        }
    }

    /// The dense histogram of the same calls, shared when the histogram is dense: no copy
    /// until one of the two changes.
    pub fn shared(&self) -> Arc<SlotHistogram> {
        match self {
            SlotHist::Dense(h) => Arc::clone(h),
            SlotHist::Sparse(_) => Arc::new(self.to_dense()),
        }
    }

    /// The dense histogram of the same calls (for snapshots, quantiles and persistence).
    pub fn to_dense(&self) -> SlotHistogram {
        match self {
            SlotHist::Dense(h) => (**h).clone(),
            SlotHist::Sparse(_) => {
                let mut h = new_histogram();
                self.add_to(&mut h);
                h
            }
        }
    }

    /// Calls `f` with the index and the count of each used bucket, lowest first.
    pub(crate) fn for_each_entry(&self, mut f: impl FnMut(u32, u64)) {
        match self {
            SlotHist::Sparse(b) => Entries::new(b).for_each(|(i, n)| f(i, n)),
            SlotHist::Dense(h) => dense_entries(h).for_each(|(i, n)| f(i, n)),
        }
    }

    /// Calls `f` with the lowest value and the count of each used bucket, lowest first.
    pub fn for_each_bucket(&self, mut f: impl FnMut(u64, u64)) {
        match self {
            SlotHist::Sparse(b) => Entries::new(b).for_each(|(i, n)| f(bucket_value(i), n)),
            SlotHist::Dense(h) => dense_entries(h).for_each(|(i, n)| f(bucket_value(i), n)),
        }
    }
}

/// Most values [`SlotHist::add_values`] adds one by one in place.
const IN_PLACE_MAX: usize = 4;

/// The bucket indices of `values`, sorted, for [`SlotHist::add_indexed`]; `None` when
/// [`SlotHist::add_values`] would not merge them (it edits a few values in place).
pub(crate) fn sorted_indices(values: &[u32]) -> Option<Vec<u32>> {
    if values.len() <= IN_PLACE_MAX {
        return None;
    }
    Some(bucket_indices(values))
}

/// The bucket index of each of `values`, sorted: the entries of their histogram as runs
/// (see [`Runs`]).
fn bucket_indices(values: &[u32]) -> Vec<u32> {
    let mut indices: Vec<u32> = values.iter().map(|&v| bucket_index(v.into())).collect();
    indices.sort_unstable();
    indices
}

/// Adds `n` calls to bucket `index` of the sparse string `dst` by editing the few bytes
/// concerned: the entry's count, or a new entry and its successor's distance. The string is
/// the one [`merge`] would write (the encoding of a set of entries is unique). `false`, with
/// `dst` unchanged, when the result could need the dense form: the merge decides then.
fn add_in_place(dst: &mut Vec<u8>, index: u32, n: u64) -> bool {
    // Well below the merge's limit, so that whatever is done here the merge would do too.
    const LIMIT: usize = SPARSE_BYTES_MAX - 32;
    let mut enc = [0u8; 30];
    let mut pos = 0;
    let mut last = 0u32;
    let (range, len) = loop {
        if pos == dst.len() {
            // After the last entry.
            let mut len = encode(&mut enc, u64::from(index - last));
            len += encode(&mut enc[len..], n);
            break (pos..pos, len);
        }
        let start = pos;
        let at = last + get_varint(dst, &mut pos) as u32;
        let count_start = pos;
        let count = get_varint(dst, &mut pos);
        if at == index {
            let sum = count + n;
            if sum > COUNT_MAX {
                return false;
            }
            break (count_start..pos, encode(&mut enc, sum));
        }
        if at > index {
            // A new entry before this one, whose distance is then counted from `index`.
            let mut len = encode(&mut enc, u64::from(index - last));
            len += encode(&mut enc[len..], n);
            len += encode(&mut enc[len..], u64::from(at - index));
            break (start..count_start, len);
        }
        last = at;
    };
    if n > COUNT_MAX || dst.len() - range.len() + len > LIMIT {
        return false;
    }
    let grow = len.saturating_sub(range.len());
    if dst.len() + grow > dst.capacity() {
        // Room for a few more entries, but never the doubling a plain push would make: the
        // string stays within 1/16 of its length, as tight as a merge leaves it.
        dst.reserve_exact(grow + dst.len() / 16);
    }
    dst.splice(range, enc[..len].iter().copied());
    true
}

/// Writes `v` as a varint at the start of `out`; returns its length.
#[inline]
fn encode(out: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

fn subtract_entries(dst: &mut Vec<u8>, src: impl Iterator<Item = (u32, u64)>) {
    *dst = merge(dst, src, 0, |a, b| {
        a.checked_sub(b)
            .expect("a slot only removes calls it absorbed")
    })
    .expect("a difference never outgrows its minuend");
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn get_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// The (bucket index, count) entries of a sparse string.
#[derive(Clone)]
struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
    index: u32,
}

impl<'a> Entries<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            index: 0,
        }
    }
}

impl Iterator for Entries<'_> {
    type Item = (u32, u64);

    #[inline]
    fn next(&mut self) -> Option<(u32, u64)> {
        if self.pos == self.bytes.len() {
            return None;
        }
        self.index += get_varint(self.bytes, &mut self.pos) as u32;
        Some((self.index, get_varint(self.bytes, &mut self.pos)))
    }
}

/// Sorted bucket indices as (index, run length) entries.
#[derive(Clone)]
struct Runs<'a>(&'a [u32]);

impl Iterator for Runs<'_> {
    type Item = (u32, u64);

    fn next(&mut self) -> Option<(u32, u64)> {
        let &first = self.0.first()?;
        let n = self.0.iter().take_while(|&&i| i == first).count();
        self.0 = &self.0[n..];
        Some((first, n as u64))
    }
}

/// A histogram of `entries` (sorted by bucket) whose range ends at their largest bucket:
/// HdrHistogram's subtraction visits every counter of the histogram it takes out, and a
/// full-range one has counters up to an hour where calls of milliseconds fill a third of them.
/// Buckets depend only on the lowest value and the precision, so its counters line up with a
/// full-range histogram's.
fn bounded_histogram(entries: impl Iterator<Item = (u32, u64)> + Clone) -> SlotHistogram {
    let top = entries.clone().last().map_or(0, |(i, _)| bucket_value(i));
    let mut h = SlotHistogram::new_with_bounds(LOWEST_US, top.max(2 * LOWEST_US), SIGFIG)
        .expect("bounds within the slots' bounds are valid");
    for (i, n) in entries {
        h.saturating_record_n(bucket_value(i), n as u32);
    }
    h
}

/// The used buckets of a dense histogram as (index, count), lowest first.
fn dense_entries(h: &SlotHistogram) -> impl Iterator<Item = (u32, u64)> + Clone + '_ {
    DenseEntries { h, next_value: 0 }
}

/// Walks a dense histogram bucket by bucket (HdrHistogram's own iterators are not `Clone`).
#[derive(Clone)]
struct DenseEntries<'a> {
    h: &'a SlotHistogram,
    /// The lowest value not yet visited.
    next_value: u64,
}

impl Iterator for DenseEntries<'_> {
    type Item = (u32, u64);

    fn next(&mut self) -> Option<(u32, u64)> {
        if self.h.is_empty() {
            return None;
        }
        let top = self.h.max();
        while self.next_value <= top {
            let v = self.next_value;
            self.next_value = self.h.next_non_equivalent(v);
            let n = self.h.count_at(v);
            if n > 0 {
                return Some((bucket_index(v), u64::from(n)));
            }
        }
        None
    }
}

/// Merges sorted entries `b` into the string `a`, with `combine` for buckets both hold and
/// zero counts dropped. `None` when the result needs the dense form: a count past 32 bits, or
/// an entry that would start [`SPARSE_BYTES_MAX`] bytes or more into the string.
///
/// The entries of `a` that `b` leaves alone are copied as they are encoded, a run of them at
/// a time: only an entry whose predecessor changed (a bucket of `b` inserted before it, or
/// one emptied) has its distance written again. Adding a few calls to a long string is then
/// a scan and a copy rather than a rewrite of every entry.
fn merge(
    a: &[u8],
    b: impl Iterator<Item = (u32, u64)>,
    b_bytes: usize,
    combine: impl Fn(u64, u64) -> u64,
) -> Option<Vec<u8>> {
    // Past this length the last entry surely starts beyond the limit (an entry takes at most
    // 15 bytes): no need to go on.
    const GIVE_UP: usize = SPARSE_BYTES_MAX + 15;
    // Room for both, which is exact when they share no bucket and their counts are small.
    let mut out: Vec<u8> = Vec::with_capacity((a.len() + b_bytes).min(SPARSE_BYTES_MAX + 16));
    // The bucket of the last entry written to `out`.
    let mut last = 0u32;
    // `a[copy..copied_to]`: entries of `a` to copy as they are, not yet copied.
    let (mut copy, mut copied_to) = (0usize, 0usize);
    // The next entry of `a` starts at `pos`; its distance counts from `a_last`.
    let (mut pos, mut a_last) = (0usize, 0u32);
    // Writes an entry anew: the run of copied entries before it goes first.
    let write = |out: &mut Vec<u8>, range: (usize, usize), last: &mut u32, i: u32, n: u64| {
        if range.0 < range.1 {
            out.extend_from_slice(&a[range.0..range.1]);
        }
        if n > COUNT_MAX {
            return false;
        }
        put_varint(out, u64::from(i - *last));
        put_varint(out, n);
        *last = i;
        true
    };
    // Takes the entries of `a` below `below` unchanged.
    macro_rules! keep_below {
        ($below:expr) => {
            while pos < a.len() {
                let start = pos;
                let mut at_pos = pos;
                let at = a_last + get_varint(a, &mut at_pos) as u32;
                if at >= $below {
                    break;
                }
                let count = get_varint(a, &mut at_pos);
                pos = at_pos;
                if last == a_last && copied_to == start {
                    // Its distance still holds: it joins the run.
                    copied_to = pos;
                } else if last == a_last {
                    out.extend_from_slice(&a[copy..copied_to]);
                    (copy, copied_to) = (start, pos);
                } else {
                    if !write(&mut out, (copy, copied_to), &mut last, at, count) {
                        return None;
                    }
                    (copy, copied_to) = (pos, pos);
                }
                last = at;
                a_last = at;
                if out.len() >= GIVE_UP {
                    return None;
                }
            }
        };
    }
    for (bi, bn) in b {
        keep_below!(bi);
        // `a`'s entry for this bucket, if it has one.
        let mut n = bn;
        let mut a_count = 0;
        if pos < a.len() {
            let mut at_pos = pos;
            let at = a_last + get_varint(a, &mut at_pos) as u32;
            if at == bi {
                a_count = get_varint(a, &mut at_pos);
                pos = at_pos;
                a_last = at;
            }
        }
        n = combine(a_count, n);
        if n != 0 {
            if !write(&mut out, (copy, copied_to), &mut last, bi, n) {
                return None;
            }
            (copy, copied_to) = (pos, pos);
            if out.len() >= GIVE_UP {
                return None;
            }
        }
    }
    // Bucket indices stay far below `u32::MAX`: this takes the rest of `a`.
    keep_below!(u32::MAX);
    debug_assert_eq!(pos, a.len());
    out.extend_from_slice(&a[copy..copied_to]);
    if !out.is_empty() && last_entry_start(&out) >= SPARSE_BYTES_MAX {
        return None;
    }
    if out.capacity() > out.len() + out.len() / 8 {
        out.shrink_to_fit();
    }
    Some(out)
}

/// Where the last entry of a non-empty sparse string starts: each of its two varints ends in
/// the string's only bytes below 0x80 among their own.
fn last_entry_start(bytes: &[u8]) -> usize {
    // The count's first byte follows the distance's last byte, itself below 0x80.
    let mut i = bytes.len() - 1;
    while i > 0 && bytes[i - 1] >= 0x80 {
        i -= 1;
    }
    i -= 1;
    while i > 0 && bytes[i - 1] >= 0x80 {
        i -= 1;
    }
    i
}

/// [`merge`] entry by entry: every entry decoded and written again (what [`merge`] is
/// held to).
#[cfg(test)]
fn merge_plain(
    a: &[u8],
    b: impl Iterator<Item = (u32, u64)>,
    b_bytes: usize,
    combine: impl Fn(u64, u64) -> u64,
) -> Option<Vec<u8>> {
    // Room for both, which is exact when they share no bucket and their counts are small.
    let mut out = Writer {
        bytes: Vec::with_capacity((a.len() + b_bytes).min(SPARSE_BYTES_MAX + 16)),
        last: 0,
    };
    let mut a = Entries::new(a).peekable();
    for (bi, bn) in b {
        while let Some(&(ai, an)) = a.peek() {
            if ai >= bi {
                break;
            }
            out.push(ai, an)?;
            a.next();
        }
        match a.peek() {
            Some(&(ai, an)) if ai == bi => {
                out.push(ai, combine(an, bn))?;
                a.next();
            }
            _ => out.push(bi, combine(0, bn))?,
        }
    }
    for (ai, an) in a {
        out.push(ai, an)?;
    }
    let mut bytes = out.bytes;
    if bytes.capacity() > bytes.len() + bytes.len() / 8 {
        bytes.shrink_to_fit();
    }
    Some(bytes)
}

#[cfg(test)]
struct Writer {
    bytes: Vec<u8>,
    last: u32,
}

#[cfg(test)]
impl Writer {
    /// Appends an entry; `None` when the count or the string's length needs the dense form.
    #[inline]
    fn push(&mut self, index: u32, count: u64) -> Option<()> {
        if count == 0 {
            return Some(());
        }
        if count > COUNT_MAX || self.bytes.len() >= SPARSE_BYTES_MAX {
            return None;
        }
        put_varint(&mut self.bytes, u64::from(index - self.last));
        put_varint(&mut self.bytes, count);
        self.last = index;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_bucket_is_indexed_as_hdrhistogram_indexes_it() {
        let shape = new_histogram::<u32>();
        let top = bucket_index(HIGHEST_US);
        for i in 0..=top {
            let low = bucket_value(i);
            assert_eq!(shape.lowest_equivalent(low), low, "bucket {i}");
            assert_eq!(bucket_index(low), i);
            let high = shape.highest_equivalent(low).min(HIGHEST_US);
            assert_eq!(bucket_index(high), i, "top of bucket {i}");
            if i < top {
                assert_eq!(
                    bucket_value(i + 1),
                    high + 1,
                    "buckets {i} and {} touch",
                    i + 1
                );
            }
            // Recording the value fills the same bucket both ways.
            let mut sparse = SlotHist::default();
            sparse.record(high);
            let mut dense = new_histogram::<u32>();
            dense.record(high).unwrap();
            assert_eq!(sparse.to_dense(), dense, "bucket {i}");
        }
        assert!((top as usize) < shape.distinct_values());
    }

    fn hist_of(values: &[u64]) -> SlotHistogram {
        let mut h = new_histogram::<u32>();
        for &v in values {
            h.record(v.min(HIGHEST_US)).unwrap();
        }
        h
    }

    fn sparse_of(values: &[u64]) -> SlotHist {
        let mut s = SlotHist::default();
        for &v in values {
            s.record(v);
        }
        s
    }

    fn durations() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(
            prop_oneof![
                4 => 0u64..200_000,
                2 => 0u64..=HIGHEST_US,
                1 => HIGHEST_US..HIGHEST_US * 2,
                1 => Just(20_000u64),
            ],
            0..1_200,
        )
    }

    /// Durations over many distinct buckets: sparse strings close to their limit.
    fn many_buckets() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec((0u32..3_200).prop_map(bucket_value), 1_000..2_200)
    }

    /// At the sparse limit to the byte: strings of one-byte distances and counts, whose last
    /// entry after the merge starts just before, at or just after [`SPARSE_BYTES_MAX`].
    #[test]
    fn merging_by_runs_turns_dense_exactly_where_merging_entry_by_entry_does() {
        let mut dense_seen = false;
        for len in 2_040u32..=2_048 {
            let a: Vec<u32> = (0..len).collect();
            let a = merge_plain(&[], Runs(&a), 0, |x, y| x + y).unwrap();
            for b in [
                vec![len],
                vec![len + 1],
                vec![len - 1],
                vec![0, len],
                vec![5, 5],
            ] {
                let fast = merge(&a, Runs(&b), 4, |x, y| x + y);
                assert_eq!(
                    fast,
                    merge_plain(&a, Runs(&b), 4, |x, y| x + y),
                    "{len} {b:?}"
                );
                dense_seen |= fast.is_none();
            }
        }
        assert!(dense_seen);
    }

    #[test]
    fn a_slot_with_many_buckets_turns_dense_and_counts_the_same() {
        let values: Vec<u64> = (0..3_000u32).map(bucket_value).collect();
        let s = sparse_of(&values);
        assert!(s.is_dense());
        assert_eq!(s.to_dense(), hist_of(&values));
        let few = sparse_of(&values[..100]);
        assert!(!few.is_dense());
        // One byte of distance and one of count per bucket.
        assert!(
            few.heap_bytes() <= 2 * 100 + 100 / 8,
            "{}",
            few.heap_bytes()
        );
        let mut listed = SlotHist::default();
        listed.add_values(&values[..100].iter().map(|&v| v as u32).collect::<Vec<_>>());
        assert_eq!(listed, few);
    }

    #[test]
    fn a_count_past_32_bits_turns_the_slot_dense_and_saturates_as_dense_slots_do() {
        let mut s = SlotHist::default();
        let mut big = new_histogram::<u32>();
        big.record_n(5_000, u32::MAX).unwrap();
        s.add_histogram(&big);
        assert!(!s.is_dense());
        assert_eq!(s.len(), COUNT_MAX);
        s.record(5_000);
        assert!(s.is_dense());
        assert_eq!(s.to_dense().count_at(5_000), u32::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Recording sparsely gives the dense histogram recording directly gives: same
        /// buckets, counts, quantiles, min and max.
        #[test]
        fn sparse_recording_equals_dense_recording(values in durations()) {
            let s = sparse_of(&values);
            let d = hist_of(&values);
            prop_assert_eq!(&s.to_dense(), &d);
            prop_assert_eq!(s.len(), d.len());
            for q in [0.0, 0.5, 0.99, 0.999, 1.0] {
                prop_assert_eq!(s.to_dense().value_at_quantile(q), d.value_at_quantile(q));
            }
            prop_assert_eq!(SlotHist::from_histogram(&d), s);
        }

        /// Adding calls a few at a time in place writes the very string one merge of all
        /// of them writes, and turns dense where that does.
        #[test]
        fn adding_in_place_equals_one_merge(
            values in durations(),
            split in proptest::collection::vec(1usize..6, 1..400),
        ) {
            let list: Vec<u32> = values
                .iter()
                .map(|&v| crate::window::histogram::list_value(v))
                .collect();
            let mut merged = SlotHist::default();
            merged.add_values_merged(&list);
            let mut in_place = SlotHist::default();
            let mut rest = &list[..];
            for k in split.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*k).min(rest.len()));
                in_place.add_values(now);
                rest = later;
            }
            prop_assert_eq!(&in_place.to_dense(), &hist_of(&values));
            match (&in_place, &merged) {
                (SlotHist::Sparse(a), SlotHist::Sparse(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert_eq!(a, b),
            }
        }

        /// Durations added with their bucket indices sorted beforehand (passed on to several
        /// slots at once) write the very string, or dense histogram, that adding them plainly
        /// writes, whatever the slot held before.
        #[test]
        fn adding_sorted_indices_equals_adding_values(
            before in durations(),
            values in durations(),
            dense in any::<bool>(),
        ) {
            let mut plain = sparse_of(&before);
            if dense {
                plain.make_dense();
            }
            let mut indexed = plain.clone();
            let list: Vec<u32> = values
                .iter()
                .map(|&v| crate::window::histogram::list_value(v))
                .collect();
            plain.add_values(&list);
            match sorted_indices(&list) {
                Some(indices) => indexed.add_indexed(&list, &indices),
                None => {
                    prop_assert!(list.len() <= IN_PLACE_MAX);
                    indexed.add_values(&list);
                }
            }
            match (&indexed, &plain) {
                (SlotHist::Sparse(a), SlotHist::Sparse(b)) => prop_assert_eq!(a, b),
                (SlotHist::Dense(a), SlotHist::Dense(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "forms differ: {:?} / {:?}", a.is_dense(), b.is_dense()),
            }
        }

        /// Merging by copying untouched runs of entries writes the very string an entry by
        /// entry merge writes, and needs the dense form exactly when that one does: adding
        /// and subtracting, short strings and strings near the sparse limit.
        #[test]
        fn merging_by_runs_equals_merging_entry_by_entry(
            a in prop_oneof![durations(), many_buckets()],
            b in prop_oneof![durations(), many_buckets()],
            keep in proptest::collection::vec(any::<bool>(), 0..1_200),
        ) {
            let indices = |values: &[u64]| {
                let mut v: Vec<u32> = values.iter().map(|&x| bucket_index(x)).collect();
                v.sort_unstable();
                v
            };
            let SlotHist::Sparse(sa) = sparse_of(&a) else {
                return Ok(());
            };
            let bi = indices(&b);
            let fast = merge(&sa, Runs(&bi), 2 * bi.len(), |x, y| x + y);
            let plain = merge_plain(&sa, Runs(&bi), 2 * bi.len(), |x, y| x + y);
            prop_assert_eq!(&fast, &plain);
            // Taking out some of `a`'s own calls.
            let some: Vec<u64> = a
                .iter()
                .zip(keep.iter().chain(std::iter::repeat(&true)))
                .filter(|(_, k)| **k)
                .map(|(v, _)| *v)
                .collect();
            let si = indices(&some);
            let sub = |x: u64, y: u64| x.checked_sub(y).expect("a subset");
            prop_assert_eq!(
                merge(&sa, Runs(&si), 0, sub),
                merge_plain(&sa, Runs(&si), 0, sub)
            );
        }

        /// Adding any mix of sparse and dense slots gives the histogram of all their calls,
        /// and subtracting one of them again gives the other.
        #[test]
        fn add_and_subtract_are_inverse_in_every_form(
            a in durations(),
            b in durations(),
            dense_a in any::<bool>(),
            dense_b in any::<bool>(),
        ) {
            let form = |values: &[u64], dense: bool| {
                let mut s = sparse_of(values);
                if dense {
                    s.make_dense();
                }
                s
            };
            let (sa, sb) = (form(&a, dense_a), form(&b, dense_b));
            let mut sum = sa.clone();
            sum.add(&sb);
            let both: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(&sum.to_dense(), &hist_of(&both));
            let mut via_dense = sa.clone();
            via_dense.add_histogram(&sb.to_dense());
            prop_assert_eq!(&via_dense, &sum);
            let mut wide = new_histogram::<u32>();
            sa.add_to(&mut wide);
            sb.add_to(&mut wide);
            prop_assert_eq!(&wide, &hist_of(&both));
            sum.subtract(&sb);
            prop_assert_eq!(&sum.to_dense(), &hist_of(&a));
            let mut back = sum.clone();
            back.add_histogram(&sb.to_dense());
            back.subtract_histogram(&sb.to_dense());
            prop_assert_eq!(&back, &sum);
            sum.subtract(&sa);
            prop_assert!(sum.is_empty());
        }

        /// Taking calls out as their durations leaves what taking their histogram out leaves,
        /// sparse or dense, whatever their range (the dense form subtracts a histogram that
        /// ends at their largest bucket).
        #[test]
        fn subtracting_durations_equals_subtracting_their_histogram(
            a in durations(),
            b in durations(),
            dense in any::<bool>(),
        ) {
            let listed: Vec<u32> = b.iter().map(|&v| super::super::histogram::list_value(v)).collect();
            let mut sum = sparse_of(&a);
            sum.add_values(&listed);
            if dense {
                sum.make_dense();
            }
            let mut by_values = sum.clone();
            by_values.subtract_values(&listed);
            let mut of_b = SlotHist::default();
            of_b.add_values(&listed);
            sum.subtract(&of_b);
            prop_assert_eq!(&by_values.to_dense(), &sum.to_dense());
            prop_assert_eq!(&by_values.to_dense(), &hist_of(&a));
        }
    }
}
