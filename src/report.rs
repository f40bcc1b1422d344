//! A self-contained HTML page of explanations: no network, no external scripts, fonts or
//! styles. For each pair the question and the context run as text, each word (or token)
//! shaded by its score, the answer outlined; hovering or focusing a token shows its score, raw
//! value and gradient × input. Toggles switch between words and tokens and, when a pair was
//! explained by several methods, between methods. Long contexts show their window; a batch is
//! one page with a list of its pairs. The colours keep black text at a contrast of at least 7:1
//! (WCAG AAA), and a legend gives the scale.

use std::fmt::Write;

use crate::explain::{Explanation, Method, TokenExplanation};
use crate::text::Segment;

/// One pair of the report: its text and its explanations, one per method.
pub struct ReportPair<'a> {
    pub question: &'a str,
    pub context: &'a str,
    pub explanations: &'a [Explanation],
}

/// The page for `pairs` (`title` in its heading).
pub fn html(title: &str, pairs: &[ReportPair]) -> String {
    let mut methods: Vec<Method> = Vec::new();
    for e in pairs.iter().flat_map(|p| p.explanations) {
        if !methods.contains(&e.method) {
            methods.push(e.method);
        }
    }
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    page += &controls(&methods);
    page += LEGEND;
    page += "</header>\n";
    if pairs.len() > 1 {
        page += "<nav aria-label=\"pairs\"><ol>\n";
        for (i, p) in pairs.iter().enumerate() {
            let _ = writeln!(
                page,
                "<li><a href=\"#pair-{}\">{}</a></li>",
                i + 1,
                escape(p.question)
            );
        }
        page += "</ol></nav>\n";
    }
    page += "<main>\n";
    for (i, p) in pairs.iter().enumerate() {
        page += &pair_section(i + 1, p, methods.first().copied());
    }
    page += "</main>\n<script>";
    page += SCRIPT;
    page += "</script>\n</body>\n</html>\n";
    page
}

fn controls(methods: &[Method]) -> String {
    let mut s = String::from(
        "<div class=\"controls\"><fieldset><legend>Show</legend>\
         <label><input type=\"radio\" name=\"unit\" value=\"word\" checked> words</label>\
         <label><input type=\"radio\" name=\"unit\" value=\"token\"> tokens</label></fieldset>",
    );
    if methods.len() > 1 {
        s += "<fieldset><legend>Method</legend>";
        for (i, m) in methods.iter().enumerate() {
            let _ = write!(
                s,
                "<label><input type=\"radio\" name=\"method\" value=\"{m}\"{}> {m}</label>",
                if i == 0 { " checked" } else { "" }
            );
        }
        s += "</fieldset>";
    }
    s + "</div>\n"
}

fn pair_section(n: usize, p: &ReportPair, shown: Option<Method>) -> String {
    let mut s = format!(
        "<section class=\"pair\" id=\"pair-{n}\">\n<h2>{n}. {}</h2>\n",
        escape(p.question)
    );
    for e in p.explanations {
        let hidden = if Some(e.method) == shown {
            ""
        } else {
            " hidden"
        };
        let _ = writeln!(
            s,
            "<div class=\"method\" data-method=\"{}\"{hidden}>",
            e.method
        );
        s += &summary(e);
        s += &views(p, e);
        if !e.windows.is_empty() {
            s += "<details><summary>Every window, each for its own best span</summary>\n";
            for w in &e.windows {
                s += &summary(w);
                s += &views(p, w);
            }
            s += "</details>\n";
        }
        s += "</div>\n";
    }
    s + "</section>\n"
}

fn summary(e: &Explanation) -> String {
    let a = &e.answer;
    let answer = if a.impossible {
        "<span class=\"answer-text\">no answer</span>".to_string()
    } else {
        format!("<q class=\"answer-text\">{}</q>", escape(&a.text))
    };
    let mut s = format!(
        "<p class=\"summary\">Answer: {answer} (tokens {}–{}, score {:.3}; {} method, {} target",
        a.token_start, a.token_end, a.score, e.method, e.target.kind,
    );
    if let Some(w) = &e.window {
        let _ = write!(
            s,
            "; window {} of {}, context characters {}–{}",
            w.index + 1,
            w.count,
            w.char_start,
            w.char_end
        );
    }
    if let Some(err) = e.completeness_error {
        let _ = write!(s, "; completeness error {err:.2e}");
    }
    if let Some(null) = a.null_score {
        let span = a
            .best_span_probability
            .map_or("none".into(), |p| format!("{p:.4}"));
        let _ = write!(s, "; null score {null:.4} against the best span's {span}");
    }
    if let Some(m) = &e.model_answer {
        let _ = write!(s, "; the model's own answer: <q>{}</q>", escape(&m.text));
    }
    s + ")</p>\n"
}

/// The word and token views of one explanation.
fn views(p: &ReportPair, e: &Explanation) -> String {
    let mut s = String::new();
    for (unit, hidden) in [("word", ""), ("token", " hidden")] {
        let _ = writeln!(s, "<div class=\"view\" data-unit=\"{unit}\"{hidden}>");
        for (segment, label, source) in [
            (Segment::Question, "Question", p.question),
            (Segment::Context, "Context", p.context),
        ] {
            let (from, to) = match (&e.window, segment) {
                (Some(w), Segment::Context) => (w.char_start, w.char_end),
                _ => (0, source.chars().count()),
            };
            let _ = write!(
                s,
                "<p class=\"{}\"><span class=\"label\">{label}</span> ",
                label.to_lowercase()
            );
            if from > 0 {
                s += "… ";
            }
            let pieces: Vec<Piece> = if unit == "word" {
                e.words
                    .iter()
                    .filter(|w| w.segment == segment)
                    .map(|w| Piece {
                        chars: w.char_start..w.char_end,
                        score: w.score,
                        tip: format!("score {:.3}", w.score),
                        answer: segment == Segment::Context
                            && overlaps_answer(e, w.char_start, w.char_end),
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
            s += &running_text(source, from, to, &pieces, e.method.signed());
            let cut = matches!((&e.window, segment), (Some(w), Segment::Context) if w.index + 1 < w.count)
                || (segment == Segment::Context && e.truncated);
            if cut {
                s += " …";
            }
            s += "</p>\n";
        }
        s += "</div>\n";
    }
    s
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
fn running_text(source: &str, from: usize, to: usize, pieces: &[Piece], signed: bool) -> String {
    let chars: Vec<char> = source.chars().collect();
    let text = |a: usize, b: usize| -> String {
        escape(
            &chars[a.min(chars.len())..b.min(chars.len()).max(a.min(chars.len()))]
                .iter()
                .collect::<String>(),
        )
    };
    let mut s = String::new();
    let mut at = from;
    for p in pieces
        .iter()
        .filter(|p| p.chars.start >= from && p.chars.end <= to)
    {
        if p.chars.start > at {
            s += &text(at, p.chars.start);
        }
        let _ = write!(
            s,
            "<span class=\"t{}\" tabindex=\"0\" data-score=\"{}\" data-tip=\"{}\" style=\"background-color: {}\">{}</span>",
            if p.answer { " answer" } else { "" },
            p.score,
            escape(&p.tip),
            colour(p.score, signed),
            text(p.chars.start, p.chars.end)
        );
        at = p.chars.end.max(at);
    }
    s + &text(at, to)
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

fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s += "&amp;",
            '<' => s += "&lt;",
            '>' => s += "&gt;",
            '"' => s += "&quot;",
            '\'' => s += "&#39;",
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(s, "&#xfffd;");
            }
            c => s.push(c),
        }
    }
    s
}

const LEGEND: &str = "<div class=\"legend\" role=\"img\" aria-label=\"colour scale: white for a \
score of 0, red for 1; blue for −1 with signed methods\"><span>−1</span>\
<span class=\"bar\"></span><span>1</span> <span class=\"note\">score (a token's attribution \
over the largest in its pair); blue only for signed methods</span></div>\n";

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
    use super::{colour, escape};

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
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
