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

/// Which metrics an evaluation computes (each costs its own forward passes: 10 for
/// comprehensiveness and sufficiency per ranking, `N` for leave-one-out per pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// ERASER's comprehensiveness: the drop with the top k% masked.
    Comprehensiveness,
    /// ERASER's sufficiency: the drop with only the top k% kept.
    Sufficiency,
    /// ferret's `taucorr_loo`: Kendall's τ-b of the scores and the leave-one-out drops.
    Loo,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Self::Comprehensiveness, Self::Sufficiency, Self::Loo];

    pub fn name(self) -> &'static str {
        match self {
            Self::Comprehensiveness => "comprehensiveness",
            Self::Sufficiency => "sufficiency",
            Self::Loo => "loo",
        }
    }
}

/// One ranking's faithfulness; a metric not asked for is `None` (and left out of the JSON).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Faithfulness {
    /// Per [`PERCENTS`]: the drop with the top `n_k` eligible tokens masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comprehensiveness: Option<Vec<f64>>,
    /// Per [`PERCENTS`]: the drop with only the top `n_k` eligible tokens kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sufficiency: Option<Vec<f64>>,
    /// The mean of `comprehensiveness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aopc_comprehensiveness: Option<f64>,
    /// The mean of `sufficiency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aopc_sufficiency: Option<f64>,
    /// Kendall's τ-b of the scores and the leave-one-out drops; `null` where it is undefined
    /// (fewer than two eligible tokens, or the scores or the drops all equal).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "asked"
    )]
    #[cfg_attr(feature = "serve", schema(value_type = Option<f64>))]
    pub loo_kendall_tau: Option<Option<f64>>,
}

/// A metric that is present was asked for, `null` or not (a missing one was not: `default`).
fn asked<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    <Option<f64> as serde::Deserialize>::deserialize(d).map(Some)
}

impl Faithfulness {
    /// The metrics from the unperturbed probability `p` and the probabilities of the inputs
    /// of [`comprehensiveness_inputs`] and [`sufficiency_inputs`] (in their order), and for
    /// leave-one-out the eligible tokens' scores and the probabilities of [`loo_inputs`] (both
    /// in position order).
    pub fn of(
        p: f64,
        comprehensiveness: Option<&[f64]>,
        sufficiency: Option<&[f64]>,
        loo: Option<(&[f64], &[f64])>,
    ) -> Self {
        let drops = |probabilities: &[f64]| -> Vec<f64> {
            assert_eq!(
                probabilities.len(),
                PERCENTS.len(),
                "one probability per bin"
            );
            probabilities.iter().map(|q| p - q).collect()
        };
        let comprehensiveness = comprehensiveness.map(drops);
        let sufficiency = sufficiency.map(drops);
        Self {
            aopc_comprehensiveness: comprehensiveness.as_deref().map(mean),
            aopc_sufficiency: sufficiency.as_deref().map(mean),
            comprehensiveness,
            sufficiency,
            loo_kendall_tau: loo.map(|(scores, probabilities)| {
                let drops: Vec<f64> = probabilities.iter().map(|q| p - q).collect();
                kendall_tau_b(scores, &drops)
            }),
        }
    }

    /// The mean of several rankings' metrics (the random orders): curves bin by bin, τ over
    /// the rankings where it is defined.
    pub fn mean(all: &[Faithfulness]) -> Self {
        let curve = |get: fn(&Faithfulness) -> Option<&Vec<f64>>| -> Option<Vec<f64>> {
            let curves: Vec<&Vec<f64>> = all.iter().map(get).collect::<Option<_>>()?;
            (!curves.is_empty()).then(|| {
                (0..PERCENTS.len())
                    .map(|k| curves.iter().map(|c| c[k]).sum::<f64>() / curves.len() as f64)
                    .collect()
            })
        };
        let comprehensiveness = curve(|f| f.comprehensiveness.as_ref());
        let sufficiency = curve(|f| f.sufficiency.as_ref());
        let loo_kendall_tau = all
            .iter()
            .map(|f| f.loo_kendall_tau)
            .collect::<Option<Vec<Option<f64>>>>()
            .filter(|taus| !taus.is_empty())
            .map(|taus| {
                let defined: Vec<f64> = taus.into_iter().flatten().collect();
                (!defined.is_empty()).then(|| mean(&defined))
            });
        Self {
            aopc_comprehensiveness: comprehensiveness.as_deref().map(mean),
            aopc_sufficiency: sufficiency.as_deref().map(mean),
            comprehensiveness,
            sufficiency,
            loo_kendall_tau,
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
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

/// Scores that rank `eligible` as `ranking` does (the first highest), in position order: what
/// leave-one-out's τ compares a random ranking by.
pub fn rank_scores(ranking: &[usize]) -> Vec<f64> {
    let mut by_position: Vec<(usize, f64)> = ranking
        .iter()
        .enumerate()
        .map(|(rank, &i)| (i, (ranking.len() - rank) as f64))
        .collect();
    by_position.sort_unstable_by_key(|&(i, _)| i);
    by_position.into_iter().map(|(_, score)| score).collect()
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

/// Per [`PERCENTS`]: `ids` with the top `n_k` of `ranking` masked.
pub fn comprehensiveness_inputs(ids: &[u32], ranking: &[usize], mask_id: u32) -> Vec<Vec<u32>> {
    let n = ranking.len();
    PERCENTS
        .iter()
        .map(|&k| masked_ids(ids, ranking[..top_count(k, n)].iter().copied(), mask_id))
        .collect()
}

/// Per [`PERCENTS`]: `ids` with every eligible token but the top `n_k` of `ranking` masked.
pub fn sufficiency_inputs(ids: &[u32], ranking: &[usize], mask_id: u32) -> Vec<Vec<u32>> {
    let n = ranking.len();
    PERCENTS
        .iter()
        .map(|&k| masked_ids(ids, ranking[top_count(k, n)..].iter().copied(), mask_id))
        .collect()
}

/// Per eligible token, in position order: `ids` with it alone masked.
pub fn loo_inputs(ids: &[u32], eligible: &[usize], mask_id: u32) -> Vec<Vec<u32>> {
    let mut positions = eligible.to_vec();
    positions.sort_unstable();
    positions
        .into_iter()
        .map(|i| masked_ids(ids, [i], mask_id))
        .collect()
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
        let compr = comprehensiveness_inputs(&ids, &ranking, 0);
        let suff = sufficiency_inputs(&ids, &ranking, 0);
        let loo = loo_inputs(&ids, &ranking, 0);
        assert_eq!((compr.len(), suff.len(), loo.len()), (10, 10, 4));
        // 10%: n_k = 1, the top token; 50%: 2.
        assert_eq!(compr[0], [101, 11, 12, 13, 0, 102]);
        assert_eq!(compr[4], [101, 0, 12, 13, 0, 102]);
        // Sufficiency at 10% keeps the top token only; at 100% masks nothing.
        assert_eq!(suff[0], [101, 0, 0, 0, 14, 102]);
        assert_eq!(suff[9], ids);
        // Leave-one-out in position order.
        assert_eq!(loo[0], [101, 0, 12, 13, 14, 102]);
        assert_eq!(loo[3], [101, 11, 12, 13, 0, 102]);
    }

    #[test]
    fn the_metrics_are_drops_and_their_means() {
        let compr: Vec<f64> = (0..10).map(|k| 0.8 - 0.05 * k as f64).collect();
        let suff: Vec<f64> = (0..10).map(|k| 0.5 + 0.05 * k as f64).collect();
        // Masking position 1, 2, 3 alone: drops 0.1, 0.3, 0.2 (the scores' order).
        let scores = [0.1, 0.4, 0.2];
        let loo = [0.7, 0.5, 0.6];
        let f = Faithfulness::of(0.8, Some(&compr), Some(&suff), Some((&scores, &loo)));
        let c = f.comprehensiveness.as_ref().unwrap();
        assert!((c[0] - 0.0).abs() < 1e-12);
        assert!((c[9] - 0.45).abs() < 1e-12);
        assert!((f.aopc_comprehensiveness.unwrap() - 0.225).abs() < 1e-12);
        assert!((f.sufficiency.as_ref().unwrap()[0] - 0.3).abs() < 1e-12);
        assert!((f.aopc_sufficiency.unwrap() - 0.075).abs() < 1e-12);
        assert_eq!(f.loo_kendall_tau, Some(Some(1.0)));

        let only_loo = Faithfulness::of(0.8, None, None, Some((&[1.0, 1.0], &[0.5, 0.6])));
        assert_eq!(only_loo.comprehensiveness, None);
        assert_eq!(
            only_loo.loo_kendall_tau,
            Some(None),
            "τ of equal scores is undefined"
        );
        let json = serde_json::to_value(&only_loo).unwrap();
        assert_eq!(json, serde_json::json!({"loo_kendall_tau": null}));
        let back: Faithfulness = serde_json::from_value(json).unwrap();
        assert_eq!(back, only_loo, "an undefined τ reads back as asked for");
    }

    #[test]
    fn the_mean_of_orders_is_bin_by_bin_and_tau_over_the_defined() {
        let curve = |v: f64| Some(vec![v; 10]);
        let a = Faithfulness {
            comprehensiveness: curve(0.2),
            aopc_comprehensiveness: Some(0.2),
            loo_kendall_tau: Some(Some(0.5)),
            ..Default::default()
        };
        let b = Faithfulness {
            comprehensiveness: curve(0.4),
            aopc_comprehensiveness: Some(0.4),
            loo_kendall_tau: Some(None),
            ..Default::default()
        };
        let m = Faithfulness::mean(&[a, b]);
        assert!((m.aopc_comprehensiveness.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(m.sufficiency, None);
        assert_eq!(m.loo_kendall_tau, Some(Some(0.5)));
    }

    #[test]
    fn rank_scores_order_positions_as_the_ranking() {
        assert_eq!(rank_scores(&[4, 1, 3, 2]), [3.0, 1.0, 2.0, 4.0]);
        let scores = [0.0, 3.0, 1.0, 2.0, 4.0];
        assert_eq!(
            ranking(&scores.map(|s| s as f32), &[1, 2, 3, 4]),
            [4, 1, 3, 2]
        );
    }
}
