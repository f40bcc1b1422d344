//! Errors as HTTP answers: a status and `{"error": ..., "field": ...}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::ErrorBody;
use crate::{Error, Field};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, field: Option<String>) -> Self {
        Self {
            status: status.as_u16(),
            error: error.into(),
            field,
            retry_after: None,
        }
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, None)
    }

    pub fn unprocessable(error: impl Into<String>, field: Option<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error, field)
    }

    pub fn too_large(error: impl Into<String>, field: Option<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, error, field)
    }

    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error, None)
    }

    pub fn with_retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// Why a pair cannot be explained, with the field of the pair at fault. Messages name
    /// options by their names, as the request's fields.
    pub fn from_pair(e: &Error) -> Self {
        let status = match e {
            Error::InputTooLarge { .. } | Error::OutOfMemory { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            // The pair's text, or options wrong together or for this model.
            Error::Encoding(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ if e.field().is_some() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // The request's options are under `options`.
        let field = e.field().map(|f| match f {
            Field::Pair(key) => key.to_string(),
            Field::Option(name) => format!("options.{name}"),
        });
        Self::new(status, e.to_string(), field)
    }

    /// The error of the pair at `at` (`pairs[3]`) of a list: its fields are under it (options
    /// are the request's); an error of no field names the pair.
    pub fn at(self, at: &str) -> Self {
        if at.is_empty() {
            return self;
        }
        let field = match self.field {
            Some(f) if f.starts_with("options.") => f,
            Some(f) => format!("{at}.{f}"),
            None => at.to_string(),
        };
        Self {
            field: Some(field),
            ..self
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.error.clone(),
            field: self.field.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::options::phrases;

    #[test]
    fn option_errors_name_the_option() {
        let options = crate::ExplainOptions {
            top_k: 2,
            seed_compat: true,
            ..Default::default()
        };
        let e = ApiError::from_pair(&options.validate().unwrap_err().into());
        assert_eq!(e.status, 422);
        assert_eq!(e.field.as_deref(), Some("options.top_k"));
        assert_eq!(
            e.error,
            "invalid option: top_k takes span best without seed_compat"
        );
    }

    #[test]
    fn pair_errors_name_the_pair_field() {
        let e = ApiError::from_pair(&Error::EmptyInput("context")).at("pairs[2]");
        assert_eq!(
            (e.status, e.field.as_deref()),
            (422, Some("pairs[2].context"))
        );
        let e = ApiError::from_pair(&phrases::input_too_large(9, 1));
        assert_eq!((e.status, e.field.as_deref()), (413, Some("context")));
        let e = ApiError::from_pair(&Error::NonFinite("logits"));
        assert_eq!((e.status, e.field.as_deref()), (500, None));
        let e = ApiError::from_pair(&phrases::doc_stride(9, 3)).at("pairs[1]");
        assert_eq!(e.field.as_deref(), Some("options.doc_stride"));
    }
}
