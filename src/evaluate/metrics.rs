//! The metrics of one explanation, from the probabilities of its perturbed inputs.
//!
//! - Eligible tokens: the question's and the context's tokens of the explained window (never
//!   the special tokens); `N` of them.
//! - Ranking: by the method's score, highest first (signed methods by their signed value), ties
//!   to the earlier position.
//! - For `k` in 10, 20, ..., 100 (%), `n_k = ceil(k·N / 100)`:
//!   `comprehensiveness[k] = p − p(top n_k eligible tokens masked)` and
//!   `sufficiency[k] = p − p(every other eligible token masked)`; their means are the AOPCs.
//! - `loo_kendall_tau`: Kendall's τ-b between the scores and the drops `p − p(token i masked)`.

/// The `k` of the top-k% bins.
pub const PERCENTS: [usize; 10] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

/// One explanation's faithfulness.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Faithfulness {
    /// `p_start[s] · p_end[e]` of the explained span (the pipeline's softmaxes,
    /// [`crate::explain::pipeline::probabilities`]).
    pub probability: f64,
    /// Per [`PERCENTS`]: the drop with the top `n_k` eligible tokens masked.
    pub comprehensiveness: Vec<f64>,
    /// Per [`PERCENTS`]: the drop with only the top `n_k` eligible tokens kept.
    pub sufficiency: Vec<f64>,
    pub aopc_comprehensiveness: f64,
    pub aopc_sufficiency: f64,
    /// `None` where τ-b is undefined: fewer than two eligible tokens, or the scores (or the
    /// drops) all equal.
    pub loo_kendall_tau: Option<f64>,
}

/// `eligible` by `scores` (per token of the window), highest first; ties to the earlier
/// position.
pub fn ranking(scores: &[f32], eligible: &[usize]) -> Vec<usize> {
    let mut order = eligible.to_vec();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// A random ranking of `eligible`, the chance baseline: the `order`-th of seed `seed`, the
/// same for the same inputs whatever else is evaluated ([`crate::explain::method::pair_rng`],
/// seeded by `seed` and the order's number).
pub fn random_ranking(eligible: &[usize], ids: &[u32], seed: u64, order: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut rng = crate::explain::method::pair_rng(seed ^ order.rotate_left(32), ids);
    let mut ranking = eligible.to_vec();
    ranking.shuffle(&mut rng);
    ranking
}

/// `n_k = ceil(k·N / 100)`: the tokens of the top `percent`% of `n`.
pub fn top_count(percent: usize, n: usize) -> usize {
    (percent * n).div_ceil(100)
}

/// `ids` with the tokens at `masked` replaced by `mask_id` (positions kept).
pub fn masked_ids(ids: &[u32], masked: impl IntoIterator<Item = usize>, mask_id: u32) -> Vec<u32> {
    let mut out = ids.to_vec();
    for i in masked {
        out[i] = mask_id;
    }
    out
}

/// The inputs to run for one explanation, in this order: per [`PERCENTS`] the
/// comprehensiveness input (the top `n_k` of `ranking` masked), then per [`PERCENTS`] the
/// sufficiency input (every other eligible token masked), then per eligible token (in position
/// order) the input with it alone masked.
pub fn perturbations(ids: &[u32], ranking: &[usize], mask_id: u32) -> Vec<Vec<u32>> {
    let n = ranking.len();
    let mut inputs = Vec::with_capacity(2 * PERCENTS.len() + n);
    for k in PERCENTS {
        inputs.push(masked_ids(
            ids,
            ranking[..top_count(k, n)].iter().copied(),
            mask_id,
        ));
    }
    for k in PERCENTS {
        inputs.push(masked_ids(
            ids,
            ranking[top_count(k, n)..].iter().copied(),
            mask_id,
        ));
    }
    let mut positions = ranking.to_vec();
    positions.sort_unstable();
    for i in positions {
        inputs.push(masked_ids(ids, [i], mask_id));
    }
    inputs
}

/// The metrics from `p` and the probabilities of [`perturbations`]' inputs, in their order;
/// `scores` per token of the window, `eligible` as given to [`ranking`].
pub fn faithfulness(p: f64, perturbed: &[f64], scores: &[f32], eligible: &[usize]) -> Faithfulness {
    let bins = PERCENTS.len();
    assert_eq!(
        perturbed.len(),
        2 * bins + eligible.len(),
        "one probability per input"
    );
    let drops =
        |probabilities: &[f64]| -> Vec<f64> { probabilities.iter().map(|q| p - q).collect() };
    let comprehensiveness = drops(&perturbed[..bins]);
    let sufficiency = drops(&perturbed[bins..2 * bins]);
    let mut positions = eligible.to_vec();
    positions.sort_unstable();
    let loo = drops(&perturbed[2 * bins..]);
    let token_scores: Vec<f64> = positions.iter().map(|&i| f64::from(scores[i])).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Faithfulness {
        probability: p,
        aopc_comprehensiveness: mean(&comprehensiveness),
        aopc_sufficiency: mean(&sufficiency),
        comprehensiveness,
        sufficiency,
        loo_kendall_tau: kendall_tau_b(&token_scores, &loo),
    }
}

/// Kendall's τ-b of `x` and `y` (with ties in either, as scipy's `kendalltau`); `None` where
/// it is undefined (fewer than two items, or either side constant).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    let n = x.len();
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[i].total_cmp(&x[j]);
            let dy = y[i].total_cmp(&y[j]);
            use std::cmp::Ordering::Equal;
            match (dx, dy) {
                (Equal, Equal) => {
                    tied_x += 1;
                    tied_y += 1;
                }
                (Equal, _) => tied_x += 1,
                (_, Equal) => tied_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let pairs = (n * n.saturating_sub(1) / 2) as i64;
    let denominator = (((pairs - tied_x) * (pairs - tied_y)) as f64).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) as f64 / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_b_matches_scipy() {
        // scipy.stats.kendalltau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]).statistic
        let tau = kendall_tau_b(&[12.0, 2.0, 1.0, 12.0, 2.0], &[1.0, 4.0, 7.0, 1.0, 0.0]).unwrap();
        assert!((tau - -0.47140452079103173).abs() < 1e-12, "{tau}");
        let same = kendall_tau_b(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]).unwrap();
        assert!((same - 1.0).abs() < 1e-12);
        assert_eq!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(kendall_tau_b(&[1.0], &[2.0]), None);
    }

    #[test]
    fn the_ranking_puts_ties_at_the_earlier_position() {
        let scores = [9.0, 0.5, -1.0, 0.5, 2.0, 9.0];
        // Position 0 and 5 are special (not eligible).
        assert_eq!(ranking(&scores, &[1, 2, 3, 4]), [4, 1, 3, 2]);
        assert_eq!(top_count(10, 4), 1);
        assert_eq!(top_count(50, 4), 2);
        assert_eq!(top_count(100, 4), 4);
        assert_eq!(top_count(10, 1), 1);
    }

    #[test]
    fn random_rankings_are_seeded_permutations() {
        let eligible: Vec<usize> = (1..40).collect();
        let ids: Vec<u32> = (0..41).collect();
        let a = random_ranking(&eligible, &ids, 7, 0);
        assert_eq!(a, random_ranking(&eligible, &ids, 7, 0), "reproducible");
        assert_ne!(
            a,
            random_ranking(&eligible, &ids, 7, 1),
            "each order its own"
        );
        assert_ne!(
            a,
            random_ranking(&eligible, &ids, 8, 0),
            "each seed its own"
        );
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, eligible, "a permutation");
    }

    #[test]
    fn the_inputs_mask_the_top_tokens_or_all_others_or_one() {
        let ids = [101, 11, 12, 13, 14, 102];
        let ranking = [4, 1, 3, 2];
        let inputs = perturbations(&ids, &ranking, 0);
        assert_eq!(inputs.len(), 20 + 4);
        // 10%: n_k = 1, the top token; 50%: 2.
        assert_eq!(inputs[0], [101, 11, 12, 13, 0, 102]);
        assert_eq!(inputs[4], [101, 0, 12, 13, 0, 102]);
        // Sufficiency at 10% keeps the top token only; at 100% masks nothing.
        assert_eq!(inputs[10], [101, 0, 0, 0, 14, 102]);
        assert_eq!(inputs[19], ids);
        // Leave-one-out in position order.
        assert_eq!(inputs[20], [101, 0, 12, 13, 14, 102]);
        assert_eq!(inputs[23], [101, 11, 12, 13, 0, 102]);
    }

    #[test]
    fn the_metrics_are_drops_and_their_means() {
        let scores = [0.0, 0.1, 0.4, 0.2, 0.0];
        let eligible = [1, 2, 3];
        let mut perturbed: Vec<f64> = (0..10).map(|k| 0.8 - 0.05 * k as f64).collect();
        perturbed.extend((0..10).map(|k| 0.5 + 0.05 * k as f64));
        // Masking position 1, 2, 3 alone: drops 0.1, 0.3, 0.2 (the scores' order).
        perturbed.extend([0.7, 0.5, 0.6]);
        let f = faithfulness(0.8, &perturbed, &scores, &eligible);
        assert!((f.comprehensiveness[0] - 0.0).abs() < 1e-12);
        assert!((f.comprehensiveness[9] - 0.45).abs() < 1e-12);
        assert!((f.aopc_comprehensiveness - 0.225).abs() < 1e-12);
        assert!((f.sufficiency[0] - 0.3).abs() < 1e-12);
        assert!((f.aopc_sufficiency - 0.075).abs() < 1e-12);
        assert_eq!(f.loo_kendall_tau, Some(1.0));
    }
}
