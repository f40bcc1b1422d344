//! What the server drives: a loaded model behind a few calls. The router and the batcher only
//! see this trait, so tests can put a failing or slow backend behind the real server. A
//! request's pairs are planned (tokenised, and so priced) once, when it arrives; the batcher
//! explains the plans.

use candle_core::Device;

use super::api::ModelInfo;
use crate::evaluate::{EvaluateOptions, Evaluation, Evaluator};
use crate::explain::PairPlan;
use crate::{ExplainOptions, Explainer, Explanation, QaPair, Result};

pub trait Backend: Send + Sync + 'static {
    /// The model (its limits are filled by the server).
    fn info(&self) -> ModelInfo;

    fn device(&self) -> &Device;

    /// The server's default options.
    fn options(&self) -> &ExplainOptions;

    /// Per pair in order, its plan (its tokens, every window) or why it cannot be explained;
    /// the outer error: `options` are invalid for this model. A pair over `budget` by its text
    /// alone is not tokenised. Stops after the pair that brings the sum of the pairs within
    /// `budget` over it: the request is refused whole.
    fn plan(
        &self,
        options: &ExplainOptions,
        pairs: &[QaPair],
        budget: usize,
    ) -> Result<Vec<Result<Priced>>>;

    /// Per plan (made by [`Backend::plan`] under the same `options`), its explanation or why
    /// it has none; the outer error: the computation as a whole failed.
    fn explain(
        &self,
        options: &ExplainOptions,
        plans: &[&PairPlan],
    ) -> Result<Vec<Result<Explanation>>>;

    /// Per plan, its evaluation by `evaluate`'s methods (see [`Evaluator`]) or why it has
    /// none.
    fn evaluate(
        &self,
        options: &ExplainOptions,
        evaluate: &EvaluateOptions,
        plans: &[&PairPlan],
    ) -> Result<Vec<Result<Evaluation>>>;
}

/// A pair planned, or priced from its text alone.
#[derive(Debug, Clone)]
pub enum Priced {
    Planned(PairPlan),
    /// Over the budget by a bound from its text ([`Explainer::min_tokens`]): not tokenised.
    AtLeast(usize),
}

impl Priced {
    /// The tokens it takes in all its windows (at least, when not tokenised).
    pub fn tokens(&self) -> usize {
        match self {
            Self::Planned(plan) => plan.tokens(),
            Self::AtLeast(n) => *n,
        }
    }
}

/// [`Backend::plan`] for `explainer`.
pub fn plan(explainer: &Explainer, pairs: &[QaPair], budget: usize) -> Vec<Result<Priced>> {
    let mut priced = Vec::with_capacity(pairs.len());
    let mut sum: usize = 0;
    for pair in pairs {
        let least = explainer.min_tokens(pair);
        if least > budget {
            priced.push(Ok(Priced::AtLeast(least)));
            continue;
        }
        let plan = explainer.plan(pair);
        if let Ok(plan) = plan.as_ref() {
            let n = plan.tokens();
            sum += if n <= budget { n } else { 0 };
        }
        priced.push(plan.map(Priced::Planned));
        if sum > budget {
            break;
        }
    }
    priced
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

    fn plan(
        &self,
        options: &ExplainOptions,
        pairs: &[QaPair],
        budget: usize,
    ) -> Result<Vec<Result<Priced>>> {
        Ok(plan(&self.under(options)?, pairs, budget))
    }

    fn explain(
        &self,
        options: &ExplainOptions,
        plans: &[&PairPlan],
    ) -> Result<Vec<Result<Explanation>>> {
        self.under(options)?.explain_plans(plans)
    }

    fn evaluate(
        &self,
        options: &ExplainOptions,
        evaluate: &EvaluateOptions,
        plans: &[&PairPlan],
    ) -> Result<Vec<Result<Evaluation>>> {
        Evaluator::new(&self.under(options)?, evaluate.clone())?.evaluate_plans(plans)
    }
}
