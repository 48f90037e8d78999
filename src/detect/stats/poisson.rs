//! One-sided Poisson tests for call counts: is a window's number of calls far below (a
//! drop) or far above (a surge) what a reference rate explains?
//!
//! `P(X <= c)` and `P(X >= c)` for X ~ Poisson(lambda) are summed from the term at `c`
//! outwards, in the direction in which the terms shrink. The tests only ask about the tail
//! beyond the mean, where each term is at most `c / lambda` (or `lambda / (c + 1)`) times the
//! one before, so the sum needs few terms even for a mean of millions. The term at `c` comes
//! from Loader's saddle-point density (`-delta(c) - bd0(c, lambda) - ln sqrt(2 pi c)`),
//! relatively accurate far out in the tail where `e^-lambda lambda^c / c!` would under- or
//! overflow. A tail on the near side of the mean is 1/2 or more and returned as 1 (no
//! evidence), which is all a one-sided test needs.

use super::LN_2PI;
use super::binomial::{bd0, stirling_error};

/// `ln P(X = c)` for X ~ Poisson(lambda), lambda > 0.
fn ln_poisson_pmf(c: u64, lambda: f64) -> f64 {
    if c == 0 {
        return -lambda;
    }
    let cf = c as f64;
    -stirling_error(c) - bd0(cf, lambda) - 0.5 * (LN_2PI + cf.ln())
}

/// Most terms summed: a safety bound, far above what a tail beyond the mean needs.
const MAX_TERMS: u64 = 10_000_000;

/// One-sided p-value for "the rate is below `lambda`", having seen `c` calls where `lambda`
/// were expected: `P(X <= c)` for X ~ Poisson(lambda). Returns 1 when `c >= lambda` (no
/// evidence of a drop) and when `lambda` is not positive.
pub fn poisson_lower_p_value(c: u64, lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 || c as f64 >= lambda {
        return 1.0;
    }
    // P(X = j - 1) = P(X = j) * j / lambda, shrinking as j falls.
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut j = c;
    while j > 0 && c - j < MAX_TERMS {
        term *= j as f64 / lambda;
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
        j -= 1;
    }
    (ln_poisson_pmf(c, lambda) + sum.ln()).exp().min(1.0)
}

/// One-sided p-value for "the rate is above `lambda`", having seen `c` calls where `lambda`
/// were expected: `P(X >= c)` for X ~ Poisson(lambda). Returns 1 when `c <= lambda` (no
/// evidence of a surge) and 0 when `lambda` is not positive and calls were seen.
pub fn poisson_upper_p_value(c: u64, lambda: f64) -> f64 {
    if lambda.is_nan() || c as f64 <= lambda {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    // P(X = j + 1) = P(X = j) * lambda / (j + 1), shrinking as j grows.
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut j = c;
    while j - c < MAX_TERMS {
        term *= lambda / (j + 1) as f64;
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
        j += 1;
    }
    (ln_poisson_pmf(c, lambda) + sum.ln()).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stats::test_util::assert_rel;

    /// `P(X <= c)` by direct summation of `e^-l l^j / j!` (fine for small l and c).
    fn direct_cdf(c: u64, l: f64) -> f64 {
        let mut term = (-l).exp();
        let mut sum = term;
        for j in 1..=c {
            term *= l / j as f64;
            sum += term;
        }
        sum
    }

    #[test]
    fn small_tails_match_direct_sums() {
        for (c, l) in [(0u64, 3.0), (2, 10.0), (5, 20.0), (13, 40.0), (25, 50.0)] {
            assert_rel(poisson_lower_p_value(c, l), direct_cdf(c, l), 1e-12);
        }
        for (c, l) in [(8u64, 3.0), (20, 10.0), (35, 20.0), (70, 40.0)] {
            assert_rel(
                poisson_upper_p_value(c, l),
                1.0 - direct_cdf(c - 1, l),
                1e-9,
            );
        }
        // Known values: P(X = 0 | 60) = e^-60; P(X >= 10 | 2) = 4.649807e-5.
        assert_rel(poisson_lower_p_value(0, 60.0), (-60.0f64).exp(), 1e-14);
        assert_rel(
            poisson_upper_p_value(10, 2.0),
            4.649_807_501_726_388e-5,
            1e-9,
        );
    }

    #[test]
    fn far_tails_keep_relative_accuracy_at_large_means() {
        // Half the expected calls out of a million: about e^-153,000, below f64, so 0.
        assert_eq!(poisson_lower_p_value(500_000, 1e6), 0.0);
        // Five standard deviations either side (reference values from mpmath's gammainc).
        assert_rel(
            poisson_lower_p_value(995_000, 1e6),
            2.814_820_383_896_53e-7,
            1e-8,
        );
        assert_rel(
            poisson_upper_p_value(1_005_000, 1e6),
            2.934_034_048_031_64e-7,
            1e-8,
        );
    }

    #[test]
    fn the_near_side_of_the_mean_is_no_evidence() {
        assert_eq!(poisson_lower_p_value(60, 50.0), 1.0);
        assert_eq!(poisson_upper_p_value(40, 50.0), 1.0);
        assert_eq!(poisson_lower_p_value(0, 0.0), 1.0);
        assert_eq!(poisson_upper_p_value(1, 0.0), 0.0);
    }
}
