//! Batch planning: passes that fill the token budget, memory fitting, and splitting a pass
//! the device cannot hold.

use super::*;

/// Padded tokens of an `auto` pass on the CPU. Larger passes stop paying there: distilbert-base
/// x 384, f32, 2 cores gave 2.1–2.7 pairs/s from 2 to 32 pairs per pass but 1.95 at 64 (the
/// forward 2.7x its time at 32), and a server at 64 clients ran 18% faster with passes of 4,096
/// tokens than of 8,192 (bench/RESULTS.md). A single pair over it still runs, alone.
pub const CPU_AUTO_PASS_TOKENS: usize = 4096;

/// What a pass runs, which sizes its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// The forward and the input-gradient backward ([`crate::model::BatchShape::peak_bytes`]).
    Backward,
    /// The forward alone ([`crate::model::BatchShape::infer_bytes`]).
    Forward,
}

impl Engine {
    /// Whether `pairs` padded to `longest` tokens make one pass that runs `need`, as
    /// `max_batch_tokens` says: `auto` fits the memory, and on the CPU stops at
    /// [`CPU_AUTO_PASS_TOKENS`].
    pub(super) fn fitting(&self, need: Need) -> Result<impl Fn(usize, usize) -> bool + '_> {
        let available = self.available_memory()?;
        let cpu = self.model.device().is_cpu();
        Ok(
            move |pairs: usize, longest: usize| match self.options.max_batch_tokens {
                BatchTokens::Fixed(n) => pairs * longest <= n,
                BatchTokens::Unlimited => true,
                BatchTokens::Auto => {
                    let shape = self.model.batch_shape(pairs, longest);
                    let (dtype, device) = (self.model.dtype(), self.model.device());
                    let bytes = match need {
                        Need::Backward => shape.peak_bytes(dtype, device),
                        Need::Forward => shape.infer_bytes(dtype, device),
                    };
                    bytes <= available && (!cpu || pairs * longest <= CPU_AUTO_PASS_TOKENS)
                }
            },
        )
    }

    /// Bytes a pass may use: the limit of the options, else what the device has free.
    pub(super) fn available_memory(&self) -> Result<usize> {
        match self.options.memory_limit_bytes() {
            Some(limit) => Ok(limit),
            None if self.options.max_batch_tokens == BatchTokens::Auto => {
                // Room for the device's other work (cuBLAS workspaces, the allocator's slack).
                Ok(crate::memory::available_bytes(self.model.device())? / 10 * 9)
            }
            None => Ok(usize::MAX),
        }
    }

    /// The estimated peak memory of a pass of `pairs` padded to `longest` tokens.
    pub fn pass_bytes(&self, pairs: usize, longest: usize) -> usize {
        self.model
            .batch_shape(pairs, longest)
            .peak_bytes(self.model.dtype(), self.model.device())
    }

    /// One pass, split in halves while the memory cannot hold it.
    pub(super) fn explain_splitting(
        &self,
        batch: &[&Encoded],
        mut stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        let outcome = self
            .check_memory(batch)
            .and_then(|()| self.explain_pass(batch, stages.as_deref_mut()));
        match outcome {
            Err(e) if e.is_out_of_memory() && batch.len() > 1 => {
                let (first, second) = batch.split_at(batch.len() / 2);
                let mut results = self.explain_splitting(first, stages.as_deref_mut())?;
                results.extend(self.explain_splitting(second, stages)?);
                Ok(results)
            }
            Err(e) if e.is_out_of_memory() => Ok(vec![Err(e)]),
            other => other,
        }
    }

    /// With a memory limit, a pass estimated above it fails as the device would.
    pub(super) fn check_memory(&self, batch: &[&Encoded]) -> Result<()> {
        let Some(limit) = self.options.memory_limit_bytes() else {
            return Ok(());
        };
        let longest = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let needed = self.pass_bytes(batch.len(), longest);
        if needed > limit {
            return Err(phrases::out_of_memory(
                format!("a pass of {} pairs of {longest} tokens", batch.len()),
                needed >> 20,
                limit >> 20,
            ));
        }
        Ok(())
    }

    /// How many copies of a pass fit in one (the memory the options allow), at least 1.
    pub(super) fn copies_per_pass(&self, pass: &PassLayout, wanted: usize) -> Result<usize> {
        let available = self.available_memory()?;
        let (b, t) = (pass.shape.pairs, pass.shape.tokens);
        Ok((1..=wanted)
            .take_while(|&c| self.pass_bytes(b * c, t) <= available)
            .last()
            .unwrap_or(1))
    }
}

/// Consecutive ranges of pairs for which `fits(pairs, longest)`; a pair that does not fit alone
/// gets a pass of its own.
pub(super) fn passes(
    lengths: impl Iterator<Item = usize>,
    fits: impl Fn(usize, usize) -> bool,
) -> Vec<Range<usize>> {
    let mut passes: Vec<Range<usize>> = Vec::new();
    let mut longest = 0;
    for (i, len) in lengths.enumerate() {
        let grown = longest.max(len);
        match passes.last_mut() {
            Some(pass) if fits(pass.len() + 1, grown) => {
                pass.end = i + 1;
                longest = grown;
            }
            _ => {
                passes.push(i..i + 1);
                longest = len;
            }
        }
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn passes_fill_the_token_budget_in_order() {
        let lengths = [10, 20, 5, 40, 40, 100, 3];
        let budget = |tokens: usize| move |pairs: usize, longest: usize| pairs * longest <= tokens;
        assert_eq!(
            passes(lengths.into_iter(), budget(usize::MAX)),
            vec![(0..7)]
        );
        // 3 x 20 = 60 fits, 4 x 40 = 160 does not; a pair over the budget stands alone.
        assert_eq!(
            passes(lengths.into_iter(), budget(80)),
            [0..3, 3..5, 5..6, 6..7]
        );
        assert_eq!(
            passes(lengths.into_iter(), budget(1)),
            [0..1, 1..2, 2..3, 3..4, 4..5, 5..6, 6..7]
        );
        assert!(passes(std::iter::empty(), budget(10)).is_empty());
    }
}
