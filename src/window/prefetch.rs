//! Hints to the processor to start loading memory a loop will read a few steps later.
//!
//! The peers' read every second and each batch of calls visit thousands of series, each a
//! few cache lines in its dependency's table and behind two or three pointers: one after the
//! other, every visit waits for memory. Asking for the next ones' lines while the current
//! one is handled lets those waits overlap. A hint changes no value and never faults, whatever the address; on targets
//! without one it does nothing.

/// Bytes in a cache line on the processors this targets.
const LINE: usize = 64;

/// Asks for the cache lines that hold the `bytes` from `at` to be loaded into the nearest
/// cache.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(at: &T, bytes: usize) {
    prefetch_at(std::ptr::from_ref(at).cast::<u8>(), bytes);
}

/// [`prefetch`] from an address that need not point at a value.
#[inline(always)]
pub(crate) fn prefetch_at(start: *const u8, bytes: usize) {
    lines(start, bytes).for_each(line);
}

/// The start of every cache line that holds one of the `bytes` from `start`.
#[inline(always)]
fn lines(start: *const u8, bytes: usize) -> impl Iterator<Item = *const u8> {
    let skip = start.addr() % LINE;
    let first = start.wrapping_sub(skip);
    let count = if bytes == 0 {
        0
    } else {
        (skip + bytes).div_ceil(LINE)
    };
    (0..count).map(move |i| first.wrapping_add(i * LINE))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_that_holds_a_byte_is_hinted_and_no_other() {
        let buffer = [0u8; 1024];
        let base = buffer
            .as_ptr()
            .wrapping_add(LINE - buffer.as_ptr().addr() % LINE);
        for (offset, bytes, want) in [
            (0, 64, 1),
            (0, 65, 2),
            (63, 1, 1),
            (63, 2, 2),
            (10, 120, 3),
            (0, 0, 0),
            (5, 0, 0),
        ] {
            let got: Vec<usize> = lines(base.wrapping_add(offset), bytes)
                .map(|p| p.addr() - base.addr())
                .collect();
            let expected: Vec<usize> = (0..want).map(|i| i * LINE).collect();
            assert_eq!(got, expected, "{bytes} bytes from offset {offset}");
        }
    }
}
