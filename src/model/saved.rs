//! What the forward keeps for the input-gradient backward, and how big it is.

use candle_core::{DType, Device, Tensor};

use super::attention::{self, AttentionSaved, Kind};
use crate::ops::{self, LayerNormSaved};

/// The sizes of one padded batch; every saved tensor's shape is written in these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Pairs in the batch (`b`).
    pub pairs: usize,
    /// Padded tokens per pair (`t`).
    pub tokens: usize,
    /// `h`.
    pub hidden: usize,
    /// The word embeddings' width (`e`, `h` where they are not projected).
    pub embedding: usize,
    /// Attention heads (`a`); `d = h / a`.
    pub heads: usize,
    /// Feed-forward width (`i`).
    pub intermediate: usize,
    /// Blocks run, shared ones counted at each use (`l`).
    pub layers: usize,
}

impl BatchShape {
    /// Rows of the token-major tensors, `n = b·t`.
    pub fn rows(&self) -> usize {
        self.pairs * self.tokens
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Bytes [`Saved`] holds for this shape on `device`, activations in `dtype` (`s` bytes
    /// each), statistics in f32, by the attention that runs ([`attention::kind`]):
    ///
    /// - GPU, spangrad's kernels: `l · (s·(5nh + n·i + b·a·t²) + 8n) + s·ne + 4n`
    /// - GPU, cuDNN: `l · (s·(6nh + n·i) + 4n·a + 8n) + s·ne + 4n`
    /// - CPU: `l · (s·(5nh + n·i) + 4n·a + 8n) + s·ne + 4n`
    ///
    /// Per layer: two LayerNorms' `x̂` (`2nh`) and `rstd` (`2n` f32), Q, K, V (`3nh`), the
    /// activation's input (`n·i`), and the attention's probabilities (`b·a·t²`), or its row
    /// statistics (`n·a` f32) and, with cuDNN, its context (`nh`). Then the embedding
    /// LayerNorm's `x̂` and `rstd`.
    pub fn saved_bytes(&self, dtype: DType, device: &Device) -> usize {
        let s = dtype.size_in_bytes();
        let (n, h, i, t) = (self.rows(), self.hidden, self.intermediate, self.tokens);
        let attention = match attention::kind(dtype, device) {
            Kind::PerHead => 4 * n * self.heads,
            Kind::Cudnn => 4 * n * self.heads + s * n * h,
            Kind::Kernels => s * self.pairs * self.heads * t * t,
        };
        let per_layer = s * (5 * n * h + n * i) + attention + 8 * n;
        self.layers * per_layer + s * n * self.embedding + 4 * n
    }
}

impl BatchShape {
    /// An estimate of the most bytes a pass holds at once: [`BatchShape::saved_bytes`] plus
    /// the largest set of temporaries alive beside them, the feed-forward's three `[n, i]`
    /// (product, `u`, `act(u)`) or attention's: with spangrad's GPU kernels the scores and
    /// probabilities (`2·b·a·t²`), with cuDNN the backward's `[n, 3h]` gradient and its f32
    /// workspace for dQ (`3nh + 2nh`); plus six `[n, h]`:
    ///
    /// `saved + s·(max(3n·i, attention's) + 6nh)`
    pub fn peak_bytes(&self, dtype: DType, device: &Device) -> usize {
        let s = dtype.size_in_bytes();
        self.saved_bytes(dtype, device) + s * self.working(dtype, device)
    }

    /// The most bytes a forward alone ([`super::QaModel::infer`]) holds at once: one layer's
    /// saved activations, the layer's input and output, and the temporaries of
    /// [`BatchShape::peak_bytes`]:
    ///
    /// `saved(l = 1) + s·(2nh + max(3n·i, attention's) + 6nh)`
    pub fn infer_bytes(&self, dtype: DType, device: &Device) -> usize {
        let one = Self { layers: 1, ..*self };
        let s = dtype.size_in_bytes();
        one.saved_bytes(dtype, device)
            + s * (2 * self.rows() * self.hidden + self.working(dtype, device))
    }

    /// Elements of the temporaries alive beside the saved activations (see
    /// [`BatchShape::peak_bytes`]).
    fn working(&self, dtype: DType, device: &Device) -> usize {
        let s = dtype.size_in_bytes();
        let (n, h, t) = (self.rows(), self.hidden, self.tokens);
        let attention = match attention::kind(dtype, device) {
            Kind::PerHead => 0,
            Kind::Cudnn => 3 * n * h + 4 * n * h / s,
            Kind::Kernels => 2 * self.pairs * self.heads * t * t,
        };
        (3 * n * self.intermediate).max(attention) + 6 * n * h
    }
}

/// One encoder layer's saved activations.
#[derive(Debug, Clone)]
pub struct LayerSaved {
    /// Q, K, V and what the attention's backward needs besides them.
    pub attention: AttentionSaved,
    /// The attention sublayer's LayerNorm: `x̂` `[n, h]`, `rstd` `[n]` f32.
    pub attention_norm: LayerNormSaved,
    /// The activation's input (bias added), `[n, i]`.
    pub ffn_pre: Tensor,
    /// The feed-forward sublayer's LayerNorm: `x̂` `[n, h]`, `rstd` `[n]` f32.
    pub ffn_norm: LayerNormSaved,
}

impl LayerSaved {
    pub fn bytes(&self) -> usize {
        self.attention.bytes()
            + self.attention_norm.bytes()
            + ops::bytes(&self.ffn_pre)
            + self.ffn_norm.bytes()
    }
}

/// Everything the backward needs from one forward pass over a padded batch.
#[derive(Debug, Clone)]
pub struct Saved {
    pub shape: BatchShape,
    /// Real tokens per pair, `[b]` u32 (the padding mask).
    pub lengths: Tensor,
    /// The embedding LayerNorm: `x̂` `[n, h]`, `rstd` `[n]` f32.
    pub embedding_norm: LayerNormSaved,
    /// One per encoder layer, first to last.
    pub layers: Vec<LayerSaved>,
}

impl Saved {
    /// Bytes held now (equal to [`BatchShape::saved_bytes`] right after the forward).
    pub fn bytes(&self) -> usize {
        self.embedding_norm.bytes() + self.layers.iter().map(LayerSaved::bytes).sum::<usize>()
    }
}
