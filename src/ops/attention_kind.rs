//! Which attention a pass runs on its device, and cuDNN's fused attention behind its switch:
//! the model's attention layer branches on [`Kind`], chosen here.
//!
//! - the CPU: one core runs a whole (pair, head) in its cache and only each row's log-sum-exp
//!   is saved ([`super::attention`]);
//! - a GPU in half precision with cuDNN (feature `cudnn`, switched on by `SPANGRAD_CUDNN`):
//!   cuDNN's fused attention reads Q, K and V in place from the QKV product and writes the
//!   context in token layout; its softmax statistics replace `P`;
//! - otherwise on a GPU: cuBLAS batched GEMMs around the softmax kernels, `P` saved.

use candle_core::{DType, Device, Result, Tensor};

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

/// cuDNN's attention forward over the QKV product `[n, 3h]` (bias added): the context
/// `[n, h]` and each query row's statistics `[b, a, t]` f32. Both graphs are built first, so
/// that a shape cuDNN refuses is found before anything is saved.
#[cfg(feature = "cudnn")]
pub fn cudnn_forward(
    qkv: &Tensor,
    lengths: &Tensor,
    tokens: usize,
    heads: usize,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    use super::kernels::cudnn;
    cudnn::attention_prepare(qkv, tokens, heads, scale)?;
    crate::profile::time(qkv.device(), "attention forward (cuDNN)", || {
        cudnn::attention_forward(qkv, lengths, tokens, heads, scale)
    })
}

/// The QKV product's gradient `[n, 3h]` from cuDNN's backward.
#[cfg(feature = "cudnn")]
#[allow(clippy::too_many_arguments)]
pub fn cudnn_backward(
    dcontext: &Tensor,
    qkv: &Tensor,
    context: &Tensor,
    stats: &Tensor,
    lengths: &Tensor,
    tokens: usize,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    crate::profile::time(dcontext.device(), "attention backward (cuDNN)", || {
        super::kernels::cudnn::attention_backward(
            qkv, context, stats, dcontext, lengths, tokens, heads, scale,
        )
    })
}

/// Without the `cudnn` feature [`kind`] is never [`Kind::Cudnn`]: never reached.
#[cfg(not(feature = "cudnn"))]
pub fn cudnn_forward(
    _: &Tensor,
    _: &Tensor,
    _: usize,
    _: usize,
    _: f64,
) -> Result<(Tensor, Tensor)> {
    candle_core::bail!("this spangrad was built without the `cudnn` feature")
}

#[cfg(not(feature = "cudnn"))]
#[allow(clippy::too_many_arguments)]
pub fn cudnn_backward(
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: usize,
    _: usize,
    _: f64,
) -> Result<Tensor> {
    candle_core::bail!("this spangrad was built without the `cudnn` feature")
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
            "spangrad: warning: {VARIABLE} asks for cuDNN's attention, which cannot be used \
             ({reason}); running spangrad's own attention kernels"
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
    pub fn cudnn_failed(error: &candle_core::Error, pairs: usize, tokens: usize) {
        if !FAILED.swap(true, Ordering::Relaxed) {
            warn(&fallback_warning(&format!(
                "on {pairs} pairs of {tokens} tokens: {error}"
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
