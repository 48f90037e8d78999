//! Mergeable views of a window: what queries, detectors, roll-ups and (later) cluster peers
//! exchange. Merging two snapshots is exact: histograms share bounds and counters add.

use std::sync::Arc;

use hdrhistogram::serialization::Deserializer;

use super::encode::HistogramEncoder;
use super::fine::FineSlot;
use super::histogram::{SlotHistogram, WideHistogram, new_histogram, quantile_us};
use super::slot::{Counts, Slot};
use super::slot_hist::SlotHist;

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Start of the first slot included, epoch milliseconds.
    pub from_ms: i64,
    /// End of the window (the `now` it was taken at), epoch milliseconds.
    pub to_ms: i64,
    /// Shared with the running sum of the window it was read from, if any (see
    /// [`super::slot_hist::SlotHist::Dense`]): a window read every second costs no copy of
    /// its counters. Changing it copies them first ([`Arc::make_mut`]).
    pub hist: Arc<WideHistogram>,
    pub counts: Counts,
}

impl Snapshot {
    pub fn empty(from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            hist: Arc::new(new_histogram()),
            counts: Counts::default(),
        }
    }

    /// A snapshot holding exactly the calls of `slot`.
    pub(crate) fn of_slot(slot: &Slot, from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            hist: slot.to_shared(),
            counts: slot.counts,
        }
    }

    pub fn add_slot(&mut self, slot: &Slot) {
        slot.add_to(Arc::make_mut(&mut self.hist));
        self.counts.add(&slot.counts);
    }

    pub(crate) fn add_fine(&mut self, slot: &FineSlot) {
        slot.add_to(Arc::make_mut(&mut self.hist));
        self.counts.add(&slot.counts);
    }

    /// Records successful calls' durations, already counted (see `series::owed`).
    pub(crate) fn add_durations(&mut self, values: &[u32]) {
        let hist = Arc::make_mut(&mut self.hist);
        for &v in values {
            hist.saturating_record(u64::from(v));
        }
    }

    /// Merges another snapshot (another series, another node or an adjacent time range).
    pub fn merge(&mut self, other: &Snapshot) {
        self.merge_data(other);
        self.from_ms = self.from_ms.min(other.from_ms);
        self.to_ms = self.to_ms.max(other.to_ms);
    }

    /// Adds another snapshot's calls, keeping this snapshot's time bounds.
    pub fn merge_data(&mut self, other: &Snapshot) {
        Arc::make_mut(&mut self.hist)
            .add(&*other.hist)
            .expect("snapshots share histogram bounds");
        self.counts.add(&other.counts);
    }

    pub fn total(&self) -> u64 {
        self.counts.total()
    }

    /// Calls the histogram holds: the successful ones, the denominator of every latency share
    /// (errors and timeouts are counted by outcome, not timed; see [`super::slot`]).
    pub fn successful(&self) -> u64 {
        self.hist.len()
    }

    /// Number of successful calls slower than `threshold_us` (strictly above the bucket that
    /// holds it).
    pub fn count_above(&self, threshold_us: u64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        let top = self.hist.max();
        let edge = self.hist.highest_equivalent(threshold_us);
        if edge >= top {
            0
        } else {
            self.hist.count_between(edge + 1, top)
        }
    }

    pub fn stats(&self) -> WindowStats {
        let total = self.total();
        let seconds = ((self.to_ms - self.from_ms).max(1) as f64) / 1000.0;
        let ratio = |n: u64| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        };
        let has = !self.hist.is_empty();
        let q = |q: f64| has.then(|| quantile_us(&self.hist, q) as f64 / 1000.0);
        WindowStats {
            from: crate::time::to_rfc3339(self.from_ms),
            to: crate::time::to_rfc3339(self.to_ms),
            total,
            ok: self.counts.ok,
            error: self.counts.error,
            timeout: self.counts.timeout,
            clamped: self.counts.clamped,
            rate_per_s: total as f64 / seconds,
            error_rate: ratio(self.counts.error),
            timeout_rate: ratio(self.counts.timeout),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: has.then(|| self.hist.max() as f64 / 1000.0),
            mean: has.then(|| self.hist.mean() / 1000.0),
        }
    }
}

/// The stored encoding of `hist`: HdrHistogram's V2, deflated when long (see
/// [`HistogramEncoder`]). Writing many, keep one encoder instead.
pub fn encode_histogram(hist: &SlotHistogram) -> Vec<u8> {
    HistogramEncoder::default().encode(&SlotHist::from_histogram(hist))
}

/// Reads a histogram in either V2 form (plain or deflated), whatever its bounds.
pub fn decode_histogram(bytes: &[u8]) -> Result<SlotHistogram, String> {
    let decoded: SlotHistogram = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))?;
    // Re-home into our bounds so that `add` takes the fast path and foreign encodings with
    // other bounds are still usable.
    let mut hist: SlotHistogram = new_histogram();
    for v in decoded.iter_recorded() {
        hist.saturating_record_n(v.value_iterated_to(), v.count_at_value());
    }
    Ok(hist)
}

/// Window statistics as the API reports them. Latencies (`p50` .. `mean`) are of the
/// successful calls, in milliseconds, and null for a window without a successful call.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowStats {
    pub from: String,
    pub to: String,
    pub total: u64,
    pub ok: u64,
    pub error: u64,
    pub timeout: u64,
    pub clamped: u64,
    pub rate_per_s: f64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;

    #[test]
    fn encoding_round_trips_exactly() {
        let mut slot = Slot::new(0);
        for v in [1u64, 10, 10, 999_999, 3_000_000_000, 7_000_000_000] {
            slot.record(v, Outcome::Ok);
        }
        let decoded = decode_histogram(&encode_histogram(&slot.hist.to_dense())).unwrap();
        assert_eq!(decoded, slot.hist.to_dense());
        let stored = Slot::from_stored(0, SlotHist::from_histogram(&decoded), slot.counts);
        assert_eq!(stored.hist, slot.hist);
    }

    #[test]
    fn count_above_counts_strictly_slower_calls() {
        let mut slot = Slot::new(0);
        for v in [1_000u64, 2_000, 300_000, 400_000] {
            slot.record(v, Outcome::Ok);
        }
        let mut snap = Snapshot::empty(0, 1_000);
        snap.add_slot(&slot);
        assert_eq!(snap.count_above(250_000), 2);
        assert_eq!(snap.count_above(400_000), 0);
        assert_eq!(snap.count_above(0), 4);
    }
}
