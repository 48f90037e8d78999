//! Over-dispersed counts: errors that do not come one call at a time.
//!
//! The binomial test takes calls as independent trials. They are not when a failed request is
//! retried (one failure becomes five or six errors within seconds), when one request fans out,
//! or when errors come in bursts: the count of a window then varies `phi` times more than a
//! binomial count, and a test that ignores it fires on one retried request at low traffic.
//!
//! The quasi-binomial answer (Rao and Scott's adjustment for clustered binary data) is to
//! divide both counts by the design effect `phi` and test what remains: a burst of six errors
//! from one request with `phi` near 6 weighs as about one independent failure. `phi` is
//! estimated from how the baseline's per-minute counts vary around its pooled rate (Pearson's
//! statistic over its degrees of freedom), shrunk towards a prior: a baseline with few errors
//! says little about how they cluster, and an error-free one says nothing, so there the
//! prior, a typical client's retry count, decides.

/// The design effect assumed before any error has been seen: a failed request retried about
/// three times. With it, the first retry burst of an error-free dependency does not fire.
pub const PRIOR_DISPERSION: f64 = 4.0;
/// How many independent errors of evidence the prior is worth: below about this many
/// clusters of baseline errors the prior dominates, above it the data does.
pub const PRIOR_WEIGHT_EVENTS: f64 = 10.0;

/// Pearson's dispersion statistic of per-interval counts `(k_i, n_i)` (events, trials) around
/// their pooled rate: `sum (k_i - n_i p)^2 / (n_i p (1 - p)) / (m - 1)` over the `m`
/// intervals with trials. About 1 for independent trials, about the mean cluster size
/// (more exactly `E[size^2] / E[size]`) for clustered ones. Returns `(phi, events)`, or
/// `None` with fewer than two intervals or no event at all (nothing to estimate from).
pub fn pearson_dispersion(
    intervals: impl Iterator<Item = (u64, u64)> + Clone,
) -> Option<(f64, u64)> {
    let (mut k, mut n, mut m) = (0u64, 0u64, 0u64);
    for (ki, ni) in intervals.clone() {
        if ni > 0 {
            k += ki.min(ni);
            n += ni;
            m += 1;
        }
    }
    if m < 2 || k == 0 {
        return None;
    }
    let p = k as f64 / n as f64;
    let q = 1.0 - p;
    if q <= 0.0 {
        return None;
    }
    let chi2: f64 = intervals
        .filter(|&(_, ni)| ni > 0)
        .map(|(ki, ni)| {
            let expected = ni as f64 * p;
            let d = ki.min(ni) as f64 - expected;
            d * d / (expected * q)
        })
        .sum();
    Some((chi2 / (m - 1) as f64, k))
}

/// The design effect to test with: the Pearson estimate (see [`pearson_dispersion`]) shrunk
/// towards [`PRIOR_DISPERSION`] by the evidence behind it, and never below 1 (counts less
/// variable than binomial are no reason to trust a window more). The evidence is the number
/// of independent failures the estimate rests on, the events divided by the estimate itself:
/// seven errors of one retried request are one failure's worth of knowing how errors cluster.
pub fn dispersion(estimate: Option<(f64, u64)>) -> f64 {
    let (phi, weight) = estimate.map_or((1.0, 0.0), |(phi, k)| (phi, k as f64 / phi.max(1.0)));
    let shrunk =
        (PRIOR_WEIGHT_EVENTS * PRIOR_DISPERSION + weight * phi) / (PRIOR_WEIGHT_EVENTS + weight);
    shrunk.max(1.0)
}

/// One-sided quasi-binomial p-value: `k` events in `n` trials against rate `p0` when counts
/// vary `phi` times more than binomial. Both counts are divided by `phi` (the effective number
/// of independent trials and events), the events rounded down and the trials to the nearest,
/// and the exact binomial tail is taken; rounding the events down keeps the test on the
/// conservative side. `phi <= 1` is the plain binomial test.
pub fn quasi_binomial_upper_p_value(k: u64, n: u64, p0: f64, phi: f64) -> f64 {
    if phi.is_nan() || phi <= 1.0 {
        return super::binomial_upper_p_value(k, n, p0);
    }
    let k_eff = (k as f64 / phi).floor() as u64;
    let n_eff = ((n as f64 / phi).round() as u64).max(k_eff);
    super::binomial_upper_p_value(k_eff, n_eff, p0)
}

/// Most errors one failure is taken to make: a request and six retries.
pub const MAX_BURST: u64 = 7;
/// Expected errors in a window below which a few rare bursts, not the variance, decide the
/// tail (see [`burst_bounded_upper_p_value`]).
pub const FEW_EXPECTED_ERRORS: f64 = 5.0;

/// [`quasi_binomial_upper_p_value`], bounded for sparse windows by counting failures instead
/// of errors.
///
/// Dividing by `phi` matches the variance of clustered counts, which is enough when a window
/// expects many failures: their bursts average out. A window that expects fewer than
/// [`FEW_EXPECTED_ERRORS`] errors is different: there the tail is made by how many rare
/// bursts fall in it, and two retried requests in one quiet minute (13 errors where 0.3 were
/// expected) are far likelier than any variance scaling says, even with `phi` measured on a
/// baseline that happened to hold no burst. For such a window the p-value is also bounded by
/// the failures the errors must at least come from: with at most [`MAX_BURST`] errors per
/// failure, `k` errors are at least `ceil(k / MAX_BURST)` failures, and failures occur at a
/// rate of at most `p0` per call. That bound is valid whatever the bursts look like; the
/// larger of the two p-values is returned. A real rise is many failures, each its own request,
/// and still shows on the windows that expect enough errors.
pub fn burst_bounded_upper_p_value(k: u64, n: u64, p0: f64, phi: f64) -> f64 {
    let p = quasi_binomial_upper_p_value(k, n, p0, phi);
    if (n as f64) * p0 >= FEW_EXPECTED_ERRORS {
        return p;
    }
    let failures = k.min(n).div_ceil(MAX_BURST);
    p.max(super::binomial_upper_p_value(failures, n, p0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stats::binomial_upper_p_value;

    #[test]
    fn independent_counts_have_a_dispersion_near_one() {
        // 30 minutes of 6,000 calls with errors spread as a binomial would: 5-7 a minute.
        let minutes: Vec<(u64, u64)> = (0..30).map(|i| (5 + i % 3, 6_000)).collect();
        let (phi, k) = pearson_dispersion(minutes.iter().copied()).unwrap();
        assert_eq!(k, 180);
        assert!(phi < 1.0, "{phi}");
        // 180 errors outweigh the prior: close to 1.
        let d = dispersion(Some((phi, k)));
        assert!((1.0..1.2).contains(&d), "{d}");
    }

    #[test]
    fn retry_bursts_show_as_their_size() {
        // 60 calls a minute; three minutes each hold one request failing 6 times.
        let minutes: Vec<(u64, u64)> = (0..30)
            .map(|i| (if i % 10 == 3 { 6 } else { 0 }, 60))
            .collect();
        let (phi, k) = pearson_dispersion(minutes.iter().copied()).unwrap();
        assert_eq!(k, 18);
        // E[size^2] / E[size] = 6, less the variance the pooled rate absorbs.
        assert!((5.0..6.5).contains(&phi), "{phi}");
        // Three bursts are three failures of evidence: the prior still weighs.
        let d = dispersion(Some((phi, k)));
        assert!((4.0..5.0).contains(&d), "{d}");
    }

    #[test]
    fn without_errors_the_prior_decides() {
        assert_eq!(pearson_dispersion([(0, 60), (0, 60)].into_iter()), None);
        assert_eq!(pearson_dispersion([(3, 60)].into_iter()), None);
        assert_eq!(dispersion(None), PRIOR_DISPERSION);
        // Two errors of evidence barely move it.
        let d = dispersion(Some((1.0, 2)));
        assert!((3.4..3.6).contains(&d), "{d}");
        // Under-dispersed data never lowers it below 1.
        assert_eq!(dispersion(Some((0.2, 100_000))), 1.0);
    }

    #[test]
    fn two_retried_requests_in_a_quiet_minute_are_two_failures() {
        // A baseline at 0.75 calls/s whose 9 errors all came one at a time (phi shrunk to
        // about 2.5), then a minute of 48 calls holding two requests retried 6 times each.
        let p0 = 10.0 / 1_477.0;
        let phi = 2.55;
        // Scaled by the dispersion alone the minute is beyond alpha = 1e-6...
        assert!(quasi_binomial_upper_p_value(13, 48, p0, phi) < 1e-6);
        // ...but 13 errors can be two failures, and two in a minute at this rate are usual.
        let p = burst_bounded_upper_p_value(13, 48, p0, phi);
        assert_eq!(p, binomial_upper_p_value(2, 48, p0));
        assert!(p > 1e-2, "{p}");
        // A real rise at the same traffic, errors on most calls, is still beyond doubt.
        assert!(burst_bounded_upper_p_value(40, 48, p0, phi) < 1e-6);
        // Where the window expects enough errors the bound does not apply: a sustained 2%
        // against 0.1% at 100 calls/s over a minute keeps its quasi-binomial p-value...
        assert_eq!(
            burst_bounded_upper_p_value(120, 6_000, 0.001, 1.5),
            quasi_binomial_upper_p_value(120, 6_000, 0.001, 1.5)
        );
        // Four retried requests in five minutes at 3.6 calls/s: 32 errors where 4.8 were
        // expected are at least 5 failures, as many as expected.
        let p0 = 0.0044;
        assert!(quasi_binomial_upper_p_value(32, 1_088, p0, 2.55) < 1e-6);
        assert!(burst_bounded_upper_p_value(32, 1_088, p0, 2.55) > 0.1);
    }

    #[test]
    fn one_retried_request_is_no_evidence_once_dispersion_counts() {
        // 1 call/s, an error-free baseline (smoothed rate 1/1802), one request failing 7
        // times within the minute: the binomial test calls it overwhelming...
        let p0 = 1.0 / 1_802.0;
        assert!(binomial_upper_p_value(7, 60, p0) < 1e-12);
        // ...the quasi-binomial one with the prior design effect does not.
        assert!(quasi_binomial_upper_p_value(7, 60, p0, dispersion(None)) > 1e-3);
        // A sustained 2% error rate at 100 calls/s is still beyond doubt with phi = 1.5.
        assert!(quasi_binomial_upper_p_value(120, 6_000, 0.001, 1.5) < 1e-20);
        // phi <= 1 is the binomial test itself.
        assert_eq!(
            quasi_binomial_upper_p_value(7, 60, p0, 1.0),
            binomial_upper_p_value(7, 60, p0)
        );
    }
}
