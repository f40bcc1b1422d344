//! What the server drives: a loaded model behind three calls. The router and the batcher only
//! see this trait, so tests can put a failing or slow backend behind the real server.

use candle_core::Device;

use super::api::ModelInfo;
use crate::{ExplainOptions, Explainer, Explanation, QaPair, Result};

pub trait Backend: Send + Sync + 'static {
    /// The model (its limits are filled by the server).
    fn info(&self) -> ModelInfo;

    fn device(&self) -> &Device;

    /// The server's default options.
    fn options(&self) -> &ExplainOptions;

    /// Per pair, the tokens it takes (every window), or why it cannot be explained; the outer
    /// error: `options` are invalid for this model.
    fn tokens(&self, options: &ExplainOptions, pairs: &[QaPair]) -> Result<Vec<Result<usize>>>;

    /// Per pair, its explanation or why it has none; the outer error: the computation as a
    /// whole failed.
    fn explain(
        &self,
        options: &ExplainOptions,
        pairs: &[QaPair],
    ) -> Result<Vec<Result<Explanation>>>;
}

/// An [`Explainer`]: the model and tokenizer loaded once, shared by every set of options.
pub struct ExplainerBackend {
    explainer: Explainer,
    name: String,
}

impl ExplainerBackend {
    /// `name`: what the model was loaded from, as the user named it.
    pub fn new(explainer: Explainer, name: impl Into<String>) -> Self {
        Self {
            explainer,
            name: name.into(),
        }
    }

    fn under(&self, options: &ExplainOptions) -> Result<Explainer> {
        if options == self.explainer.engine().options() {
            Ok(self.explainer.clone())
        } else {
            self.explainer.with_options(options.clone())
        }
    }
}

impl Backend for ExplainerBackend {
    fn info(&self) -> ModelInfo {
        let engine = self.explainer.engine();
        let config = engine.model().config();
        ModelInfo {
            model: self.name.clone(),
            architecture: config.architecture.to_string(),
            vocab_size: config.vocab_size,
            hidden_size: config.hidden_size,
            num_layers: config.num_layers,
            num_heads: config.num_heads,
            intermediate_size: config.intermediate_size,
            max_position_embeddings: config.max_position_embeddings,
            device: crate::device::name(engine.model().device()),
            dtype: engine.precision().name().to_string(),
            max_length: self.explainer.max_length(),
            limits: super::api::Limits::default(),
        }
    }

    fn device(&self) -> &Device {
        self.explainer.engine().model().device()
    }

    fn options(&self) -> &ExplainOptions {
        self.explainer.engine().options()
    }

    fn tokens(&self, options: &ExplainOptions, pairs: &[QaPair]) -> Result<Vec<Result<usize>>> {
        let explainer = self.under(options)?;
        Ok(pairs.iter().map(|p| explainer.tokens(p)).collect())
    }

    fn explain(
        &self,
        options: &ExplainOptions,
        pairs: &[QaPair],
    ) -> Result<Vec<Result<Explanation>>> {
        self.under(options)?.explain_each(pairs)
    }
}
