//! Multi-head self-attention over the fused QKV product: the forward and the input-gradient
//! backward, each device on its own fused path.
//!
//! Forward, per (pair, head): `S = Q Kᵀ`, `P = softmax(S/√d, mask)`, `C = P V`.
//! Backward, line by line in reverse: `dP = dC Vᵀ`, `dV = Pᵀ dC`,
//! `dS = softmax_backward(dP, P)` (scale and mask inside), `dQ = dS K`, `dK = dSᵀ Q`.
//!
//! Three paths, chosen by [`kind`]:
//! - the CPU: one core runs a whole (pair, head) in its cache and only each row's log-sum-exp
//!   is saved; the backward recomputes `P` ([`crate::ops::attention`]);
//! - a GPU in half precision with cuDNN (feature `cudnn`, switched on by `SPANGRAD_CUDNN`):
//!   cuDNN's fused attention reads Q, K and V in place from the QKV product and writes the
//!   context in token layout; its softmax statistics replace `P` ([`crate::ops::kernels::cudnn`]);
//! - otherwise on a GPU: cuBLAS batched GEMMs around the softmax kernels, `P` saved.
//!
//! The last layer's backward takes only the query rows its target reads: `dC` and `Q` are
//! those rows', `K` and `V` every key's.

use candle_core::{DType, Device, Result, Tensor};

use super::layers::Linear;
use super::saved::BatchShape;
use crate::{ops, profile};

/// Which attention a pass runs, and so what it saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The CPU's per-(pair, head) attention: each row's log-sum-exp saved.
    PerHead,
    /// spangrad's GPU kernels: the probabilities saved.
    Kernels,
    /// cuDNN's fused attention: the context and each row's statistics saved.
    Cudnn,
}

impl Kind {
    /// For reports: which attention ran.
    pub fn describe(self) -> String {
        match self {
            Self::PerHead => "spangrad's per-(pair, head) attention on the CPU".into(),
            Self::Kernels => "spangrad's GPU kernels (probabilities saved)".into(),
            Self::Cudnn => {
                let v = switch::cudnn_version().unwrap_or(0);
                #[cfg(feature = "cudnn")]
                let built = {
                    let (graphs, ms) = crate::ops::kernels::cudnn::graphs_built();
                    format!(" ({graphs} graphs built so far, in {ms:.0} ms)")
                };
                #[cfg(not(feature = "cudnn"))]
                let built = "";
                format!(
                    "cuDNN {}.{}.{} fused attention{built}",
                    v / 10_000,
                    v / 100 % 100,
                    v % 100
                )
            }
        }
    }
}

/// The attention a pass in `dtype` on `device` runs.
pub fn kind(dtype: DType, device: &Device) -> Kind {
    if device.is_cpu() {
        Kind::PerHead
    } else if matches!(dtype, DType::BF16 | DType::F16) && switch::cudnn_on() {
        Kind::Cudnn
    } else {
        Kind::Kernels
    }
}

/// What the backward needs of one layer's attention.
#[derive(Debug, Clone)]
pub enum AttentionSaved {
    /// [`Kind::Kernels`]: Q, K, V `[3, b, a, t, d]` and the probabilities `[b, a, t, t]`.
    Probs { qkv: Tensor, probs: Tensor },
    /// [`Kind::PerHead`]: Q, K, V `[3, b, a, t, d]` and each query row's log-sum-exp of the
    /// scaled scores `[b, a, t]` f32.
    LogSumExp { qkv: Tensor, lse: Tensor },
    /// [`Kind::Cudnn`]: the QKV product `[n, 3h]` (bias added), the context `[n, h]` and
    /// cuDNN's statistics of each query row `[b, a, t]` f32.
    Fused {
        qkv: Tensor,
        context: Tensor,
        stats: Tensor,
    },
}

impl AttentionSaved {
    pub fn bytes(&self) -> usize {
        match self {
            Self::Probs { qkv, probs: extra } | Self::LogSumExp { qkv, lse: extra } => {
                ops::bytes(qkv) + ops::bytes(extra)
            }
            Self::Fused {
                qkv,
                context,
                stats,
            } => ops::bytes(qkv) + ops::bytes(context) + ops::bytes(stats),
        }
    }
}

/// What the head-layout backward needs besides Q, K, V.
enum HeadSaved {
    Probs(Tensor),
    LogSumExp(Tensor),
}

/// [`ops::split_heads`] by the batch's heads.
fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    shape: &BatchShape,
    queries: usize,
) -> Result<Tensor> {
    ops::split_heads(x, bias, queries, shape.heads, shape.head_dim())
}

/// The context `[n, h]` of `x` `[n, h]` under the fused query, key and value projection
/// `qkv` (`[3h, h]`), and what the backward needs.
pub fn forward(
    x: &Tensor,
    qkv: &Linear,
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<(Tensor, AttentionSaved)> {
    if kind(x.dtype(), x.device()) == Kind::Cudnn {
        match cudnn::forward(x, qkv, lengths, shape, scale) {
            Ok(done) => return Ok(done),
            // The engine answers running out of memory by splitting the pass, on cuDNN still.
            Err(e) if crate::error::is_out_of_memory(&e) => return Err(e),
            Err(e) => switch::cudnn_failed(&e, shape),
        }
    }
    let qkv = split_heads(&qkv.product(x)?, Some(&qkv.bias), shape, shape.tokens)?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let device = x.device();
    if device.is_cpu() {
        let (context, lse) = profile::time(device, "attention forward (fused)", || {
            let dtype = q.dtype();
            let [q, k, v] = [&q, &k, &v].map(|x| x.to_dtype(DType::F32));
            let (context, lse) = ops::attention_forward_cpu(&q?, &k?, &v?, lengths, scale)?;
            Ok((context.to_dtype(dtype)?, lse))
        })?;
        return Ok((
            ops::merge_heads(&[context])?,
            AttentionSaved::LogSumExp { qkv, lse },
        ));
    }
    let scores = profile::time(device, "attention Q·Kᵀ", || ops::matmul(&q, &k.t()?))?;
    let probs = ops::masked_softmax_forward(&scores, lengths, scale)?;
    let context = profile::time(device, "attention P·V", || ops::matmul(&probs, &v))?;
    Ok((
        ops::merge_heads(&[context])?,
        AttentionSaved::Probs { qkv, probs },
    ))
}

/// The QKV product's gradient `[n, 3h]` (dQ, dK, dV side by side) given the context's
/// `dcontext` `[n, h]`.
pub fn backward(
    dcontext: &Tensor,
    saved: &AttentionSaved,
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<Tensor> {
    let (qkv, rest) = match saved {
        AttentionSaved::Fused {
            qkv,
            context,
            stats,
        } => return cudnn::backward(dcontext, qkv, context, stats, lengths, shape, scale),
        AttentionSaved::Probs { qkv, probs } => (qkv, HeadSaved::Probs(probs.clone())),
        AttentionSaved::LogSumExp { qkv, lse } => (qkv, HeadSaved::LogSumExp(lse.clone())),
    };
    let dcontext = split_heads(dcontext, None, shape, shape.tokens)?.squeeze(0)?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let (dq, dk, dv) = heads_backward(&dcontext, &q, &k, &v, &rest, lengths, scale)?;
    ops::merge_heads(&[dq, dk, dv])
}

/// The backward for the query rows `rows` alone (two slots per pair, `[2b]` u32 token rows;
/// `head_rows` the same rows of each (pair, head) in head layout, `[b·a·2]`), given their
/// context gradient `[2b, h]`: `(dQ [2b, h], [dK dV] [n, 2h])`. Exact: the other rows' terms
/// are zero.
pub fn backward_rows(
    dcontext: &Tensor,
    saved: &AttentionSaved,
    head_rows: &Tensor,
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (b, a, t, d) = (shape.pairs, shape.heads, shape.tokens, shape.head_dim());
    let slots = dcontext.dim(0)? / b;
    let select = |x: &Tensor, width: usize| -> Result<Tensor> {
        x.reshape((b * a * t, width))?
            .index_select(head_rows, 0)?
            .reshape((b, a, slots, width))
    };
    let qkv = match saved {
        AttentionSaved::Probs { qkv, .. } | AttentionSaved::LogSumExp { qkv, .. } => qkv.clone(),
        AttentionSaved::Fused { qkv, .. } => split_heads(qkv, None, shape, t)?,
    };
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let q_rows = select(&q, d)?;
    let rest = match saved {
        AttentionSaved::Probs { probs, .. } => HeadSaved::Probs(select(probs, t)?),
        AttentionSaved::LogSumExp { lse, .. } => HeadSaved::LogSumExp(select(lse, 1)?.squeeze(3)?),
        // The rows' probabilities are recomputed by spangrad's kernels: two rows a pair cost
        // 2/t of the whole attention, and need no second kind of cuDNN graph.
        AttentionSaved::Fused { .. } => {
            let scores = ops::matmul(&q_rows, &k.t()?)?;
            HeadSaved::Probs(ops::masked_softmax_forward(&scores, lengths, scale)?)
        }
    };
    let dcontext = split_heads(dcontext, None, shape, slots)?.squeeze(0)?;
    let (dq, dk, dv) = heads_backward(&dcontext, &q_rows, &k, &v, &rest, lengths, scale)?;
    Ok((ops::merge_heads(&[dq])?, ops::merge_heads(&[dk, dv])?))
}

/// `(dQ, dK, dV)` in head layout for the query rows of `dcontext`, `q` and `saved`.
fn heads_backward(
    dcontext: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    saved: &HeadSaved,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    match saved {
        HeadSaved::LogSumExp(lse) => {
            profile::time(q.device(), "attention backward (fused)", || {
                let dtype = q.dtype();
                let [dc, q, k, v] = [dcontext, q, k, v].map(|x| x.to_dtype(DType::F32));
                let (dq, dk, dv) =
                    ops::attention_backward_cpu(&dc?, &q?, &k?, &v?, lse, lengths, scale)?;
                Ok((
                    dq.to_dtype(dtype)?,
                    dk.to_dtype(dtype)?,
                    dv.to_dtype(dtype)?,
                ))
            })
        }
        HeadSaved::Probs(probs) => {
            let device = q.device();
            let (dprobs, dv) = profile::time(device, "attention backward dP, dV", || {
                Ok((
                    ops::matmul(dcontext, &v.t()?)?,
                    ops::matmul(&probs.t()?, dcontext)?,
                ))
            })?;
            let dscores = ops::masked_softmax_backward(&dprobs, probs, scale)?;
            profile::time(device, "attention backward dQ, dK", || {
                Ok((
                    ops::matmul(&dscores, k)?,
                    dv,
                    ops::matmul(&dscores.t()?, q)?,
                ))
            })
            .map(|(dq, dv, dk)| (dq, dk, dv))
        }
    }
}

/// The cuDNN path's two calls ([`crate::ops::kernels::cudnn`]), timed; without the `cudnn`
/// feature they are never reached ([`kind`] is never [`Kind::Cudnn`]).
mod cudnn {
    use super::*;

    #[cfg(feature = "cudnn")]
    pub fn forward(
        x: &Tensor,
        qkv: &Linear,
        lengths: &Tensor,
        shape: &BatchShape,
        scale: f64,
    ) -> Result<(Tensor, AttentionSaved)> {
        use crate::ops::kernels::cudnn;
        let device = x.device();
        let qkv = qkv.forward(x)?;
        // Both graphs first: a shape cuDNN refuses is found before anything is saved.
        cudnn::attention_prepare(&qkv, shape.tokens, shape.heads, scale)?;
        let (context, stats) = profile::time(device, "attention forward (cuDNN)", || {
            cudnn::attention_forward(&qkv, lengths, shape.tokens, shape.heads, scale)
        })?;
        let saved = AttentionSaved::Fused {
            qkv,
            context: context.clone(),
            stats,
        };
        Ok((context, saved))
    }

    #[cfg(feature = "cudnn")]
    pub fn backward(
        dcontext: &Tensor,
        qkv: &Tensor,
        context: &Tensor,
        stats: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
        scale: f64,
    ) -> Result<Tensor> {
        profile::time(dcontext.device(), "attention backward (cuDNN)", || {
            crate::ops::kernels::cudnn::attention_backward(
                qkv,
                context,
                stats,
                dcontext,
                lengths,
                shape.tokens,
                shape.heads,
                scale,
            )
        })
    }

    #[cfg(not(feature = "cudnn"))]
    pub fn forward(
        _: &Tensor,
        _: &Linear,
        _: &Tensor,
        _: &BatchShape,
        _: f64,
    ) -> Result<(Tensor, AttentionSaved)> {
        candle_core::bail!("this spangrad was built without the `cudnn` feature")
    }

    #[cfg(not(feature = "cudnn"))]
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &BatchShape,
        _: f64,
    ) -> Result<Tensor> {
        candle_core::bail!("this spangrad was built without the `cudnn` feature")
    }
}

/// Whether cuDNN's attention is on, from the `SPANGRAD_CUDNN` variable, read once.
///
/// Unset or `0`: spangrad's own kernels (the default until a GPU check has passed with cuDNN on
/// a real card). `1`: cuDNN, opened as `libcudnn.so.9` from the loader's search path. Any
/// other value: the path of the library to open. When it cannot be used (no library, a build
/// without the `cudnn` feature, a shape it refuses), one warning says why and the pass runs on
/// spangrad's kernels, as it would have without the variable.
pub mod switch {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    use super::BatchShape;

    pub const VARIABLE: &str = "SPANGRAD_CUDNN";

    /// What a value of [`VARIABLE`] asks for: `None`, nothing; `Some(None)`, the library from
    /// the search path; `Some(Some(path))`, that library.
    pub fn requested(value: Option<&str>) -> Option<Option<&str>> {
        match value.map(str::trim) {
            None | Some("" | "0") => None,
            Some("1") => Some(None),
            Some(path) => Some(Some(path)),
        }
    }

    /// Opens cuDNN: its version, or why it cannot be used.
    pub fn open(library: Option<&str>) -> Result<i64, String> {
        #[cfg(feature = "cudnn")]
        return crate::ops::kernels::cudnn::load(library);
        #[cfg(not(feature = "cudnn"))]
        {
            let _ = library;
            Err("this spangrad was built without the `cudnn` feature".into())
        }
    }

    /// The one line a user sees when cuDNN was asked for and cannot be used.
    pub fn fallback_warning(reason: &str) -> String {
        format!(
            "spangrad: warning: {VARIABLE} asks for cuDNN's attention, which cannot be used              ({reason}); running spangrad's own attention kernels"
        )
    }

    static FAILED: AtomicBool = AtomicBool::new(false);

    fn warn(line: &str) {
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// The version of the cuDNN that passes run (e.g. 91301 for 9.13.1), `None` when they run
    /// spangrad's kernels.
    pub fn cudnn_version() -> Option<i64> {
        static OPENED: OnceLock<Option<i64>> = OnceLock::new();
        let opened = *OPENED.get_or_init(|| {
            let value = std::env::var(VARIABLE).ok();
            let library = requested(value.as_deref())?;
            open(library)
                .map_err(|why| warn(&fallback_warning(&why)))
                .ok()
        });
        opened.filter(|_| !FAILED.load(Ordering::Relaxed))
    }

    pub fn cudnn_on() -> bool {
        cudnn_version().is_some()
    }

    /// cuDNN failed on a pass for another reason than memory (a shape it does not support):
    /// this pass and every later one run spangrad's kernels, and the first failure is said once.
    pub fn cudnn_failed(error: &candle_core::Error, shape: &BatchShape) {
        if !FAILED.swap(true, Ordering::Relaxed) {
            warn(&fallback_warning(&format!(
                "on {} pairs of {} tokens: {error}",
                shape.pairs, shape.tokens
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::switch::*;

    #[test]
    fn the_switch_reads_off_a_library_or_a_path() {
        assert_eq!(requested(None), None);
        assert_eq!(requested(Some("0")), None);
        assert_eq!(requested(Some(" ")), None);
        assert_eq!(requested(Some("1")), Some(None));
        assert_eq!(
            requested(Some("/opt/libcudnn.so.9")),
            Some(Some("/opt/libcudnn.so.9"))
        );
    }

    #[test]
    fn a_library_that_cannot_be_opened_gives_one_clear_reason() {
        let missing = "/nonexistent/libcudnn.so.9";
        let why = open(Some(missing)).unwrap_err();
        if cfg!(feature = "cudnn") {
            assert!(why.contains(missing), "{why}");
        } else {
            assert!(why.contains("without the `cudnn` feature"), "{why}");
        }
        let line = fallback_warning(&why);
        assert!(
            line.contains(VARIABLE) && line.contains("own attention kernels"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }
}
