//! The statistical tests behind the detectors: the exact binomial tail (`binomial`), two
//! proportions by Fisher's exact test or the pooled z test (`proportions`, with the normal
//! tail in `normal`), Holm's multiple-testing control (`holm`), the quasi-binomial test for
//! errors that come in bursts (`dispersion`) and the Poisson tails that judge call counts
//! (`poisson`).
//!
//! Everything here is I/O-free, allocation-light, deterministic and std-only, so detectors
//! can call it on every evaluation tick and tests can pin exact values.
//!
//! Gray failures live in the far tails: "60 errors in 1000 calls against a 1% baseline" has
//! a p-value near 2e-27, and a detector that runs thousands of tests per minute needs
//! family-wise thresholds around 1e-6..1e-9. So the tail functions are built to keep
//! *relative* accuracy far out in the tail (not just absolute accuracy near 0.5), and the
//! large-sample approximation is only used where its tail error is small.
//!
//! Conventions: counts are `u64`; "invalid" inputs (a count above its total, an empty
//! group, ...) yield the value meaning "no evidence" (p-value 1, z 0) rather than panicking,
//! because they come from live traffic, not from the programmer.

mod binomial;
mod dispersion;
mod holm;
mod normal;
mod poisson;
mod proportions;

pub use binomial::binomial_upper_p_value;
pub use dispersion::{
    PRIOR_DISPERSION, burst_bounded_upper_p_value, dispersion, pearson_dispersion,
    quasi_binomial_upper_p_value,
};
pub use holm::{holm_bonferroni, holm_rejects_any};
#[cfg(test)]
pub(crate) use normal::normal_quantile;
pub use poisson::{poisson_lower_p_value, poisson_upper_p_value};
pub use proportions::{few_events_p_value_above, rate_not_above, two_proportion_p_value};

/// `ln(sqrt(2*pi))`.
const LN_SQRT_2PI: f64 = 0.9189385332046728;
/// `1 / sqrt(2*pi)`.
const FRAC_1_SQRT_2PI: f64 = 0.3989422804014327;
/// `ln(2*pi)`.
const LN_2PI: f64 = 1.8378770664093456;

#[cfg(test)]
mod test_util {
    /// |actual - expected| <= tol * |expected| (or both exactly equal, for zeros).
    #[track_caller]
    pub(super) fn assert_rel(actual: f64, expected: f64, tol: f64) {
        let err = if actual == expected {
            0.0
        } else {
            ((actual - expected) / expected).abs()
        };
        assert!(
            err <= tol,
            "actual {actual:e}, expected {expected:e}, relative error {err:e} > {tol:e}"
        );
    }

    #[track_caller]
    pub(super) fn assert_abs(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "actual {actual:e}, expected {expected:e}, diff {:e} > {tol:e}",
            (actual - expected).abs()
        );
    }
}
