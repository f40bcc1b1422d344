//! Launchers of the saliency kernels: streaming and Gram norms, sparse embedding rows,
//! normalisation.

use candle_core::{DType, Result, Tensor};

use super::launch::{device, launch, output, read, tensor};
use super::params::{self, NormaliseParams, RowsParams, StreamingParams};
use super::{typed, GATHER, GRAM, NORMALISE, ROW_THREADS, STREAMING, WARPS_PER_BLOCK};

fn same_hidden(a: &Tensor, b: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    let (rows_a, hidden) = a.dims2()?;
    let (rows_b, hidden_b) = b.dims2()?;
    if hidden != hidden_b {
        candle_core::bail!("{what}: hidden sizes differ ({hidden} vs {hidden_b})");
    }
    Ok((rows_a, rows_b, hidden))
}

/// `sqrt(Σ_v (G[n]·E[v])²)` per row of `grads` `[n, hidden]`; `embeddings` `[vocab, hidden]` of
/// the same dtype. Never allocates `[n, vocab]`: partial sums per vocabulary split only.
pub fn streaming_norms(grads: &Tensor, embeddings: &Tensor) -> Result<Tensor> {
    let (tokens, vocab, hidden) = same_hidden(grads, embeddings, "streaming_norms")?;
    if grads.dtype() != embeddings.dtype() {
        candle_core::bail!("streaming_norms: G and E have different dtypes");
    }
    let dev = device(grads)?;
    let splits = vocab.div_ceil(params::SN_VOCAB_PER_SPLIT as usize);
    let p = StreamingParams {
        tokens: tokens as u32,
        vocab: vocab as u32,
        hidden: hidden as u32,
        splits: splits as u32,
    };
    let partial = output(&dev, splits * tokens)?;
    let raw = output(&dev, tokens)?;
    let (g, e) = (read(grads)?, read(embeddings)?);
    let (g, e) = (g.view()?, e.view()?);
    let name = typed("streaming_partial", grads.dtype())?;
    let token_tiles = tokens.div_ceil(params::SN_TILE_TOKENS as usize);
    launch!(dev, STREAMING, name, (token_tiles, splits), params::SN_THREADS; &g, &e, &partial, &p)?;
    launch!(dev, STREAMING, "streaming_finish", (tokens.div_ceil(256), 1), 256; &partial, &raw, &p)?;
    tensor(raw, &dev, tokens)
}

/// `sqrt(max(0, Σ_h gm[n,h]·G[n,h]))` per row: the Gram method's quadratic form, `gm = G·EᵀE`
/// in f32, `grads` f32, f16 or bf16.
pub fn gram_norms(gm: &Tensor, grads: &Tensor) -> Result<Tensor> {
    let (tokens, _, hidden) = same_hidden(gm, grads, "gram_norms")?;
    if gm.dtype() != DType::F32 {
        candle_core::bail!("gram_norms: G·EᵀE must be f32");
    }
    let dev = device(grads)?;
    let p = RowsParams {
        tokens: tokens as u32,
        hidden: hidden as u32,
        per_token: 1,
        vocab: 0,
    };
    let raw = output(&dev, tokens)?;
    let (m, g) = (read(gm)?, read(grads)?);
    let (m, g) = (m.view()?, g.view()?);
    let blocks = (tokens.div_ceil(WARPS_PER_BLOCK), 1);
    launch!(dev, GRAM, typed("gram_norms", grads.dtype())?, blocks, ROW_THREADS; &m, &g, &raw, &p)?;
    tensor(raw, &dev, tokens)
}

/// `out[n, k] = G[n] · E[ids[n, k]]`; `ids` `[n, k]` u32. NaN marks an id outside `E`.
pub fn gather_dot(grads: &Tensor, embeddings: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (tokens, vocab, hidden) = same_hidden(grads, embeddings, "gather_dot")?;
    let (id_rows, per_token) = ids.dims2()?;
    if id_rows != tokens || ids.dtype() != DType::U32 || grads.dtype() != embeddings.dtype() {
        candle_core::bail!("gather_dot: ids must be u32 [{tokens}, k] and G, E of one dtype");
    }
    let dev = device(grads)?;
    let p = RowsParams {
        tokens: tokens as u32,
        hidden: hidden as u32,
        per_token: per_token as u32,
        vocab: vocab as u32,
    };
    let out = output(&dev, tokens * per_token)?;
    let (g, e, i) = (read(grads)?, read(embeddings)?, read(ids)?);
    let (g, e, i) = (g.view()?, e.view()?, i.view()?);
    let blocks = ((tokens * per_token).div_ceil(WARPS_PER_BLOCK), 1);
    let name = typed("gather_dot", grads.dtype())?;
    launch!(dev, GATHER, name, blocks, ROW_THREADS; &g, &e, &i, &out, &p)?;
    tensor(out, &dev, (tokens, per_token))
}

/// `raw[i] / max(raw of i's example)`, examples at `offsets[b]..offsets[b + 1]` (`[b + 1]` u32);
/// zeros for an example whose maximum is 0.
pub fn normalise(raw: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    let tokens = raw.dims1()?;
    let examples = offsets.dims1()?.saturating_sub(1);
    if raw.dtype() != DType::F32 || offsets.dtype() != DType::U32 {
        candle_core::bail!("normalise takes f32 scores and u32 offsets");
    }
    let dev = device(raw)?;
    let p = NormaliseParams {
        examples: examples as u32,
        tokens: tokens as u32,
    };
    let scores = output(&dev, tokens)?;
    let (r, o) = (read(raw)?, read(offsets)?);
    let (r, o) = (r.view()?, o.view()?);
    launch!(dev, NORMALISE, "normalise", (examples, 1), ROW_THREADS; &r, &o, &scores, &p)?;
    tensor(scores, &dev, tokens)
}
