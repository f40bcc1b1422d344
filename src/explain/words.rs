//! NeuralQA's word view: a token that does not begin a word by the tokenizer's own marker
//! (`##` continues a WordPiece word; `Ġ` and `▁` begin byte-level BPE and SentencePiece words)
//! joins the preceding word of the same segment, and a word scores the mean of its pieces.

use crate::explain::explanation::{TokenExplanation, WordExplanation};
use crate::text::{Encoded, Segment};

pub fn merge(encoded: &Encoded, tokens: &[TokenExplanation]) -> Vec<WordExplanation> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let continues = !encoded.word_start[i]
            && token.segment != Segment::Special
            && groups
                .last()
                .is_some_and(|&(first, _)| tokens[first].segment == token.segment);
        match groups.last_mut() {
            Some(group) if continues => group.1 = i,
            _ => groups.push((i, i)),
        }
    }
    groups
        .into_iter()
        .map(|(first, last)| {
            let pieces = &tokens[first..=last];
            let (start, end) = (tokens[first].char_start, tokens[last].char_end);
            let text = match encoded.source(tokens[first].segment) {
                Some(source) => char_slice(source, start, end).to_string(),
                None => tokens[first].text.clone(),
            };
            WordExplanation {
                text,
                segment: tokens[first].segment,
                char_start: start,
                char_end: end,
                score: pieces.iter().map(|t| t.score).sum::<f32>() / pieces.len() as f32,
            }
        })
        .collect()
}

/// `text[start..end]` in characters.
pub fn char_slice(text: &str, start: usize, end: usize) -> &str {
    let byte = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(b, _)| b);
    &text[byte(start)..byte(end)]
}

#[cfg(test)]
mod tests {
    use super::char_slice;

    #[test]
    fn slices_by_characters_not_bytes() {
        assert_eq!(char_slice("café Émile", 5, 10), "Émile");
        assert_eq!(char_slice("東京は", 1, 3), "京は");
        assert_eq!(char_slice("ab", 1, 5), "b");
    }
}
