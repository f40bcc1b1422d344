//! A self-contained HTML page of explanations: no network, no external scripts, fonts or
//! styles. For each pair the question and the context run as text, each word (or token)
//! shaded by its score, the answer outlined; hovering or focusing a token shows its score, raw
//! value and gradient × input. Toggles switch between words and tokens and, when a pair was
//! explained by several methods, between methods. Long contexts show their window; a batch is
//! one page with a list of its pairs. The colours keep black text at a contrast of at least 7:1
//! (WCAG AAA), and a legend gives the scale.

pub mod evaluation;

use maud::{html as markup, Markup, PreEscaped, DOCTYPE};

use crate::explain::{Explanation, Method, TokenExplanation};
use crate::text::Segment;

/// One pair of the report: its text and its explanations, one per method.
pub struct ReportPair<'a> {
    pub question: &'a str,
    pub context: &'a str,
    pub explanations: &'a [Explanation],
}

/// The page for `pairs` (`title` in its heading). Built by maud's templates, which escape
/// every text they are given.
pub fn html(title: &str, pairs: &[ReportPair]) -> String {
    let mut methods: Vec<Method> = Vec::new();
    for e in pairs.iter().flat_map(|p| p.explanations) {
        if !methods.contains(&e.method) {
            methods.push(e.method);
        }
    }
    let title = clean(title);
    markup! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (title) }
                    (controls(&methods))
                    (legend())
                }
                @if pairs.len() > 1 {
                    nav aria-label="pairs" {
                        ol {
                            @for (i, p) in pairs.iter().enumerate() {
                                li { a href={ "#pair-" (i + 1) } { (clean(p.question)) } }
                            }
                        }
                    }
                }
                main {
                    @for (i, p) in pairs.iter().enumerate() {
                        (pair_section(i + 1, p, methods.first().copied()))
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

/// The title of a report on `model`, named as the user gave it.
pub fn title(model: &str) -> String {
    format!("spangrad: {}", shown_model(model))
}

/// The model as the user named it, relative to the working directory when it is a path under
/// it (a report names `tests/fixtures/bert-tiny`, not the machine's absolute path to it).
fn shown_model(model: &str) -> String {
    let path = std::path::Path::new(model);
    let relative = || {
        let (path, cwd) = (path.canonicalize().ok()?, std::env::current_dir().ok()?);
        let relative = path.strip_prefix(cwd.canonicalize().ok()?).ok()?;
        Some(relative.display().to_string()).filter(|r| !r.is_empty())
    };
    path.is_absolute()
        .then(relative)
        .flatten()
        .unwrap_or_else(|| model.to_string())
}

/// `page` framed for a notebook's output (Jupyter, VS Code, Colab): an `iframe` whose
/// `srcdoc` holds the page, so that its style and script stay its own. It fits its height to
/// the page once loaded, where the notebook runs its handler; else it scrolls.
pub fn framed(page: &str) -> String {
    const FIT: &str =
        "this.style.height=(this.contentDocument.documentElement.scrollHeight+4)+'px'";
    markup! {
        iframe srcdoc=(page) title="spangrad explanations" onload=(FIT)
            style="width:100%;height:36em;border:1px solid #ccc;border-radius:4px" {}
    }
    .into_string()
}

fn controls(methods: &[Method]) -> Markup {
    markup! {
        div class="controls" {
            fieldset {
                legend { "Show" }
                label { input type="radio" name="unit" value="word" checked; " words" }
                label { input type="radio" name="unit" value="token"; " tokens" }
            }
            @if methods.len() > 1 {
                fieldset {
                    legend { "Method" }
                    @for (i, m) in methods.iter().enumerate() {
                        label {
                            input type="radio" name="method" value=(m) checked[i == 0];
                            " " (m)
                        }
                    }
                }
            }
        }
    }
}

fn legend() -> Markup {
    markup! {
        div class="legend" role="img"
            aria-label="colour scale: white for a score of 0, red for 1; blue for −1 with signed methods" {
            span { "−1" }
            span class="bar" {}
            span { "1" }
            " "
            span class="note" {
                "score (a token's attribution over the largest in its pair); blue only for signed methods"
            }
        }
    }
}

fn pair_section(n: usize, p: &ReportPair, shown: Option<Method>) -> Markup {
    markup! {
        section class="pair" id={ "pair-" (n) } {
            h2 { (n) ". " (clean(p.question)) }
            @for e in p.explanations {
                div class="method" data-method=(e.method) hidden[Some(e.method) != shown] {
                    (summary(e))
                    (views(p, e))
                    @if !e.windows.is_empty() {
                        details {
                            summary { "Every window, each for its own best span" }
                            @for w in &e.windows {
                                (summary(w))
                                (views(p, w))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn summary(e: &Explanation) -> Markup {
    let a = &e.answer;
    markup! {
        p class="summary" {
            "Answer: "
            @if a.impossible {
                span class="answer-text" { "no answer" }
            } @else {
                q class="answer-text" { (clean(&a.text)) }
            }
            (format!(
                " (tokens {}–{}, score {:.3}; {} method, {} target",
                a.token_start, a.token_end, a.score, e.method, e.target.kind
            ))
            @if let Some(w) = &e.window {
                (format!(
                    "; window {} of {}, context characters {}–{}",
                    w.index + 1,
                    w.count,
                    w.char_start,
                    w.char_end
                ))
            }
            @if let Some(err) = e.completeness_error {
                (format!("; completeness error {err:.2e}"))
            }
            @if let Some(null) = a.null_score {
                (format!(
                    "; null score {null:.4} against the best span's {}",
                    a.best_span_probability
                        .map_or("none".into(), |p| format!("{p:.4}"))
                ))
            }
            @if let Some(m) = &e.model_answer {
                "; the model's own answer: " q { (clean(&m.text)) }
            }
            ")"
        }
    }
}

/// The word and token views of one explanation.
fn views(p: &ReportPair, e: &Explanation) -> Markup {
    markup! {
        @for unit in ["word", "token"] {
            div class="view" data-unit=(unit) hidden[unit == "token"] {
                @for (segment, label, source) in [
                    (Segment::Question, "Question", p.question),
                    (Segment::Context, "Context", p.context),
                ] {
                    (segment_text(e, unit, segment, label, source))
                }
            }
        }
    }
}

/// One segment (the question or the context) of one view, its words or tokens shaded.
fn segment_text(
    e: &Explanation,
    unit: &str,
    segment: Segment,
    label: &str,
    source: &str,
) -> Markup {
    let (from, to) = match (&e.window, segment) {
        (Some(w), Segment::Context) => (w.char_start, w.char_end),
        _ => (0, source.chars().count()),
    };
    let pieces: Vec<Piece> = if unit == "word" {
        e.words
            .iter()
            .filter(|w| w.segment == segment)
            .map(|w| Piece {
                chars: w.char_start..w.char_end,
                score: w.score,
                tip: format!("score {:.3}", w.score),
                answer: segment == Segment::Context && overlaps_answer(e, w.char_start, w.char_end),
            })
            .collect()
    } else {
        e.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.segment == segment)
            .map(|(i, t)| token_piece(e, i, t))
            .collect()
    };
    let cut = matches!((&e.window, segment), (Some(w), Segment::Context) if w.index + 1 < w.count)
        || (segment == Segment::Context && e.truncated);
    markup! {
        p class=(label.to_lowercase()) {
            span class="label" { (label) }
            " "
            @if from > 0 { "… " }
            (running_text(source, from, to, &pieces, e.method.signed()))
            @if cut { " …" }
        }
    }
}

struct Piece {
    chars: std::ops::Range<usize>,
    score: f32,
    tip: String,
    answer: bool,
}

fn token_piece(e: &Explanation, i: usize, t: &TokenExplanation) -> Piece {
    Piece {
        chars: t.char_start..t.char_end,
        score: t.score,
        tip: format!(
            "{} · score {:.3} · raw {:.4} · gradient × input {:.4}",
            t.text, t.score, t.raw, t.grad_x_input
        ),
        answer: t.segment == Segment::Context
            && (e.answer.token_start..=e.answer.token_end).contains(&i),
    }
}

fn overlaps_answer(e: &Explanation, a: usize, b: usize) -> bool {
    match (e.answer.char_start, e.answer.char_end) {
        (Some(s), Some(t)) => a < t && s < b,
        _ => false,
    }
}

/// `source[from..to]` with each piece a shaded, focusable span; the text between pieces as is.
fn running_text(source: &str, from: usize, to: usize, pieces: &[Piece], signed: bool) -> Markup {
    let chars: Vec<char> = source.chars().collect();
    let text = |a: usize, b: usize| -> String {
        let (a, b) = (a.min(chars.len()), b.min(chars.len()));
        clean(&chars[a..b.max(a)].iter().collect::<String>())
    };
    let shown = pieces
        .iter()
        .filter(|p| p.chars.start >= from && p.chars.end <= to);
    let mut at = from;
    let mut parts = Vec::new();
    for p in shown {
        let before = (p.chars.start > at).then(|| text(at, p.chars.start));
        parts.push((before, p));
        at = p.chars.end.max(at);
    }
    markup! {
        @for (before, p) in &parts {
            @if let Some(before) = before { (before) }
            span class={ "t" @if p.answer { " answer" } } tabindex="0" data-score=(p.score)
                data-tip=(clean(&p.tip)) style={ "background-color: " (colour(p.score, signed)) } {
                (text(p.chars.start, p.chars.end))
            }
        }
        (text(at, to))
    }
}

/// White at 0, to red at 1 (and, for signed methods, to blue at −1); the darkest ends keep
/// black text at a contrast above 7:1.
pub fn colour(score: f32, signed: bool) -> String {
    let s = if signed {
        score.clamp(-1.0, 1.0)
    } else {
        score.clamp(0.0, 1.0)
    };
    let fade = |full: f32| (255.0 - s.abs() * full).round() as u8;
    if s >= 0.0 {
        format!("rgb(255, {}, {})", fade(145.0), fade(145.0))
    } else {
        format!("rgb({}, {}, 255)", fade(145.0), fade(105.0))
    }
}

/// Text with its control characters (other than newlines and tabs) replaced by U+FFFD, which no
/// page should carry; escaping is the templates'.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

const STYLE: &str = "
body { font: 16px/1.7 system-ui, sans-serif; color: #111; background: #fff; margin: 0 auto;
  max-width: 60rem; padding: 1rem; }
header { border-bottom: 1px solid #888; margin-bottom: 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .3rem; }
fieldset { display: inline-block; border: 1px solid #888; margin: 0 .5rem .5rem 0; }
.legend { display: flex; align-items: center; gap: .4rem; margin: .3rem 0 .8rem; }
.legend .bar { display: inline-block; width: 12rem; height: 1rem; border: 1px solid #555;
  background: linear-gradient(to right, rgb(110, 150, 255), #fff 50%, rgb(255, 110, 110)); }
.legend .note { color: #333; font-size: .9rem; }
.label { font-weight: 600; margin-right: .4rem; }
.summary { color: #222; }
.t { position: relative; border-radius: 2px; color: #000; cursor: default; }
.t:focus { outline: 2px solid #000; }
.t.answer { outline: 2px solid #000; outline-offset: 1px; }
.t:hover::after, .t:focus::after { content: attr(data-tip); position: absolute; left: 0;
  top: 1.6em; z-index: 2; white-space: nowrap; background: #111; color: #fff;
  padding: .1rem .4rem; border-radius: 3px; font-size: .85rem; }
nav ol { columns: 2; }
";

const SCRIPT: &str = "
function show(name, value) {
  document.querySelectorAll('[data-' + name + ']').forEach(function (el) {
    el.hidden = el.dataset[name] !== value;
  });
}
document.querySelectorAll('input[name=unit]').forEach(function (input) {
  input.addEventListener('change', function () { show('unit', input.value); });
});
document.querySelectorAll('input[name=method]').forEach(function (input) {
  input.addEventListener('change', function () { show('method', input.value); });
});
";

#[cfg(test)]
mod tests {
    use super::{clean, colour, framed, html, ReportPair};

    #[test]
    fn colours_keep_black_text_readable() {
        // Relative luminance per WCAG 2.
        let luminance = |rgb: &str| {
            let v: Vec<f64> = rgb
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(", ")
                .map(|c| c.parse::<f64>().unwrap() / 255.0)
                .map(|c| {
                    if c <= 0.03928 {
                        c / 12.92
                    } else {
                        ((c + 0.055) / 1.055).powf(2.4)
                    }
                })
                .collect();
            0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
        };
        for score in [-1.0, -0.5, 0.0, 0.3, 1.0] {
            let contrast = (luminance(&colour(score, true)) + 0.05) / 0.05;
            assert!(contrast >= 7.0, "{score}: {contrast}");
        }
        assert!(luminance(&colour(0.9, false)) < luminance(&colour(0.1, false)));
    }

    #[test]
    fn every_text_is_escaped_and_cleaned() {
        let page = html(
            "<b>x</b> & \"y\"",
            &[ReportPair {
                question: "<script>alert(1)</script>\u{7}?",
                context: "'quoted' <i>",
                explanations: &[],
            }],
        );
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(
            page.contains("<title>&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;</title>"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;\u{fffd}?"),
            "{page}"
        );
        assert!(!page.contains("<script>alert"));
        assert_eq!(clean("a\u{0}b\nc"), "a\u{fffd}b\nc");
    }

    /// The framed page is one attribute: every quote and `&` of the page is escaped, so that
    /// the page ends where the attribute does.
    #[test]
    fn a_framed_page_is_one_attribute() {
        let page = r#"<p title="a">x &amp; "y" <script>1</script></p>"#;
        let framed = framed(page);
        assert!(framed.starts_with("<iframe srcdoc=\""), "{framed}");
        let srcdoc = framed
            .strip_prefix("<iframe srcdoc=\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert_eq!(
            srcdoc,
            "&lt;p title=&quot;a&quot;&gt;x &amp;amp; &quot;y&quot; \
             &lt;script&gt;1&lt;/script&gt;&lt;/p&gt;"
        );
        assert!(framed.ends_with("></iframe>"), "{framed}");
    }
}
