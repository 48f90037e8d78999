//! The exact one-sided binomial test: is a window's count of errors (or slow calls) more than
//! its baseline rate explains? `binomial_upper_p_value` is `P(X >= k)` for X ~ Binomial(n, p0),
//! exact at any n, so it stays valid for rare events (a 0.1% baseline) where a normal
//! approximation would overstate the evidence by orders of magnitude.
//!
//! The tail is wanted far out (1e-6 and below, often 1e-20 and beyond) with *relative*
//! accuracy, so it is the regularized incomplete beta function by its continued fraction, with
//! a prefactor from Loader's saddle-point binomial density instead of log-factorial
//! differences (which cancel catastrophically at large n). The density is also what
//! `proportions` builds Fisher's hypergeometric terms from.

use super::{LN_2PI, LN_SQRT_2PI};

/// The Stirling error `ln y! - [(y + 1/2) ln y - y + ln sqrt(2 pi)]` for y >= 10, from the
/// asymptotic series `sum B_2k / (2k (2k-1) y^(2k-1))` with eight terms. At y = 10 the first
/// omitted term is below 2e-18, so the truncation is invisible in f64.
fn stirling_series(y: f64) -> f64 {
    const C: [f64; 8] = [
        1.0 / 12.0,
        -1.0 / 360.0,
        1.0 / 1260.0,
        -1.0 / 1680.0,
        1.0 / 1188.0,
        -691.0 / 360_360.0,
        1.0 / 156.0,
        -3617.0 / 122_400.0,
    ];
    let t = 1.0 / y;
    let t2 = t * t;
    let mut acc = 0.0;
    for &c in C.iter().rev() {
        acc = acc * t2 + c;
    }
    acc * t
}

/// Stirling error `delta(n) = ln n! - [(n + 1/2) ln n - n + ln sqrt(2 pi)]` for integer n >= 1.
///
/// This is the piece of `ln n!` that carries no cancellation, which is what makes Loader's
/// binomial density formula accurate for huge n. Below 10 it comes from the exact factorial
/// (9! = 362880 is exact in f64), so its absolute error is a few ulps of ln 9! ~ 12.8.
pub(super) fn stirling_error(n: u64) -> f64 {
    debug_assert!(n >= 1);
    if n >= 10 {
        return stirling_series(n as f64);
    }
    let nf = n as f64;
    let fact: f64 = (1..=n).map(|i| i as f64).product();
    fact.ln() - (nf + 0.5) * nf.ln() + nf - LN_SQRT_2PI
}

/// Deviance term `bd0(x, m) = x ln(x / m) + m - x >= 0` (Loader 2000), for x >= 0, m > 0.
///
/// When x and m are close the direct formula subtracts nearly equal numbers, so there we
/// sum the series in `v = (x - m) / (x + m)`, whose terms are all of one sign.
pub(super) fn bd0(x: f64, m: f64) -> f64 {
    if x == 0.0 {
        return m;
    }
    if (x - m).abs() < 0.1 * (x + m) {
        let v = (x - m) / (x + m);
        let v2 = v * v;
        let mut s = (x - m) * v;
        let mut ej = 2.0 * x * v;
        for j in 1..1000 {
            ej *= v2;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
        return s;
    }
    x * (x / m).ln() + m - x
}

/// `ln p`, taking whichever of p and q = 1 - p is the accurate one (the smaller one is;
/// the larger was rounded when it was formed as one minus the other).
fn ln_of(p: f64, q: f64) -> f64 {
    if p <= 0.5 { p.ln() } else { (-q).ln_1p() }
}

/// `ln P(X = x)` for X ~ Binomial(n, p), given p and q = 1 - p (both in (0, 1)) and x <= n.
///
/// Loader's saddle-point form
/// `delta(n) - delta(x) - delta(n-x) - bd0(x, np) - bd0(n-x, nq) - ln sqrt(2 pi x (n-x) / n)`.
/// Unlike `ln C(n,x) + x ln p + (n-x) ln q` built from
/// log-factorials, whose terms are ~n ln n and cancel (losing ~1e-7 relative at n = 1e8), every
/// term here is small or of one sign, so the result is relatively accurate to ~1e-14.
pub(super) fn ln_binomial_pmf(x: u64, n: u64, p: f64, q: f64) -> f64 {
    debug_assert!(x <= n);
    let nf = n as f64;
    if x == 0 {
        return nf * ln_of(q, p);
    }
    if x == n {
        return nf * ln_of(p, q);
    }
    let xf = x as f64;
    let yf = (n - x) as f64;
    let lc = stirling_error(n)
        - stirling_error(x)
        - stirling_error(n - x)
        - bd0(xf, nf * p)
        - bd0(yf, nf * q);
    lc - 0.5 * (LN_2PI + xf.ln() + (-xf / nf).ln_1p())
}

/// Continued fraction of the regularized incomplete beta function (the classic expansion,
/// Abramowitz & Stegun 26.5.8):
///
/// `I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * 1 / (1 + d1 / (1 + d2 / (1 + ...)))` with
/// `d(2m+1) = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1))` and `d(2m) = m(b-m) x / ((a+2m-1)(a+2m))`.
///
/// Returns `1 / (1 + d1 / (1 + ...))` and the number of partial terms used. Evaluated
/// forward with the modified Lentz algorithm (no rescaling needed, tiny denominators are
/// nudged off zero). It converges quickly for `x < (a+1)/(a+b+2)`; in the worst case, next
/// to that switch point, it needs O(sqrt(max(a, b))) terms — about 1e4 for n = 1e8.
/// For integer b the fraction terminates exactly at m = b.
fn beta_cf(a: f64, b: f64, x: f64) -> (f64, u32) {
    // 4 ulps: tighter than this the stopping test can be defeated by rounding noise in delta.
    const TOL: f64 = 4.0 * f64::EPSILON;
    const TINY: f64 = 1e-300;
    const MAX_TERMS: u32 = 2_000_000;
    let mut g = 1.0;
    let mut c = 1.0;
    let mut d = 0.0;
    let mut j = 0;
    while j < MAX_TERMS {
        j += 1;
        let m = f64::from(j / 2);
        let dj = if j % 2 == 1 {
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
        } else {
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
        };
        d = 1.0 + dj * d;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        c = 1.0 + dj / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = c * d;
        g *= delta;
        // Only test after an odd (negative) term: the convergents come in pairs, and an
        // even term with b - m == 0 means the fraction has terminated, which the next odd
        // step confirms with delta == 1.
        if j % 2 == 1 && (delta - 1.0).abs() <= TOL {
            break;
        }
    }
    (1.0 / g, j)
}

/// `P(X >= k)` for X ~ Binomial(n, p), with 1 <= k <= n, p in (0, 1), q = 1 - p.
/// Also returns the continued-fraction term count (for tests of the cost bound).
fn binomial_upper(k: u64, n: u64, p: f64, q: f64) -> (f64, u32) {
    debug_assert!(k >= 1 && k <= n);
    // P(X >= k) = I_p(k, n - k + 1).
    let a = k as f64;
    let b = (n - k) as f64 + 1.0;
    if p * (n as f64 + 3.0) < a + 1.0 {
        // p below the switch point (a+1)/(a+b+2): the upper tail is the small side and the
        // fraction converges fast. The prefactor x^a (1-x)^b / (a B(a,b)) equals
        // q * P(X = k), which Loader's formula gives accurately; combine in log space so a
        // prefactor below f64's range can still be rescued by the fraction.
        let (cf, terms) = beta_cf(a, b, p);
        (
            (ln_of(q, p) + ln_binomial_pmf(k, n, p, q) + cf.ln()).exp(),
            terms,
        )
    } else {
        // Otherwise compute the lower tail P(X <= k-1) = I_q(n-k+1, k), whose prefactor is
        // p * P(X = k-1), and complement. The upper tail is then >= ~0.3, so the
        // subtraction loses nothing that matters.
        let (cf, terms) = beta_cf(b, a, q);
        let lower = (ln_of(p, q) + ln_binomial_pmf(k - 1, n, p, q) + cf.ln()).exp();
        ((1.0 - lower).max(0.0), terms)
    }
}

/// Binomial survival function `P(X >= k)` for X ~ Binomial(n, p).
///
/// This is the exact tail used by the one-sided binomial test (see
/// [`binomial_upper_p_value`]). Valid for all n (tested up to 1e8, where it stays fast and
/// accurate) and all k; relative accuracy is ~1e-13 or better, including far tails down to
/// f64's underflow (~1e-308), below which it returns 0 or a subnormal.
///
/// Method: `P(X >= k) = I_p(k, n - k + 1)`, the regularized incomplete beta function,
/// evaluated by its continued fraction on whichever side converges fast. The prefactor is
/// `(1 - p) * P(X = k)` and is computed with Loader's saddle-point binomial density in log
/// space (not from log-factorial differences, which cancel catastrophically at large n).
///
/// Edge cases: `k == 0` gives 1; `k > n` gives 0; `p <= 0` gives 0 (k >= 1); `p >= 1`
/// gives 1; NaN p gives NaN.
fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    binomial_upper(k, n, p, 1.0 - p).0
}

/// One-sided exact binomial test p-value for "the true rate exceeds `p0`", having observed
/// `k` events in `n` trials: `P(X >= k)` under X ~ Binomial(n, p0), i.e.
/// [`binomial_sf`]`(k, n, p0)`.
///
/// Use it to compare a window's error (or slow-call) count against a learned baseline rate
/// `p0`. It is exact for independent trials at any n (no normal approximation, so it stays
/// valid for rare events such as a 0.1% baseline); being discrete it is conservative: the
/// false-alarm rate is at most the nominal level. It does not account for uncertainty in
/// `p0` itself — when the baseline was estimated from a sample of similar size, use
/// [`two_proportion_p_value`](super::two_proportion_p_value) instead.
pub fn binomial_upper_p_value(k: u64, n: u64, p0: f64) -> f64 {
    binomial_sf(k, n, p0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stats::test_util::{assert_abs, assert_rel};

    #[test]
    fn stirling_error_matches_exact_factorials() {
        // Up to 22! factorials are exact in f64; across the switch to the series at 10 both
        // forms must agree to the rounding of ln n! (~40 at most here).
        let mut fact = 1.0f64;
        for n in 1..=22u64 {
            fact *= n as f64;
            let nf = n as f64;
            let want = fact.ln() - (nf + 0.5) * nf.ln() + nf - LN_SQRT_2PI;
            assert_abs(stirling_error(n), want, 1e-14 * fact.ln().max(1.0));
        }
        // delta(n) ~ 1/(12 n) for large n.
        assert_rel(stirling_error(1_000_000_000), 1.0 / 12e9, 1e-9);
    }

    #[test]
    fn binomial_sf_small_exact_values() {
        assert_rel(binomial_sf(5, 10, 0.5), 0.623046875, 1e-15);
        assert_rel(binomial_sf(10, 10, 0.5), 1.0 / 1024.0, 1e-15);
        assert_rel(binomial_sf(1, 10, 0.5), 1023.0 / 1024.0, 1e-15);
        assert_rel(binomial_sf(1, 1, 0.3), 0.3, 1e-15);
    }

    #[test]
    fn binomial_sf_matches_exact_rational_sums() {
        // (k, n, p, P(X >= k)) with the sum evaluated in exact rational arithmetic (Python
        // fractions, p taken as the exact binary value of the f64).
        for &(k, n, p, want) in REF_BINOMIAL_SF {
            assert_rel(binomial_sf(k, n, p), want, 1e-12);
        }
    }

    #[test]
    fn binomial_sf_far_tail() {
        // 60 errors in 1000 calls against a 1% baseline.
        assert_rel(binomial_sf(60, 1000, 0.01), REF_SF_60_1000, 1e-12);
        // (About 1.84e-27 — exact rational sum; not the 3.2e-23 sometimes quoted.)
        assert!((1.8e-27..1.9e-27).contains(&binomial_sf(60, 1000, 0.01)));
        // Deep tails, still relatively accurate above the underflow threshold.
        for &(k, n, p, want) in REF_BINOMIAL_DEEP {
            assert_rel(binomial_sf(k, n, p), want, 1e-11);
        }
    }

    #[test]
    fn binomial_sf_large_n_is_accurate_and_fast() {
        for &(k, n, p, want) in REF_BINOMIAL_LARGE {
            let (got, terms) = binomial_upper(k, n, p, 1.0 - p);
            assert_rel(got, want, 1e-10);
            assert_rel(binomial_sf(k, n, p), want, 1e-10);
            // O(sqrt(n)) worst case; 1e8 trials stays in the tens of thousands of terms.
            assert!(
                terms < 10_000,
                "{terms} continued-fraction terms for n={n}, k={k}"
            );
        }
    }

    #[test]
    fn binomial_sf_edge_cases() {
        assert_eq!(binomial_sf(0, 10, 0.3), 1.0);
        assert_eq!(binomial_sf(0, 0, 0.3), 1.0);
        assert_eq!(binomial_sf(11, 10, 0.3), 0.0);
        assert_eq!(binomial_sf(1, 0, 0.3), 0.0);
        assert_eq!(binomial_sf(0, 10, 0.0), 1.0);
        assert_eq!(binomial_sf(1, 10, 0.0), 0.0);
        assert_eq!(binomial_sf(1, 10, -0.5), 0.0);
        assert_eq!(binomial_sf(10, 10, 1.0), 1.0);
        assert_eq!(binomial_sf(3, 10, 1.5), 1.0);
        assert_eq!(binomial_sf(11, 10, 1.0), 0.0);
        assert!(binomial_sf(3, 10, f64::NAN).is_nan());
        // k == n is p^n.
        assert_rel(binomial_sf(20, 20, 0.3), 0.3f64.powi(20), 1e-14);
        // Tiny p: P(X >= 1) = 1 - (1-p)^n ~ n p.
        assert_rel(
            binomial_sf(1, 1000, 1e-15),
            -(1000.0 * (-1e-15f64).ln_1p()).exp_m1(),
            1e-12,
        );
        // Far below f64 range: underflows to (nearly) zero, never NaN.
        let tiny = binomial_sf(1000, 1000, 1e-3);
        assert!(tiny == 0.0, "{tiny:e}");
    }

    #[test]
    fn binomial_sf_complement_symmetry() {
        // P(X >= k) + P(n - X >= n - k + 1) = 1, with n - X ~ Binomial(n, 1 - p).
        for &(n, p) in &[(10u64, 0.5), (37, 0.21875), (200, 0.75), (5000, 0.125)] {
            for k in 1..=n {
                let s = binomial_sf(k, n, p) + binomial_sf(n - k + 1, n, 1.0 - p);
                assert_abs(s, 1.0, 1e-13);
            }
        }
    }

    #[test]
    fn binomial_sf_pmf_differences_and_monotonicity() {
        // sf(k) - sf(k+1) = pmf(k), checked against the textbook product for moderate n:
        // C(n, k) p^k q^(n-k), each factor within a few dozen roundings of exact.
        let (n, p) = (60u64, 0.1f64);
        let mut prev = 1.0;
        for k in 0..=n {
            let sf = binomial_sf(k, n, p);
            assert!(sf <= prev, "not decreasing in k at {k}");
            prev = sf;
            let choose: f64 = (1..=k).map(|i| (n - k + i) as f64 / i as f64).product();
            let pmf = choose * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32);
            let diff = sf - binomial_sf(k + 1, n, p);
            assert_abs(diff, pmf, 1e-13 * pmf.max(1e-3) + 1e-300);
        }
        // Increasing in p.
        let mut prev = 0.0;
        for i in 1..100 {
            let sf = binomial_sf(12, 100, f64::from(i) / 100.0);
            assert!(sf >= prev);
            prev = sf;
        }
    }

    #[test]
    fn binomial_upper_p_value_is_the_tail() {
        assert_eq!(
            binomial_upper_p_value(60, 1000, 0.01),
            binomial_sf(60, 1000, 0.01)
        );
        // A 0.1% baseline and 3 errors in 100 calls is surprising; 1 in 100 is not.
        assert!(binomial_upper_p_value(3, 100, 0.001) < 2e-4);
        assert!(binomial_upper_p_value(1, 100, 0.001) > 0.09);
    }

    // ---- reference tables (generated by python3 + mpmath / fractions) -----------------------
    const REF_BINOMIAL_SF: &[(u64, u64, f64, f64)] = &[
        (5, 10, 0.5, 0.623046875),
        (3, 20, 0.1, 0.323073194810534),
        (7, 20, 0.1, 0.0023860894089661176),
        (15, 20, 0.9, 0.988746865835491),
        (1, 50, 0.02, 0.635830319912883),
        (10, 50, 0.02, 5.060691486630969e-8),
        (25, 100, 0.3, 0.8864298182958184),
        (40, 100, 0.3, 0.020988576003924668),
        (31, 100, 0.3, 0.4508763992312095),
        (2, 1_000, 0.001, 0.2642410869698127),
        (5, 1_000, 0.001, 0.0036368780295217905),
        (120, 1_000, 0.1, 0.02199614496579438),
        (90, 1_000, 0.1, 0.8665962282358927),
        (500, 1_000, 0.5, 0.5126125090891804),
        (530, 1_000, 0.5, 0.03101159754918159),
        (400, 1_000, 0.5, 0.9999999999099158),
        (999, 1_000, 0.999, 0.735758913030187),
        (990, 1_000, 0.999, 0.9999999904000448),
        (12, 37, 0.21875, 0.09156300632890302),
        (100, 10_000, 0.005, 2.822226023895264e-10),
        (70, 10_000, 0.005, 0.004244362354694168),
        (3, 7, 0.9, 0.9998235),
        (1, 3, 1.0e-9, 2.9999999970000004e-9),
        (2, 100_000, 1.0e-6, 0.004678799442706631),
    ];
    const REF_SF_60_1000: f64 = 1.843827984012203e-27;
    const REF_BINOMIAL_DEEP: &[(u64, u64, f64, f64)] = &[
        (200, 1_000, 0.01, 2.221482673839392e-188),
        (270, 1_000, 0.01, 3.8475659959312897e-292),
        (90, 100, 0.001, 1.7139868616858052e-257),
        (40, 100, 0.001, 1.2964317210373215e-92),
        (300, 1_000_000, 0.0001, 1.782793253435843e-58),
        (500, 1_000_000, 0.0001, 3.516386353919787e-178),
        (1_500, 100_000, 0.01, 8.876926940071157e-50),
        (300, 1_000, 0.1, 6.823349107844987e-69),
    ];
    const REF_BINOMIAL_LARGE: &[(u64, u64, f64, f64)] = &[
        (1_000_500, 100_000_000, 0.01, 0.3077848147297434),
        (1_001_000, 100_000_000, 0.01, 0.15756068305974258),
        (1_005_000, 100_000_000, 0.01, 2.573979051276872e-7),
        (999_000, 100_000_000, 0.01, 0.8426820799516562),
        (990_000, 100_000_000, 0.01, 1.0),
        (50_000_000, 100_000_000, 0.5, 0.5000398942279404),
        (50_010_000, 100_000_000, 0.5, 0.022755531314807856),
        (49_999_000, 100_000_000, 0.5, 0.579298813254801),
        (1_000, 100_000_000, 1.0e-5, 0.5042053072536411),
        (1_100, 100_000_000, 1.0e-5, 0.0009625786849893391),
        (1_300, 100_000_000, 1.0e-5, 6.883964988372292e-20),
        (10_009_000, 100_000_000, 0.1, 0.0013522134040086194),
        (100_100, 10_000_000, 0.01, 0.3757360461365501),
    ];
}
