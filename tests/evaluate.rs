//! `spangrad evaluate`'s metrics against transformers: `tools/reference/evaluate_metrics.py`
//! recomputed every metric of `tests/fixtures/evaluate/cases.json` with the Hugging Face
//! model, from the scores (and random rankings) spangrad gave, into
//! `tests/fixtures/evaluate/expected/<case>.json`. Every supported architecture, "no answer"
//! (`handle_impossible_answer`), a split context, the fewest eligible tokens (2), all scores
//! equal, and one metric alone.
//!
//! `SPANGRAD_EVALUATIONS_OUT=DIR cargo test --test evaluate` writes the evaluations the
//! reference reads (`DIR/<case>.jsonl`).

mod common;

use serde::Deserialize;
use serde_json::Value;
use spangrad::evaluate::metrics::{kendall_tau_b, rank_scores};
use spangrad::evaluate::{EvaluateOptions, Evaluation, Evaluator, Metric};
use spangrad::explain::{Given, Method, Scope};
use spangrad::{ExplainOptions, Explainer, QaPair};

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    max_length: usize,
    doc_stride: usize,
    #[serde(default)]
    handle_impossible_answer: bool,
    #[serde(default)]
    equal_scores: bool,
    methods: Vec<Method>,
    metrics: Vec<Metric>,
    random_orders: usize,
    pairs: Vec<Value>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(common::fixture("evaluate").join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn evaluator(case: &Case) -> Evaluator {
    let mut given = Given::default();
    given
        .add("max_length", case.max_length.into(), Scope::Load)
        .unwrap();
    given
        .add("doc_stride", case.doc_stride.into(), Scope::Load)
        .unwrap();
    given
        .add(
            "handle_impossible_answer",
            case.handle_impossible_answer.into(),
            Scope::Load,
        )
        .unwrap();
    let options = given.apply(&ExplainOptions::default()).unwrap();
    let explainer = Explainer::from_dir(
        &common::fixture(&case.model),
        options,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let options = EvaluateOptions {
        methods: case.methods.clone(),
        metrics: case.metrics.clone(),
        random_orders: case.random_orders,
    };
    Evaluator::new(&explainer, options).unwrap()
}

fn evaluate(case: &Case) -> Vec<Evaluation> {
    let evaluator = evaluator(case);
    let pairs: Vec<QaPair> = case
        .pairs
        .iter()
        .map(|p| {
            QaPair::from_json(&p.to_string(), spangrad::explain::OtherFields::Ignored).unwrap()
        })
        .collect();
    let results = if case.equal_scores {
        // Every token scored 0.5: the ranking is the positions' order.
        let explainer = evaluator.explainer();
        let plans: Vec<_> = pairs.iter().map(|p| explainer.plan(p).unwrap()).collect();
        let plans: Vec<_> = plans.iter().collect();
        let explained = case
            .methods
            .iter()
            .map(|&m| explainer.with_method(m).explain_plans(&plans).unwrap())
            .collect::<Vec<_>>();
        let per_pair = (0..plans.len())
            .map(|i| {
                explained
                    .iter()
                    .map(|m| {
                        let mut e = m[i].as_ref().unwrap().clone();
                        e.tokens.iter_mut().for_each(|t| t.score = 0.5);
                        Ok(e)
                    })
                    .collect()
            })
            .collect();
        evaluator.evaluate_explained(&plans, per_pair).unwrap()
    } else {
        evaluator.evaluate_each(&pairs).unwrap()
    };
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", case.name)))
        .collect()
}

const TOLERANCE: f64 = 1e-4;

fn close(got: Option<f64>, want: &Value, what: &str) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= TOLERANCE, "{what}: {g} vs {w}"),
        (None, None) => {}
        (g, _) => panic!("{what}: {g:?} vs {want}"),
    }
}

fn check_metrics(got: &spangrad::evaluate::Faithfulness, want: &Value, what: &str) {
    for (name, curve) in [
        ("comprehensiveness", &got.comprehensiveness),
        ("sufficiency", &got.sufficiency),
    ] {
        match (curve, want.get(name)) {
            (Some(curve), Some(w)) => {
                let w = w.as_array().unwrap();
                assert_eq!(curve.len(), w.len(), "{what} {name}");
                for (k, (g, w)) in curve.iter().zip(w).enumerate() {
                    close(Some(*g), w, &format!("{what} {name}[{k}]"));
                }
            }
            (None, None) => {}
            (g, w) => panic!("{what} {name}: {g:?} vs {w:?}"),
        }
    }
    for (name, value) in [
        ("aopc_comprehensiveness", got.aopc_comprehensiveness),
        ("aopc_sufficiency", got.aopc_sufficiency),
    ] {
        match want.get(name) {
            Some(w) => close(value, w, &format!("{what} {name}")),
            None => assert_eq!(value, None, "{what} {name}"),
        }
    }
    assert_eq!(
        got.loo_kendall_tau.is_some(),
        want.get("loo_kendall_tau").is_some(),
        "{what} loo_kendall_tau"
    );
}

/// τ is a step function of the drops (two drops within float noise can swap on another
/// machine), so it is checked on fixed inputs: spangrad's τ is τ-b of its scores and its own
/// drops, and τ-b of its scores and the reference's drops is scipy's τ of those.
fn check_tau(
    got: Option<Option<f64>>,
    want: &Value,
    rankings: &[Vec<f64>],
    drops: (&[f64], &[f64]),
    what: &str,
) {
    let Some(got) = got else { return };
    let mean_tau = |drops: &[f64]| {
        let taus: Vec<f64> = rankings
            .iter()
            .filter_map(|scores| kendall_tau_b(scores, drops))
            .collect();
        (!taus.is_empty()).then(|| taus.iter().sum::<f64>() / taus.len() as f64)
    };
    assert_eq!(got, mean_tau(drops.0), "{what}: τ of its own drops");
    match (mean_tau(drops.1), want["loo_kendall_tau"].as_f64()) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{what}: τ {a} vs scipy's {b}"),
        (a, b) => assert_eq!(a, b, "{what}: τ defined"),
    }
}

#[test]
fn the_metrics_equal_transformers_on_every_case() {
    let out = std::env::var_os("SPANGRAD_EVALUATIONS_OUT").map(std::path::PathBuf::from);
    let mut architectures = Vec::new();
    for case in cases() {
        let evaluations = evaluate(&case);
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir).unwrap();
            let lines: String = evaluations
                .iter()
                .map(|e| serde_json::to_string(e).unwrap() + "\n")
                .collect();
            std::fs::write(dir.join(format!("{}.jsonl", case.name)), lines).unwrap();
            continue;
        }
        let path = common::fixture("evaluate")
            .join("expected")
            .join(format!("{}.json", case.name));
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want_pairs = expected["pairs"].as_array().unwrap();
        assert_eq!(evaluations.len(), want_pairs.len(), "{}", case.name);
        for (e, want) in evaluations.iter().zip(want_pairs) {
            let what = format!("{} {}", case.name, want["id"]);
            // The reference tokenised the pair itself: the same window and eligible tokens.
            let eligible: Vec<usize> = serde_json::from_value(want["eligible"].clone()).unwrap();
            assert_eq!(e.eligible, eligible, "{what}: eligible tokens");
            assert_eq!(
                e.window.map_or(0, |w| w.index),
                want["window"].as_u64().unwrap() as usize,
                "{what}: window"
            );
            close(
                Some(e.probability),
                &want["probability"],
                &format!("{what} p"),
            );
            if e.answer.impossible {
                // A null answer's probability is the pipeline's null score.
                close(
                    e.answer.null_score,
                    &want["probability"],
                    &format!("{what} null score"),
                );
            }
            let drops: Option<(Vec<f64>, Vec<f64>)> = e.loo_drops.as_ref().map(|mine| {
                let theirs: Vec<f64> = serde_json::from_value(want["loo_drops"].clone()).unwrap();
                assert_eq!(mine.len(), theirs.len(), "{what}: drops");
                for (a, b) in mine.iter().zip(&theirs) {
                    assert!((a - b).abs() <= TOLERANCE, "{what}: drop {a} vs {b}");
                }
                (mine.clone(), theirs)
            });
            let drops = drops.as_ref().map(|(a, b)| (&a[..], &b[..]));
            for m in &e.methods {
                let name = m.method.name();
                let w = &want["methods"][name];
                if let Some(drops) = drops {
                    let scores: Vec<f64> = m.scores.iter().map(|&s| f64::from(s)).collect();
                    let what = format!("{what} {name}");
                    check_tau(m.metrics.loo_kendall_tau, w, &[scores], drops, &what);
                }
                let ranking: Vec<usize> = serde_json::from_value(w["ranking"].clone()).unwrap();
                let by_spangrad = spangrad::evaluate::metrics::ranking(
                    &scores_by_position(e, &m.scores),
                    &e.eligible,
                );
                assert_eq!(by_spangrad, ranking, "{what} {name}: ranking");
                check_metrics(&m.metrics, w, &format!("{what} {name}"));
            }
            match (&e.random, want.get("random")) {
                (Some(r), Some(w)) => {
                    check_metrics(&r.metrics, w, &format!("{what} random"));
                    if let Some(drops) = drops {
                        let rankings: Vec<Vec<f64>> =
                            r.rankings.iter().map(|r| rank_scores(r)).collect();
                        let what = format!("{what} random");
                        check_tau(r.metrics.loo_kendall_tau, w, &rankings, drops, &what);
                    }
                }
                (None, None) => {}
                (g, w) => panic!("{what} random: {g:?} vs {w:?}"),
            }
        }
        architectures.push(case.model.clone());
    }
    if out.is_none() {
        for model in [
            "bert-tiny",
            "distilbert-tiny",
            "roberta-tiny",
            "xlm-roberta-tiny",
            "camembert-tiny",
            "electra-tiny",
            "albert-tiny",
        ] {
            assert!(
                architectures.iter().any(|m| m == model),
                "{model} is tested"
            );
        }
    }
}

/// Eligible tokens' scores spread back over the window's positions (0 elsewhere).
fn scores_by_position(e: &Evaluation, scores: &[f32]) -> Vec<f32> {
    let len = e.eligible.last().map_or(0, |&i| i + 1);
    let mut all = vec![0.0; len];
    for (&i, &s) in e.eligible.iter().zip(scores) {
        all[i] = s;
    }
    all
}

/// The cases cover what they say: no answer wins somewhere, a split context is explained in
/// a later window, and the smallest pair has two eligible tokens.
#[test]
fn the_cases_reach_their_edges() {
    let mut impossible = 0;
    let mut later_window = 0;
    let mut fewest = usize::MAX;
    for case in cases().iter().filter(|c| c.name != "bert-equal-scores") {
        for e in evaluate(case) {
            impossible += usize::from(e.answer.impossible);
            later_window += usize::from(e.window.is_some_and(|w| w.index > 0));
            fewest = fewest.min(e.eligible.len());
        }
    }
    assert!(impossible > 0, "no case answers \"no answer\"");
    assert!(later_window > 0, "no case explains a later window");
    assert_eq!(fewest, 2);
}
