//! spangrad against Hugging Face transformers (PyTorch, the seed's one-hot method, the QA
//! pipeline): encodings, logits, spans, answers, "no answer", gradients, raw and normalised
//! scores, words; every architecture, every saliency implementation, both end-target
//! conventions.

mod common;

use common::*;
use spangrad::explain::options::MIB;
use spangrad::explain::{Explanation, SaliencyKind};
use spangrad::text::Segment;
use spangrad::{BatchTokens, Error, ExplainOptions, QaPair, SpanMode};

const LOGIT_TOL: f32 = 1e-5;
const SCORE_TOL: f32 = 1e-4;

/// The fixture's target names: span mode and whether the seed's `+1` end is used. `best` spans
/// follow the pipeline's rule; with `--seed-compat`, the largest `start + end`.
const TARGETS: [(&str, SpanMode, bool); 4] = [
    ("pipeline", SpanMode::Best, false),
    ("argmax", SpanMode::Argmax, false),
    ("best_seed", SpanMode::Best, true),
    ("argmax_seed", SpanMode::Argmax, true),
];

fn options(span: SpanMode, seed_compat: bool, saliency: SaliencyKind) -> ExplainOptions {
    ExplainOptions {
        span,
        seed_compat,
        saliency,
        ..ExplainOptions::default()
    }
}

#[test]
fn encodings_match_transformers() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let explainer = explainer(dir, ExplainOptions::default());
        for p in &expected.pairs {
            assert_eq!(explainer.max_length(), p.max_length, "{arch}");
            let enc = explainer
                .encode(&QaPair::new(p.question.clone(), p.context.clone()))
                .unwrap();
            assert_eq!(enc.ids, p.input_ids, "{arch}: {}", p.question);
            assert_eq!(enc.tokens, p.tokens, "{arch}: {}", p.question);
            assert_eq!(enc.type_ids, p.token_type_ids, "{arch}: {}", p.question);
            assert_eq!(enc.offsets, p.offsets, "{arch}: {}", p.question);
            let segments: Vec<Segment> = p
                .sequence_ids
                .iter()
                .map(|s| match s {
                    None => Segment::Special,
                    Some(0) => Segment::Question,
                    Some(_) => Segment::Context,
                })
                .collect();
            assert_eq!(enc.segments, segments, "{arch}: {}", p.question);
        }
    }
}

fn check_target(
    arch: &str,
    (label, saliency): (&str, SaliencyKind),
    p: &ExpectedPair,
    got: &Result<Explanation, Error>,
) {
    let what = format!("{arch} {label} {saliency} {:?}", p.question);
    // The pipeline's span is recorded for the pairs of one window only.
    let Some(expected) = p.targets.get(label) else {
        return;
    };
    match expected {
        ExpectedTarget::Err { .. } => assert!(
            matches!(got, Err(Error::SeedCompatEndIsLast { .. })),
            "{what}: expected the seed's end-is-last failure"
        ),
        ExpectedTarget::Ok(t) => {
            let e = got.as_ref().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                (e.target.start_token, e.target.end_token),
                (Some(t.start), Some(t.end)),
                "{what}"
            );
            let starts: Vec<f32> = e.tokens.iter().map(|t| t.start_logit).collect();
            let ends: Vec<f32> = e.tokens.iter().map(|t| t.end_logit).collect();
            assert!(
                max_abs_diff(&starts, &p.start_logits) < LOGIT_TOL,
                "{what}: start logits"
            );
            assert!(
                max_abs_diff(&ends, &p.end_logits) < LOGIT_TOL,
                "{what}: end logits"
            );
            let d = max_abs_diff(&scores(e), &t.score);
            assert!(d < SCORE_TOL, "{what}: normalised scores differ by {d}");
            let max_raw = t.raw.iter().copied().fold(0.0, f32::max);
            let raw: Vec<f32> = e.tokens.iter().map(|t| t.raw).collect();
            assert!(
                max_abs_diff(&raw, &t.raw) < SCORE_TOL * max_raw,
                "{what}: raw norms"
            );
            let gxi: Vec<f32> = e.tokens.iter().map(|t| t.grad_x_input).collect();
            let max_gxi = t.grad_x_input.iter().map(|v| v.abs()).fold(0.0, f32::max);
            assert!(
                max_abs_diff(&gxi, &t.grad_x_input) < SCORE_TOL * max_gxi,
                "{what}: gradient x input"
            );
            let words: Vec<&str> = e.words.iter().map(|w| w.text.as_str()).collect();
            let expected_words: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(words, expected_words, "{what}: words");
            for (w, x) in e.words.iter().zip(&t.words) {
                assert_eq!(
                    (w.char_start, w.char_end),
                    (x.start, x.end),
                    "{what}: {}",
                    x.text
                );
                assert!(
                    (w.score - x.score).abs() < SCORE_TOL,
                    "{what}: word {}",
                    x.text
                );
            }
        }
    }
}

#[test]
fn every_saliency_matches_the_one_hot_method_one_pair_at_a_time() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        for saliency in SaliencyKind::ALL {
            for (label, span, seed) in TARGETS {
                let explainer = explainer(dir, options(span, seed, saliency));
                for p in &expected.pairs {
                    let got = explainer.explain_one(&QaPair::new(&p.question, &p.context));
                    check_target(arch, (label, saliency), p, &got)
                }
            }
        }
    }
}

#[test]
fn spans_and_answers_match_transformers() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        for (mode, key) in [(SpanMode::Best, "pipeline"), (SpanMode::Argmax, "argmax")] {
            let explainer = explainer(dir, options(mode, false, SaliencyKind::Gram));
            for (p, e) in expected
                .pairs
                .iter()
                .zip(explainer.explain(&pairs(&expected)).unwrap())
            {
                let span = (e.answer.token_start, e.answer.token_end);
                let what = format!("{arch} {key} {:?}", p.question);
                if mode == SpanMode::Argmax {
                    assert_eq!(span, p.spans["argmax"], "{what}");
                    continue;
                }
                let Some(pipeline_span) = p.pipeline_span else {
                    continue;
                };
                assert_eq!(span, pipeline_span, "{what}");
                assert_pipeline_answer(&e.answer, &p.pipeline, &what);
            }
        }
    }
}

/// An answer equals the pipeline's: text, characters, score (and "no answer").
fn assert_pipeline_answer(got: &spangrad::explain::Answer, want: &PipelineAnswer, what: &str) {
    assert_eq!(got.text, want.answer, "{what}");
    // Windows' entries say it by the empty text beside a null score.
    let impossible = want
        .impossible
        .unwrap_or(want.answer.is_empty() && want.null_score.is_some());
    assert_eq!(got.impossible, impossible, "{what}");
    if !impossible {
        assert_eq!(
            (got.char_start, got.char_end),
            (Some(want.start), Some(want.end)),
            "{what}"
        );
    }
    let p = got.probability.expect("the pipeline's score");
    assert!(
        (p - want.score).abs() <= 1e-4 * want.score.abs().max(1e-6),
        "{what}: score {p} vs {}",
        want.score
    );
    if let Some(null) = want.null_score {
        let got = got.null_score.expect("a null score");
        assert!(
            (got - null).abs() <= 1e-4 * null.max(1e-12),
            "{what}: null score {got} vs {null}"
        );
    }
}

/// SQuAD 2.0's "no answer" as the pipeline decides it (`handle_impossible_answer`), in one
/// window and over many; where it wins, the explanation is of `start[0] + end[0]`.
#[test]
fn no_answer_follows_the_pipeline() {
    let (mut won, mut lost) = (0, 0);
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let options = ExplainOptions {
            handle_impossible_answer: true,
            doc_stride: None,
            ..ExplainOptions::default()
        };
        // The pipeline's windows (`common::explainer` cuts contexts to one window).
        let windows = spangrad::Explainer::from_dir(
            &fixture(dir),
            options.clone(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let one_window = explainer(
            dir,
            ExplainOptions {
                doc_stride: Some(0),
                ..options.clone()
            },
        );
        let results = windows.explain(&pairs(&expected)).unwrap();
        for (p, e) in expected.pairs.iter().zip(&results) {
            let what = format!("{arch} {:?}", p.question);
            assert_pipeline_answer(&e.answer, &p.pipeline_impossible, &what);
            if e.answer.impossible {
                won += 1;
                assert_eq!(
                    (e.target.start_token, e.target.end_token),
                    (Some(0), Some(0))
                );
                if p.pipeline_span.is_some() {
                    let null = target(p, "null");
                    let d = max_abs_diff(&scores(e), &null.score);
                    assert!(d < SCORE_TOL, "{what}: null scores differ by {d}");
                }
            } else {
                lost += 1;
            }
            // One window: the same decision without the windows' machinery.
            if p.pipeline_span.is_some() {
                let single = one_window
                    .explain_one(&QaPair::new(&p.question, &p.context))
                    .unwrap();
                let (a, b) = (&single.answer, &e.answer);
                assert_eq!(
                    (&a.text, a.token_start, a.token_end, a.impossible),
                    (&b.text, b.token_start, b.token_end, b.impossible),
                    "{what}"
                );
                let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-5 * y.abs().max(1e-12),
                    (x, y) => x == y,
                };
                assert!(close(a.probability, b.probability), "{what}");
                assert!(close(a.null_score, b.null_score), "{what}");
            }
        }
        for w in &expected.windows {
            let options = ExplainOptions {
                doc_stride: Some(w.doc_stride),
                max_length: Some(w.max_length),
                ..options.clone()
            };
            let e = explainer(dir, options)
                .explain_one(&QaPair::new(w.question.clone(), w.context.clone()))
                .unwrap();
            assert_pipeline_answer(
                &e.answer,
                &w.impossible_answer,
                &format!("{arch} windows {:?}", w.question),
            );
        }
    }
    assert!(won >= 2 && lost >= 2, "no answer won {won}, lost {lost}");
}

/// `--top-k 3` answers with the pipeline's three best texts, in its order.
#[test]
fn top_k_answers_are_the_pipelines() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let options = ExplainOptions {
            top_k: 3,
            ..ExplainOptions::default()
        };
        let top = explainer(dir, options);
        for p in expected.pairs.iter().filter(|p| p.pipeline_span.is_some()) {
            let e = top
                .explain_one(&QaPair::new(&p.question, &p.context))
                .unwrap();
            let got: Vec<&spangrad::explain::Answer> = std::iter::once(&e.answer)
                .chain(e.alternatives.iter().map(|a| &a.answer))
                .collect();
            assert_eq!(got.len(), p.pipeline_top3.len(), "{arch} {:?}", p.question);
            for (g, w) in got.iter().zip(&p.pipeline_top3) {
                assert_pipeline_answer(g, w, &format!("{arch} top 3 {:?}", p.question));
            }
        }
    }
}

#[test]
fn gradients_reach_the_embeddings_and_match_pytorch() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let explainer = explainer(dir, ExplainOptions::default());
        for p in expected.pairs.iter().filter(|p| p.pipeline_span.is_some()) {
            let t = target(p, "pipeline");
            let enc = explainer
                .encode(&QaPair::new(&p.question, &p.context))
                .unwrap();
            let g = explainer.engine().gradients(&[enc]).unwrap();
            let got: Vec<Vec<f32>> = g.grads[0].to_vec2().unwrap();
            let scale = t.grad.iter().flatten().map(|v| v.abs()).fold(0.0, f32::max);
            assert!(scale > 0.0, "reference gradient is zero");
            let diff = got
                .iter()
                .flatten()
                .zip(t.grad.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert_eq!(got.len(), t.grad.len());
            assert!(
                diff < 1e-4 * scale,
                "{arch} {:?}: G differs by {diff} (scale {scale})",
                p.question
            );
        }
    }
}

#[test]
fn a_batch_equals_pairs_explained_one_at_a_time() {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        for saliency in SaliencyKind::ALL {
            let explainer = explainer(dir, options(SpanMode::Best, false, saliency));
            let pairs = pairs(&expected);
            let batch = explainer.explain(&pairs).unwrap();
            for (pair, b) in pairs.iter().zip(&batch) {
                let one = explainer.explain_one(pair).unwrap();
                assert_eq!(one.answer.text, b.answer.text);
                assert_eq!(one.target, b.target);
                for (x, y) in one.tokens.iter().zip(&b.tokens) {
                    assert_eq!(x.text, y.text);
                    assert!((x.score - y.score).abs() < 1e-5, "{arch} {saliency}");
                    assert!((x.start_logit - y.start_logit).abs() < 1e-5);
                    assert!((x.end_logit - y.end_logit).abs() < 1e-5);
                }
            }
        }
    }
}

#[test]
fn seed_compat_fails_cleanly_when_the_end_is_the_last_token() {
    for (arch, dir) in MODELS {
        let Some(crash) = expected(arch).seed_compat_crash else {
            continue;
        };
        let explainer = explainer(dir, options(SpanMode::Argmax, true, SaliencyKind::Gram));
        let pair = QaPair::new(crash.question, crash.context);
        let err = explainer.explain_one(&pair).unwrap_err();
        assert!(matches!(err, Error::SeedCompatEndIsLast { .. }), "{err}");
        // Each front names the option its own way.
        assert!(err.to_string().contains("run without seed_compat"), "{err}");
        let flagged = err.render(spangrad::explain::Naming::Flag);
        assert!(flagged.contains("run without --seed-compat"), "{flagged}");
        assert_eq!(err.option(), Some("seed_compat"));
        // Without the seed's off-by-one the same pair is fine.
        let plain = explainer_with(dir, SpanMode::Argmax);
        assert!(plain.explain_one(&pair).is_ok());
    }
}

fn explainer_with(dir: &str, span: SpanMode) -> spangrad::Explainer {
    explainer(dir, options(span, false, SaliencyKind::Gram))
}

#[test]
fn pytorch_bin_and_vocab_txt_load_to_the_same_model() {
    let expected = expected("bert");
    let from_bin = explainer("bert-tiny-pt", ExplainOptions::default());
    let got = from_bin.explain(&pairs(&expected)).unwrap();
    for (p, e) in expected.pairs.iter().zip(got) {
        let tokens: Vec<&str> = e.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(tokens, p.tokens);
        let starts: Vec<f32> = e.tokens.iter().map(|t| t.start_logit).collect();
        assert!(max_abs_diff(&starts, &p.start_logits) < LOGIT_TOL);
    }
}

#[test]
fn passes_bounded_by_a_token_budget_give_the_same_results() {
    for (arch, dir) in MODELS {
        let pairs = pairs(&expected(arch));
        let one_pass = ExplainOptions {
            max_batch_tokens: BatchTokens::Unlimited,
            ..ExplainOptions::default()
        };
        let one_pass = explainer(dir, one_pass).explain(&pairs).unwrap();
        let options = ExplainOptions {
            max_batch_tokens: BatchTokens::Fixed(100),
            ..ExplainOptions::default()
        };
        let split = explainer(dir, options).explain(&pairs).unwrap();
        assert_same_results(arch, &one_pass, &split);
    }
}

fn assert_same_results(arch: &str, a: &[Explanation], b: &[Explanation]) {
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.answer.text, b.answer.text, "{arch}");
        assert_eq!(a.target, b.target, "{arch}");
        assert!((a.answer.score - b.answer.score).abs() < 1e-5, "{arch}");
        assert!(max_abs_diff(&scores(a), &scores(b)) < 1e-5, "{arch}");
    }
}

/// A pass over the memory limit is split and retried until it fits, with the same results in
/// the input order; a pair too large even alone gets its own out-of-memory error.
#[test]
fn passes_over_the_memory_limit_are_split_and_nothing_is_lost() {
    for (arch, dir) in MODELS {
        let pairs = pairs(&expected(arch));
        let unlimited = ExplainOptions {
            max_batch_tokens: BatchTokens::Unlimited,
            ..ExplainOptions::default()
        };
        let reference = explainer(dir, unlimited.clone());
        let one_pass = reference.explain(&pairs).unwrap();
        let longest = pairs
            .iter()
            .map(|p| reference.encode(p).unwrap().len())
            .max()
            .unwrap();
        let one_pair = reference.engine().pass_bytes(1, longest);
        let all_pairs = reference.engine().pass_bytes(pairs.len(), longest);
        assert!(
            all_pairs > 2 * one_pair,
            "{arch}: the limit must force splits"
        );
        // Room for one or two of the longest pairs: the batch splits down to that.
        let limited = ExplainOptions {
            memory_limit_mib: Some((one_pair * 3 / 2) as f64 / MIB),
            ..unlimited.clone()
        };
        let split = explainer(dir, limited).explain(&pairs).unwrap();
        assert_same_results(arch, &one_pass, &split);

        // Below a single pair of the longest length: those pairs fail alone, the short ones
        // still run.
        let shortest = pairs
            .iter()
            .map(|p| reference.encode(p).unwrap().len())
            .min()
            .unwrap();
        let starved = ExplainOptions {
            memory_limit_mib: Some(reference.engine().pass_bytes(1, shortest) as f64 / MIB),
            ..unlimited
        };
        let results = explainer(dir, starved).explain_each(&pairs).unwrap();
        let (mut ok, mut oom) = (0, 0);
        for (r, expected) in results.iter().zip(&one_pass) {
            match r {
                Ok(e) => {
                    ok += 1;
                    assert!(max_abs_diff(&scores(e), &scores(expected)) < 1e-5, "{arch}");
                }
                Err(e) => {
                    assert!(matches!(e, Error::OutOfMemory { .. }), "{arch}: {e}");
                    oom += 1;
                }
            }
        }
        assert!(
            ok >= 1 && oom >= 1,
            "{arch}: {ok} explained, {oom} out of memory"
        );
    }
}

/// `--target start` and `--target end` explain one logit each: their gradients add up to the
/// span's (the backward is linear in the target), and the target says which logit was taken.
#[test]
fn start_and_end_targets_add_up_to_the_span_target() {
    use spangrad::explain::TargetKind;
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let grads = |target| {
            let options = ExplainOptions {
                target,
                ..ExplainOptions::default()
            };
            let explainer = explainer(dir, options);
            let encoded: Vec<_> = pairs(&expected)
                .iter()
                .map(|p| explainer.encode(p).unwrap())
                .collect();
            explainer.engine().gradients(&encoded).unwrap()
        };
        let (span, start, end) = (
            grads(TargetKind::Span),
            grads(TargetKind::Start),
            grads(TargetKind::End),
        );
        let sum = (&start.grads[0] + &end.grads[0]).unwrap();
        let diff = (&sum - &span.grads[0])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        let scale = span.grads[0].abs().unwrap().max_all().unwrap();
        let (diff, scale) = (
            diff.to_scalar::<f32>().unwrap(),
            scale.to_scalar::<f32>().unwrap(),
        );
        assert!(diff <= 1e-5 * scale, "{arch}: {diff} vs {scale}");
        for ((s, st), en) in span.targets.iter().zip(&start.targets).zip(&end.targets) {
            let (s, st, en) = (
                &s.as_ref().unwrap()[0].1,
                &st.as_ref().unwrap()[0].1,
                &en.as_ref().unwrap()[0].1,
            );
            assert_eq!((st.start_token, st.end_token), (s.start_token, None));
            assert_eq!((en.start_token, en.end_token), (None, s.end_token));
        }
    }
}

/// An answer the user gives is explained as the gradient of its own start and end logits: for
/// the model's answer that is the default explanation (rank 1); for the seed's argmax span,
/// where it is a span of the context, it equals transformers' gradient for that target.
#[test]
fn a_given_answer_is_explained_for_its_own_span() {
    let mut checked = 0;
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let explainer = explainer(dir, ExplainOptions::default());
        for p in &expected.pairs {
            let pair = QaPair::new(p.question.clone(), p.context.clone());
            let default = explainer.explain_one(&pair).unwrap();
            let own = QaPair {
                answer_start: default.answer.char_start,
                ..pair.clone().with_answer(default.answer.text.clone())
            };
            if default.answer.text.is_empty() {
                continue;
            }
            let e = explainer.explain_one(&own).unwrap();
            assert_eq!((e.rank, &e.model_answer), (default.rank, &None), "{arch}");
            assert!(
                max_abs_diff(&scores(&e), &scores(&default)) < 1e-6,
                "{arch}"
            );

            let (s, t) = (p.spans["argmax"].0, p.spans["argmax"].1);
            let in_context = |i: usize| p.sequence_ids[i] == Some(1);
            let own_span = (default.answer.token_start, default.answer.token_end);
            if s > t || !in_context(s) || !in_context(t) || (s, t) == own_span {
                continue;
            }
            let (a, b) = (p.offsets[s].0, p.offsets[t].1);
            let text: String = p.context.chars().skip(a).take(b - a).collect();
            let given = QaPair {
                answer_start: Some(a),
                ..pair.with_answer(text)
            };
            let e = explainer.explain_one(&given).unwrap();
            assert_eq!(
                (e.target.start_token, e.target.end_token),
                (Some(s), Some(t))
            );
            assert_eq!(e.model_answer.as_ref().unwrap().text, default.answer.text);
            // The argmax span may be longer than --max-answer-len, and then outrank the answer.
            assert!(e.rank.is_some());
            let reference = target(p, "argmax");
            assert!(
                max_abs_diff(&scores(&e), &reference.score) < SCORE_TOL,
                "{arch}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "no given answer was checked against transformers"
    );
}

/// `--top-k` explains the k best spans: the answer, then alternatives that each equal the
/// explanation of that span given as the answer.
#[test]
fn top_k_alternatives_equal_their_spans_explained_alone() {
    for (arch, dir) in MODELS {
        let options = ExplainOptions {
            top_k: 3,
            ..ExplainOptions::default()
        };
        let top = explainer(dir, options);
        let single = explainer(dir, ExplainOptions::default());
        let pair = QaPair::new(
            "Who wrote the novel?",
            "The novel was written by Jane Austen in 1813 and published in London.",
        );
        let e = top.explain_one(&pair).unwrap();
        assert_eq!(e.alternatives.len(), 2, "{arch}");
        assert!(max_abs_diff(&scores(&e), &scores(&single.explain_one(&pair).unwrap())) < 1e-6);
        let mut last = e.answer.probability.unwrap();
        for alternative in &e.alternatives {
            let p = alternative.answer.probability.unwrap();
            assert!(p <= last, "{arch}: answers by the pipeline's score");
            last = p;
            let given = QaPair {
                answer_start: alternative.answer.char_start,
                ..pair.clone().with_answer(alternative.answer.text.clone())
            };
            let alone = single.explain_one(&given).unwrap();
            assert_eq!(alone.target, alternative.target, "{arch}");
            assert!(
                max_abs_diff(&scores(&alone), &scores(alternative)) < 1e-5,
                "{arch}"
            );
        }
    }
}

#[test]
fn a_given_answer_that_is_not_there_is_an_error_for_its_pair() {
    let plain = explainer("bert-tiny", ExplainOptions::default());
    let pair = QaPair::new("Who wrote it?", "Jane Austen wrote it in 1813.");
    for (answer, start) in [("Dickens", None), ("Austen", Some(0)), ("  ", None)] {
        let given = QaPair {
            answer_start: start,
            ..pair.clone().with_answer(answer)
        };
        let e = plain.explain_one(&given).unwrap_err();
        assert!(matches!(e, Error::Answer(_)), "{e}");
    }
    let cut = ExplainOptions {
        max_length: Some(12),
        ..ExplainOptions::default()
    };
    let long = QaPair::new(
        "Who?",
        "Jane Austen wrote it in 1813 and then moved to Bath.",
    );
    let e = explainer("bert-tiny", cut.clone())
        .explain_one(&long.clone().with_answer("Bath"))
        .unwrap_err();
    assert!(e.to_string().contains("--max-length"), "{e}");
    // With windows, the answer is explained in the first window that holds it.
    let windows = ExplainOptions {
        doc_stride: Some(2),
        ..cut
    };
    let e = explainer("bert-tiny", windows)
        .explain_one(&long.with_answer("Bath"))
        .unwrap();
    let window = e.window.expect("a window");
    assert!(window.count > 1 && window.char_end >= 51, "{window:?}");
    assert_eq!(e.answer.text, "Bath");
}

/// `max |a − b|` against `tol` times the reference's largest magnitude.
fn assert_relative(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = max_abs_diff(a, b);
    assert!(diff <= tol * scale, "{what}: {diff} vs scale {scale}");
}

fn raws(e: &Explanation) -> Vec<f32> {
    e.tokens.iter().map(|t| t.raw).collect()
}

/// Every attribution method equals Captum (SmoothGrad: autograd with the same noise) on the
/// fixtures, to 1e-4 of the largest attribution; integrated gradients also its completeness
/// error.
#[test]
fn attribution_methods_match_captum() {
    use spangrad::explain::{Baseline, Method};
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let pairs = pairs(&expected);
        let run = |options: ExplainOptions| explainer(dir, options).explain(&pairs).unwrap();
        let with = |method| ExplainOptions {
            method,
            ..ExplainOptions::default()
        };
        // Captum's attributions are of the largest `start + end`: the pairs whose answer is
        // that span.
        let at_best = |p: &ExpectedPair| p.pipeline_span == Some(p.spans["best"]);
        assert!(
            expected.pairs.iter().filter(|p| at_best(p)).count() >= 3,
            "{arch}: too few pairs to compare with Captum"
        );
        let gxi = run(with(Method::GradXInput));
        let norm = run(with(Method::GradNorm));
        for ((p, gxi), norm) in expected.pairs.iter().zip(&gxi).zip(&norm) {
            if !at_best(p) {
                continue;
            }
            let m = target(p, "best")
                .methods
                .as_ref()
                .expect("methods in the fixture");
            assert_relative(
                &raws(gxi),
                &m.grad_x_input,
                1e-4,
                &format!("{arch} grad-x-input"),
            );
            assert_relative(
                &raws(norm),
                &m.grad_norm,
                1e-4,
                &format!("{arch} grad-norm"),
            );
            let top = gxi
                .tokens
                .iter()
                .map(|t| t.score.abs())
                .fold(0f32, f32::max);
            assert!((top - 1.0).abs() < 1e-6, "signed scores reach ±1");
        }
        for (name, baseline) in [
            ("pad", Baseline::Pad),
            ("zero", Baseline::Zero),
            ("mask", Baseline::Mask),
        ] {
            let steps = target(&expected.pairs[0], "best")
                .methods
                .as_ref()
                .unwrap()
                .integrated_gradients[name]
                .steps;
            let ig = run(ExplainOptions {
                steps,
                baseline,
                ..with(Method::IntegratedGradients)
            });
            for (p, e) in expected.pairs.iter().zip(&ig) {
                if !at_best(p) {
                    continue;
                }
                let reference = &target(p, "best")
                    .methods
                    .as_ref()
                    .unwrap()
                    .integrated_gradients[name];
                let what = format!("{arch} integrated gradients, {name} baseline");
                assert_relative(&raws(e), &reference.attribution, 1e-4, &what);
                let error = e.completeness_error.expect("reported");
                let scale = reference.attribution.iter().map(|v| v.abs()).sum::<f32>();
                assert!(
                    (error - reference.delta).abs() <= 1e-4 * scale.max(1.0),
                    "{what}: {error} vs {}",
                    reference.delta
                );
            }
        }
        let smooth = |samples, noise_std| {
            let options = ExplainOptions {
                samples,
                noise_std,
                ..with(Method::Smoothgrad)
            };
            explainer(dir, options)
        };
        let mut checked = 0;
        for (p, pair) in expected.pairs.iter().zip(&pairs) {
            let Some(sg) = &target(p, "best").methods.as_ref().unwrap().smoothgrad else {
                continue;
            };
            if !at_best(p) {
                continue;
            }
            let e = smooth(sg.noise.len(), sg.std);
            let noise =
                candle_core::Tensor::new(sg.noise.clone(), &candle_core::Device::Cpu).unwrap();
            let encoded = e.encode(pair).unwrap();
            let got = e
                .engine()
                .explain_with_noise(&[encoded], &[noise])
                .unwrap()
                .remove(0)
                .unwrap();
            assert_relative(&raws(&got), &sg.raw, 1e-4, &format!("{arch} smoothgrad"));
            checked += 1;
        }
        assert!(
            checked >= 1,
            "{arch}: no SmoothGrad pair recorded at the answer's span"
        );
    }
}

/// SmoothGrad's seeded noise depends on the pair, not on its batch; the same seed gives the
/// same scores, another seed others.
#[test]
fn smoothgrad_noise_is_per_pair_and_seeded() {
    use spangrad::explain::Method;
    let options = |seed| ExplainOptions {
        method: Method::Smoothgrad,
        samples: 4,
        seed,
        ..ExplainOptions::default()
    };
    let pairs = pairs(&expected("bert"));
    let batch = explainer("bert-tiny", options(7)).explain(&pairs).unwrap();
    let alone = explainer("bert-tiny", options(7))
        .explain_one(&pairs[2])
        .unwrap();
    assert!(max_abs_diff(&scores(&batch[2]), &scores(&alone)) < 1e-5);
    let other = explainer("bert-tiny", options(8))
        .explain_one(&pairs[2])
        .unwrap();
    assert!(max_abs_diff(&scores(&other), &scores(&alone)) > 1e-4);
}

/// A context longer than one window is split as the transformers pipeline splits it, its
/// answer is the pipeline's (text and characters), and the explanation is of the window that
/// holds it; `explain_windows: all` explains every window.
#[test]
fn long_contexts_give_the_pipelines_answers() {
    use spangrad::explain::ExplainWindows;
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        assert!(!expected.windows.is_empty());
        for w in &expected.windows {
            let options = ExplainOptions {
                doc_stride: Some(w.doc_stride),
                max_length: Some(w.max_length),
                explain_windows: ExplainWindows::All,
                ..ExplainOptions::default()
            };
            let e = explainer(dir, options)
                .explain_one(&QaPair::new(w.question.clone(), w.context.clone()))
                .unwrap();
            assert_eq!(e.answer.text, w.answer, "{arch}: {}", w.question);
            assert_eq!(
                (e.answer.char_start, e.answer.char_end),
                (Some(w.start), Some(w.end))
            );
            let window = e.window.expect("the answer's window");
            assert!(window.count > 1 && !e.truncated);
            assert!(
                window.char_start <= w.start && w.end <= window.char_end,
                "{window:?}"
            );
            assert!(e.tokens.len() <= w.max_length);
            // Every window explained, each for its own best span, in order.
            assert_eq!(e.windows.len(), window.count, "{arch}");
            for (i, each) in e.windows.iter().enumerate() {
                assert_eq!(each.window.unwrap().index, i);
                assert!(each.tokens.iter().any(|t| t.score == 1.0));
            }
        }
    }
}
