//! The pair, and its one reader for every front.

/// One pair to explain, as read from JSON lines (`id` optional: any JSON value, echoed back as
/// given; `null` is no id).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct QaPair {
    #[serde(default)]
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<super::PairId>,
    /// Not empty, nor only whitespace.
    #[cfg_attr(feature = "serve", schema(min_length = 1, pattern = r"\S"))]
    pub question: String,
    /// Not empty, nor only whitespace.
    #[cfg_attr(feature = "serve", schema(min_length = 1, pattern = r"\S"))]
    pub context: String,
    /// An answer to explain instead of the model's: why would it, or would it not, pick this?
    #[serde(default)]
    pub answer: Option<String>,
    /// Where `answer` starts in the context, in characters (default: its first occurrence).
    #[serde(default)]
    pub answer_start: Option<usize>,
}

impl QaPair {
    pub fn new(question: impl Into<String>, context: impl Into<String>) -> Self {
        Self {
            id: None,
            question: question.into(),
            context: context.into(),
            answer: None,
            answer_start: None,
        }
    }

    /// The same pair, explained for `answer` (at its first occurrence in the context).
    pub fn with_answer(self, answer: impl Into<String>) -> Self {
        Self {
            answer: Some(answer.into()),
            ..self
        }
    }
}
