//! Pure statistics for gray-failure detection: exact and approximate tail probabilities,
//! multiple-testing control, confidence intervals, sample-size planning and baseline
//! smoothing.
//!
//! Everything here is I/O-free, allocation-light, deterministic and std-only, so detectors
//! can call it on every evaluation tick and tests can pin exact values.
//!
//! Gray failures live in the far tails: "60 errors in 1000 calls against a 1% baseline" has
//! a p-value near 1e-23, and a detector that runs thousands of tests per minute needs
//! family-wise thresholds around 1e-6..1e-9. So the tail functions below are built to keep
//! *relative* accuracy far out in the tail (not just absolute accuracy near 0.5), and the
//! large-sample approximations are only used where their tail error is small.
//!
//! Conventions: counts are `u64`; "invalid" inputs (a count above its total, an empty
//! group, ...) yield the value meaning "no evidence" (p-value 1, z 0) rather than panicking,
//! because they come from live traffic, not from the programmer.

use std::f64::consts::LN_2;

/// `ln(sqrt(2*pi))`.
const LN_SQRT_2PI: f64 = 0.9189385332046728;
/// `1 / sqrt(2*pi)`.
const FRAC_1_SQRT_2PI: f64 = 0.3989422804014327;
/// `ln(2*pi)`.
const LN_2PI: f64 = 1.8378770664093456;
/// Euler-Mascheroni constant.
const EULER_GAMMA: f64 = 0.5772156649015329;

// ---------------------------------------------------------------------------------------------
// Gamma function
// ---------------------------------------------------------------------------------------------

/// Taylor coefficients of `ln Gamma(1 + e)` beyond the linear term: `(-1)^k zeta(k) / k` for
/// k = 2..=26 (computed with mpmath at 40 digits). 25 terms make the truncation error below
/// 1e-17 relative for |e| <= 0.2, where the series is used.
const LN_GAMMA_1P_COEFFS: [f64; 25] = [
    0.8224670334241132,
    -0.40068563438653143,
    0.27058080842778454,
    -0.20738555102867398,
    0.1695571769974082,
    -0.1440498967688461,
    0.12550966952474304,
    -0.11133426586956469,
    0.1000994575127818,
    -0.09095401714582904,
    0.083353840546109,
    -0.0769325164113522,
    0.07143294629536133,
    -0.06666870588242046,
    0.06250095514121304,
    -0.058823978658684585,
    0.055555767627403614,
    -0.05263167937961666,
    0.05000004769810169,
    -0.047619070330142226,
    0.04545455629320467,
    -0.04347826605304026,
    0.04166666915034121,
    -0.04000000119214014,
    0.03846153903467518,
];

/// `ln Gamma(1 + e)` for |e| <= 0.2 by its Taylor series around 1.
///
/// Why a series here: ln Gamma has zeros at 1 and 2, so any formula that computes it as a
/// difference of O(1) quantities (Lanczos, Stirling) loses all *relative* accuracy there.
/// The series is `e * (-gamma + e * (c2 + e * (c3 + ...)))`, which is relatively accurate.
fn ln_gamma_1p_small(e: f64) -> f64 {
    let mut acc = 0.0;
    for &c in LN_GAMMA_1P_COEFFS.iter().rev() {
        acc = acc * e + c;
    }
    e * (acc * e - EULER_GAMMA)
}

/// The Stirling correction `ln Gamma(y) - [(y - 1/2) ln y - y + ln sqrt(2 pi)]` for y >= 10,
/// from the asymptotic series `sum B_2k / (2k (2k-1) y^(2k-1))` with eight terms. At y = 10
/// the first omitted term is below 2e-18, so the truncation is invisible in f64. The same
/// quantity is the "Stirling error" `ln n! - [(n + 1/2) ln n - n + ln sqrt(2 pi)]` at n = y.
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

/// Natural log of the gamma function, `ln Gamma(x)`, for x > 0.
///
/// Valid for every x > 0 with relative error around 1e-14 or better (including next to the
/// zeros at x = 1 and x = 2, where a Taylor series is used) and full relative accuracy for
/// large x. Returns `+inf` at 0 and at `+inf`, and NaN for x < 0 or NaN (the reflection
/// formula for negative x is not needed by any test here).
///
/// Method: Taylor series around 1 and 2 within 0.2 of them; `ln Gamma(x) = ln Gamma(x + 1) -
/// ln x` below 0.5 (no cancellation: `-ln x` dominates there); the Stirling series for
/// x >= 10; and for the rest, the Stirling series at `x + s >= 10` shifted back down by the
/// log of a single product `x (x+1) ... (x+s-1)` (one rounding per factor, one log).
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x == f64::INFINITY {
        return f64::INFINITY;
    }
    // x - 1 and x - 2 are exact in these windows (Sterbenz), so the series sees the true offset.
    if (x - 1.0).abs() <= 0.2 {
        return ln_gamma_1p_small(x - 1.0);
    }
    if (x - 2.0).abs() <= 0.2 {
        // ln Gamma(2 + e) = ln(1 + e) + ln Gamma(1 + e); the two terms have opposite signs but
        // their sum is ~0.42 e, so at most ~1 bit of cancellation.
        let e = x - 2.0;
        return e.ln_1p() + ln_gamma_1p_small(e);
    }
    if x < 0.5 {
        return ln_gamma(x + 1.0) - x.ln();
    }
    if x >= 10.0 {
        return (x - 0.5) * x.ln() - x + LN_SQRT_2PI + stirling_series(x);
    }
    let mut y = x;
    let mut prod = 1.0;
    while y < 10.0 {
        prod *= y;
        y += 1.0;
    }
    (y - 0.5) * y.ln() - y + LN_SQRT_2PI + stirling_series(y) - prod.ln()
}

/// Stirling error `delta(n) = ln n! - [(n + 1/2) ln n - n + ln sqrt(2 pi)]` for integer n >= 1.
///
/// This is the piece of `ln n!` that carries no cancellation, which is what makes Loader's
/// binomial density formula accurate for huge n. Below 10 it comes from the exact factorial
/// (9! = 362880 is exact in f64), so its absolute error is a few ulps of ln 9! ~ 12.8.
fn stirling_error(n: u64) -> f64 {
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
fn bd0(x: f64, m: f64) -> f64 {
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
/// ln_gamma, whose terms are ~n ln n and cancel (losing ~1e-7 relative at n = 1e8), every
/// term here is small or of one sign, so the result is relatively accurate to ~1e-14.
fn ln_binomial_pmf(x: u64, n: u64, p: f64, q: f64) -> f64 {
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

// ---------------------------------------------------------------------------------------------
// Binomial tail
// ---------------------------------------------------------------------------------------------

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
/// space (not from `ln_gamma` differences, which cancel catastrophically at large n).
///
/// Edge cases: `k == 0` gives 1; `k > n` gives 0; `p <= 0` gives 0 (k >= 1); `p >= 1`
/// gives 1; NaN p gives NaN.
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
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
/// [`two_proportion_p_value`] instead.
pub fn binomial_upper_p_value(k: u64, n: u64, p0: f64) -> f64 {
    binomial_sf(k, n, p0)
}

// ---------------------------------------------------------------------------------------------
// Normal distribution
// ---------------------------------------------------------------------------------------------

/// Above this the Mills-ratio continued fraction is used; below, the Taylor series of
/// `Phi(z) - 1/2`. At 2.5 the fraction needs ~70 terms and the series' final subtraction
/// `1/2 - (Phi - 1/2)` loses at most a factor 0.5 / 0.0062 ~ 80 of relative precision
/// (~1e-14), so both sides are comfortably inside 1e-12.
const NORMAL_SERIES_MAX: f64 = 2.5;

/// Beyond this the upper tail is below the smallest subnormal f64 (~4.9e-324).
const NORMAL_SF_ZERO: f64 = 38.5;

/// `exp(-z^2 / 2)` without the rounding error of forming z^2.
///
/// For z ~ 37, z^2 / 2 ~ 700 and its one rounding (relative 1.1e-16) would become a
/// relative error of ~8e-14 in the exponential. Splitting z = hi + lo where hi has at most
/// 22 significant bits makes hi^2 exact, and the remaining part `(z - hi)(z + hi)` is small.
fn exp_neg_half_sq(z: f64) -> f64 {
    let z = z.abs();
    if z >= 64.0 {
        return (-0.5 * z * z).exp();
    }
    let hi = (z * 65536.0).trunc() / 65536.0;
    let lo = (z - hi) * (z + hi);
    (-0.5 * hi * hi).exp() * (-0.5 * lo).exp()
}

/// Standard normal density.
fn normal_pdf(z: f64) -> f64 {
    FRAC_1_SQRT_2PI * exp_neg_half_sq(z)
}

/// Mills ratio `R(z) = P(Z > z) / pdf(z)` for z >= [`NORMAL_SERIES_MAX`], by Laplace's
/// continued fraction `R(z) = 1 / (z + 1 / (z + 2 / (z + 3 / (z + ...))))`, evaluated with the
/// modified Lentz algorithm (7 terms at z = 37, ~70 at z = 2.5). All partial numerators
/// and denominators are positive, so the evaluation is stable.
fn mills_ratio(z: f64) -> f64 {
    const TOL: f64 = 2.0 * f64::EPSILON;
    const TINY: f64 = 1e-300;
    let mut f = z;
    let mut c = z;
    let mut d = 0.0;
    for k in 1..10_000u32 {
        let a = f64::from(k);
        d = z + a * d;
        if d == 0.0 {
            d = TINY;
        }
        d = 1.0 / d;
        c = z + a / c;
        if c == 0.0 {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() <= TOL {
            break;
        }
    }
    1.0 / f
}

/// `Phi(z) - 1/2 = pdf(z) * sum_k z^(2k+1) / (1 * 3 * ... * (2k+1))` for |z| <= 2.5.
/// All terms share the sign of z, so the sum itself is relatively accurate.
fn normal_half_central(z: f64) -> f64 {
    let z2 = z * z;
    let mut term = z;
    let mut sum = z;
    let mut k = 1.0;
    while term.abs() > f64::EPSILON * 0.25 * sum.abs() {
        term *= z2 / (2.0 * k + 1.0);
        sum += term;
        k += 1.0;
    }
    normal_pdf(z) * sum
}

/// Upper tail of the standard normal, `P(Z > z)` (the one-sided p-value of a z statistic).
///
/// Valid for all z. Relative error ~1e-14 for z >= 0 all the way to z ~ 37.5 (where the
/// result approaches f64's underflow); for z < 0 the result is in [0.5, 1] and accurate to
/// a few ulps absolutely. Returns 0 beyond 38.5, NaN for NaN.
///
/// Method: computed directly for the normal rather than as `erfc(z / sqrt 2) / 2`, which
/// would add the rounding of `z / sqrt 2` — magnified by z^2 into ~1.5e-13 relative error
/// at z = 37. The density factor `exp(-z^2/2)` is formed with an exact split of z^2 (see
/// `exp_neg_half_sq`), the tail ratio by Laplace's continued fraction for z >= 2.5, and
/// the center by the Taylor series of Phi.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z < 0.0 {
        return 1.0 - normal_sf(-z);
    }
    if z < NORMAL_SERIES_MAX {
        return 0.5 - normal_half_central(z);
    }
    if z > NORMAL_SF_ZERO {
        return 0.0;
    }
    normal_pdf(z) * mills_ratio(z)
}

/// Standard normal CDF `P(Z <= z)`, i.e. `normal_sf(-z)`; relatively accurate in the lower
/// tail for the same reasons.
pub fn normal_cdf(z: f64) -> f64 {
    normal_sf(-z)
}

/// `(ln Phi(x), Phi(x) / pdf(x))` for any finite x, without underflow in the lower tail:
/// for x < -5 both come from the Mills ratio of -x, never from Phi itself.
fn ln_cdf_and_ratio(x: f64) -> (f64, f64) {
    let z = -x;
    if z > 5.0 {
        let r = mills_ratio(z);
        (-0.5 * z * z - LN_SQRT_2PI + r.ln(), r)
    } else {
        let c = normal_sf(z);
        (c.ln(), c / normal_pdf(x))
    }
}

/// Inverse of the standard normal CDF: the z with `P(Z <= z) = p`.
///
/// Valid for p in [0, 1]: returns -inf at 0, +inf at 1, NaN outside or for NaN. Accurate to
/// a few ulps of z for p <= 1/2 down to the smallest subnormal p (z ~ -38.5). For p > 1/2
/// it returns `-normal_quantile(1 - p)`, which is exact arithmetic but cannot recover
/// precision p never had: for an *upper* tail probability alpha, call
/// `-normal_quantile(alpha)` rather than `normal_quantile(1 - alpha)`.
///
/// Method: the Abramowitz & Stegun 26.2.23 rational starting point (error < 4.5e-4), then
/// Newton's method on `ln Phi(x) - ln p`. ln Phi is concave and increasing, so Newton
/// converges monotonically from any start; working with logarithms and the Mills ratio
/// keeps every quantity in range even for subnormal p. Convergence is quadratic: three or
/// four steps reach full precision.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p > 0.5 {
        // 1 - p is exact here (Sterbenz), so nothing is lost by reflecting.
        return -lower_normal_quantile(1.0 - p);
    }
    lower_normal_quantile(p)
}

/// `normal_quantile` for p in (0, 1/2).
fn lower_normal_quantile(p: f64) -> f64 {
    let ln_p = p.ln();
    let t = (-2.0 * ln_p).sqrt();
    let mut x = -(t
        - (2.515517 + t * (0.802853 + t * 0.010328))
            / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))));
    for _ in 0..12 {
        let (ln_cdf, ratio) = ln_cdf_and_ratio(x);
        let step = (ln_cdf - ln_p) * ratio;
        x -= step;
        if step.abs() <= 2.0 * f64::EPSILON * x.abs() {
            break;
        }
    }
    x
}

// ---------------------------------------------------------------------------------------------
// Two proportions
// ---------------------------------------------------------------------------------------------

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
pub fn two_proportion_z(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
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

/// `ln P(X1 = x)` for the hypergeometric count of events in group 1 (n1 trials) given m
/// events among n1 + n2 trials, for x within the support and 0 < m < n1 + n2.
///
/// Uses the identity `hyper(x) = b(x; n1, r) b(m - x; n2, r) / b(m; N, r)` with binomial
/// densities b at any rate r; with r = m / N every factor is near its mode and each is
/// relatively accurate by Loader's formula, unlike a difference of six ln_gamma values.
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

// ---------------------------------------------------------------------------------------------
// Multiple testing, intervals, planning
// ---------------------------------------------------------------------------------------------

/// Holm's step-down procedure: which of the hypotheses with these p-values to reject so that
/// the family-wise error rate (probability of *any* false alarm among them) is at most
/// `alpha`. `result[i]` corresponds to `p_values[i]`.
///
/// Sort ascending; reject the j-th smallest (j = 0, 1, ...) while `p <= alpha / (m - j)`,
/// stop at the first that fails. Valid under any dependence between the tests (unlike
/// Benjamini-Hochberg or Sidak), and uniformly more powerful than plain Bonferroni — the
/// right default when one dependency is evaluated against many peers or many series are
/// tested per tick. NaN p-values count as hypotheses but are never rejected; ties keep
/// input order, so the result is deterministic.
pub fn holm_bonferroni(p_values: &[f64], alpha: f64) -> Vec<bool> {
    let m = p_values.len();
    let key = |p: f64| if p.is_nan() { f64::INFINITY } else { p };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| key(p_values[a]).total_cmp(&key(p_values[b])));
    let mut reject = vec![false; m];
    for (j, &i) in order.iter().enumerate() {
        if p_values[i] <= alpha / (m - j) as f64 {
            reject[i] = true;
        } else {
            break;
        }
    }
    reject
}

/// Wilson score interval `(lower, upper)` for a proportion after k events in n trials, at
/// normal quantile `z` (1.96 for 95% two-sided; use `-normal_quantile(alpha)` for a
/// one-sided bound at level alpha; the sign of z is ignored).
///
/// Unlike the Wald interval it has close to nominal coverage even for rare events and
/// small n, never leaves [0, 1], and is non-degenerate at k = 0 and k = n — so it suits
/// "is this 0-of-400 error count compatible with the baseline" questions. Returns (0, 1)
/// for n == 0 or k > n (no information).
///
/// The bounds are the roots of `(1 + z^2/n) p^2 - (2 p^ + z^2/n) p + p^^2 = 0` (p^ = k/n).
/// For k <= n/2 the larger root is a sum of positive terms and the smaller is formed as
/// (product of roots) / (larger root) rather than by subtraction, which would cancel for
/// rare events (k = 1, n = 1e9); both bounds are then relatively accurate. For k > n/2 the
/// interval is the mirror image of the one for n - k, so bounds near 1 are accurate in
/// absolute terms, which is all a value near 1 can carry.
pub fn wilson_interval(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 || k > n {
        return (0.0, 1.0);
    }
    let z = z.abs();
    if k <= n - k {
        wilson_low_side(k, n, z)
    } else {
        let (lo, hi) = wilson_low_side(n - k, n, z);
        (1.0 - hi, 1.0 - lo)
    }
}

/// Wilson bounds for k <= n/2 (see [`wilson_interval`]).
fn wilson_low_side(k: u64, n: u64, z: f64) -> (f64, f64) {
    let nf = n as f64;
    let p = k as f64 / nf;
    let q = (n - k) as f64 / nf;
    let z2n = z * z / nf;
    let a = 1.0 + z2n;
    // a * (larger root); the roots' product is p^2 / a.
    let a_upper = p + 0.5 * z2n + z * (p * q / nf + 0.25 * z2n / nf).sqrt();
    (p * p / a_upper, (a_upper / a).min(1.0))
}

/// Smallest number of trials n at which a one-sided level-`alpha` test of "rate = p0"
/// detects a true rate `p1 > p0` with probability `power`, by the normal-approximation
/// formula `n = ((z_a sqrt(p0 (1 - p0)) + z_b sqrt(p1 (1 - p1))) / (p1 - p0))^2`, rounded up,
/// with `z_a` the upper-alpha and `z_b` the power quantile of the standard normal.
///
/// Detectors use it as a minimum sample before judging a window: the smaller the shift,
/// the more calls are needed (roughly 1/(p1 - p0)^2 for shifts of one rate, ~p0/(p1-p0)^2
/// for rare events), which is why a 0.1% -> 0.2% drift needs far more traffic than
/// 0.1% -> 5%. The normal approximation ignores the skew of the count, so with the exact
/// test at a small alpha the achieved power is a few points lower than asked (0.87 rather
/// than 0.90 for 5% -> 8% at alpha 1e-3, ~0.83 for 1% -> 3%): treat the value as a lower
/// bound, and check with [`binomial_sf`] when it matters.
///
/// Returns `u64::MAX` ("no sample suffices") unless 0 <= p0 < p1 <= 1 and alpha, power are
/// in (0, 1); saturates at `u64::MAX` for vanishing shifts; never returns 0.
pub fn min_samples_for_rate_shift(p0: f64, p1: f64, alpha: f64, power: f64) -> u64 {
    let valid = (0.0..1.0).contains(&p0)
        && p1 > p0
        && p1 <= 1.0
        && alpha > 0.0
        && alpha < 1.0
        && power > 0.0
        && power < 1.0;
    if !valid {
        return u64::MAX;
    }
    // -quantile(alpha) rather than quantile(1 - alpha): 1 - alpha would round away most
    // of a tiny alpha's digits.
    let z_a = -normal_quantile(alpha);
    let z_b = normal_quantile(power);
    let num = z_a * (p0 * (1.0 - p0)).sqrt() + z_b * (p1 * (1.0 - p1)).sqrt();
    if num <= 0.0 {
        return 1;
    }
    let n = (num / (p1 - p0)).powi(2).ceil();
    // Float-to-int `as` saturates (and maps +inf to u64::MAX).
    (n as u64).max(1)
}

// ---------------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------------

/// Exponentially weighted moving average with a half-life, for learning baselines (normal
/// latency, normal error rate) from irregularly spaced samples.
///
/// The estimate is the weighted mean of all samples, a sample's weight halving every
/// half-life of elapsed time: `value = sum w_i x_i / sum w_i`, `w_i = 2^(-age_i / h)`.
/// With samples every dt this is the classic EWMA with smoothing factor `1 - 2^(-dt/h)`,
/// except that early on it is not biased towards an arbitrary starting value: the first
/// sample is the estimate, and simultaneous samples (dt = 0) get equal weight instead of
/// the later one being ignored.
///
/// Time is passed in, never read from a clock, so replays are deterministic. The unit is
/// whatever `dt_ms` uses: pass `dt_ms = 1.0` per sample to express the half-life in samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    /// ln 2 / half-life: the decay rate per unit of time.
    rate: f64,
    /// Decayed sum of sample values.
    sum: f64,
    /// Decayed sum of sample weights (an "effective number of samples").
    weight: f64,
}

impl Ewma {
    /// A new, empty average whose old samples lose half their weight every `half_life_ms`.
    /// `f64::INFINITY` gives a plain running mean.
    ///
    /// # Panics
    ///
    /// If `half_life_ms` is not positive (or is NaN): that is a configuration bug, and
    /// silently substituting a value would mislearn baselines.
    pub fn new(half_life_ms: f64) -> Self {
        assert!(
            half_life_ms > 0.0,
            "Ewma half-life must be positive, got {half_life_ms}"
        );
        Self {
            rate: LN_2 / half_life_ms,
            sum: 0.0,
            weight: 0.0,
        }
    }

    /// Adds a sample observed `dt_ms` after the previous one (ignored for the first sample).
    ///
    /// Negative or NaN `dt_ms` (out-of-order or clock-skewed input) counts as 0. Non-finite
    /// values are dropped: one NaN or infinity would otherwise poison the baseline forever.
    pub fn update(&mut self, value: f64, dt_ms: f64) {
        if !value.is_finite() {
            return;
        }
        let dt = if dt_ms > 0.0 { dt_ms } else { 0.0 };
        // Guard 0 * inf = NaN for an infinite half-life and an infinite gap.
        let decay = if self.rate == 0.0 {
            1.0
        } else {
            (-self.rate * dt).exp()
        };
        self.sum = self.sum * decay + value;
        self.weight = self.weight * decay + 1.0;
    }

    /// The current estimate, or `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }

    /// Decayed number of samples behind the estimate (0 before the first). With samples
    /// every dt it tends to `1 / (1 - 2^(-dt/h))`, about 1.44 half-lives' worth; detectors
    /// can require a minimum before trusting the baseline.
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |actual - expected| <= tol * |expected| (or both exactly equal, for zeros).
    #[track_caller]
    fn assert_rel(actual: f64, expected: f64, tol: f64) {
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
    fn assert_abs(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "actual {actual:e}, expected {expected:e}, diff {:e} > {tol:e}",
            (actual - expected).abs()
        );
    }

    // ---- ln_gamma ---------------------------------------------------------------------------

    #[test]
    fn ln_gamma_matches_reference_values() {
        // (x, ln Gamma(x)) from mpmath.loggamma at 50 digits.
        let cases: &[(f64, f64)] = REF_LN_GAMMA;
        for &(x, want) in cases {
            assert_rel(ln_gamma(x), want, 1e-13);
        }
    }

    #[test]
    fn ln_gamma_exact_at_integers_and_half() {
        let mut fact = 1.0f64;
        for n in 1..=25u32 {
            // ln Gamma(n) = ln (n-1)!; (n-1)! is exact in f64 up to 22!.
            let want = fact.ln();
            if n == 1 || n == 2 {
                assert_eq!(ln_gamma(f64::from(n)), 0.0);
            } else {
                assert_rel(ln_gamma(f64::from(n)), want, 1e-14);
            }
            fact *= f64::from(n);
        }
        // Gamma(1/2) = sqrt(pi).
        assert_rel(ln_gamma(0.5), 0.5 * std::f64::consts::PI.ln(), 1e-14);
    }

    #[test]
    fn ln_gamma_recurrence_holds() {
        // ln Gamma(x + 1) = ln Gamma(x) + ln x, across every branch boundary.
        let mut x = 0.013;
        while x < 40.0 {
            let lhs = ln_gamma(x + 1.0);
            let rhs = ln_gamma(x) + x.ln();
            assert_abs(lhs, rhs, 1e-13 * (1.0 + lhs.abs()));
            x *= 1.07;
        }
    }

    #[test]
    fn ln_gamma_edge_cases() {
        assert_eq!(ln_gamma(0.0), f64::INFINITY);
        assert_eq!(ln_gamma(f64::INFINITY), f64::INFINITY);
        assert!(ln_gamma(-1.5).is_nan());
        assert!(ln_gamma(f64::NAN).is_nan());
        // Tiny x: ln Gamma(x) ~ -ln x - gamma x.
        assert_rel(ln_gamma(1e-300), 300.0 * std::f64::consts::LN_10, 1e-15);
    }

    // ---- binomial ---------------------------------------------------------------------------

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
        // sf(k) - sf(k+1) = pmf(k), checked against ln_gamma for moderate n.
        let (n, p) = (60u64, 0.1f64);
        let mut prev = 1.0;
        for k in 0..=n {
            let sf = binomial_sf(k, n, p);
            assert!(sf <= prev, "not decreasing in k at {k}");
            prev = sf;
            let pmf = (ln_gamma(n as f64 + 1.0)
                - ln_gamma(k as f64 + 1.0)
                - ln_gamma((n - k) as f64 + 1.0)
                + k as f64 * p.ln()
                + (n - k) as f64 * (-p).ln_1p())
            .exp();
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

    // ---- normal -----------------------------------------------------------------------------

    #[test]
    fn normal_sf_matches_reference() {
        // (z, P(Z > z)) from mpmath erfc at 50 digits.
        for &(z, want) in REF_NORMAL_SF {
            assert_rel(normal_sf(z), want, 1e-13);
        }
    }

    #[test]
    fn normal_sf_symmetry_and_edges() {
        assert_eq!(normal_sf(0.0), 0.5);
        let mut z = -9.0;
        while z <= 9.0 {
            assert_abs(normal_sf(z) + normal_sf(-z), 1.0, 2e-16);
            assert_eq!(normal_cdf(z), normal_sf(-z));
            z += 0.173;
        }
        assert_eq!(normal_sf(f64::INFINITY), 0.0);
        assert_eq!(normal_sf(f64::NEG_INFINITY), 1.0);
        assert_eq!(normal_sf(40.0), 0.0);
        assert!(normal_sf(f64::NAN).is_nan());
        // Monotone, including across the series / continued-fraction switch.
        let mut prev = 1.0;
        let mut z = -3.0;
        while z < 38.0 {
            let v = normal_sf(z);
            assert!(v <= prev, "normal_sf not decreasing at {z}");
            prev = v;
            z += 0.01;
        }
    }

    #[test]
    fn normal_quantile_matches_reference() {
        // (p, z) from mpmath: z = -sqrt(2) erfcinv(2p).
        for &(p, want) in REF_NORMAL_QUANTILE {
            assert_rel(normal_quantile(p), want, 1e-14);
        }
        assert_eq!(normal_quantile(0.5), 0.0);
    }

    #[test]
    fn normal_quantile_round_trips() {
        for i in 1..400 {
            let p = f64::from(i) / 400.0;
            let z = normal_quantile(p);
            assert_abs(normal_cdf(z), p, 1e-15);
        }
        // Lower tail all the way down to subnormal p.
        let mut p = 1e-3;
        while p > 1e-320 {
            let z = normal_quantile(p);
            assert!(z.is_finite());
            if p > 1e-300 {
                // Limited by conditioning, not the algorithm: d ln Phi / dz ~ |z|, so one ulp
                // of z (~|z| eps) moves Phi by ~z^2 eps relatively.
                assert_rel(normal_cdf(z), p, 4.0 * f64::EPSILON * (1.0 + z * z));
            }
            p *= 0.01;
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(-0.1).is_nan());
        assert!(normal_quantile(1.1).is_nan());
        assert!(normal_quantile(f64::NAN).is_nan());
        // Antisymmetry.
        for &p in &[1e-9, 0.01, 0.2, 0.4999] {
            assert_eq!(normal_quantile(1.0 - p), -normal_quantile(1.0 - (1.0 - p)));
        }
    }

    // ---- two proportions --------------------------------------------------------------------

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

    // ---- Holm -------------------------------------------------------------------------------

    #[test]
    fn holm_rejects_nothing_among_unremarkable_p_values() {
        let ps: Vec<f64> = (0..40).map(|i| 0.01 + 0.99 * f64::from(i) / 39.0).collect();
        assert!(holm_bonferroni(&ps, 0.001).iter().all(|&r| !r));
        // Even at alpha 0.05 the smallest, 0.01, is above 0.05 / 40.
        assert!(holm_bonferroni(&ps, 0.05).iter().all(|&r| !r));
    }

    #[test]
    fn holm_rejects_a_single_strong_signal() {
        let mut ps: Vec<f64> = (0..40).map(|i| 0.01 + 0.99 * f64::from(i) / 39.0).collect();
        ps.insert(17, 1e-9);
        let r = holm_bonferroni(&ps, 0.001);
        assert_eq!(r.len(), 41);
        for (i, &rej) in r.iter().enumerate() {
            assert_eq!(rej, i == 17, "index {i}");
        }
    }

    #[test]
    fn holm_step_down_semantics() {
        // m = 4, alpha = 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05.
        assert_eq!(
            holm_bonferroni(&[0.01, 0.04, 0.015, 0.03], 0.05),
            vec![true, false, true, false]
        );
        // Stops at the first failure even if a later p would pass its own threshold.
        assert_eq!(
            holm_bonferroni(&[0.013, 0.013, 0.02, 0.049], 0.05),
            vec![false, false, false, false]
        );
        // All pass.
        assert_eq!(
            holm_bonferroni(&[0.001, 0.002, 0.003], 0.05),
            vec![true, true, true]
        );
        // Boundary: p exactly at alpha / m is rejected.
        assert_eq!(holm_bonferroni(&[0.025, 0.5], 0.05), vec![true, false]);
        assert!(holm_bonferroni(&[], 0.05).is_empty());
        // NaN counts as a hypothesis but is never rejected.
        assert_eq!(holm_bonferroni(&[f64::NAN, 0.001], 0.01), vec![false, true]);
        assert_eq!(
            holm_bonferroni(&[0.006, f64::NAN], 0.01),
            vec![false, false]
        );
        assert_eq!(holm_bonferroni(&[0.001], f64::NAN), vec![false]);
    }

    // ---- Wilson -----------------------------------------------------------------------------

    #[test]
    fn wilson_matches_textbook_formula() {
        for &(k, n, z) in &[
            (5u64, 10u64, 1.96),
            (1, 100, 1.96),
            (99, 100, 2.5758),
            (37, 250, 1.0),
        ] {
            let (nf, zf) = (n as f64, z);
            let p = k as f64 / nf;
            let denom = 1.0 + zf * zf / nf;
            let center = (p + zf * zf / (2.0 * nf)) / denom;
            let half = zf / denom * (p * (1.0 - p) / nf + zf * zf / (4.0 * nf * nf)).sqrt();
            let (lo, hi) = wilson_interval(k, n, z);
            assert_rel(lo, center - half, 1e-12);
            assert_rel(hi, center + half, 1e-12);
        }
    }

    #[test]
    fn wilson_reference_and_edges() {
        for &(k, n, z, lo, hi) in REF_WILSON {
            let (l, h) = wilson_interval(k, n, z);
            assert_rel(l, lo, 1e-13);
            assert_rel(h, hi, 1e-13);
        }
        let (lo, hi) = wilson_interval(0, 50, 1.96);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.0 && hi < 0.1);
        let (lo, hi) = wilson_interval(50, 50, 1.96);
        assert_eq!(hi, 1.0);
        assert!(lo > 0.9 && lo < 1.0);
        assert_eq!(wilson_interval(0, 0, 1.96), (0.0, 1.0));
        assert_eq!(wilson_interval(3, 2, 1.96), (0.0, 1.0));
        assert_eq!(wilson_interval(3, 10, -1.96), wilson_interval(3, 10, 1.96));
        // Degenerate at z = 0: the point estimate.
        let (l, h) = wilson_interval(3, 10, 0.0);
        assert_rel(l, 0.3, 1e-15);
        assert_rel(h, 0.3, 1e-15);
        // Complement symmetry and containment of the point estimate.
        for k in 0..=40u64 {
            let (l, h) = wilson_interval(k, 40, 1.96);
            let (l2, h2) = wilson_interval(40 - k, 40, 1.96);
            assert_abs(l, 1.0 - h2, 1e-15);
            assert_abs(h, 1.0 - l2, 1e-15);
            let p = k as f64 / 40.0;
            assert!(l <= p && p <= h && 0.0 <= l && h <= 1.0);
        }
    }

    // ---- sample size ------------------------------------------------------------------------

    #[test]
    fn min_samples_matches_formula() {
        for &(p0, p1, alpha, power, want) in REF_MIN_SAMPLES {
            assert_eq!(
                min_samples_for_rate_shift(p0, p1, alpha, power),
                want,
                "{p0} -> {p1}"
            );
        }
    }

    #[test]
    fn min_samples_grows_as_the_effect_shrinks() {
        let mut prev = 0;
        for &p1 in &[0.5, 0.1, 0.05, 0.01, 0.005, 0.002, 0.0015, 0.0011, 0.00101] {
            let n = min_samples_for_rate_shift(0.001, p1, 1e-6, 0.9);
            assert!(n > prev, "{p1}: {n} <= {prev}");
            prev = n;
        }
        // Stricter alpha or higher power need more samples.
        let base = min_samples_for_rate_shift(0.001, 0.01, 0.01, 0.8);
        assert!(min_samples_for_rate_shift(0.001, 0.01, 1e-6, 0.8) > base);
        assert!(min_samples_for_rate_shift(0.001, 0.01, 0.01, 0.99) > base);
    }

    #[test]
    fn min_samples_reaches_roughly_the_requested_power_exactly() {
        // With n from the formula, the exact binomial test at level alpha has power near the
        // target; somewhat below it, as the normal approximation ignores skewness (0.867 here).
        let (p0, p1, alpha, power) = (0.05, 0.08, 1e-3, 0.9);
        let n = min_samples_for_rate_shift(p0, p1, alpha, power);
        // Critical count: smallest c with P(X >= c | p0) <= alpha.
        let mut c = 0;
        while binomial_sf(c, n, p0) > alpha {
            c += 1;
        }
        let achieved = binomial_sf(c, n, p1);
        assert!(
            achieved > power - 0.05 && achieved < power + 0.02,
            "n={n} c={c} power={achieved}"
        );
    }

    #[test]
    fn min_samples_invalid_inputs() {
        assert_eq!(min_samples_for_rate_shift(0.01, 0.01, 0.05, 0.8), u64::MAX);
        assert_eq!(min_samples_for_rate_shift(0.02, 0.01, 0.05, 0.8), u64::MAX);
        assert_eq!(min_samples_for_rate_shift(-0.1, 0.01, 0.05, 0.8), u64::MAX);
        assert_eq!(min_samples_for_rate_shift(0.01, 1.1, 0.05, 0.8), u64::MAX);
        assert_eq!(min_samples_for_rate_shift(0.01, 0.02, 0.0, 0.8), u64::MAX);
        assert_eq!(min_samples_for_rate_shift(0.01, 0.02, 0.05, 1.0), u64::MAX);
        assert_eq!(
            min_samples_for_rate_shift(f64::NAN, 0.02, 0.05, 0.8),
            u64::MAX
        );
        // Vanishing effect saturates rather than wrapping.
        assert_eq!(
            min_samples_for_rate_shift(0.5, 0.5 + 1e-12, 1e-9, 0.99),
            u64::MAX
        );
        // Huge effect, weak requirements: at least one sample.
        assert_eq!(min_samples_for_rate_shift(0.0, 1.0, 0.4, 0.1), 1);
    }

    // ---- Ewma -------------------------------------------------------------------------------

    #[test]
    fn ewma_first_sample_and_empty() {
        let mut e = Ewma::new(1000.0);
        assert_eq!(e.value(), None);
        assert_eq!(e.weight(), 0.0);
        e.update(42.0, 123_456.0);
        assert_eq!(e.value(), Some(42.0));
        assert_eq!(e.weight(), 1.0);
    }

    #[test]
    fn ewma_half_life_semantics() {
        // After exactly one half-life an old sample's weight has dropped from 1 to 0.5, so
        // with one old sample (0) and one new (10): value = (0.5 * 0 + 1 * 10) / 1.5.
        let mut e = Ewma::new(1000.0);
        e.update(0.0, 0.0);
        e.update(10.0, 1000.0);
        assert_rel(e.value().unwrap(), 10.0 / 1.5, 1e-15);
        assert_rel(e.weight(), 1.5, 1e-15);
        // Simultaneous samples get equal weight.
        let mut e = Ewma::new(1000.0);
        e.update(1.0, 0.0);
        e.update(3.0, 0.0);
        assert_eq!(e.value(), Some(2.0));
    }

    #[test]
    fn ewma_tracks_a_step_change_at_the_half_life_rate() {
        // Regular samples every 10 ms, half-life 1 s; a long run at 100 then a step to 200.
        let mut e = Ewma::new(1000.0);
        for _ in 0..10_000 {
            e.update(100.0, 10.0);
        }
        assert_rel(e.value().unwrap(), 100.0, 1e-12);
        // Steady-state weight 1 / (1 - 2^(-0.01)).
        assert_rel(e.weight(), 1.0 / (1.0 - 0.5f64.powf(0.01)), 1e-9);
        for _ in 0..100 {
            e.update(200.0, 10.0);
        }
        // One half-life later the step is half absorbed (the old mass decays by 1/2).
        assert_rel(e.value().unwrap(), 150.0, 1e-9);
    }

    #[test]
    fn ewma_in_sample_units_and_robustness() {
        let mut a = Ewma::new(8.0);
        let mut b = Ewma::new(8.0);
        for i in 0..50 {
            a.update(f64::from(i), 1.0);
            b.update(f64::from(i), 1.0);
        }
        assert_eq!(a, b); // deterministic
        // Non-finite values are ignored; bad dt counts as 0.
        let before = a;
        a.update(f64::NAN, 1.0);
        a.update(f64::INFINITY, 1.0);
        assert_eq!(a, before);
        let mut c = before;
        c.update(5.0, -3.0);
        let mut d = before;
        d.update(5.0, f64::NAN);
        let mut e = before;
        e.update(5.0, 0.0);
        assert_eq!(c, e);
        assert_eq!(d, e);
        // A gap of many half-lives forgets the past.
        let mut f = before;
        f.update(7.0, 8.0 * 2000.0);
        assert_eq!(f.value(), Some(7.0));
        // Infinite half-life: running mean, even across infinite gaps.
        let mut g = Ewma::new(f64::INFINITY);
        for (v, dt) in [(1.0, 0.0), (2.0, 5.0), (6.0, f64::INFINITY)] {
            g.update(v, dt);
        }
        assert_eq!(g.value(), Some(3.0));
    }

    #[test]
    #[should_panic(expected = "half-life must be positive")]
    fn ewma_rejects_nonpositive_half_life() {
        let _ = Ewma::new(0.0);
    }

    // ---- reference tables (generated by python3 + mpmath / fractions) -----------------------
    const REF_LN_GAMMA: &[(f64, f64)] = &[
        (1.0e-300, 690.7755278982137),
        (1.0e-10, 23.025850929882736),
        (1.0e-5, 11.512919692895826),
        (0.001, 6.907178885383853),
        (0.1, 2.252712651734206),
        (0.3, 1.0957979948180756),
        (0.4999, 0.5725613186041184),
        (0.5, 0.5723649429247001),
        (0.7, 0.26086724653166654),
        (0.7999, 0.15215619075461725),
        (0.8, 0.15205967839983756),
        (0.8000001, 0.15205958189899244),
        (0.9, 0.06637623973474295),
        (0.99, 0.005854806764709781),
        (0.9999999999, 5.7721571274281786e-11),
        (1.0000000001, -5.772157125783244e-11),
        (1.1, -0.049872441259839764),
        (1.2, -0.08537409000331583),
        (1.2000001, -0.08537411890729918),
        (1.3, -0.10817480950786047),
        (1.4616321449683622, -0.12148629053584961),
        (1.5, -0.12078223763524522),
        (1.7, -0.09580769740706588),
        (1.8, -0.07108387291437215),
        (1.7999, -0.07111236837274354),
        (1.9, -0.03898427592308336),
        (1.999999999, -4.227843697573328e-10),
        (2.000000001, 4.2278437040226697e-10),
        (2.1, 0.04543773854448518),
        (2.2, 0.09694746679063887),
        (2.2000001, 0.09694752121998532),
        (2.5, 0.2846828704729192),
        (3.7, 1.428072326665388),
        (5.5, 3.9578139676187165),
        (9.99, 12.779315214350193),
        (10.0, 12.801827480081469),
        (10.01, 12.824350262448247),
        (15.3, 25.996606241964184),
        (50.5, 146.51925549072064),
        (100.25, 360.28455963776423),
        (1000.1, 5905.91115373108),
        (100000.0, 1051287.7089736569),
        (100000000.5, 1742068075.3141751),
        (1000000000000000.0, 3.3538776394910668e16),
        (1.0e300, 6.897755278982137e302),
    ];
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
    const REF_NORMAL_SF: &[(f64, f64)] = &[
        (0.1, 0.460172162722971),
        (0.5, 0.3085375387259869),
        (1.0, 0.15865525393145705),
        (1.5, 0.06680720126885807),
        (2.0, 0.02275013194817921),
        (2.4999, 0.00621141837494459),
        (2.5, 0.006209665325776135),
        (2.5001, 0.006207912714815194),
        (3.0, 0.0013498980316300946),
        (4.0, 3.1671241833119924e-5),
        (5.0, 2.866515718791939e-7),
        (5.0001, 2.865029370897625e-7),
        (6.0, 9.86587645037698e-10),
        (8.0, 6.220960574271784e-16),
        (10.0, 7.619853024160525e-24),
        (15.0, 3.670966199312751e-51),
        (20.0, 2.7536241186062337e-89),
        (25.0, 3.056696706382561e-138),
        (30.0, 4.906713927148187e-198),
        (35.0, 1.1249107064724062e-268),
        (37.0, 5.725571222524577e-300),
        (37.5, 4.605353009581955e-308),
        (-1.0, 0.8413447460685429),
        (-3.0, 0.9986501019683699),
        (-8.0, 0.9999999999999993),
    ];
    const REF_NORMAL_QUANTILE: &[(f64, f64)] = &[
        (1.0e-300, -37.0470962993612),
        (1.0e-100, -21.273453560965326),
        (1.0e-20, -9.262340089798407),
        (1.0e-9, -5.9978070150076865),
        (1.0e-6, -4.753424308822899),
        (0.001, -3.0902323061678136),
        (0.01, -2.326347874040841),
        (0.02425, -1.972961051311885),
        (0.05, -1.6448536269514726),
        (0.1, -1.2815515655446004),
        (0.25, -0.6744897501960817),
        (0.4, -0.2533471031357997),
        (0.49, -0.025068908258711057),
        (0.51, 0.025068908258711057),
        (0.75, 0.6744897501960817),
        (0.9, 1.2815515655446006),
        (0.975, 1.9599639845400538),
        (0.999, 3.090232306167813),
        (0.999999, 4.753424308817087),
    ];
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
    const REF_WILSON: &[(u64, u64, f64, f64, f64)] = &[
        (
            1,
            1_000_000_000,
            1.96,
            1.7652001430606605e-10,
            5.665079963252843e-9,
        ),
        (0, 1_000, 3.0, 0.0, 0.008919722497522299),
        (3, 10, 1.96, 0.10778928748621183, 0.6032267800204348),
        (
            999_999,
            1_000_000,
            2.5758293035489004,
            0.9999914825661652,
            0.999999882594525,
        ),
        (
            12_345,
            67_890,
            1.0,
            0.18036262497567077,
            0.18332328331850667,
        ),
        (1, 2, 1.0, 0.2113248654051871, 0.7886751345948129),
    ];
    const REF_MIN_SAMPLES: &[(f64, f64, f64, f64, u64)] = &[
        (0.001, 0.01, 0.05, 0.8, 228),       // n = 227.436830058
        (0.001, 0.002, 1.0e-6, 0.9, 43_055), // n = 43054.8742468
        (0.01, 0.02, 0.001, 0.95, 2_892),    // n = 2891.79084896
        (0.1, 0.2, 0.05, 0.5, 25),           // n = 24.3498910869
        (0.0005, 0.05, 1.0e-9, 0.99, 168),   // n = 167.740318008
        (0.2, 0.25, 0.01, 0.8, 671),         // n = 670.780820275
    ];
}
