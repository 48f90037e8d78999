//! Hints to the processor to start loading memory a loop will read a few steps later.
//!
//! The peers' read every second visits thousands of series, each a few cache lines in its
//! dependency's table and behind two pointers: one after the other, every visit waits for
//! memory. Asking for the next peers' lines while the current one is read lets those waits
//! overlap. A hint changes no value and never faults, whatever the address; on targets
//! without one it does nothing.

/// Asks for the cache lines that hold the `bytes` from `at` to be loaded into the nearest
/// cache.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(at: &T, bytes: usize) {
    prefetch_at(std::ptr::from_ref(at).cast::<u8>(), bytes);
}

/// [`prefetch`] from an address that need not point at a value.
#[inline(always)]
pub(crate) fn prefetch_at(start: *const u8, bytes: usize) {
    let skip = start.addr() % 64;
    let mut p = start.wrapping_sub(skip);
    let mut left = bytes + skip;
    while left > 0 {
        line(p);
        p = p.wrapping_add(64);
        left = left.saturating_sub(64);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line(p: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: SSE is part of every x86_64 target, and a prefetch neither reads the value
    // nor faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn line(_: *const u8) {}
