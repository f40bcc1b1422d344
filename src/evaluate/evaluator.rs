//! An evaluation: every pair explained by every method, then the explained window's perturbed
//! inputs (of all pairs, methods and bins together, each distinct input once) through forward
//! passes alone, batched as the memory allows.

use std::collections::HashMap;

use rayon::prelude::*;

use super::metrics::{self, Faithfulness, Metric};
use super::options::EvaluateOptions;
use crate::error::{Error, Result};
use crate::explain::{
    pipeline, Answer, Explainer, Explanation, Input, Method, PairId, PairPlan, QaPair,
};
use crate::text::{Encoded, Segment, Window};

/// One pair's evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Evaluation {
    /// The pair's id as it was given, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<PairId>,
    /// The explained answer, the same for every method; it stays fixed under every
    /// perturbation.
    pub answer: Answer,
    /// The window of a split context that is explained and perturbed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The eligible tokens: the window's question and context tokens (not the special ones),
    /// by position; `N` is their number.
    pub eligible: Vec<usize>,
    /// `p_start[s] · p_end[e]` of the answer's tokens `(s, e)`, the softmaxes over the
    /// window's context tokens and its first token (the QA pipeline's); for "no answer",
    /// `s = e = 0`, the null score.
    pub probability: f64,
    /// Per eligible token (as in `eligible`), `p − p(token removed)`: the leave-one-out drops
    /// τ compares the scores with (absent without the `loo` metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loo_drops: Option<Vec<f64>>,
    /// Forward passes run for the pair: its distinct inputs, the unperturbed one included
    /// (the same input of two rankings runs once).
    pub forwards: usize,
    /// Per method, in the order asked.
    pub methods: Vec<MethodEvaluation>,
    /// The chance baseline: the metrics of random rankings, averaged (absent with no random
    /// orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomEvaluation>,
}

/// One method's metrics on one pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct MethodEvaluation {
    pub method: Method,
    /// The method's scores of the eligible tokens (as in `eligible`), which rank them: highest
    /// first, ties to the earlier position.
    #[serde(serialize_with = "crate::explain::explanation::decimals")]
    pub scores: Vec<f32>,
    #[serde(flatten)]
    pub metrics: Faithfulness,
}

/// The random baseline of one pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct RandomEvaluation {
    /// The random rankings, each the eligible positions in rank order (seeded by `seed` and
    /// the pair's tokens).
    pub rankings: Vec<Vec<usize>>,
    /// Their metrics' means: curves bin by bin, τ over the orders where it is defined.
    #[serde(flatten)]
    pub metrics: Faithfulness,
}

/// Explains and evaluates pairs by several methods, the model shared.
#[derive(Clone)]
pub struct Evaluator {
    /// One per method, in the order asked.
    explainers: Vec<Explainer>,
    options: EvaluateOptions,
}

impl Evaluator {
    /// `explainer`'s model and options (but its method) under `options`' methods.
    pub fn new(explainer: &Explainer, options: EvaluateOptions) -> Result<Self> {
        options.validate_with(explainer.engine().options())?;
        let explainers = options
            .methods
            .iter()
            .map(|&m| explainer.with_method(m))
            .collect();
        Ok(Self {
            explainers,
            options,
        })
    }

    pub fn options(&self) -> &EvaluateOptions {
        &self.options
    }

    /// The first method's explainer (all share the model, the tokenizer and the options but
    /// the method).
    pub fn explainer(&self) -> &Explainer {
        &self.explainers[0]
    }

    /// Evaluates every pair, each with its own result (as [`Explainer::explain_each`]).
    pub fn evaluate_each(&self, pairs: &[QaPair]) -> Result<Vec<Result<Evaluation>>> {
        let plans: Vec<Result<PairPlan>> =
            pairs.par_iter().map(|p| self.explainer().plan(p)).collect();
        let planned: Vec<&PairPlan> = plans.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut evaluated = self.evaluate_plans(&planned)?.into_iter();
        Ok(plans
            .into_iter()
            .map(|plan| plan.and_then(|_| evaluated.next().expect("one result per plan")))
            .collect())
    }

    /// Evaluates pairs planned by [`Explainer::plan`] (by an explainer of the same options).
    pub fn evaluate_plans(&self, plans: &[&PairPlan]) -> Result<Vec<Result<Evaluation>>> {
        // [method][pair]
        let mut explained: Vec<std::vec::IntoIter<Result<Explanation>>> = self
            .explainers
            .iter()
            .map(|e| e.explain_plans(plans).map(Vec::into_iter))
            .collect::<Result<_>>()?;
        let per_pair: Vec<Result<Vec<Explanation>>> = plans
            .iter()
            .map(|_| {
                explained
                    .iter_mut()
                    .map(|m| m.next().expect("one explanation per plan"))
                    .collect()
            })
            .collect();
        self.evaluate_explained(plans, per_pair)
    }

    /// Evaluates given explanations of planned pairs: per plan, one explanation per method,
    /// in the options' order, each of the plan's window and span (as the engine makes them;
    /// their scores may come from elsewhere).
    pub fn evaluate_explained(
        &self,
        plans: &[&PairPlan],
        explanations: Vec<Result<Vec<Explanation>>>,
    ) -> Result<Vec<Result<Evaluation>>> {
        if explanations.len() != plans.len() {
            return Err(Error::Usage("one set of explanations per plan".into()));
        }
        let mask_id = self.explainer().engine().mask_or_pad_id();
        let works: Vec<Result<Work<'_>>> = plans
            .iter()
            .zip(explanations)
            .map(|(plan, explanations)| self.work(plan, explanations?, mask_id))
            .collect();
        let inputs: Vec<Input<'_>> = works
            .iter()
            .flatten()
            .flat_map(|w| {
                w.inputs.iter().map(|ids| Input {
                    ids,
                    types: &w.enc.type_ids,
                })
            })
            .collect();
        let mut logits = self.explainer().engine().infer(&inputs)?.into_iter();
        Ok(works
            .into_iter()
            .map(|work| {
                let work = work?;
                // Taken whole before any fails, so that the next pair gets its own.
                let own: Vec<(Vec<f32>, Vec<f32>)> =
                    logits.by_ref().take(work.inputs.len()).collect();
                let probabilities: Vec<f64> = own
                    .iter()
                    .map(|(start, end)| work.probability(start, end))
                    .collect::<Result<_>>()?;
                Ok(work.evaluation(&probabilities))
            })
            .collect())
    }

    /// A pair's perturbed inputs, from its explanations (one per method).
    fn work<'a>(
        &self,
        plan: &'a PairPlan,
        explanations: Vec<Explanation>,
        mask_id: u32,
    ) -> Result<Work<'a>> {
        let methods = &self.options.methods;
        if explanations.len() != methods.len()
            || explanations
                .iter()
                .zip(methods)
                .any(|(e, &m)| e.method != m)
        {
            return Err(Error::Usage(
                "one explanation per method, in the options' order".into(),
            ));
        }
        let first = &explanations[0];
        let enc = plan.explained(first).ok_or_else(|| {
            Error::Evaluation("the explanation names no window of the split context".into())
        })?;
        for other in &explanations[1..] {
            let span = |e: &Explanation| {
                (
                    e.window.map(|w| w.index),
                    e.answer.token_start,
                    e.answer.token_end,
                )
            };
            if span(other) != span(first) {
                return Err(Error::Evaluation(format!(
                    "{} explains another span than {}",
                    other.method.name(),
                    first.method.name()
                )));
            }
        }
        if explanations.iter().any(|e| e.tokens.len() != enc.len()) {
            return Err(Error::Evaluation(
                "an explanation's tokens are not its window's".into(),
            ));
        }
        let eligible: Vec<usize> = (0..enc.len())
            .filter(|&i| enc.segments[i] != Segment::Special)
            .collect();
        if eligible.is_empty() {
            return Err(Error::Evaluation(
                "the window has no question or context token".into(),
            ));
        }
        let o = &self.options;
        let mut inputs = Inputs::default();
        let original = inputs.add(enc.ids.clone());
        let curves = |inputs: &mut Inputs, ranking: &[usize]| Curves {
            comprehensiveness: o.wants(Metric::Comprehensiveness).then(|| {
                inputs.add_all(metrics::comprehensiveness_inputs(
                    &enc.ids, ranking, mask_id,
                ))
            }),
            sufficiency: o
                .wants(Metric::Sufficiency)
                .then(|| inputs.add_all(metrics::sufficiency_inputs(&enc.ids, ranking, mask_id))),
        };
        let methods: Vec<(Vec<f32>, Curves)> = explanations
            .iter()
            .map(|e| {
                let scores: Vec<f32> = e.tokens.iter().map(|t| t.score).collect();
                let ranking = metrics::ranking(&scores, &eligible);
                let curves = curves(&mut inputs, &ranking);
                (eligible.iter().map(|&i| scores[i]).collect(), curves)
            })
            .collect();
        let seed = self.explainer().engine().options().seed;
        let random: Vec<(Vec<usize>, Curves)> = (0..o.random_orders as u64)
            .map(|order| {
                let ranking = metrics::random_ranking(&eligible, &enc.ids, seed, order);
                let curves = curves(&mut inputs, &ranking);
                (ranking, curves)
            })
            .collect();
        let loo = o
            .wants(Metric::Loo)
            .then(|| inputs.add_all(metrics::loo_inputs(&enc.ids, &eligible, mask_id)));
        Ok(Work {
            id: first.id.clone(),
            answer: first.answer.clone(),
            window: first.window,
            enc,
            eligible,
            inputs: inputs.into_ordered(),
            original,
            methods: explanations
                .iter()
                .map(|e| e.method)
                .zip(methods)
                .map(|(m, (scores, curves))| (m, scores, curves))
                .collect(),
            random,
            loo,
        })
    }
}

/// The distinct inputs of one pair, each once (the top 100% of every ranking masks the same
/// tokens, and two methods often agree on the top tokens).
#[derive(Default)]
struct Inputs {
    index: HashMap<Vec<u32>, usize>,
}

impl Inputs {
    fn add(&mut self, ids: Vec<u32>) -> usize {
        let next = self.index.len();
        *self.index.entry(ids).or_insert(next)
    }

    fn add_all(&mut self, all: Vec<Vec<u32>>) -> Vec<usize> {
        all.into_iter().map(|ids| self.add(ids)).collect()
    }

    fn into_ordered(self) -> Vec<Vec<u32>> {
        let mut all: Vec<(Vec<u32>, usize)> = self.index.into_iter().collect();
        all.sort_unstable_by_key(|&(_, i)| i);
        all.into_iter().map(|(ids, _)| ids).collect()
    }
}

/// Where one ranking's curves are among a pair's inputs.
struct Curves {
    comprehensiveness: Option<Vec<usize>>,
    sufficiency: Option<Vec<usize>>,
}

/// One pair's evaluation before its forwards.
struct Work<'a> {
    id: Option<PairId>,
    answer: Answer,
    window: Option<Window>,
    enc: &'a Encoded,
    eligible: Vec<usize>,
    inputs: Vec<Vec<u32>>,
    original: usize,
    /// Per method: its eligible tokens' scores and its curves.
    methods: Vec<(Method, Vec<f32>, Curves)>,
    random: Vec<(Vec<usize>, Curves)>,
    /// The leave-one-out inputs, in position order.
    loo: Option<Vec<usize>>,
}

impl Work<'_> {
    /// The answer's probability from one input's logits.
    fn probability(&self, start: &[f32], end: &[f32]) -> Result<f64> {
        if !start.iter().chain(end).all(|v| v.is_finite()) {
            return Err(Error::NonFinite("logits"));
        }
        let (s, e) = (self.answer.token_start, self.answer.token_end);
        Ok(pipeline::probabilities(self.enc, start)[s] * pipeline::probabilities(self.enc, end)[e])
    }

    fn evaluation(self, probabilities: &[f64]) -> Evaluation {
        let p = probabilities[self.original];
        let forwards = self.inputs.len();
        let at =
            |slots: &[usize]| -> Vec<f64> { slots.iter().map(|&i| probabilities[i]).collect() };
        let loo = self.loo.as_deref().map(at);
        let faithfulness = |curves: &Curves, scores: &[f64]| {
            Faithfulness::of(
                p,
                curves.comprehensiveness.as_deref().map(at).as_deref(),
                curves.sufficiency.as_deref().map(at).as_deref(),
                loo.as_deref().map(|loo| (scores, loo)),
            )
        };
        let methods = self
            .methods
            .iter()
            .map(|(method, scores, curves)| {
                let wide: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
                MethodEvaluation {
                    method: *method,
                    scores: scores.clone(),
                    metrics: faithfulness(curves, &wide),
                }
            })
            .collect();
        let random = (!self.random.is_empty()).then(|| {
            let each: Vec<Faithfulness> = self
                .random
                .iter()
                .map(|(ranking, curves)| faithfulness(curves, &metrics::rank_scores(ranking)))
                .collect();
            RandomEvaluation {
                rankings: self.random.into_iter().map(|(r, _)| r).collect(),
                metrics: Faithfulness::mean(&each),
            }
        });
        Evaluation {
            id: self.id,
            answer: self.answer,
            window: self.window,
            eligible: self.eligible,
            probability: p,
            loo_drops: loo.as_ref().map(|l| l.iter().map(|q| p - q).collect()),
            forwards,
            methods,
            random,
        }
    }
}
