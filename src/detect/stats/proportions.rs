//! Two proportions: is group 1's rate (this window, this instance) above group 2's (the
//! baseline window, the peers)? Unlike the binomial test, both rates are estimated, so the
//! uncertainty of the reference counts too.
//!
//! Small tables get Fisher's exact test, large ones the pooled z test. The split is about the
//! far tail: with a rare reference rate the z test reports ~1e-10 where the exact answer is
//! ~1e-7, a thousandfold false-alarm factor at the levels detectors decide at, while where the
//! hypergeometric variance is large the normal tail is close and the exact sum would be long.
//! Fisher's terms come from Loader's binomial density (`binomial`), the z test's tail from
//! `normal`.

use super::binomial::ln_binomial_pmf;
use super::normal::normal_sf;

/// Largest hypergeometric variance for which [`two_proportion_p_value`] sums Fisher's exact
/// tail instead of using the z approximation. The summation touches at most a few times
/// ten standard deviations of terms (here <~ 1000, a few microseconds). Above it the
/// skewness of the count is at most 1/sd = 0.01, so the normal tail is within ~25% of the
/// exact one out to z ~ 5 (p ~ 3e-7), which is well below what moves a decision.
const FISHER_MAX_VARIANCE: f64 = 1e4;

/// Pooled two-proportion z statistic for H1: rate1 > rate2, with rate_i = k_i / n_i:
/// `z = (k1/n1 - k2/n2) / sqrt(pooled (1 - pooled) (1/n1 + 1/n2))`,
/// `pooled = (k1 + k2) / (n1 + n2)`.
///
/// Positive when group 1's rate is higher. Returns 0.0 when undefined: an empty group, a
/// count above its total, or pooled rate 0 or 1 (no variation). The numerator is formed
/// exactly in integers, `(k1 n2 - k2 n1) / (n1 n2)`, so nearly equal rates do not cancel.
/// The statistic is approximately standard normal under H0 only when every expected cell
/// count is large; [`two_proportion_p_value`] handles the small-count case.
fn two_proportion_z(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || k1 > n1 || k2 > n2 {
        return 0.0;
    }
    // u128 / f64 so that nothing overflows for any u64 input.
    let m = u128::from(k1) + u128::from(k2);
    let total = u128::from(n1) + u128::from(n2);
    if m == 0 || m == total {
        return 0.0;
    }
    // Each product is below 2^128; take the difference by magnitude to stay in u128.
    let (a, b) = (
        u128::from(k1) * u128::from(n2),
        u128::from(k2) * u128::from(n1),
    );
    let diff = if a >= b {
        (a - b) as f64
    } else {
        -((b - a) as f64)
    };
    // se * n1 * n2 = sqrt(n1 n2 m (N - m) / N).
    let scale = (n1 as f64) * (n2 as f64) * (m as f64) * ((total - m) as f64) / (total as f64);
    diff / scale.sqrt()
}

/// One-sided p-value for H1: rate1 > rate2 (k1 events in n1 trials vs k2 in n2), e.g. "this
/// host's error rate exceeds its peers'" or "this window's rate exceeds the baseline
/// window's". Returns 1.0 (no evidence) for invalid input (an empty group or k > n).
///
/// Two regimes, chosen by the variance `n1 n2 m (N-m) / (N^2 (N-1))` of group 1's count
/// given the total m = k1 + k2 of events among N = n1 + n2 trials:
///
/// * small (<= 1e4, which includes every table with an expected cell count below 10):
///   **Fisher's exact test**, i.e. the hypergeometric tail `P(X1 >= k1 | m)`, summed
///   exactly. The pooled z-test is badly anti-conservative there: with a rare baseline
///   (expected 10 events, observed 30) it reports ~1e-10 where the exact answer is ~1e-7,
///   a false-alarm factor of 1000 at the thresholds a detector uses. The conditional
///   binomial test `Binomial(m, n1/N)` approximates Fisher only when events are a small
///   fraction of the trials (and is needlessly conservative otherwise, e.g. for a small
///   group at a high rate); since the exact tail is cheap whenever the variance is small
///   — the terms fall off within a few standard deviations — it is used directly.
///   Like every exact discrete test it is conservative (actual false-alarm rate <= level).
/// * large: `normal_sf(two_proportion_z(..))`. Here the count's skewness is at most
///   1/sd <= 0.01 and the normal tail is accurate to tens of percent even at p ~ 1e-7.
pub fn two_proportion_p_value(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || k1 > n1 || k2 > n2 {
        return 1.0;
    }
    let (nf1, nf2) = (n1 as f64, n2 as f64);
    let (mf, total) = (k1 as f64 + k2 as f64, nf1 + nf2);
    let variance = nf1 * nf2 * mf * (total - mf) / (total * total * (total - 1.0).max(1.0));
    // (The checked add only fails for absurd totals above 2^64, which go to the z-test.)
    if variance <= FISHER_MAX_VARIANCE && n1.checked_add(n2).is_some() {
        fisher_upper(k1, n1, k2, n2)
    } else {
        normal_sf(two_proportion_z(k1, n1, k2, n2))
    }
}

/// Whether group 1's rate is at most group 2's (`k1 / n1 <= k2 / n2`, in integers). The
/// one-sided [`two_proportion_p_value`] of such a pair is at least one half: with the z test
/// the statistic is not positive; with Fisher's test the count is hypergeometric, a sum of
/// independent Bernoulli trials, whose median is at least the floor of its mean (Jogdeo and
/// Samuels, 1968), and `k1` is at most that floor. A caller that only asks whether the
/// p-value is below a level under one half (with Holm's procedure: which pairs it rejects)
/// can skip computing it.
pub fn rate_not_above(k1: u64, n1: u64, k2: u64, n2: u64) -> bool {
    u128::from(k1) * u128::from(n2) <= u128::from(k2) * u128::from(n1)
}

/// Most events [`few_events_p_value_above`] answers for.
const FEW_EVENTS: u64 = 8;

/// Whether [`two_proportion_p_value`] of a group with a few events (`1 <= k1 <= 8`) is surely
/// above `level` (under one quarter), without computing it: false when unsure. The p-value is
/// `P(X1 >= k1) = 1 - P(X1 < k1)` (a rate above the rest's with so few events means a mean,
/// and so a variance, under `k1`: Fisher's test), where `P(X1 = 0)`, a product of `m` factors
/// `(n2 - i) / (N - i)`, is at most `(n2 / N)^m`, and each next term is the previous times
/// `(n1 - x)(m - x) / ((x + 1)(n2 - m + x + 1))`. The margin of twice the level covers the
/// rounding of both computations many times over. A peer with one or two slow or failed calls
/// in its minute (the most common standing-out peer, most seconds) is then known to be
/// unremarkable for a few instructions.
pub fn few_events_p_value_above(k1: u64, n1: u64, k2: u64, n2: u64, level: f64) -> bool {
    let m = k1 + k2;
    if !(1..=FEW_EVENTS).contains(&k1)
        || k1 > n1
        || k2 > n2
        || m > n2
        || level.is_nan()
        || level >= 0.25
    {
        return false;
    }
    let (nf1, nf2, mf) = (n1 as f64, n2 as f64, m as f64);
    let none_at_most = (nf2 / (nf1 + nf2)).powi(m.min(i32::MAX as u64) as i32);
    // P(X1 < k1) / P(X1 = 0), term by term.
    let (mut term, mut below) = (1.0, 1.0);
    for x in 0..k1 - 1 {
        let x = x as f64;
        term *= (nf1 - x) * (mf - x) / ((x + 1.0) * (nf2 - mf + x + 1.0));
        below += term;
    }
    1.0 - none_at_most * below > 2.0 * level
}

/// `ln P(X1 = x)` for the hypergeometric count of events in group 1 (n1 trials) given m
/// events among n1 + n2 trials, for x within the support and 0 < m < n1 + n2.
///
/// Uses the identity `hyper(x) = b(x; n1, r) b(m - x; n2, r) / b(m; N, r)` with binomial
/// densities b at any rate r; with r = m / N every factor is near its mode and each is
/// relatively accurate by Loader's formula, unlike a difference of six log-factorials.
fn ln_hypergeometric_pmf(x: u64, n1: u64, n2: u64, m: u64) -> f64 {
    let total = n1 + n2;
    let r = m as f64 / total as f64;
    let s = (total - m) as f64 / total as f64;
    ln_binomial_pmf(x, n1, r, s) + ln_binomial_pmf(m - x, n2, r, s)
        - ln_binomial_pmf(m, total, r, s)
}

/// Fisher's exact one-sided p-value `P(X1 >= k1)` given the margins. Requires n1, n2 > 0,
/// k1 <= n1, k2 <= n2 and a small hypergeometric variance (the sum runs over O(sd) terms).
fn fisher_upper(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    // Terms are summed from the observed value away from the mode, so they decrease
    // (the pmf is unimodal) and the sum can stop when they stop contributing.
    const NEGLIGIBLE: f64 = 1e-17;
    let m = k1 + k2;
    let lo = m.saturating_sub(n2);
    let hi = n1.min(m);
    if k1 <= lo {
        return 1.0; // also covers m == 0 and m == n1 + n2
    }
    let total = n1 + n2;
    let (nf1, nf2, mf) = (n1 as f64, n2 as f64, m as f64);
    let mode = (u128::from(n1) + 1) * (u128::from(m) + 1) / (u128::from(total) + 2);
    if u128::from(k1) > mode {
        // Upper tail directly: P(X1 >= k1) = sum_{x >= k1} pmf(x).
        let mut term = ln_hypergeometric_pmf(k1, n1, n2, m).exp();
        let mut sum = term;
        let mut x = k1;
        while x < hi && term > NEGLIGIBLE * sum {
            let xf = x as f64;
            term *= (nf1 - xf) * (mf - xf) / ((xf + 1.0) * (nf2 - mf + xf + 1.0));
            sum += term;
            x += 1;
        }
        sum.min(1.0)
    } else {
        // k1 at or below the mode: the upper tail is large; sum the lower tail
        // P(X1 <= k1 - 1) downwards and complement.
        let mut x = k1 - 1;
        let mut term = ln_hypergeometric_pmf(x, n1, n2, m).exp();
        let mut sum = term;
        while x > lo && term > NEGLIGIBLE * sum {
            let xf = x as f64;
            term *= xf * (nf2 - mf + xf) / ((nf1 - xf + 1.0) * (mf - xf + 1.0));
            sum += term;
            x -= 1;
        }
        (1.0 - sum).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stats::test_util::assert_rel;
    use proptest::prelude::*;

    proptest! {
        /// The shortcut never claims a p-value above a level that the test itself puts at or
        /// below it; and it does claim it for the usual quiet peer.
        #[test]
        fn few_events_shortcut_never_hides_a_p_value_at_or_below_the_level(
            k1 in 1u64..10,
            n1 in prop_oneof![1u64..10, 1u64..5_000],
            n2 in 1u64..200_000,
            // Few events among the rest (where the p-value gets small), or any share.
            k2 in prop_oneof![0u64..4, 4u64..200_000],
            level in prop_oneof![Just(1e-6), Just(1e-3), Just(0.05), 1e-12f64..0.3],
        ) {
            let k2 = k2.min(n2);
            if few_events_p_value_above(k1, n1, k2, n2, level) {
                let p = two_proportion_p_value(k1, n1, k2, n2);
                prop_assert!(p > level, "p {} level {}", p, level);
            }
        }
    }

    #[test]
    fn few_events_shortcut_answers_for_a_quiet_peer_only() {
        // 1 slow call in 40 against 30 in 1,200: p is about 0.6.
        assert!(few_events_p_value_above(1, 40, 30, 1_200, 1e-6));
        assert!(two_proportion_p_value(1, 40, 30, 1_200) > 0.5);
        assert!(few_events_p_value_above(3, 40, 30, 1_200, 1e-6));
        // Not for more events, nor for levels at which it could matter.
        assert!(!few_events_p_value_above(9, 40, 30, 1_200, 1e-6));
        assert!(!few_events_p_value_above(1, 40, 30, 1_200, 0.3));
        // 1 in 2 against none in 100,000: p about 2e-5, not above 1e-3.
        assert!(!few_events_p_value_above(1, 2, 0, 100_000, 1e-3));
        assert!(two_proportion_p_value(1, 2, 0, 100_000) < 1e-3);
    }

    #[test]
    fn two_proportion_z_known_values() {
        // 30/1000 vs 10/1000: pooled 0.02, se = sqrt(0.02 * 0.98 * 0.002).
        let want = 0.02 / (0.02f64 * 0.98 * 0.002).sqrt();
        assert_rel(two_proportion_z(30, 1000, 10, 1000), want, 1e-14);
        // Antisymmetric.
        assert_eq!(
            two_proportion_z(10, 1000, 30, 1000),
            -two_proportion_z(30, 1000, 10, 1000)
        );
        assert_eq!(two_proportion_z(5, 100, 50, 1000), 0.0);
        // Undefined cases.
        assert_eq!(two_proportion_z(0, 10, 0, 10), 0.0);
        assert_eq!(two_proportion_z(10, 10, 20, 20), 0.0);
        assert_eq!(two_proportion_z(1, 0, 1, 10), 0.0);
        assert_eq!(two_proportion_z(11, 10, 1, 10), 0.0);
        // Huge counts do not overflow.
        assert!(two_proportion_z(u64::MAX / 2, u64::MAX, 1, u64::MAX).is_finite());
    }

    #[test]
    fn two_proportion_p_value_small_counts_is_fisher_exact() {
        // (k1, n1, k2, n2, P(X1 >= k1)) from exact hypergeometric sums (Python fractions).
        for &(k1, n1, k2, n2, want) in REF_FISHER {
            assert_rel(two_proportion_p_value(k1, n1, k2, n2), want, 1e-12);
        }
    }

    #[test]
    fn two_proportion_p_value_large_counts_is_z_test() {
        let (k1, n1, k2, n2) = (30_600, 1_000_000, 300_000, 10_000_000);
        assert_eq!(
            two_proportion_p_value(k1, n1, k2, n2),
            normal_sf(two_proportion_z(k1, n1, k2, n2))
        );
        // Close to the exact value in the large regime.
        assert_rel(
            two_proportion_p_value(k1, n1, k2, n2),
            REF_FISHER_LARGE,
            0.05,
        );
    }

    #[test]
    fn two_proportion_p_value_rare_events_do_not_overstate_evidence() {
        // Rare baseline: expected ~10 events in group 1, observed 30. The pooled z-test
        // claims ~1e-10; the exact test says ~1e-7.
        let z_p = normal_sf(two_proportion_z(30, 1000, 10_000, 1_000_000));
        let p = two_proportion_p_value(30, 1000, 10_000, 1_000_000);
        assert!(z_p < 1e-9, "{z_p:e}");
        assert!(p > 1e-8 && p < 1e-6, "{p:e}");
    }

    #[test]
    fn two_proportion_p_value_edges_and_monotonicity() {
        assert_eq!(two_proportion_p_value(0, 0, 1, 10), 1.0);
        assert_eq!(two_proportion_p_value(1, 10, 0, 0), 1.0);
        assert_eq!(two_proportion_p_value(11, 10, 0, 10), 1.0);
        assert_eq!(two_proportion_p_value(0, 10, 0, 10), 1.0);
        assert_eq!(two_proportion_p_value(10, 10, 10, 10), 1.0);
        assert_eq!(two_proportion_p_value(0, 10, 5, 10), 1.0);
        // All events in group 1.
        let p = two_proportion_p_value(5, 10, 0, 10);
        assert_rel(p, 252.0 / 15504.0, 1e-14); // C(10,5) / C(20,5)
        // Increasing k1 strengthens evidence, across the Fisher / z switch.
        for &(n1, n2, k2) in &[
            (50u64, 50u64, 5u64),
            (1000, 100_000, 1000),
            (40_000, 40_000, 20_000),
        ] {
            let mut prev = 1.0;
            for k1 in (0..=n1).step_by(7) {
                let p = two_proportion_p_value(k1, n1, k2, n2);
                assert!((0.0..=1.0).contains(&p));
                assert!(
                    p <= prev * (1.0 + 1e-12),
                    "not monotone at k1={k1}: {p} > {prev}"
                );
                prev = p;
            }
        }
        // Swapping groups: p(1 > 2) and p(2 > 1) together cover everything.
        let a = two_proportion_p_value(7, 40, 3, 60);
        let b = two_proportion_p_value(3, 60, 7, 40);
        assert!(a < 0.05 && b > 0.95 && a + b >= 1.0);
    }

    #[test]
    fn fisher_agrees_with_z_test_where_both_apply() {
        // Just below the switch both should give similar answers.
        let exact = fisher_upper(1100, 20_000, 1000, 20_000);
        let z = normal_sf(two_proportion_z(1100, 20_000, 1000, 20_000));
        assert_rel(exact, z, 0.1);
    }

    proptest::proptest! {
        /// What lets callers skip a p-value: a rate not above the other's never gets one
        /// below one half (a little margin for rounding).
        #[test]
        fn a_rate_not_above_the_other_s_has_a_p_value_of_at_least_one_half(
            n1 in 1u64..3_000,
            n2 in 1u64..300_000,
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let (k1, k2) = ((a * n1 as f64) as u64, (b * n2 as f64) as u64);
            if rate_not_above(k1, n1, k2, n2) {
                let p = two_proportion_p_value(k1, n1, k2, n2);
                proptest::prop_assert!(p >= 0.5 - 1e-9, "{} {} {} {}: {}", k1, n1, k2, n2, p);
            }
        }
    }

    #[test]
    fn rates_not_above_at_the_edges() {
        assert!(rate_not_above(0, 10, 0, 10));
        assert!(rate_not_above(1, 10, 1, 10));
        assert!(!rate_not_above(2, 10, 1, 10));
        assert!(rate_not_above(u64::MAX, u64::MAX, u64::MAX, u64::MAX));
        // Exactly equal rates are "not above": the z statistic is 0, Fisher's tail >= 1/2.
        assert!(two_proportion_p_value(3, 30, 10, 100) >= 0.5);
    }

    // ---- reference tables (generated by python3 + fractions) --------------------------------
    const REF_FISHER: &[(u64, u64, u64, u64, f64)] = &[
        (8, 10, 2, 10, 0.011507068782610578),
        (5, 10, 0, 10, 0.016253869969040248),
        (7, 40, 3, 60, 0.045715988554068804),
        (3, 1_000, 1, 1_000, 0.31231226529639383),
        (12, 1_000, 2, 5_000, 2.8430460911791083e-8),
        (30, 1_000, 10_000, 1_000_000, 2.1050465460093367e-7),
        (15, 1_000, 10_000, 1_000_000, 0.08256747934345111),
        (1, 20, 30_000_000, 100_000_000, 0.9992020768468713),
        (15, 20, 30_000_000, 100_000_000, 4.294011262385331e-5),
        (2, 20, 30_000_000, 100_000_000, 0.9923627371627539),
        (1_100, 20_000, 1_000, 20_000, 0.013219145540912903),
        (600, 5_000, 9_000, 100_000, 2.932686118791745e-12),
        (20_400, 40_000, 20_000, 40_000, 0.002389850718912464),
        (1, 1, 0, 1, 0.5),
        (4, 5, 1, 5, 0.10317460317460317),
    ];
    const REF_FISHER_LARGE: f64 = 0.0004195160896324137;
}
