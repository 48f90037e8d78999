//! The histogram shape shared by every slot, snapshot and roll-up.
//!
//! Values are microseconds from 1 µs to 1 hour with two significant digits: HdrHistogram then
//! keeps 128 linear sub-buckets per power of two, so a bucket is at most 1/128 (0.78%) wide and
//! reporting its middle value keeps any quantile within 0.4% of the recorded value. Every
//! histogram has identical bounds, which makes `add` a straight loop over counters and makes
//! snapshots from different nodes mergeable.

use hdrhistogram::{Counter, Histogram};

/// Smallest distinguishable latency: 1 µs.
pub const LOWEST_US: u64 = 1;
/// Largest trackable latency: 1 hour. Larger values are clamped to it and counted as clamped.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Two significant digits: worst-case bucket width 1/128 of the value.
pub const SIGFIG: u8 = 2;

/// Slots use 32-bit counters: a single bucket of a 5-minute slot would need 14 million events
/// per second to saturate (and saturation, not wrap-around, is what happens then). They halve
/// the memory of the histograms that make up almost all of a series' footprint.
pub type SlotHistogram = Histogram<u32>;
/// Windows use the same counters: one bucket of a 1-hour window saturates only past 1.2
/// million calls per second *at the same latency*, and sharing the counter type lets merging
/// take HdrHistogram's straight counter-array loop (a memcpy into an empty window).
pub type WideHistogram = Histogram<u32>;

pub fn new_histogram<T: Counter>() -> Histogram<T> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG)
        .expect("static histogram bounds are valid")
}

/// Records `value_us`, clamped to [`HIGHEST_US`]. Returns true when the value was clamped.
#[inline]
pub fn record_clamped<T: Counter>(hist: &mut Histogram<T>, value_us: u64) -> bool {
    let clamped = value_us > HIGHEST_US;
    // Clamp here rather than rely on `saturating_record`: the counter array reaches a little
    // past 2^32 µs, and a value kept in a slot's list of durations (clamped to `HIGHEST_US`)
    // must land in the same bucket as the same value recorded directly.
    hist.saturating_record(value_us.min(HIGHEST_US));
    clamped
}

/// A duration as slots keep it in a list: clamped exactly as [`record_clamped`] records it, so
/// recording the list later fills the same buckets.
#[inline]
pub(crate) fn list_value(value_us: u64) -> u32 {
    value_us.min(HIGHEST_US) as u32
}

/// Quantile as the middle of the bucket holding it, in microseconds.
pub fn quantile_us(hist: &WideHistogram, q: f64) -> u64 {
    hist.median_equivalent(hist.value_at_quantile(q))
}

/// Memory held by one slot histogram, in bytes (its counters dominate).
pub fn slot_histogram_bytes() -> usize {
    new_histogram::<u32>().distinct_values() * std::mem::size_of::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_clamped_and_reported() {
        let mut h = new_histogram::<u32>();
        assert!(!record_clamped(&mut h, 0));
        assert!(!record_clamped(&mut h, HIGHEST_US));
        assert!(record_clamped(&mut h, HIGHEST_US * 5));
        // Just past the hour, where the counter array still has buckets: clamped all the same.
        assert!(record_clamped(&mut h, HIGHEST_US + 100_000_000));
        assert_eq!(h.len(), 4);
        assert_eq!(h.count_at(HIGHEST_US), 3);
        assert_eq!(h.max(), h.highest_equivalent(HIGHEST_US));
    }

    #[test]
    fn quantiles_stay_within_half_a_percent_across_the_range() {
        for &v in &[1u64, 7, 999, 12_345, 987_654, 45_000_000, 3_599_999_999] {
            let mut h = new_histogram::<u32>();
            h.record(v).unwrap();
            let got = quantile_us(&h, 0.99) as f64;
            let err = (got - v as f64).abs() / v as f64;
            assert!(err <= 0.005, "value {v}: got {got}, relative error {err}");
        }
    }

    #[test]
    fn slot_histograms_add_into_wide_ones_losslessly() {
        let mut slot = crate::window::SlotHist::default();
        for v in [5u64, 5, 1_000, 250_000, 3_000_000_000] {
            slot.record(v);
        }
        let mut wide: WideHistogram = new_histogram();
        slot.add_to(&mut wide);
        assert_eq!(wide.len(), 5);
        assert_eq!(wide.count_at(5), 2);
        assert_eq!(wide.max(), slot.to_dense().max());
        assert_eq!(slot_histogram_bytes(), 3_328 * 4);
    }
}
