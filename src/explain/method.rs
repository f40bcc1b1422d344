//! The attribution methods: what number each token gets, given the gradient machinery.
//!
//! With `y = start[s] + end[e]`, `x[t]` the word embedding of token `t` and `G = ∂y/∂x`:
//!
//! | method | per token | peer equivalent |
//! |---|---|---|
//! | `onehot-norm` | `‖∂y/∂onehot[t]‖₂ = ‖G[t] Eᵀ‖₂` | NeuralQA's explain view (the seed) |
//! | `grad-x-input` | `Σ_h G[t,h] · x[t,h]` | Captum `LayerGradientXActivation` on the word embeddings |
//! | `grad-norm` | `‖G[t]‖₂` | LIT's GradientNorm |
//! | `integrated-gradients` | `Σ_h (x − x')[t,h] · Σ_k w_k G(x' + α_k (x − x'))[t,h]` | Captum `IntegratedGradients` on the word embeddings, Gauss–Legendre rule |
//! | `smoothgrad` | `‖(1/N) Σ_k G(x + ε_k)[t]‖₂`, `ε_k ~ N(0, σ²)` | SmoothGrad (Smilkov et al. 2017) on the word embeddings |
//!
//! Scores are the attributions divided by their largest magnitude over the example, so signed
//! methods keep their sign. Integrated gradients also reports its completeness error,
//! `Σ_t attribution[t] − (y(x) − y(x'))`.

use serde::{Deserialize, Serialize};

/// How tokens are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The L2 norm over the vocabulary of the gradient with respect to the one-hot input.
    #[default]
    OnehotNorm,
    /// The gradient times the word embedding, summed over the hidden size.
    GradXInput,
    /// The L2 norm of the gradient over the hidden size.
    GradNorm,
    /// Integrated gradients from a baseline (`--baseline`) in `--steps` steps.
    IntegratedGradients,
    /// The gradient norm averaged over `--samples` noisy copies of the word embeddings.
    Smoothgrad,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Self::OnehotNorm,
        Self::GradXInput,
        Self::GradNorm,
        Self::IntegratedGradients,
        Self::Smoothgrad,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::OnehotNorm => "onehot-norm",
            Self::GradXInput => "grad-x-input",
            Self::GradNorm => "grad-norm",
            Self::IntegratedGradients => "integrated-gradients",
            Self::Smoothgrad => "smoothgrad",
        }
    }

    /// Whether attributions can be negative (scores are then in [−1, 1]).
    pub fn signed(self) -> bool {
        matches!(self, Self::GradXInput | Self::IntegratedGradients)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The integrated-gradients baseline `x'`, for every token but the special ones, which keep
/// their own embedding (so their attribution is 0), as in Captum's BERT tutorial; `zero` is
/// the zero vector everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The padding token's embedding.
    #[default]
    Pad,
    /// The zero vector (special tokens included).
    Zero,
    /// The `[MASK]` token's embedding.
    Mask,
}

/// The random stream of one pair's draws (SmoothGrad's noise, an evaluation's random orders):
/// ChaCha8 seeded by `seed` and an FNV-1a hash of the pair's token ids, so that a pair's draws
/// do not depend on its place in a batch.
pub fn pair_rng(seed: u64, ids: &[u32]) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let pair = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &id| {
        (h ^ u64::from(id)).wrapping_mul(0x100_0000_01b3)
    });
    rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ pair)
}

/// Gauss–Legendre nodes and weights on [0, 1] for `n` points: Captum's `gausslegendre` rule
/// (numpy's `leggauss`, mapped from [−1, 1]). Newton's method on the Legendre polynomial from
/// the Chebyshev-like first guesses, in f64.
pub fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 1 { x } else { p1 };
            let pn_1 = if n == 1 { 1.0 } else { p0 };
            derivative = n as f64 * (x * pn - pn_1) / (x * x - 1.0);
            let step = pn / derivative;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - x * x) * derivative * derivative);
        out.push((0.5 * (1.0 + x), 0.5 * weight));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::gauss_legendre;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 16, 50] {
            let rule = gauss_legendre(n);
            assert_eq!(rule.len(), n);
            assert!((rule.iter().map(|r| r.1).sum::<f64>() - 1.0).abs() < 1e-13);
            // Exact for degree 2n − 1: ∫₀¹ x^d dx = 1/(d+1).
            for d in 0..(2 * n).min(20) {
                let got: f64 = rule.iter().map(|(x, w)| w * x.powi(d as i32)).sum();
                assert!(
                    (got - 1.0 / (d + 1) as f64).abs() < 1e-12,
                    "n {n} d {d}: {got}"
                );
            }
        }
        // numpy.polynomial.legendre.leggauss(2): nodes ±1/√3, weights 1.
        let two = gauss_legendre(2);
        assert!((two[0].0 - 0.5 * (1.0 - 1.0 / 3f64.sqrt())).abs() < 1e-15);
        assert!((two[0].1 - 0.5).abs() < 1e-15);
    }
}
