//! Holm's step-down procedure: which of a family of tests to reject so that the chance of
//! *any* false alarm among them stays at most alpha. Detectors run several tests per subject
//! and tick (windows, series, peers); Holm holds the family-wise level under any dependence
//! between them and rejects at least what plain Bonferroni would. The p-values it compares are
//! far-tail ones (alpha around 1e-6 divided by the family size), which is why the tests
//! feeding it keep relative accuracy far out.

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

/// Whether [`holm_bonferroni`] rejects any of the hypotheses with these p-values, in one pass
/// and without ordering them: it does exactly when the smallest passes `alpha / m` (the first
/// step of the procedure). Most families reject nothing, most ticks.
pub fn holm_rejects_any(p_values: impl IntoIterator<Item = f64>, alpha: f64) -> bool {
    let (mut m, mut smallest) = (0usize, f64::INFINITY);
    for p in p_values {
        m += 1;
        // `min` passes over NaN, which is never rejected.
        smallest = smallest.min(p);
    }
    m > 0 && smallest <= alpha / m as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-pass check agrees with the procedure itself: NaN p-values, ties at the
        /// bound and empty families included.
        #[test]
        fn rejecting_any_is_what_the_procedure_rejects(
            ps in proptest::collection::vec(
                prop_oneof![
                    3 => 0.0f64..1.0,
                    2 => 0.0f64..1e-4,
                    1 => Just(f64::NAN),
                    1 => Just(0.01 / 3.0),
                    1 => Just(1.0),
                ],
                0..12,
            ),
            alpha in prop_oneof![Just(0.01), 1e-9f64..0.5],
        ) {
            let plain = holm_bonferroni(&ps, alpha).contains(&true);
            prop_assert_eq!(holm_rejects_any(ps.iter().copied(), alpha), plain);
        }
    }

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
}
