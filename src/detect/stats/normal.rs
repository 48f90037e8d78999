//! The standard normal upper tail `P(Z > z)`: the p-value of the large-sample two-proportion
//! z test in `proportions`.
//!
//! It is needed with *relative* accuracy far out (detectors decide at 1e-6 and below, and
//! report p-values down to f64's underflow), so it is not `erfc(z / sqrt 2) / 2`, whose
//! rounding of `z / sqrt 2` is magnified into ~1e-13 relative error at z = 37; the density
//! factor is formed from an exact split of z^2 and the tail ratio by Laplace's continued
//! fraction.

use super::FRAC_1_SQRT_2PI;
#[cfg(test)]
use super::LN_SQRT_2PI;

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
pub(super) fn normal_sf(z: f64) -> f64 {
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

// The inverse, for tests only: the detectors' tests draw latencies at evenly spaced quantiles
// of a log-normal. Production code needs no quantile.

/// `(ln Phi(x), Phi(x) / pdf(x))` for any finite x, without underflow in the lower tail:
/// for x < -5 both come from the Mills ratio of -x, never from Phi itself.
#[cfg(test)]
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
#[cfg(test)]
pub(crate) fn normal_quantile(p: f64) -> f64 {
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
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::stats::test_util::{assert_abs, assert_rel};

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

    // ---- reference tables (generated by python3 + mpmath) -----------------------------------
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
}
