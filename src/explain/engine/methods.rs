//! Methods that run the pass at other inputs: integrated gradients and SmoothGrad.

use super::*;

impl Engine {
    /// Per rank of the targets: every real token's attribution by the method, its score and
    /// its gradient x input, and for integrated gradients each pair's objective at the
    /// baseline. The only copies back to the host are here.
    pub(super) fn attributions(
        &self,
        gradients: &Gradients,
        batch: &[&Encoded],
        noise: Option<&[Tensor]>,
    ) -> Result<Vec<RankValues>> {
        let embeddings = self.model.word_embeddings();
        let own_rows = gradients.ids.unsqueeze(1)?;
        let mut offsets: Vec<u32> = gradients.rows.iter().map(|r| r.start as u32).collect();
        offsets.push(gradients.rows.last().map_or(0, |r| r.end as u32));
        let offsets = Tensor::new(offsets, embeddings.device())?;
        let method = self.options.method;
        // Per rank: every real token's attribution, score and gradient x input, and for
        // integrated gradients each pair's objective at the baseline.
        let mut values = Vec::with_capacity(gradients.grads.len());
        for (rank, grads) in gradients.grads.iter().enumerate() {
            let grad_x_input = ops::gather_dot(grads, embeddings, &own_rows)?.squeeze(1)?;
            let objectives = objectives(&gradients.targets, rank);
            let (raw, at_baseline) = match method {
                Method::OnehotNorm => (self.saliency.norms(grads)?, None),
                Method::GradXInput => (grad_x_input.clone(), None),
                Method::GradNorm => (norms(grads)?, None),
                Method::IntegratedGradients => {
                    let (raw, at_baseline) =
                        self.integrated_gradients(&gradients.pass, batch, &objectives)?;
                    (raw, Some(at_baseline))
                }
                Method::Smoothgrad => (
                    self.smoothgrad(&gradients.pass, batch, &objectives, noise)?,
                    None,
                ),
            };
            // The only copies back: everything above is queued on the model's device.
            let (raw_host, scores) = if method == Method::OnehotNorm {
                let scores = ops::normalise(&raw, &offsets)?;
                (raw.to_vec1::<f32>()?, scores.to_vec1::<f32>()?)
            } else {
                let raw = raw.to_vec1::<f32>()?;
                let scores = ops::normalise_signed(&raw, &gradients.rows);
                (raw, scores)
            };
            values.push(RankValues {
                raw: raw_host,
                score: scores,
                grad_x_input: grad_x_input.to_vec1::<f32>()?,
                at_baseline,
            });
        }
        Ok(values)
    }

    /// SmoothGrad with the noise given rather than drawn: `noise[p]` is pair `p`'s
    /// `[samples, tokens, hidden]` draws. One pass (no splitting by memory), for reproducing
    /// draws made elsewhere (the reference fixtures).
    pub fn explain_with_noise(
        &self,
        batch: &[Encoded],
        noise: &[Tensor],
    ) -> Result<Vec<Result<Explanation>>> {
        if self.options.method != Method::Smoothgrad || noise.len() != batch.len() {
            return Err(Error::Usage(
                "explain_with_noise takes method smoothgrad and one noise tensor per pair".into(),
            ));
        }
        let batch: Vec<&Encoded> = batch.iter().collect();
        self.explain_pass_with(&batch, None, Some(noise))
    }

    /// Integrated-gradients attributions of every real token, `[tokens]` f32, and each pair's
    /// objective at the baseline.
    pub(super) fn integrated_gradients(
        &self,
        pass: &PassLayout,
        batch: &[&Encoded],
        objectives: &[Objective],
    ) -> Result<(Tensor, Vec<f32>)> {
        let x = &pass.words;
        let (n, h) = x.dims2()?;
        let base = self.baseline(pass, batch)?;
        let diff = (x - &base)?;
        let rule = method::gauss_legendre(self.options.steps);
        let per_pass = self.copies_per_pass(pass, rule.len())?;
        let device = x.device();
        let mut sum = Tensor::zeros((n, h), DType::F32, device)?;
        for chunk in rule.chunks(per_pass) {
            let points = chunk
                .iter()
                .map(|&(alpha, _)| &base + (&diff * alpha)?)
                .collect::<candle_core::Result<Vec<_>>>()?;
            let grads = self
                .grads_at(pass, &Tensor::cat(&points, 0)?, chunk.len(), objectives)?
                .to_dtype(DType::F32)?
                .reshape((chunk.len(), n, h))?;
            let weights: Vec<f32> = chunk.iter().map(|&(_, w)| w as f32).collect();
            let weights = Tensor::from_vec(weights, (chunk.len(), 1, 1), device)?;
            sum = (sum + grads.broadcast_mul(&weights)?.sum(0)?)?;
        }
        let attribution = (diff.to_dtype(DType::F32)? * sum)?
            .sum(1)?
            .index_select(&pass.real_rows, 0)?;
        let (logits, _) = self
            .model
            .forward(&base, &pass.types, &pass.lengths, &pass.shape)?;
        let (start, end) = (
            logits.start.to_dtype(DType::F32)?.to_vec2::<f32>()?,
            logits.end.to_dtype(DType::F32)?.to_vec2::<f32>()?,
        );
        let at_baseline = objectives
            .iter()
            .enumerate()
            .map(|(p, o)| o.start.map_or(0.0, |s| start[p][s]) + o.end.map_or(0.0, |e| end[p][e]))
            .collect();
        Ok((attribution, at_baseline))
    }

    /// The integrated-gradients baseline `[n, h]`: every token but the special ones replaced by
    /// the pad or mask token's embedding, or zeros.
    pub(super) fn baseline(&self, pass: &PassLayout, batch: &[&Encoded]) -> Result<Tensor> {
        let token = match self.options.baseline {
            Baseline::Zero => return Ok(pass.words.zeros_like()?),
            Baseline::Pad => self.pad_id,
            Baseline::Mask => self.mask_id.ok_or_else(|| {
                Error::from(InvalidOption::says(
                    name::baseline,
                    " mask: the vocabulary has no [MASK] token",
                ))
            })?,
        };
        let t = pass.shape.tokens;
        let mut ids = vec![self.pad_id; batch.len() * t];
        for (p, enc) in batch.iter().enumerate() {
            for (i, (&id, segment)) in enc.ids.iter().zip(&enc.segments).enumerate() {
                ids[p * t + i] = if *segment == Segment::Special {
                    id
                } else {
                    token
                };
            }
        }
        let ids = Tensor::from_vec(ids, batch.len() * t, pass.ids.device())?;
        self.saliency.embed(&ids)
    }

    /// SmoothGrad: the norm over the hidden size of the gradient averaged over noisy copies of
    /// the word embeddings, `[tokens]` f32. The noise is drawn per pair from the seed and the
    /// pair's tokens (so a pair gets the same draws in any batch), or given.
    pub(super) fn smoothgrad(
        &self,
        pass: &PassLayout,
        batch: &[&Encoded],
        objectives: &[Objective],
        given: Option<&[Tensor]>,
    ) -> Result<Tensor> {
        let (n, h) = pass.words.dims2()?;
        let (t, samples) = (pass.shape.tokens, self.options.samples);
        let device = pass.words.device();
        // [samples, n, h]: each pair's draws in its real rows, zeros on padding.
        let mut noise = vec![0f32; samples * n * h];
        for (p, enc) in batch.iter().enumerate() {
            let len = enc.len();
            let draws: Vec<f32> = match given {
                Some(given) => {
                    let g = &given[p];
                    if g.dims() != [samples, len, h] {
                        return Err(Error::Usage(format!(
                            "pair {p}: noise must be [{samples}, {len}, {h}], not {:?}",
                            g.dims()
                        )));
                    }
                    g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?
                }
                None => draw_noise(
                    self.options.seed,
                    &enc.ids,
                    samples * len * h,
                    self.options.noise_std,
                ),
            };
            for k in 0..samples {
                let from = &draws[k * len * h..(k + 1) * len * h];
                let at = (k * n + p * t) * h;
                noise[at..at + len * h].copy_from_slice(from);
            }
        }
        let noise =
            Tensor::from_vec(noise, (samples, n, h), device)?.to_dtype(pass.words.dtype())?;
        let per_pass = self.copies_per_pass(pass, samples)?;
        let mut sum = Tensor::zeros((n, h), DType::F32, device)?;
        for start in (0..samples).step_by(per_pass) {
            let c = per_pass.min(samples - start);
            let words = noise
                .narrow(0, start, c)?
                .broadcast_add(&pass.words)?
                .reshape((c * n, h))?;
            let grads = self
                .grads_at(pass, &words, c, objectives)?
                .to_dtype(DType::F32)?
                .reshape((c, n, h))?;
            sum = (sum + grads.sum(0)?)?;
        }
        let mean = (sum / samples as f64)?;
        Ok(norms(&mean)?.index_select(&pass.real_rows, 0)?)
    }
}

/// `count` normal draws of standard deviation `std`, from `seed` and the pair's token ids.
pub(super) fn draw_noise(seed: u64, ids: &[u32], count: usize, std: f64) -> Vec<f32> {
    use rand_distr::Distribution;
    let mut rng = method::pair_rng(seed, ids);
    let normal = rand_distr::Normal::new(0.0, std).expect("a finite, non-negative deviation");
    (0..count).map(|_| normal.sample(&mut rng) as f32).collect()
}

/// One rank's per-token values over the real tokens of the pass.
pub(super) struct RankValues {
    pub(super) raw: Vec<f32>,
    pub(super) score: Vec<f32>,
    pub(super) grad_x_input: Vec<f32>,
    /// Integrated gradients: each pair's objective at the baseline.
    pub(super) at_baseline: Option<Vec<f32>>,
}

/// The L2 norm of each row, in f32: `[rows, h]` → `[rows]`.
pub(super) fn norms(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F32)?.sqr()?.sum(1)?.sqrt()?)
}
