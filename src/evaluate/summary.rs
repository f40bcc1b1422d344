//! The metrics of many pairs in one table: per method (and the random baseline) the means and
//! spreads of the AOPCs and of τ, and the mean curves. Gathered pair by pair, holding no
//! evaluation.

use super::evaluator::Evaluation;
use super::metrics::{Faithfulness, PERCENTS};

/// The name of the random baseline's row.
pub const RANDOM: &str = "random";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Summary {
    /// Pairs evaluated (failed pairs are not counted).
    pub pairs: usize,
    /// The `k` of the curves' bins (%).
    pub percents: Vec<usize>,
    /// One per method in the order asked, then the random baseline's (`method: "random"`).
    pub rows: Vec<SummaryRow>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct SummaryRow {
    /// A method's name, or `random`.
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aopc_comprehensiveness: Option<Spread>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aopc_sufficiency: Option<Spread>,
    /// Over the pairs where τ is defined (`count` says how many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loo_kendall_tau: Option<Spread>,
    /// The mean comprehensiveness per bin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comprehensiveness: Option<Vec<f64>>,
    /// The mean sufficiency per bin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sufficiency: Option<Vec<f64>>,
}

/// The mean and the (population) standard deviation of `count` values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub count: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Some(Self {
            mean,
            std: var.sqrt(),
            count: values.len(),
        })
    }
}

/// A summary being gathered.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pairs: usize,
    /// Per row, by name, in the order first seen.
    rows: Vec<(String, RowTally)>,
}

#[derive(Debug, Clone, Default)]
struct RowTally {
    aopc_comprehensiveness: Vec<f64>,
    aopc_sufficiency: Vec<f64>,
    loo_kendall_tau: Vec<f64>,
    comprehensiveness: Vec<Vec<f64>>,
    sufficiency: Vec<Vec<f64>>,
}

impl Tally {
    pub fn add(&mut self, e: &Evaluation) {
        self.pairs += 1;
        for m in &e.methods {
            self.row(m.method.name()).add(&m.metrics);
        }
        if let Some(random) = &e.random {
            self.row(RANDOM).add(&random.metrics);
        }
    }

    fn row(&mut self, name: &str) -> &mut RowTally {
        let i = match self.rows.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.rows.push((name.to_string(), RowTally::default()));
                self.rows.len() - 1
            }
        };
        &mut self.rows[i].1
    }

    pub fn summary(&self) -> Summary {
        let mean_curve = |curves: &[Vec<f64>]| -> Option<Vec<f64>> {
            (!curves.is_empty()).then(|| {
                (0..PERCENTS.len())
                    .map(|k| curves.iter().map(|c| c[k]).sum::<f64>() / curves.len() as f64)
                    .collect()
            })
        };
        Summary {
            pairs: self.pairs,
            percents: PERCENTS.to_vec(),
            rows: self
                .rows
                .iter()
                .map(|(name, t)| SummaryRow {
                    method: name.clone(),
                    aopc_comprehensiveness: Spread::of(&t.aopc_comprehensiveness),
                    aopc_sufficiency: Spread::of(&t.aopc_sufficiency),
                    loo_kendall_tau: Spread::of(&t.loo_kendall_tau),
                    comprehensiveness: mean_curve(&t.comprehensiveness),
                    sufficiency: mean_curve(&t.sufficiency),
                })
                .collect(),
        }
    }
}

impl RowTally {
    fn add(&mut self, f: &Faithfulness) {
        self.aopc_comprehensiveness.extend(f.aopc_comprehensiveness);
        self.aopc_sufficiency.extend(f.aopc_sufficiency);
        self.loo_kendall_tau.extend(f.loo_kendall_tau.flatten());
        self.comprehensiveness.extend(f.comprehensiveness.clone());
        self.sufficiency.extend(f.sufficiency.clone());
    }
}

impl Summary {
    /// The table as text: a row per method and the random baseline, `mean ± std` per metric.
    pub fn table(&self) -> String {
        let cell = |s: &Option<Spread>| match s {
            Some(s) => format!("{:.4} ± {:.4}", s.mean, s.std),
            None => "-".into(),
        };
        let width = self
            .rows
            .iter()
            .map(|r| r.method.len())
            .chain([6])
            .max()
            .unwrap_or(6);
        let mut out = format!(
            "{:<width$}  {:>17}  {:>17}  {:>17}  τ defined\n",
            "method", "AOPC compr. ↑", "AOPC suff. ↓", "LOO τ ↑"
        );
        for r in &self.rows {
            out += &format!(
                "{:<width$}  {:>17}  {:>17}  {:>17}  {}/{}\n",
                r.method,
                cell(&r.aopc_comprehensiveness),
                cell(&r.aopc_sufficiency),
                cell(&r.loo_kendall_tau),
                r.loo_kendall_tau.map_or(0, |s| s.count),
                self.pairs
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_are_the_mean_and_population_std() {
        let s = Spread::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.std, s.count), (2.0, 1.0, 2));
        assert_eq!(Spread::of(&[]), None);
    }
}
