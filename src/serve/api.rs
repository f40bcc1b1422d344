//! What goes over the wire: the request and response bodies (their OpenAPI schemas are derived
//! from these types), and the reading of a request body into pairs and options.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{PartialSchema, ToSchema};

use super::error::ApiError;
use crate::evaluate::{EvaluateOptions, Evaluation, Summary};
use crate::explain::{Given, OtherFields, PairFailure, Refused, Scope};
use crate::{ExplainOptions, Explanation, QaPair};

/// Per-request options (the [`Scope::Request`] options of [`crate::explain::OPTIONS`], by
/// name). Absent ones take the server's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestOptions(pub Given);

impl RequestOptions {
    /// `base` with these options over it.
    pub fn apply(&self, base: &ExplainOptions) -> Result<ExplainOptions, ApiError> {
        self.0
            .apply(base)
            .map_err(|e| ApiError::from_pair(&e.into()))
    }

    /// The options of an `options` object: each checked against its type and range, the
    /// failure naming its field.
    fn read(fields: Fields<'_>) -> Result<Self, ApiError> {
        let mut given = Given::default();
        for (name, raw) in fields {
            let field = Some(format!("options.{name}"));
            let value: serde_json::Value = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::unprocessable(e.to_string(), field.clone()))?;
            if value.is_null() {
                continue;
            }
            given.add(&name, value, Scope::Request).map_err(|refused| {
                let message = match refused {
                    Refused::Unknown(name) => format!(
                        "unknown option `{name}`; the options are {}",
                        request_options().collect::<Vec<_>>().join(", ")
                    ),
                    Refused::AtLoad(name) => format!(
                        "{name} is chosen when the server starts (`spangrad serve --{}`), \
                             not per request",
                        name.replace('_', "-")
                    ),
                    Refused::Invalid(e) => crate::Error::from(e).to_string(),
                };
                ApiError::unprocessable(message, field)
            })?;
        }
        Ok(Self(given))
    }
}

/// The names of the per-request options.
fn request_options() -> impl Iterator<Item = &'static str> {
    crate::explain::OPTIONS
        .iter()
        .filter(|s| s.scope == Scope::Request)
        .map(|s| s.name)
}

impl PartialSchema for RequestOptions {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::explain::options::openapi::request_options()
    }
}

impl ToSchema for RequestOptions {}

/// Read by [`parse`]; the derive is for the schemas of the request types.
impl<'de> Deserialize<'de> for RequestOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = BTreeMap::<String, Box<RawValue>>::deserialize(deserializer)?;
        let fields: Fields = fields.iter().map(|(k, v)| (k.clone(), &**v)).collect();
        Self::read(fields).map_err(|e| serde::de::Error::custom(e.error))
    }
}

/// One pair, answered by its explanation: a pair's fields and `options`, no others.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // read field by field (see `parse`); kept whole for the schema
pub struct PairRequest {
    #[serde(flatten)]
    pub pair: QaPair,
    pub options: Option<RequestOptions>,
}

/// [`QaPair`]'s schema with `options` added (a flattened field would give an `allOf`, which
/// cannot say that no other field is accepted).
impl PartialSchema for PairRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, OneOfBuilder, Ref, Schema, SchemaType, Type,
        };
        use utoipa::openapi::RefOr;
        let RefOr::T(Schema::Object(mut object)) = QaPair::schema() else {
            unreachable!("a struct's schema is an object")
        };
        let options = OneOfBuilder::new()
            .item(utoipa::openapi::schema::Object::with_type(
                SchemaType::Type(Type::Null),
            ))
            .item(Ref::from_schema_name("RequestOptions"));
        object.properties.insert("options".into(), options.into());
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        object.description = Some("One pair, answered by its explanation.".into());
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for PairRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push(("QaPair".into(), QaPair::schema()));
        schemas.push(("RequestOptions".into(), RequestOptions::schema()));
        RequestOptions::schemas(schemas);
    }
}

/// Several pairs, answered by one result each, in order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PairsRequest {
    #[schema(schema_with = pair_items)]
    pub pairs: Vec<QaPair>,
    pub options: Option<RequestOptions>,
}

/// `pairs`: at least one item. An item that is not a valid pair (of the wrong shape, with an
/// empty question...) fails alone: its result is a [`FailedPair`], and the others are
/// explained.
fn pair_items() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Object, Ref, SchemaType};
    let item = AnyOfBuilder::new()
        .item(Ref::from_schema_name("QaPair"))
        .item(Object::with_type(SchemaType::AnyValue))
        .description(Some(
            "A pair; anything else is answered by a failure in its place in `results`",
        ));
    ArrayBuilder::new().items(item).min_items(Some(1)).build()
}

/// The body of `POST /v1/explain`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ExplainRequest {
    One(PairRequest),
    Many(PairsRequest),
}

/// The answer of `POST /v1/explain`: one pair's explanation, or one result per pair.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ExplainResponse {
    One(Box<Explanation>),
    Many(PairsResponse),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PairsResponse {
    pub results: Vec<PairResult>,
}

/// A pair's explanation (as `spangrad explain --format json` writes it), or why it has none.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PairResult {
    Explained(Box<Explanation>),
    Failed(FailedPair),
}

/// A pair of a list with no explanation: its failure (its field under `pairs[i]`), where it
/// is, and the status it would have had alone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailedPair {
    /// The pair's place in `pairs`.
    pub index: usize,
    /// The HTTP status the pair would have had alone.
    pub status: u16,
    #[serde(flatten)]
    pub failure: PairFailure,
}

/// The body of `POST /v1/evaluate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EvaluateRequest {
    #[schema(schema_with = pair_items)]
    pub pairs: Vec<QaPair>,
    pub options: Option<RequestOptions>,
    /// The methods, metrics and random orders [default: every method; every metric; 5].
    pub evaluate: Option<EvaluateOptions>,
}

/// The answer of `POST /v1/evaluate`: one result per pair, and the summary of those
/// evaluated.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvaluateResponse {
    pub results: Vec<EvaluatedPair>,
    pub summary: Summary,
}

/// A pair's evaluation (as a line of `spangrad evaluate`), or why it has none.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EvaluatedPair {
    Evaluated(Box<Evaluation>),
    Failed(FailedPair),
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The request field at fault (`question`, `options.top_k`, `pairs[3].context`), or null.
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ready`, or `loading` (with status 503) while the model loads.
    pub status: String,
}

/// The served model and the server's limits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// The `--model` (or `--preset`) it was started with.
    pub model: String,
    /// `bert` or `distilbert`.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// Tokens per window unless a request sets `max_length`.
    pub max_length: usize,
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Tokens per batch, and so per request: every window of every pair, times the method's
    /// passes (integrated-gradients steps, SmoothGrad samples).
    pub max_batch_tokens: usize,
    /// The work of one `POST /v1/evaluate` request, counted in the same tokens.
    pub max_evaluate_tokens: usize,
    pub max_wait_ms: u64,
    /// Pairs waiting for the device before requests are refused (429).
    pub max_queue: usize,
    pub max_pairs_per_request: usize,
    pub max_body_bytes: usize,
    /// Question + context bytes of one pair.
    pub max_input_bytes: usize,
    pub request_timeout_ms: u64,
}

/// A request read from its body: each pair or why it is invalid, and the options.
pub struct Parsed {
    /// The body was one pair (answered by an explanation), not `{"pairs": [...]}`.
    pub single: bool,
    /// A failure's field is the pair's own (`context`), not yet under `pairs[i]`.
    pub pairs: Vec<Result<QaPair, PairFailure>>,
    pub options: RequestOptions,
    /// `POST /v1/evaluate`'s `evaluate` object (its defaults where absent).
    pub evaluate: EvaluateOptions,
}

/// Which body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/explain`: one pair, or `pairs` and `options`.
    Explain,
    /// `POST /v1/evaluate`: `pairs`, `options` and `evaluate`.
    Evaluate,
}

/// An object's fields, each kept as its JSON text (so that an id is echoed as it was sent).
type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Reads a body: malformed JSON is a 400, a body of the wrong shape a 422 naming the field,
/// too many pairs a 413. A bad pair in a list fails alone.
pub fn parse(body: &[u8], max_pairs: usize, endpoint: Endpoint) -> Result<Parsed, ApiError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let Some(mut fields) = object(raw) else {
        return Err(ApiError::unprocessable(
            "expected a JSON object: a pair {\"question\", \"context\"} or {\"pairs\": [...]}",
            None,
        ));
    };
    let options = match fields.remove("options") {
        // serde would read a struct from an array of its fields in order too.
        Some(v) if object(v).is_some() => RequestOptions::read(object(v).expect("an object"))?,
        Some(v) if v.get() != "null" => {
            return Err(ApiError::unprocessable(
                "`options` must be an object",
                Some("options".into()),
            ))
        }
        _ => RequestOptions::default(),
    };
    let evaluate = match (endpoint, fields.remove("evaluate")) {
        (Endpoint::Evaluate, Some(v)) if object(v).is_some() => {
            serde_json::from_str::<EvaluateOptions>(v.get()).map_err(|e| {
                ApiError::unprocessable(format!("`evaluate`: {e}"), Some("evaluate".into()))
            })?
        }
        (Endpoint::Evaluate, Some(v)) if v.get() != "null" => {
            return Err(ApiError::unprocessable(
                "`evaluate` must be an object",
                Some("evaluate".into()),
            ))
        }
        (Endpoint::Explain, Some(_)) => {
            return Err(ApiError::unprocessable(
                "unknown field `evaluate`: evaluations are asked of POST /v1/evaluate",
                Some("evaluate".into()),
            ))
        }
        _ => EvaluateOptions::default(),
    };
    let Some(pairs) = fields.remove("pairs") else {
        if endpoint == Endpoint::Evaluate {
            return Err(ApiError::unprocessable(
                "expected {\"pairs\": [...]} (with optional `options` and `evaluate`)",
                Some("pairs".into()),
            ));
        }
        let pair = QaPair::from_json(raw.get(), OtherFields::Only(&["options"]))
            .map_err(|f| ApiError::unprocessable(f.error, f.field))?;
        return Ok(Parsed {
            single: true,
            pairs: vec![Ok(pair)],
            options,
            evaluate,
        });
    };
    if let Some(key) = fields.keys().next() {
        let known = match endpoint {
            Endpoint::Explain => "`pairs` and `options`",
            Endpoint::Evaluate => "`pairs`, `options` and `evaluate`",
        };
        return Err(ApiError::unprocessable(
            format!("unknown field `{key}`: a list request has {known}"),
            Some(key.clone()),
        ));
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(pairs.get()) else {
        return Err(ApiError::unprocessable(
            "`pairs` must be an array of pairs",
            Some("pairs".into()),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable(
            "`pairs` is empty",
            Some("pairs".into()),
        ));
    }
    if items.len() > max_pairs {
        return Err(ApiError::too_large(
            format!(
                "{} pairs, over the limit of {max_pairs} per request (--max-pairs-per-request)",
                items.len()
            ),
            Some("pairs".into()),
        ));
    }
    Ok(Parsed {
        single: false,
        pairs: items
            .into_iter()
            .map(|v| QaPair::from_json(v.get(), OtherFields::Only(&[])))
            .collect(),
        options,
        evaluate,
    })
}

/// `raw`'s fields, if it is an object.
fn object(raw: &RawValue) -> Option<Fields<'_>> {
    raw.get()
        .starts_with('{')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(body: &str) -> ApiError {
        match parse(body.as_bytes(), 4, Endpoint::Explain) {
            Err(e) => e,
            Ok(p) => {
                let (i, f) = p
                    .pairs
                    .into_iter()
                    .enumerate()
                    .find_map(|(i, p)| Some((i, p.err()?)))
                    .expect("a failure");
                ApiError::unprocessable(f.error, f.field).at(&format!("pairs[{i}]"))
            }
        }
    }

    #[test]
    fn reads_one_pair_or_a_list() {
        let one = parse(
            br#"{"question":"q","context":"c","id":7}"#,
            4,
            Endpoint::Explain,
        )
        .unwrap();
        assert!(one.single);
        let pair = one.pairs[0].as_ref().unwrap();
        assert_eq!(
            (pair.question.as_str(), pair.id.clone()),
            ("q", Some(serde_json::json!(7).into()))
        );
        let many = parse(
            br#"{"pairs":[{"question":"q","context":"c"},{"question":1}],"options":{"top_k":2}}"#,
            4,
            Endpoint::Explain,
        )
        .unwrap();
        assert!(!many.single);
        let defaults = ExplainOptions::default();
        assert_eq!(many.options.apply(&defaults).unwrap().top_k, 2);
        let impossible = parse(
            br#"{"question":"q","context":"c","options":{"handle_impossible_answer":true}}"#,
            4,
            Endpoint::Explain,
        )
        .unwrap();
        let options = impossible
            .options
            .apply(&ExplainOptions::default())
            .unwrap();
        assert!(options.handle_impossible_answer);
        assert!(many.pairs[0].is_ok());
        assert_eq!(
            many.pairs[1].as_ref().unwrap_err().field.as_deref(),
            Some("question")
        );
    }

    #[test]
    fn an_evaluation_reads_pairs_and_its_own_object() {
        let body = br#"{"pairs":[{"question":"q","context":"c"}],"evaluate":{"methods":["grad-norm"],"random_orders":0}}"#;
        let parsed = parse(body, 4, Endpoint::Evaluate).unwrap();
        assert_eq!(parsed.evaluate.methods, [crate::explain::Method::GradNorm]);
        assert_eq!(parsed.evaluate.random_orders, 0);
        assert_eq!(parsed.evaluate.metrics, crate::evaluate::Metric::ALL);
        let refused = |body: &[u8], endpoint| match parse(body, 4, endpoint) {
            Err(e) => e.field,
            Ok(_) => panic!("{} is read", String::from_utf8_lossy(body)),
        };
        assert_eq!(
            refused(br#"{"question":"q","context":"c"}"#, Endpoint::Evaluate),
            Some("pairs".into())
        );
        assert_eq!(
            refused(
                br#"{"pairs":[],"evaluate":{"orders":1}}"#,
                Endpoint::Evaluate
            ),
            Some("evaluate".into())
        );
        assert_eq!(
            refused(br#"{"pairs":[],"evaluate":{}}"#, Endpoint::Explain),
            Some("evaluate".into())
        );
    }

    /// The schema says what the server refuses: empty texts, an empty list; and that a
    /// failure's id is any JSON value, as the pair's.
    #[test]
    fn the_schema_states_the_limits() {
        let doc = serde_json::to_value(crate::serve::routes::openapi_document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for field in ["question", "context"] {
            let text = &schemas["QaPair"]["properties"][field];
            assert_eq!(text["minLength"], 1, "{text}");
            assert_eq!(text["pattern"], "\\S", "{text}");
        }
        let pairs = &schemas["PairsRequest"]["properties"]["pairs"];
        assert_eq!(pairs["minItems"], 1);
        // A bad item fails alone (a 200 with a failure in its place), so any item is valid.
        let items = pairs["items"]["anyOf"].as_array().unwrap();
        assert_eq!(items[0]["$ref"], "#/components/schemas/QaPair");
        assert!(items[1].get("type").is_none(), "{items:?}");
        if std::env::var_os("SPANGRAD_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        }
        let id = &schemas["PairFailure"]["properties"]["id"];
        assert!(id.get("type").is_none(), "any JSON value: {id}");
    }

    #[test]
    fn names_the_field_at_fault() {
        let field = |body: &str| failure(body).field;
        assert_eq!(field(r#"{"context":"c"}"#).as_deref(), Some("question"));
        assert_eq!(
            field(r#"{"question":"q","context":"c","options":{"top_k":"x"}}"#).as_deref(),
            Some("options.top_k")
        );
        assert_eq!(
            field(r#"{"question":"q","context":"c","options":{"colour":1}}"#).as_deref(),
            Some("options.colour")
        );
        assert_eq!(
            field(r#"{"question":"q","context":"c","span":"best"}"#).as_deref(),
            Some("span")
        );
        assert_eq!(field(r#"{"pairs":{}}"#).as_deref(), Some("pairs"));
        let array = r#"{"question":"q","context":"c","options":[null]}"#;
        assert_eq!(field(array).as_deref(), Some("options"));
        assert_eq!(field(r#"{"pairs":[5]}"#).as_deref(), Some("pairs[0]"));
        assert_eq!(failure("{").status, 400);
        assert_eq!(failure("[1]").status, 422);
        let five = r#"{"pairs":[{},{},{},{},{}]}"#;
        assert_eq!(failure(five).status, 413);
    }
}
