//! One model per device, a batch split across them: `--device cuda:0,cuda:1`.

use std::path::Path;

use candle_core::Device;

use super::{ExplainOptions, Explainer, Explanation, Method, QaPair};
use crate::error::{Error, Result};

/// Explainers of one checkpoint on several devices. A batch is cut into as many contiguous
/// shards as there are devices, explained at the same time, one thread per device, and put
/// back in input order. Pairs never interact, so the results are those of one device (to
/// the last bits, as any change of batch composition).
#[derive(Clone)]
pub struct Sharded {
    shards: Vec<Explainer>,
}

impl Sharded {
    /// Loads the checkpoint once per device.
    pub fn from_dir(dir: &Path, options: ExplainOptions, devices: &[Device]) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::Device("no device given".into()));
        }
        let shards = devices
            .iter()
            .map(|d| Explainer::from_dir(dir, options.clone(), d))
            .collect::<Result<_>>()?;
        Ok(Self { shards })
    }

    /// One explainer per device, as given.
    pub fn new(shards: Vec<Explainer>) -> Result<Self> {
        if shards.is_empty() {
            return Err(Error::Usage("no explainer to shard over".into()));
        }
        Ok(Self { shards })
    }

    pub fn devices(&self) -> usize {
        self.shards.len()
    }

    pub fn first(&self) -> &Explainer {
        &self.shards[0]
    }

    /// The same models scoring tokens by `method`.
    pub fn with_method(&self, method: Method) -> Self {
        Self {
            shards: self.shards.iter().map(|e| e.with_method(method)).collect(),
        }
    }

    /// The same models under other options (the dtype stays the loaded weights').
    pub fn with_options(&self, options: ExplainOptions) -> Result<Self> {
        let shards = self
            .shards
            .iter()
            .map(|e| e.with_options(options.clone()))
            .collect::<Result<_>>()?;
        Ok(Self { shards })
    }

    pub fn explain_one(&self, pair: &QaPair) -> Result<Explanation> {
        self.shards[0].explain_one(pair)
    }

    /// As [`Explainer::explain_each`], the pairs shared out over the devices.
    pub fn explain_each(&self, pairs: &[QaPair]) -> Result<Vec<Result<Explanation>>> {
        if self.shards.len() == 1 || pairs.len() < 2 {
            return self.shards[0].explain_each(pairs);
        }
        let size = pairs.len().div_ceil(self.shards.len());
        let results: Vec<Result<Vec<Result<Explanation>>>> = std::thread::scope(|scope| {
            let running: Vec<_> = pairs
                .chunks(size)
                .zip(&self.shards)
                .map(|(chunk, explainer)| scope.spawn(move || explainer.explain_each(chunk)))
                .collect();
            running
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut all = Vec::with_capacity(pairs.len());
        for shard in results {
            all.extend(shard?);
        }
        Ok(all)
    }
}
