//! The pair, its one reader for every front, and the one shape of a pair's failure.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{Naming, PairId};
use crate::Error;

/// One pair to explain, as read from JSON lines (`id` optional: any JSON value, echoed back as
/// given; `null` is no id).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct QaPair {
    #[serde(default)]
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<PairId>,
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

/// What a pair's object may hold besides the pair's fields.
#[derive(Debug, Clone, Copy)]
pub enum OtherFields<'a> {
    /// Any other field is left alone (a JSON line's `title`, a dataframe row's columns).
    Ignored,
    /// Only these, which the caller reads (the server's `options`); any other fails the pair.
    Only(&'a [&'a str]),
}

impl QaPair {
    /// The fields of a pair, as the JSON fronts name them.
    pub const FIELDS: [&'static str; 5] = ["id", "question", "context", "answer", "answer_start"];

    /// The one reader of a pair from its JSON text, for every front: an object with `question`
    /// and `context` (strings), and optional `id` (any JSON value), `answer` and
    /// `answer_start`. On failure, why, the field at fault, and the pair's id when it had a
    /// readable one.
    pub fn from_json(text: &str, others: OtherFields<'_>) -> Result<Self, PairFailure> {
        let text = text.trim();
        // Only an object: serde would read a struct from an array of its fields in order too.
        let object = text.starts_with('{');
        if object && matches!(others, OtherFields::Ignored) {
            if let Ok(pair) = serde_json::from_str::<QaPair>(text) {
                return Ok(pair);
            }
        }
        // Why it failed, off the common path.
        let fields = match serde_json::from_str::<BTreeMap<String, &RawValue>>(text) {
            Ok(fields) if object => fields,
            _ => {
                return Err(match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(value) => PairFailure::unread(
                        None,
                        format!(
                            "invalid pair: expected a JSON object with \"question\" and \
                             \"context\", found {}",
                            kind(&value)
                        ),
                        None,
                    ),
                    Err(e) => {
                        PairFailure::unread(None, format!("invalid JSON: {}", explained(&e)), None)
                    }
                })
            }
        };
        let id = fields
            .get("id")
            .and_then(|raw| PairId::from_json(raw.get()).ok().flatten());
        if let OtherFields::Only(allowed) = others {
            if let Some(key) = fields
                .keys()
                .find(|k| !Self::FIELDS.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
            {
                let known: Vec<String> = Self::FIELDS
                    .iter()
                    .chain(allowed)
                    .map(|f| format!("`{f}`"))
                    .collect();
                let message = format!(
                    "invalid pair: unknown field `{key}`; the fields are {}",
                    known.join(", ")
                );
                return Err(PairFailure::unread(id, message, Some(key.clone())));
            }
        }
        let mut reader = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, QaPair>(&mut reader).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = without_position(&inner);
            // A missing field is reported at its parent: name it.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next());
            let field = missing.map(str::to_string).or_else(|| {
                (path != "." && path != "?").then(|| path.trim_start_matches('.').to_string())
            });
            PairFailure::unread(
                id,
                format!("invalid pair: {message}{}", hint(&message)),
                field,
            )
        })
    }
}

/// Why a pair has no explanation: the one shape every front reports it in (JSON lines add the
/// input line, the server the pair's index and HTTP status, Python the index).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct PairFailure {
    /// The pair's id, as given (any JSON value), when it had a readable one.
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<PairId>,
    pub error: String,
    /// The field at fault (`context`, `answer_start`, or an option as the front names it),
    /// when one is.
    pub field: Option<String>,
}

impl PairFailure {
    /// A pair that could not be read.
    pub fn unread(id: Option<PairId>, error: impl Into<String>, field: Option<String>) -> Self {
        Self {
            id,
            error: error.into(),
            field,
        }
    }

    /// A pair read and not explained: `error`, with options named as `naming` names them.
    pub fn explaining(id: Option<PairId>, error: &Error, naming: Naming) -> Self {
        Self {
            id,
            error: error.render(naming),
            field: error.field().map(|f| f.render(naming)),
        }
    }
}

/// The JSON error's message without the position serde_json appends (the field names the
/// place; a pair of one line has no other).
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map(str::to_string)
        .unwrap_or(message)
}

/// A JSON error, with a hint where its message is obscure.
fn explained(error: &serde_json::Error) -> String {
    let message = error.to_string();
    format!("{message}{}", hint(&message))
}

fn hint(message: &str) -> &'static str {
    if message.contains("escape") {
        " (a \\u escape that is not a character: a lone UTF-16 surrogate such as \\ud800?)"
    } else {
        ""
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(text: &str, others: OtherFields<'_>) -> PairFailure {
        QaPair::from_json(text, others).expect_err(text)
    }

    #[test]
    fn reads_a_pair_and_its_optional_fields() {
        let pair = QaPair::from_json(
            r#" {"id": 1.50, "question": "q", "context": "c", "answer": "a", "answer_start": 0,
                 "title": "left alone"} "#,
            OtherFields::Ignored,
        )
        .unwrap();
        assert_eq!(pair.id.unwrap().json(), "1.50");
        assert_eq!(
            (pair.answer.as_deref(), pair.answer_start),
            (Some("a"), Some(0))
        );
        let plain = QaPair::from_json(
            r#"{"question":"q","context":"c","id":null}"#,
            OtherFields::Only(&[]),
        );
        assert_eq!(plain.unwrap(), QaPair::new("q", "c"));
    }

    /// Each failure says why and names the field at fault, and keeps a readable id.
    #[test]
    fn a_failure_names_its_field_and_keeps_the_id() {
        let ignored = OtherFields::Ignored;
        let missing = failure(r#"{"id": "x", "question": "q"}"#, ignored);
        assert_eq!(missing.field.as_deref(), Some("context"));
        assert_eq!(missing.id.unwrap().json(), r#""x""#);
        assert_eq!(missing.error, "invalid pair: missing field `context`");
        let typed = failure(
            r#"{"id": 7, "question": "q", "context": "c", "answer_start": -1}"#,
            ignored,
        );
        assert_eq!(typed.field.as_deref(), Some("answer_start"));
        assert_eq!(typed.id.unwrap().json(), "7");
        assert!(
            typed
                .error
                .starts_with("invalid pair: invalid value: integer `-1`"),
            "{}",
            typed.error
        );
        let array = failure(r#"["q", "c"]"#, ignored);
        assert_eq!(
            (array.error.as_str(), array.field),
            (
                r#"invalid pair: expected a JSON object with "question" and "context", found an array"#,
                None
            )
        );
        let broken = failure(r#"{"question": "q\ud800", "context": "c"}"#, ignored);
        assert_eq!(broken.field.as_deref(), Some("question"));
        assert!(
            broken.error.contains("lone UTF-16 surrogate"),
            "{}",
            broken.error
        );
        let unknown = failure(
            r#"{"question":"q","context":"c","span":"best"}"#,
            OtherFields::Only(&["options"]),
        );
        assert_eq!(unknown.field.as_deref(), Some("span"));
        assert!(
            unknown.error.ends_with("`answer_start`, `options`"),
            "{}",
            unknown.error
        );
        assert!(QaPair::from_json(
            r#"{"question":"q","context":"c","options":{}}"#,
            OtherFields::Only(&["options"])
        )
        .is_ok());
    }

    #[test]
    fn an_engine_failure_names_its_field_as_the_front_does() {
        let empty = PairFailure::explaining(None, &Error::EmptyInput("question"), Naming::Flag);
        assert_eq!(empty.field.as_deref(), Some("question"));
        let stride = crate::explain::options::phrases::doc_stride(9, 3);
        let flag = PairFailure::explaining(None, &stride, Naming::Flag);
        assert_eq!(flag.field.as_deref(), Some("--doc-stride"));
        assert!(flag.error.starts_with("--doc-stride 9"), "{}", flag.error);
        let name = PairFailure::explaining(None, &stride, Naming::Name);
        assert_eq!(name.field.as_deref(), Some("doc_stride"));
    }
}
