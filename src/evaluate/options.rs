//! What an evaluation computes besides the explanations' own options: the methods compared,
//! the metrics, and the random orders of the chance baseline. Defined once here, for the
//! command line, the server and Python.

use super::metrics::Metric;
use crate::error::{Error, Result};
use crate::explain::{ExplainOptions, ExplainWindows, Method};

/// Random orders averaged for the chance baseline when none is asked for.
pub const DEFAULT_RANDOM_ORDERS: usize = 5;
/// The most random orders: each costs 10 passes per curve per pair.
pub const MAX_RANDOM_ORDERS: usize = 100;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateOptions {
    /// The methods compared, each explaining every pair (in this order in the results)
    /// [default: all five].
    pub methods: Vec<Method>,
    /// The metrics computed [default: all].
    pub metrics: Vec<Metric>,
    /// Random rankings averaged for the chance baseline (seeded by `seed`); 0: none.
    pub random_orders: usize,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        Self {
            methods: Method::ALL.to_vec(),
            metrics: Metric::ALL.to_vec(),
            random_orders: DEFAULT_RANDOM_ORDERS,
        }
    }
}

impl EvaluateOptions {
    pub fn validate(&self) -> Result<()> {
        let usage = |message: String| Err(Error::Evaluation(message));
        if self.methods.is_empty() {
            return usage("evaluate needs at least one method".into());
        }
        if self.metrics.is_empty() {
            return usage("evaluate needs at least one metric".into());
        }
        for (i, m) in self.methods.iter().enumerate() {
            if self.methods[..i].contains(m) {
                return usage(format!("the method {} is given twice", m.name()));
            }
        }
        if self.random_orders > MAX_RANDOM_ORDERS {
            return usage(format!(
                "random orders: {} is over the most, {MAX_RANDOM_ORDERS}",
                self.random_orders
            ));
        }
        Ok(())
    }

    /// [`EvaluateOptions::validate`], and whether explanations under `explain` can be
    /// evaluated: one span per pair, one the pipeline scores.
    pub fn validate_with(&self, explain: &ExplainOptions) -> Result<()> {
        self.validate()?;
        if explain.seed_compat {
            return Err(Error::Evaluation(
                "the seed's end token is not a span the pipeline scores: evaluate without \
                 seed_compat"
                    .into(),
            ));
        }
        if explain.top_k > 1 || explain.explain_windows != ExplainWindows::Best {
            return Err(Error::Evaluation(
                "one span per pair is evaluated: top_k 1 and explain_windows best".into(),
            ));
        }
        Ok(())
    }

    pub fn wants(&self, metric: Metric) -> bool {
        self.metrics.contains(&metric)
    }
}
