//! The columns of `explain_arrays`, for dataframes.

use spangrad_rs::{Error, Explanation};

/// The per-pair columns of `explain_arrays`.
pub struct Columns {
    pub lengths: Vec<i64>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
    pub char_start: Vec<i64>,
    pub char_end: Vec<i64>,
    pub answer: Vec<String>,
    pub error: Vec<Option<String>>,
    pub tokens: Vec<Vec<String>>,
}

impl Columns {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            lengths: Vec::with_capacity(n),
            start: Vec::with_capacity(n),
            end: Vec::with_capacity(n),
            char_start: Vec::with_capacity(n),
            char_end: Vec::with_capacity(n),
            answer: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            tokens: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, e: &Explanation) {
        let char_index = |c: Option<usize>| c.map_or(-1, |c| c as i64);
        self.lengths.push(e.tokens.len() as i64);
        self.start.push(e.answer.token_start as i64);
        self.end.push(e.answer.token_end as i64);
        self.char_start.push(char_index(e.answer.char_start));
        self.char_end.push(char_index(e.answer.char_end));
        self.answer.push(e.answer.text.clone());
        self.error.push(None);
        self.tokens
            .push(e.tokens.iter().map(|t| t.text.clone()).collect());
    }

    pub fn push_failed(&mut self, error: &Error) {
        self.lengths.push(0);
        for column in [
            &mut self.start,
            &mut self.end,
            &mut self.char_start,
            &mut self.char_end,
        ] {
            column.push(-1);
        }
        self.answer.push(String::new());
        self.error.push(Some(error.to_string()));
        self.tokens.push(Vec::new());
    }
}
