//! The text front of the engine: a checkpoint's tokenizer and model, pairs in, explanations out.

use std::borrow::Cow;
use std::path::Path;

use candle_core::Device;
use rayon::prelude::*;

use super::engine::Engine;
use super::explanation::Explanation;
use super::options::{
    name, phrases, ExplainOptions, ExplainWindows, InvalidOption, Precision, DEFAULT_MAX_LENGTH,
};
use super::pair::QaPair;
use super::pipeline::{self, Choice, Pick};
use super::PairId;
use crate::error::{Error, Result};
use crate::model::preset::Preset;
use crate::model::QaModel;
use crate::text::{Encoded, QaTokenizer, Segment};

#[derive(Clone)]
pub struct Explainer {
    engine: Engine,
    tokenizer: QaTokenizer,
    max_length: usize,
    max_input_bytes: usize,
    /// Overlap of the windows of a long context; 0: no windows.
    doc_stride: usize,
    /// Whether the overlap was asked for (else the pipeline's default).
    explicit_stride: bool,
}

impl Explainer {
    /// Loads the model and tokenizer of a local checkpoint directory.
    pub fn from_dir(dir: &Path, options: ExplainOptions, device: &Device) -> Result<Self> {
        options.validate()?;
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                what: "model directory",
                path: dir.to_path_buf(),
            });
        }
        let precision = options
            .dtype
            .unwrap_or_else(|| Precision::default_for(device));
        let model = QaModel::load(dir, device, precision.dtype())?;
        let tokenizer = QaTokenizer::load(dir)?;
        Self::new(model, tokenizer, options)
    }

    /// A random-weight model of a standard shape with the synthetic vocabulary
    /// ([`QaTokenizer::synthetic`]: one token per word `w5`, `w6`, ...), for benchmarks.
    pub fn preset(preset: Preset, options: ExplainOptions, device: &Device) -> Result<Self> {
        options.validate()?;
        let precision = options
            .dtype
            .unwrap_or_else(|| Precision::default_for(device));
        let model = preset.random_model(device, precision.dtype())?;
        let tokenizer = QaTokenizer::synthetic(preset.config().vocab_size)?;
        Self::new(model, tokenizer, options)
    }

    pub fn new(model: QaModel, tokenizer: QaTokenizer, options: ExplainOptions) -> Result<Self> {
        let rows = model.word_embeddings().dim(0)?;
        if tokenizer.vocab_size() != rows {
            return Err(Error::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                embeddings: rows,
            });
        }
        let pad_id = tokenizer.pad_id();
        let engine = Engine::new(model, options, pad_id)?.with_mask_id(tokenizer.mask_id());
        Self::assemble(engine, tokenizer)
    }

    /// The lengths the engine's options imply, checked against the model.
    fn assemble(engine: Engine, tokenizer: QaTokenizer) -> Result<Self> {
        let options = engine.options();
        let positions = engine.model().config().max_tokens();
        let max_length = match options.max_length {
            None => DEFAULT_MAX_LENGTH.min(positions),
            Some(n) if n > positions => {
                return Err(InvalidOption::says(
                    name::max_length,
                    format!(
                        " {n} exceeds the {positions} tokens the model's position embeddings \
                         hold"
                    ),
                )
                .into())
            }
            Some(n) => n,
        };
        let max_input_bytes = options.max_input_bytes;
        let doc_stride = options
            .doc_stride
            .unwrap_or_else(|| (max_length / 2).min(128));
        let explicit_stride = options.doc_stride.is_some();
        Ok(Self {
            engine,
            tokenizer,
            max_length,
            max_input_bytes,
            doc_stride,
            explicit_stride,
        })
    }

    /// The same model and tokenizer (shared, nothing loaded again) under other options; the
    /// precision stays the loaded weights'.
    pub fn with_options(&self, options: ExplainOptions) -> Result<Self> {
        Self::assemble(self.engine.with_options(options)?, self.tokenizer.clone())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The same explainer scoring tokens by `method` (nothing is loaded again).
    pub fn with_method(&self, method: super::Method) -> Self {
        Self {
            engine: self.engine.with_method(method),
            ..self.clone()
        }
    }

    /// The effective maximum length in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The pair in one window of at most `max_length` tokens, the context cut to fit (the
    /// first window of a split context).
    pub fn encode(&self, pair: &QaPair) -> Result<Encoded> {
        self.check_size(pair)?;
        let mut encoded = self
            .tokenizer
            .encode(&pair.question, &pair.context, self.max_length)?;
        if let Some(answer) = &pair.answer {
            encoded.requested = Some(requested_tokens(&encoded, answer, pair.answer_start)?);
        }
        Ok(encoded)
    }

    fn check_size(&self, pair: &QaPair) -> Result<()> {
        let bytes = pair.question.len() + pair.context.len();
        if bytes > self.max_input_bytes {
            return Err(phrases::input_too_large(bytes, self.max_input_bytes));
        }
        Ok(())
    }

    /// How a pair is explained: one window, or a context split by `doc_stride` whose windows
    /// are scored before the answer's is explained. A given answer is explained in the first
    /// window that holds it.
    ///
    /// A server prices a pair by its plan's tokens, then explains the plan: it tokenises once.
    pub fn plan(&self, pair: &QaPair) -> Result<PairPlan> {
        Ok(PairPlan {
            id: pair.id.clone(),
            encoding: self.encoding(pair)?,
        })
    }

    fn encoding(&self, pair: &QaPair) -> Result<Plan> {
        if pair.answer.is_none() && pair.answer_start.is_some() {
            return Err(Error::Answer(
                "answer_start is given without an answer: give the answer's text too".into(),
            ));
        }
        if self.doc_stride == 0 {
            return Ok(Plan::Single(Box::new(self.encode(pair)?)));
        }
        self.check_size(pair)?;
        let windows = self.tokenizer.encode_windows(
            &pair.question,
            &pair.context,
            self.max_length,
            self.doc_stride,
        );
        let mut windows = match windows {
            // The default stride may not fit beside a long question in a short --max-length:
            // the context is then cut, as without windows. A stride the user asked for is
            // an error.
            Err(Error::DocStride { .. }) if !self.explicit_stride => {
                return Ok(Plan::Single(Box::new(self.encode(pair)?)))
            }
            Err(Error::DocStride { stride, room, .. }) => {
                return Err(phrases::doc_stride(stride, room))
            }
            other => other?,
        };
        if windows.len() == 1 {
            return Ok(Plan::Single(Box::new(self.encode(pair)?)));
        }
        match &pair.answer {
            None => Ok(Plan::Windows(windows)),
            Some(answer) => {
                let mut last_error = None;
                for mut window in windows.drain(..) {
                    match requested_tokens(&window, answer, pair.answer_start) {
                        Ok(span) => {
                            window.requested = Some(span);
                            return Ok(Plan::Single(Box::new(window)));
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
                Err(last_error.expect("a split context has windows"))
            }
        }
    }

    /// The tokens `pair` takes in the engine, all windows of a split context together; fails
    /// as explaining it would fail before the model runs (empty text, too long, an answer not
    /// in the context).
    pub fn tokens(&self, pair: &QaPair) -> Result<usize> {
        Ok(self.plan(pair)?.tokens())
    }

    /// At most [`Explainer::tokens`], from the text alone (no tokenising, so that a server
    /// prices a pair far over its limit in microseconds): every whitespace-separated word
    /// with a letter or digit is at least one token in every tokenizer, a split context's
    /// windows each repeat the question and its special tokens, and all but the last share
    /// `doc_stride` tokens with the next.
    pub fn min_tokens(&self, pair: &QaPair) -> usize {
        let words = |text: &str| {
            text.split_whitespace()
                .filter(|w| w.chars().any(char::is_alphanumeric))
                .count()
        };
        let (question, context) = (words(&pair.question), words(&pair.context));
        let one = (question + context).min(self.max_length);
        let specials = self.tokenizer.pair_specials();
        // The most context a window can hold: the question takes at least `question`.
        let room = self.max_length.saturating_sub(question + specials);
        let stride = self.doc_stride;
        // A given answer is explained in one window; a stride that does not fit falls back to
        // one cut window, or fails.
        if pair.answer.is_some() || stride == 0 || room <= stride || context <= room {
            return one;
        }
        let windows = 1 + (context - room).div_ceil(room - stride);
        windows * (question + specials) + context + (windows - 2) * stride
    }

    pub fn explain_one(&self, pair: &QaPair) -> Result<Explanation> {
        self.explain(std::slice::from_ref(pair))
            .map(|mut v| v.remove(0))
    }

    /// Explains all pairs, failing on the first pair that cannot be explained;
    /// [`Explainer::explain_each`] reports errors per pair instead.
    pub fn explain(&self, pairs: &[QaPair]) -> Result<Vec<Explanation>> {
        self.explain_each(pairs)?.into_iter().collect()
    }

    /// Explains all pairs (in passes as the options say), each with its own result: a pair
    /// that cannot be encoded or explained fails alone. The outer error is a failure of the
    /// whole computation (the device, the model).
    ///
    /// A context longer than one window is split into overlapping windows; their logits
    /// decide the answer by the transformers pipeline's rule ([`super::pipeline`]), and the
    /// window holding it is explained for that span (with `explain_windows: all`, every window
    /// for its own best span too).
    pub fn explain_each(&self, pairs: &[QaPair]) -> Result<Vec<Result<Explanation>>> {
        // Tokenising is ~430k tokens/s per core, as fast as an H100 explains bert-base: on
        // all cores it stays a small part of a GPU batch.
        let plans: Vec<Result<PairPlan>> = pairs.par_iter().map(|p| self.plan(p)).collect();
        let planned: Vec<&PairPlan> = plans.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut explained = self.explain_plans(&planned)?.into_iter();
        Ok(plans
            .into_iter()
            .map(|plan| plan.and_then(|_| explained.next().expect("one result per plan")))
            .collect())
    }

    /// Explains pairs planned by [`Explainer::plan`] (by an explainer of the same options),
    /// as [`Explainer::explain_each`] does.
    pub fn explain_plans(&self, plans: &[&PairPlan]) -> Result<Vec<Result<Explanation>>> {
        let split: Vec<&Encoded> = plans
            .iter()
            .filter_map(|p| match &p.encoding {
                Plan::Windows(windows) => Some(windows.iter()),
                Plan::Single(_) => None,
            })
            .flatten()
            .collect();
        let mut logits = if split.is_empty() {
            Vec::new()
        } else {
            self.engine.logits(&split)?
        }
        .into_iter();

        // What the engine explains (a window with the span chosen for it is a copy), and per
        // pair where its explanations are.
        let mut queue: Vec<Cow<'_, Encoded>> = Vec::new();
        let mut recipes: Vec<Result<Recipe>> = Vec::with_capacity(plans.len());
        for plan in plans {
            recipes.push(match &plan.encoding {
                Plan::Single(enc) => {
                    queue.push(Cow::Borrowed(&**enc));
                    Ok(Recipe::Single(queue.len() - 1))
                }
                Plan::Windows(windows) => {
                    let scores: Vec<(Vec<f32>, Vec<f32>)> =
                        logits.by_ref().take(windows.len()).collect();
                    self.choose(windows, &scores, &mut queue)
                }
            });
        }
        let mut explained: Vec<Option<Result<Explanation>>> =
            self.engine.explain(&queue)?.into_iter().map(Some).collect();
        let mut take = |i: usize| explained[i].take().expect("each explanation is used once");
        Ok(recipes
            .into_iter()
            .zip(plans)
            .map(|(recipe, plan)| {
                let explanation = match recipe? {
                    Recipe::Single(i) => take(i)?,
                    Recipe::Windows { main, all } => {
                        let mut e = windowed(take(main.0)?, &main.1);
                        e.windows = all
                            .into_iter()
                            .map(|(i, c)| take(i).map(|w| windowed(w, &c)))
                            .collect::<Result<_>>()?;
                        e
                    }
                };
                Ok(Explanation {
                    id: plan.id.clone(),
                    ..explanation
                })
            })
            .collect())
    }

    /// The answer of a split context by the pipeline's rule over its windows' logits: the
    /// window that holds it is queued for that span (with `explain_windows: all`, every window
    /// for its own best span too).
    fn choose<'a>(
        &self,
        windows: &[Encoded],
        scores: &[(Vec<f32>, Vec<f32>)],
        queue: &mut Vec<Cow<'a, Encoded>>,
    ) -> Result<Recipe> {
        if scores
            .iter()
            .any(|(s, e)| !s.iter().chain(e).all(|v| v.is_finite()))
        {
            return Err(Error::NonFinite("logits"));
        }
        let refs: Vec<&Encoded> = windows.iter().collect();
        let logits: Vec<(&[f32], &[f32])> = scores.iter().map(|(s, e)| (&s[..], &e[..])).collect();
        let o = self.engine.options();
        let decision = pipeline::decide(
            &refs,
            &logits,
            o.max_answer_len,
            1,
            o.handle_impossible_answer,
        );
        let best = decision.picks.first().ok_or(Error::NonFinite("logits"))?;
        let mut explain = |(window, choice): (usize, Choice)| {
            let mut enc = windows[window].clone();
            enc.requested = Some((choice.span.start, choice.span.end));
            queue.push(Cow::Owned(enc));
            (queue.len() - 1, choice)
        };
        let main = explain(Choice::of(best, decision.null));
        let all = match o.explain_windows {
            ExplainWindows::Best => Vec::new(),
            ExplainWindows::All => decision
                .per_window
                .iter()
                .flatten()
                .map(|c| explain(Choice::of(&Pick::Text(c.clone()), None)))
                .collect(),
        };
        Ok(Recipe::Windows { main, all })
    }
}

/// A pair tokenised for the engine (see [`Explainer::plan`]): its one window, or the windows
/// of a split context.
#[derive(Debug, Clone)]
pub struct PairPlan {
    id: Option<PairId>,
    encoding: Plan,
}

impl PairPlan {
    pub fn question(&self) -> &str {
        match &self.encoding {
            Plan::Single(enc) => &enc.question,
            Plan::Windows(windows) => &windows[0].question,
        }
    }

    /// The encoding `explanation` (of this plan) differentiates: the plan's one window, or
    /// the window of a split context it names.
    pub fn explained(&self, explanation: &Explanation) -> Option<&Encoded> {
        match (&self.encoding, &explanation.window) {
            (Plan::Single(enc), _) => Some(enc),
            (Plan::Windows(windows), Some(w)) => windows.get(w.index),
            (Plan::Windows(_), None) => None,
        }
    }

    /// The tokens it takes in the engine, all windows together.
    pub fn tokens(&self) -> usize {
        match &self.encoding {
            Plan::Single(enc) => enc.len(),
            Plan::Windows(windows) => windows.iter().map(Encoded::len).sum(),
        }
    }
}

/// How a pair is explained.
#[derive(Debug, Clone)]
enum Plan {
    /// One encoding, explained as is.
    Single(Box<Encoded>),
    /// A context split into windows, scored first.
    Windows(Vec<Encoded>),
}

/// Where a pair's explanations are in the engine's batch.
enum Recipe {
    Single(usize),
    Windows {
        main: (usize, Choice),
        all: Vec<(usize, Choice)>,
    },
}

/// A window's explanation, answering as the pipeline's rule chose over the split context: the
/// span is the model's answer, not a span the user gave.
fn windowed(mut e: Explanation, choice: &Choice) -> Explanation {
    choice.apply(&mut e.answer);
    if choice.impossible {
        e.rank = None;
    }
    e.model_answer = None;
    e
}

/// The first and last context token of `answer` in `enc`'s context: at character
/// `answer_start` when given, else its first occurrence.
fn requested_tokens(
    enc: &Encoded,
    answer: &str,
    answer_start: Option<usize>,
) -> Result<(usize, usize)> {
    let bad = |why: String| Err(Error::Answer(why));
    if answer.trim().is_empty() {
        return bad("the answer is empty".into());
    }
    let chars: Vec<char> = enc.context.chars().collect();
    let needle: Vec<char> = answer.chars().collect();
    let matches_at = |a: usize| {
        a.checked_add(needle.len())
            .and_then(|end| chars.get(a..end))
            .is_some_and(|found| found == &needle[..])
    };
    let start = match answer_start {
        Some(a) if matches_at(a) => a,
        Some(a) => {
            return bad(format!(
                "the context does not read {answer:?} at character {a}"
            ))
        }
        None => match (0..chars.len()).find(|&a| matches_at(a)) {
            Some(a) => a,
            None => return bad(format!("{answer:?} is not in the context")),
        },
    };
    let end = start + needle.len();
    let covered: Vec<usize> = (0..enc.len())
        .filter(|&i| enc.segments[i] == Segment::Context)
        .filter(|&i| enc.offsets[i].1 > start && enc.offsets[i].0 < end)
        .collect();
    match (covered.first(), covered.last()) {
        (Some(&s), Some(&e)) if enc.offsets[e].1 >= end => Ok((s, e)),
        _ => bad(format!(
            "{answer:?} (characters {start}..{end}) lies past the tokens that fit --max-length"
        )),
    }
}
