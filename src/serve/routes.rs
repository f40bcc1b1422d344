//! The HTTP surface: a thin axum router over the batcher and the backend. The OpenAPI document
//! is derived from the handlers' annotations and the wire types.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use utoipa::OpenApi;

use super::api::{
    self, ErrorBody, ExplainRequest, ExplainResponse, FailedPair, Health, ModelInfo, PairResult,
    PairsResponse,
};
use super::backend::Priced;
use super::batcher::{Job, Outcome, Refused};
use super::error::ApiError;
use super::AppState;
use crate::explain::{Method, PairFailure};
use crate::ExplainOptions;

type Shared = Arc<AppState>;

/// Paths answered without the API key.
const OPEN_PATHS: [&str; 2] = ["/health", "/openapi.json"];

pub fn router(state: Shared) -> Router {
    // Layers run outside in: count every answer, check the Host, then the key (before routing,
    // so that 404 and 405 do not list the paths to a client without it).
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/explain", post(explain))
        .route("/v1/model", get(model))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "spangrad",
        description = "Gradient explanations for extractive question-answering models."
    ),
    paths(explain, health, model, metrics, openapi),
    modifiers(&BearerKey)
)]
struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", scheme);
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Explains one pair, or a list of pairs, batched with other requests' pairs.
#[utoipa::path(
    post,
    path = "/v1/explain",
    request_body = ExplainRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "A pair's explanation (as `spangrad explain --format json`), or `results` for `pairs`, each an explanation or a failure", body = ExplainResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 413, description = "Body, pairs or tokens over the limits", body = ErrorBody),
        (status = 422, description = "A field that is missing, of the wrong type, unknown or invalid; or what the schema cannot judge: an answer that is not in its context, a text with no tokens, options that do not go together or do not fit the model", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (or the request timeout, if shorter)", body = ErrorBody),
        (status = 415, description = "The body is not declared `application/json`", body = ErrorBody),
        (status = 421, description = "The Host is not answered here (--allowed-hosts)", body = ErrorBody),
        (status = 429, description = "The queue is full, or the work queued ahead would not let this request finish within its timeout (see Retry-After)", body = ErrorBody),
        (status = 500, description = "The computation failed", body = ErrorBody),
        (status = 503, description = "The model is loading", body = ErrorBody),
        (status = 504, description = "No answer within the request timeout", body = ErrorBody),
    )
)]
async fn explain(State(state): State<Shared>, request: Request) -> Response {
    // The request timeout runs from the headers' arrival: a body sent slowly counts.
    let arrived = Instant::now();
    // A body that is not declared JSON is refused unread (only drained): a web page can post
    // `text/plain` to a loopback server without a CORS preflight, never `application/json`.
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let config = &state.config;
    let (limit, flag) = if config.body_timeout < config.request_timeout {
        (config.body_timeout, "--body-timeout-ms")
    } else {
        (config.request_timeout, "--request-timeout-ms")
    };
    let left = limit.saturating_sub(arrived.elapsed());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if !json {
        let error = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with `Content-Type: application/json`",
            None,
        );
        return refused(error, request, declared, left).await;
    }
    // A declared length over the limit is refused before any of the body is used.
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return refused(
            body_too_large(config.max_body_bytes),
            request,
            declared,
            left,
        )
        .await;
    }
    let reading = axum::body::to_bytes(request.into_body(), config.max_body_bytes);
    let Ok(body) = tokio::time::timeout(left, reading).await else {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} ms ({flag})",
                limit.as_millis()
            ),
            None,
        )
        .into_response();
    };
    match answer(&state, body, arrived).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    body: Result<Bytes, axum::Error>,
    arrived: Instant,
) -> Result<ExplainResponse, ApiError> {
    let ready = state.ready()?;
    let config = &state.config;
    let body = body.map_err(|e| {
        let over_limit =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.to_string().contains("length limit exceeded"));
        if over_limit {
            body_too_large(config.max_body_bytes)
        } else {
            ApiError::bad_request(format!("cannot read the body: {e}"))
        }
    })?;
    let parsed = api::parse(&body, config.max_pairs_per_request)?;
    let options = parsed.options.apply(ready.backend.options())?;
    let at = |i: usize| {
        if parsed.single {
            String::new()
        } else {
            format!("pairs[{i}]")
        }
    };

    // Tokenising a long context takes milliseconds: off the runtime's threads.
    let valid: Vec<(usize, crate::QaPair)> = parsed
        .pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.as_ref().ok()?.clone())))
        .collect();
    let backend = ready.backend.clone();
    let passes = passes(&options);
    // A pair's tokens times the passes must fit the batch.
    let budget = config.max_batch_tokens / passes.max(1);
    let planned = {
        let options = options.clone();
        let pairs: Vec<crate::QaPair> = valid.iter().map(|(_, p)| p.clone()).collect();
        tokio::task::spawn_blocking(move || backend.plan(&options, &pairs, budget))
            .await
            .map_err(|e| ApiError::internal(format!("tokenisation failed: {e}")))?
    };
    let planned = planned.map_err(|e| ApiError::from_pair(&e))?;

    let mut outcomes: Vec<Option<Outcome>> = parsed
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let unread = p.as_ref().err()?;
            let error = ApiError::unprocessable(unread.error.clone(), unread.field.clone());
            Some(Err(error.at(&at(i))))
        })
        .collect();
    let mut queued: Vec<usize> = Vec::new();
    let mut plans = Vec::new();
    let mut work: usize = 0;
    // Pricing stopped early: the pairs priced are over the budget already.
    let over = planned.len() < valid.len();
    for (i, priced) in valid.iter().map(|(i, _)| *i).zip(planned) {
        match priced.map(|p| {
            let cost = p.tokens().saturating_mul(passes);
            (p, cost)
        }) {
            Err(e) => outcomes[i] = Some(Err(ApiError::from_pair(&e).at(&at(i)))),
            Ok((priced, cost)) if cost > config.max_batch_tokens => {
                let (least, t) = match &priced {
                    Priced::Planned(plan) => ("", plan.tokens()),
                    Priced::AtLeast(t) => ("at least ", *t),
                };
                let error = ApiError::too_large(
                    format!(
                        "the pair takes {least}{cost} tokens ({least}{t} in its windows x \
                         {passes} passes of the method and spans), over the limit of {} \
                         (--max-batch-tokens)",
                        config.max_batch_tokens
                    ),
                    Some("context".into()),
                );
                outcomes[i] = Some(Err(error.at(&at(i))));
            }
            Ok((Priced::Planned(plan), cost)) => {
                work = work.saturating_add(cost);
                queued.push(i);
                plans.push(plan);
            }
            // Not tokenised: its bound is over `budget`, so its cost over the limit (above).
            Ok((Priced::AtLeast(_), _)) => unreachable!("a pair not tokenised is over the limit"),
        }
    }
    if over || work > config.max_batch_tokens {
        return Err(ApiError::too_large(
            format!(
                "the pairs take {}{work} tokens (windows x the method's passes), over the limit \
                 of {} per request (--max-batch-tokens): send them in several requests",
                if over { "at least " } else { "" },
                config.max_batch_tokens
            ),
            Some("pairs".into()),
        ));
    }

    if !plans.is_empty() {
        let (reply, receive) = oneshot::channel();
        let job = Job {
            options,
            plans,
            work,
            enqueued: Instant::now(),
            reply,
        };
        let deadline = arrived + config.request_timeout;
        ready
            .batcher
            .submit(job, deadline)
            .map_err(|refused| match refused {
                Refused::Full => {
                    let rate = state.metrics.pairs_per_second();
                    let wait = if rate > 0.0 {
                        (ready.batcher.queued() as f64 / rate).ceil() as u64
                    } else {
                        1
                    };
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "the queue is full ({} pairs waiting, --max-queue); retry later",
                            ready.batcher.queued()
                        ),
                        None,
                    )
                    .with_retry_after(wait.clamp(1, 60))
                }
                Refused::Late { expected } => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "the server is busy: the work queued ahead would take ~{} ms, past this \
                     request's timeout ({} ms, --request-timeout-ms); retry later",
                        expected.as_millis(),
                        config.request_timeout.as_millis()
                    ),
                    None,
                )
                .with_retry_after(expected.as_secs_f64().ceil().clamp(1.0, 60.0) as u64),
                Refused::Closed => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is stopping",
                    None,
                ),
            })?;
        let left = config.request_timeout.saturating_sub(arrived.elapsed());
        let explained = match tokio::time::timeout(left, receive).await {
            Ok(Ok(explained)) => explained,
            Ok(Err(_)) => return Err(ApiError::internal("the compute thread stopped")),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "no answer within {} ms (--request-timeout-ms): the server is busy",
                        config.request_timeout.as_millis()
                    ),
                    None,
                ))
            }
        };
        for (i, outcome) in queued.into_iter().zip(explained) {
            outcomes[i] = Some(outcome.map_err(|e| e.at(&at(i))));
        }
    }

    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Err(_))))
        .count();
    state.metrics.pairs(outcomes.len() - failed, failed);
    let mut outcomes = outcomes
        .into_iter()
        .map(|o| o.expect("every pair has an outcome"));
    if parsed.single {
        let outcome = outcomes.next().expect("one pair");
        return outcome.map(|e| ExplainResponse::One(Box::new(e)));
    }
    let results = outcomes
        .zip(&parsed.pairs)
        .enumerate()
        .map(|(index, (outcome, pair))| match outcome {
            Ok(e) => PairResult::Explained(Box::new(e)),
            Err(e) => PairResult::Failed(FailedPair {
                index,
                status: e.status,
                failure: PairFailure {
                    id: match pair {
                        Ok(pair) => pair.id.clone(),
                        Err(unread) => unread.id.clone(),
                    },
                    error: e.error,
                    field: e.field,
                },
            }),
        })
        .collect();
    Ok(ExplainResponse::Many(PairsResponse { results }))
}

/// Bytes of a refused request's body read and dropped before the answer (see [`refused`]).
const DISCARDED_BODY_BYTES: usize = 1 << 20;

/// `error`, answered once the body (`declared` bytes long, if it says; up to
/// [`DISCARDED_BODY_BYTES`], within `left`) is read and dropped, unused. Answered at once, the
/// connection closes with the body unsent or unread: a client that sends its body before it
/// reads (ureq, curl without `Expect`) then meets a broken pipe or a reset instead of this
/// answer.
async fn refused(
    error: ApiError,
    request: Request,
    declared: Option<u64>,
    left: std::time::Duration,
) -> Response {
    // A body declared over the cap is not waited for.
    if declared.is_none_or(|n| n <= DISCARDED_BODY_BYTES as u64) {
        let draining = axum::body::to_bytes(request.into_body(), DISCARDED_BODY_BYTES);
        let _ = tokio::time::timeout(left, draining).await;
    }
    error.into_response()
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::too_large(
        format!("the body is over {limit} bytes (--max-body-bytes)"),
        None,
    )
}

/// Passes per pair: what a pair's tokens cost relative to one plain gradient (each of the
/// `top_k` spans is a backward of its own).
fn passes(options: &ExplainOptions) -> usize {
    let method = match options.method {
        Method::IntegratedGradients => options.steps,
        Method::Smoothgrad => options.samples,
        _ => 1,
    };
    method.saturating_mul(options.top_k)
}

/// Ready once the model has loaded.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "The model is loaded", body = Health),
        (status = 503, description = "The model is loading", body = Health),
    )
)]
async fn health(State(state): State<Shared>) -> Response {
    let (status, word) = match state.ready() {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
    };
    (
        status,
        Json(Health {
            status: word.into(),
        }),
    )
        .into_response()
}

/// The served model: architecture, sizes, device, dtype and the server's limits.
#[utoipa::path(
    get,
    path = "/v1/model",
    security((), ("api_key" = [])),
    responses(
        (status = 200, body = ModelInfo),
        (status = 503, description = "The model is loading", body = ErrorBody),
    )
)]
async fn model(State(state): State<Shared>) -> Result<Json<ModelInfo>, ApiError> {
    Ok(Json(state.ready()?.info.clone()))
}

/// Prometheus metrics (OpenMetrics text exposition).
#[utoipa::path(
    get,
    path = "/metrics",
    security((), ("api_key" = [])),
    responses((status = 200, content_type = "application/openmetrics-text", body = String))
)]
async fn metrics(State(state): State<Shared>) -> Response {
    let mut info = None;
    let mut memory = None;
    if let Ok(ready) = state.ready() {
        let i = &ready.info;
        info = Some([&i.model, &i.architecture, &i.device, &i.dtype].map(String::clone));
        memory = crate::memory::usage_now(ready.backend.device()).ok();
    }
    let text = state
        .metrics
        .render(info, memory, crate::memory::rss_bytes().0);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: see /openapi.json",
        None,
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: see /openapi.json",
        None,
    )
}

/// With `--api-key`, requests carry `Authorization: Bearer KEY`; the key is compared in
/// constant time (its length aside).
async fn authorize(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let open = OPEN_PATHS.contains(&request.uri().path());
    if let (Some(key), false) = (&state.config.api_key, open) {
        let mut headers = request.headers().get_all(header::AUTHORIZATION).iter();
        let (given, second) = (headers.next(), headers.next());
        if second.is_some() {
            return ApiError::bad_request("several Authorization headers: send one")
                .into_response();
        }
        let given = given
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let good = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(key.as_bytes())));
        if !good {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key: send `Authorization: Bearer KEY`",
                Some("authorization".into()),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// A request whose `Host` is a name the server was not told to answer (a DNS name rebound to
/// this machine by a web page) gets 421; IP literals and `localhost` are always answered.
async fn check_host(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = host {
        if !host_allowed(host, &state.config.allowed_hosts) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {host:?} is not answered here: start the server with \
                     --allowed-hosts to answer it"
                ),
                None,
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// `host` (a `Host` header: a name or IP, maybe a port) is an IP literal, `localhost`, or one
/// of `allowed` (`*`: any).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6] or [v6]:port
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(name))
}

/// Every answer, counted by status.
async fn count(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.request(response.status().as_u16());
    response
}
