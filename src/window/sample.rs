//! A window's calls as the peer detectors read them: every second, for every instance and zone
//! of every dependency, they ask a few questions (how many calls and failures, the p99, how
//! many calls are slower than a threshold). Most peers are quiet, and their window is a few
//! hundred durations still kept as lists by their slots. Answering from those durations spares
//! building a 13 KiB histogram per peer per second and scanning its 3,328 counters; busier
//! peers are answered from their histogram. Both forms give exactly the same answers, bucket
//! for bucket, as a property test checks.

use std::sync::{Arc, LazyLock};

use super::histogram::{SlotHistogram, new_histogram};
use super::slot::Counts;
use super::snapshot::Snapshot;

/// Most durations a sample keeps as a list; a window holding more is read as a histogram.
/// Picking the p99 of a list is one pass over it, against a pass over the histogram's
/// counters plus copying them.
pub(crate) const SAMPLE_MAX: usize = 1_024;

/// The bucket layout every histogram shares, to map a duration to its bucket's bounds.
pub(crate) static SHAPE: LazyLock<SlotHistogram> = LazyLock::new(new_histogram);

#[derive(Debug, Clone)]
pub enum Sample {
    Histogram(Snapshot),
    /// The durations of the window's successful calls in microseconds (clamped as histograms
    /// record them), unordered.
    Durations {
        from_ms: i64,
        to_ms: i64,
        values: Vec<u32>,
        counts: Counts,
    },
    /// The same in ascending order, shared with the list an instance or a zone keeps of its
    /// minute (see `Series::minute_sample`): reading it copies nothing, a quantile is an index
    /// and a count above a threshold a binary search.
    Sorted {
        from_ms: i64,
        to_ms: i64,
        values: Arc<Vec<u32>>,
        counts: Counts,
    },
}

impl From<Snapshot> for Sample {
    fn from(s: Snapshot) -> Self {
        Sample::Histogram(s)
    }
}

impl Sample {
    pub fn counts(&self) -> &Counts {
        match self {
            Sample::Histogram(s) => &s.counts,
            Sample::Durations { counts, .. } | Sample::Sorted { counts, .. } => counts,
        }
    }

    pub fn total(&self) -> u64 {
        self.counts().total()
    }

    /// Start of the window, epoch milliseconds.
    pub fn from_ms(&self) -> i64 {
        match self {
            Sample::Histogram(s) => s.from_ms,
            Sample::Durations { from_ms, .. } | Sample::Sorted { from_ms, .. } => *from_ms,
        }
    }

    /// Calls the sample times: the successful ones (see [`Snapshot::successful`]).
    pub fn successful(&self) -> u64 {
        match self {
            Sample::Histogram(s) => s.successful(),
            Sample::Durations { values, .. } => values.len() as u64,
            Sample::Sorted { values, .. } => values.len() as u64,
        }
    }

    /// HdrHistogram's `value_at_quantile`: the highest value of the bucket holding the
    /// quantile (the lowest for quantile 0), or 0 for a window without calls.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        match self {
            Sample::Histogram(s) if s.hist.is_empty() => 0,
            Sample::Histogram(s) => s.hist.value_at_quantile(q),
            Sample::Durations { values, .. } => {
                list_quantile(q, values.len(), |rank| kth_smallest(values, rank))
            }
            Sample::Sorted { values, .. } => {
                list_quantile(q, values.len(), |rank| values[rank - 1])
            }
        }
    }

    /// The quantile as the middle of the bucket holding it, as window stats report it.
    pub fn quantile_us(&self, q: f64) -> u64 {
        match self {
            Sample::Histogram(s) if s.hist.is_empty() => 0,
            Sample::Histogram(s) => super::histogram::quantile_us(&s.hist, q),
            Sample::Durations { .. } | Sample::Sorted { .. } => {
                SHAPE.median_equivalent(self.value_at_quantile(q))
            }
        }
    }

    /// Successful calls slower than `threshold_us`: strictly above the bucket holding it.
    pub fn count_above(&self, threshold_us: u64) -> u64 {
        match self {
            Sample::Histogram(s) => s.count_above(threshold_us),
            Sample::Durations { values, .. } => {
                let edge = SHAPE.highest_equivalent(threshold_us);
                values.iter().filter(|&&v| u64::from(v) > edge).count() as u64
            }
            Sample::Sorted { values, .. } => {
                let edge = SHAPE.highest_equivalent(threshold_us);
                (values.len() - values.partition_point(|&v| u64::from(v) <= edge)) as u64
            }
        }
    }
}

/// HdrHistogram's `value_at_quantile` over `len` durations (0 for none), `kth` giving the
/// `rank`-th smallest of them (from 1).
fn list_quantile(q: f64, len: usize, kth: impl FnOnce(usize) -> u32) -> u64 {
    if len == 0 {
        return 0;
    }
    debug_assert!(!q.is_nan(), "a quantile, not NaN");
    // The rank HdrHistogram looks for, counting from 1.
    let q = q.min(1.0);
    let rank = ((q * len as f64).ceil() as usize).clamp(1, len);
    let value = u64::from(kth(rank));
    if q == 0.0 {
        SHAPE.lowest_equivalent(value)
    } else {
        SHAPE.highest_equivalent(value)
    }
}

/// The `rank`-th smallest of `values` (from 1). A high quantile of a short list sits among its
/// few largest values: keep those in a small sorted array in one pass.
fn kth_smallest(values: &[u32], rank: usize) -> u32 {
    const TOP: usize = 32;
    let from_top = values.len() - rank + 1;
    if from_top > TOP {
        let mut scratch = values.to_vec();
        return *scratch.select_nth_unstable(rank - 1).1;
    }
    // The `from_top` largest values seen so far, largest first.
    let mut top = [0u32; TOP];
    let mut len = 0;
    for &v in values {
        if len == from_top {
            if v <= top[len - 1] {
                continue;
            }
            len -= 1;
        }
        let mut i = len;
        while i > 0 && top[i - 1] < v {
            top[i] = top[i - 1];
            i -= 1;
        }
        top[i] = v;
        len += 1;
    }
    top[from_top - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The durations as an unordered list, as a histogram and as a sorted list.
    fn all_three(values: &[u32]) -> (Sample, Sample, Sample) {
        let counts = Counts {
            ok: values.len() as u64,
            ..Counts::default()
        };
        let mut snapshot = Snapshot::empty(0, 60_000);
        for &v in values {
            std::sync::Arc::make_mut(&mut snapshot.hist).saturating_record(u64::from(v));
        }
        snapshot.counts = counts;
        let durations = Sample::Durations {
            from_ms: 0,
            to_ms: 60_000,
            values: values.to_vec(),
            counts,
        };
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let sorted = Sample::Sorted {
            from_ms: 0,
            to_ms: 60_000,
            values: Arc::new(sorted),
            counts,
        };
        (durations, Sample::Histogram(snapshot), sorted)
    }

    #[test]
    fn an_empty_sample_answers_zero() {
        let (d, h, s) = all_three(&[]);
        for x in [d, h, s] {
            assert_eq!(x.value_at_quantile(0.99), 0);
            assert_eq!(x.count_above(0), 0);
        }
    }

    proptest! {
        /// A list of durations and the histogram of the same durations give the same
        /// quantiles, the same counts above any threshold, and the same total.
        #[test]
        fn durations_answer_exactly_like_their_histogram(
            values in proptest::collection::vec(
                prop_oneof![
                    4 => 0u32..50_000,
                    1 => 0u32..=(super::super::histogram::HIGHEST_US as u32),
                    1 => Just(20_000u32),
                ],
                0..400,
            ),
            thresholds in proptest::collection::vec(0u64..4_000_000_000, 1..6),
        ) {
            let (d, h, s) = all_three(&values);
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(d.value_at_quantile(q), h.value_at_quantile(q), "q {}", q);
                prop_assert_eq!(s.value_at_quantile(q), h.value_at_quantile(q), "q {}", q);
                prop_assert_eq!(s.quantile_us(q), h.quantile_us(q), "q {}", q);
            }
            let mut edges: Vec<u64> = thresholds;
            edges.extend(values.iter().take(3).map(|&v| u64::from(v)));
            // Bucket edges of the durations themselves, and the values next to them.
            edges.extend(values.iter().take(3).flat_map(|&v| {
                let top = SHAPE.highest_equivalent(u64::from(v));
                [top, top + 1, top.saturating_sub(1)]
            }));
            for t in edges {
                prop_assert_eq!(d.count_above(t), h.count_above(t), "threshold {}", t);
                prop_assert_eq!(s.count_above(t), h.count_above(t), "threshold {}", t);
            }
            for x in [&d, &s] {
                prop_assert_eq!(x.total(), h.total());
                prop_assert_eq!(x.successful(), h.successful());
            }
        }

        #[test]
        fn the_kth_smallest_is_what_sorting_gives(
            values in proptest::collection::vec(any::<u32>(), 1..200),
            pick in any::<proptest::sample::Index>(),
        ) {
            let rank = pick.index(values.len()) + 1;
            let mut sorted = values.clone();
            sorted.sort_unstable();
            prop_assert_eq!(kth_smallest(&values, rank), sorted[rank - 1]);
        }
    }
}
