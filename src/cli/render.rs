//! Human-readable output: the answer, then the question and context with every word shaded by
//! its score on a terminal, or followed by its score in brackets otherwise.

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, RgbColor, Style};
use spangrad::explain::WordExplanation;
use spangrad::text::Segment;
use spangrad::{Explanation, QaPair};

/// The explanation, then each alternative (`--top-k`) the same way.
pub fn text(
    out: &mut impl Write,
    e: &Explanation,
    pair: &QaPair,
    model: &str,
) -> std::io::Result<()> {
    one(out, e, pair, model, "answer:  ")?;
    for (i, alternative) in e.alternatives.iter().enumerate() {
        writeln!(out)?;
        one(out, alternative, pair, model, &format!("#{:<7}", i + 2))?;
    }
    Ok(())
}

fn one(
    out: &mut impl Write,
    e: &Explanation,
    pair: &QaPair,
    model: &str,
    label: &str,
) -> std::io::Result<()> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let a = &e.answer;
    let rank = e.rank.map_or(String::new(), |r| format!(", rank {r}"));
    if a.impossible {
        writeln!(out, "{label} no answer")?;
    } else {
        writeln!(out, "{label} \"{}\"", visible(&a.text))?;
    }
    if let (true, Some(first)) = (a.impossible, e.tokens.first()) {
        writeln!(
            out,
            "          explained: start[0] + end[0], the logits of {}[{:.2}], the first token",
            visible(&first.text),
            first.score
        )?;
    }
    if let (Some(null), Some(p)) = (a.null_score, a.probability) {
        let span = a
            .best_span_probability
            .map_or("none".into(), |s| format!("{s:.4}"));
        writeln!(
            out,
            "          probability {p:.4}; null score {null:.4} against the best span's {span}"
        )?;
    }
    writeln!(
        out,
        "          tokens {}..={}, score {:.3} (start {:.3} + end {:.3}{rank}); {} target, {} span, {} saliency, {}{}; {}",
        a.token_start,
        a.token_end,
        a.score,
        a.start_logit,
        a.end_logit,
        e.target.kind,
        e.span_mode,
        e.saliency,
        e.precision.name(),
        if e.seed_compat { ", seed-compat" } else { "" },
        model
    )?;
    if let Some(w) = &e.window {
        writeln!(
            out,
            "          window {} of {}: context characters {}..{}",
            w.index + 1,
            w.count,
            w.char_start,
            w.char_end
        )?;
    }
    if let Some(m) = &e.model_answer {
        writeln!(
            out,
            "          the model's own answer: \"{}\" (tokens {}..={}, score {:.3})",
            visible(&m.text),
            m.token_start,
            m.token_end,
            m.score
        )?;
    }
    for (label, segment, source) in [
        ("question", Segment::Question, &pair.question),
        ("context", Segment::Context, &pair.context),
    ] {
        write!(out, "{label:<9} ")?;
        let words: Vec<&WordExplanation> =
            e.words.iter().filter(|w| w.segment == segment).collect();
        // A window shows its own part of the context, with ellipses where more text is.
        let (from, cut) = match (segment, &e.window) {
            (Segment::Context, Some(w)) => (w.char_start, w.index + 1 < w.count),
            (Segment::Context, None) => (0, e.truncated),
            _ => (0, false),
        };
        if from > 0 {
            write!(out, "… ")?;
        }
        shade(out, source, &words, colour, from, !cut)?;
        if cut {
            write!(out, " …")?;
        }
        writeln!(out)?;
    }
    if e.truncated {
        writeln!(
            out,
            "          (the context was truncated to fit the maximum length)"
        )?;
    }
    Ok(())
}

/// Writes `source` from character `from` with its words shaded; the text between words is
/// written as it is, and the text after the last word only when `rest`.
fn shade(
    out: &mut impl Write,
    source: &str,
    words: &[&WordExplanation],
    colour: bool,
    from: usize,
    rest: bool,
) -> std::io::Result<()> {
    let chars: Vec<char> = source.chars().collect();
    let text = |a: usize, b: usize| {
        let piece: String = chars[a.min(chars.len())..b.min(chars.len())]
            .iter()
            .collect();
        visible(&piece)
    };
    let mut at = from;
    for w in words {
        write!(out, "{}", text(at, w.char_start))?;
        let word = text(w.char_start, w.char_end);
        if colour {
            let style = style(w.score);
            write!(out, "{style}{word}{style:#}")?;
        } else {
            write!(out, "{word}[{:.2}]", w.score)?;
        }
        at = w.char_end;
    }
    if rest {
        write!(out, "{}", text(at, chars.len()))?;
    }
    Ok(())
}

/// `text` safe to print on a terminal: control characters (escape sequences from the input
/// among them, which could move the cursor or rewrite the screen) become their `\u{..}`
/// escapes; every other character, joiners and combining marks included, stays as it is.
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() && c != '\t') || is_bidi_control(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The invisible characters that reorder the text around them on a terminal (Unicode's bidi
/// embeddings, overrides, isolates and marks): shown raw, an input could make the output read
/// other than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// White for 0, through orange to red for 1.
fn style(score: f32) -> Style {
    let s = score.clamp(0.0, 1.0);
    let fade = |full: f32| (255.0 - s * full).round() as u8;
    Style::new()
        .bg_color(Some(RgbColor(255, fade(180.0), fade(255.0)).into()))
        .fg_color(Some(AnsiColor::Black.into()))
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_are_escaped_and_text_is_not() {
        assert_eq!(visible("a\u{1b}[2Jb\r"), "a\\u{1b}[2Jb\\u{d}");
        assert_eq!(visible("👩\u{200d}💻 café\tx"), "👩\u{200d}💻 café\tx");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m");
    }
}
