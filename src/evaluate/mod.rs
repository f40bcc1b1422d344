//! How faithful an explanation is, by perturbing its input and watching the answer's
//! probability: ERASER's comprehensiveness and sufficiency (DeYoung et al., 2020) as AOPC over
//! top-k% bins, and ferret's leave-one-out Kendall τ. The span stays fixed under every
//! perturbation; only forward passes run.

mod evaluator;
pub mod metrics;
mod options;
pub mod summary;

pub use evaluator::{Evaluation, Evaluator, MethodEvaluation, RandomEvaluation};
pub use metrics::{Faithfulness, Metric, PERCENTS};
pub use options::{EvaluateOptions, DEFAULT_RANDOM_ORDERS, MAX_RANDOM_ORDERS};
pub use summary::{Spread, Summary, SummaryRow, Tally};
