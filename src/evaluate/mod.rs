//! How faithful an explanation is, by perturbing its input and watching the answer's
//! probability: ERASER's comprehensiveness and sufficiency (DeYoung et al., 2020) as AOPC over
//! top-k% bins, and ferret's leave-one-out Kendall τ. The span stays fixed under every
//! perturbation; only forward passes run.

pub mod metrics;

pub use metrics::{Faithfulness, PERCENTS};
