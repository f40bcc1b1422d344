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
    self, Endpoint, ErrorBody, EvaluateRequest, EvaluateResponse, EvaluatedPair, ExplainRequest,
    ExplainResponse, FailedPair, Health, ModelInfo, PairResult, PairsResponse, Parsed,
};
use super::backend::Priced;
use super::batcher::{Done, Job, Outcome, Refused, Task};
use super::error::ApiError;
use super::{AppState, Ready, ServeConfig};
use crate::evaluate::{Metric, Tally, PERCENTS};
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
        .route("/v1/evaluate", post(evaluate))
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
    paths(explain, evaluate, health, model, metrics, openapi),
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
    receive(&state, request, Endpoint::Explain).await
}

/// How faithful several methods' explanations are (`spangrad evaluate`): every pair explained
/// by every method, then its perturbed inputs through forward passes, batched with other
/// requests' work.
#[utoipa::path(
    post,
    path = "/v1/evaluate",
    request_body = EvaluateRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Per pair its evaluation (as a line of `spangrad evaluate`) or a failure, and the summary of those evaluated", body = EvaluateResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or a wrong API key", body = ErrorBody),
        (status = 413, description = "Body, pairs or work over the limits (--max-evaluate-tokens)", body = ErrorBody),
        (status = 422, description = "A field that is missing, of the wrong type, unknown or invalid; options an evaluation cannot take (seed_compat, top_k over 1, explain_windows all)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = ErrorBody),
        (status = 415, description = "The body is not declared `application/json`", body = ErrorBody),
        (status = 421, description = "The Host is not answered here (--allowed-hosts)", body = ErrorBody),
        (status = 429, description = "The queue is full, or the work queued ahead would not let this request finish within its timeout (see Retry-After)", body = ErrorBody),
        (status = 500, description = "The computation failed", body = ErrorBody),
        (status = 503, description = "The model is loading", body = ErrorBody),
        (status = 504, description = "No answer within the request timeout", body = ErrorBody),
    )
)]
async fn evaluate(State(state): State<Shared>, request: Request) -> Response {
    receive(&state, request, Endpoint::Evaluate).await
}

/// A body read within its time and size limits, then answered as `endpoint` says.
async fn receive(state: &AppState, request: Request, endpoint: Endpoint) -> Response {
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
    let answered = match endpoint {
        Endpoint::Explain => answer(state, body, arrived)
            .await
            .map(|r| Json(r).into_response()),
        Endpoint::Evaluate => evaluation(state, body, arrived)
            .await
            .map(|r| Json(r).into_response()),
    };
    answered.unwrap_or_else(IntoResponse::into_response)
}

/// The body read whole, or why not.
fn read_body(body: Result<Bytes, axum::Error>, config: &ServeConfig) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
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
    })
}

async fn answer(
    state: &AppState,
    body: Result<Bytes, axum::Error>,
    arrived: Instant,
) -> Result<ExplainResponse, ApiError> {
    let ready = state.ready()?;
    let body = read_body(body, &state.config)?;
    let parsed = api::parse(&body, state.config.max_pairs_per_request, Endpoint::Explain)?;
    let options = parsed.options.apply(ready.backend.options())?;
    let outcomes = outcomes(state, ready, &parsed, options, Task::Explain, arrived).await?;
    let mut outcomes = outcomes.into_iter().map(|o| {
        o.map(|done| match done {
            Done::Explained(e) => e,
            Done::Evaluated(_) => unreachable!("an explanation was asked for"),
        })
    });
    if parsed.single {
        let outcome = outcomes.next().expect("one pair");
        return outcome.map(ExplainResponse::One);
    }
    let results = outcomes
        .zip(&parsed.pairs)
        .enumerate()
        .map(|(index, (outcome, pair))| match outcome {
            Ok(e) => PairResult::Explained(e),
            Err(e) => PairResult::Failed(failed(index, pair, e)),
        })
        .collect();
    Ok(ExplainResponse::Many(PairsResponse { results }))
}

async fn evaluation(
    state: &AppState,
    body: Result<Bytes, axum::Error>,
    arrived: Instant,
) -> Result<EvaluateResponse, ApiError> {
    let ready = state.ready()?;
    let body = read_body(body, &state.config)?;
    let parsed = api::parse(
        &body,
        state.config.max_pairs_per_request,
        Endpoint::Evaluate,
    )?;
    let options = parsed.options.apply(ready.backend.options())?;
    parsed
        .evaluate
        .validate_with(&options)
        .map_err(|e| ApiError::unprocessable(e.to_string(), Some("evaluate".into())))?;
    let task = Task::Evaluate(parsed.evaluate.clone());
    let outcomes = outcomes(state, ready, &parsed, options, task, arrived).await?;
    let mut tally = Tally::default();
    let results = outcomes
        .into_iter()
        .zip(&parsed.pairs)
        .enumerate()
        .map(|(index, (outcome, pair))| match outcome {
            Ok(Done::Evaluated(e)) => {
                tally.add(&e);
                EvaluatedPair::Evaluated(e)
            }
            Ok(Done::Explained(_)) => unreachable!("an evaluation was asked for"),
            Err(e) => EvaluatedPair::Failed(failed(index, pair, e)),
        })
        .collect();
    Ok(EvaluateResponse {
        results,
        summary: tally.summary(),
    })
}

/// The failure in a list of the pair at `index`.
fn failed(index: usize, pair: &Result<crate::QaPair, PairFailure>, e: ApiError) -> FailedPair {
    FailedPair {
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
    }
}

/// A request's pairs planned, priced, queued and run as `task` under `options`: per pair, its
/// result or why it has none.
async fn outcomes(
    state: &AppState,
    ready: &Ready,
    parsed: &Parsed,
    options: ExplainOptions,
    task: Task,
    arrived: Instant,
) -> Result<Vec<Outcome>, ApiError> {
    let config = &state.config;
    let at = |i: usize| {
        if parsed.single {
            String::new()
        } else {
            format!("pairs[{i}]")
        }
    };
    let price = Price::of(&task, &options, config);

    // Tokenising a long context takes milliseconds: off the runtime's threads.
    let valid: Vec<(usize, crate::QaPair)> = parsed
        .pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.as_ref().ok()?.clone())))
        .collect();
    let backend = ready.backend.clone();
    // A pair's tokens times the passes must fit the limit.
    let budget = price.limit / price.passes.max(1);
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
            let cost = price.cost(p.tokens());
            (p, cost)
        }) {
            Err(e) => outcomes[i] = Some(Err(ApiError::from_pair(&e).at(&at(i)))),
            Ok((priced, cost)) if cost > price.limit => {
                let (least, t) = match &priced {
                    Priced::Planned(plan) => ("", plan.tokens()),
                    Priced::AtLeast(t) => ("at least ", *t),
                };
                let error = ApiError::too_large(
                    format!(
                        "the pair takes {least}{cost} tokens ({least}{t} in its windows x {}), \
                         over the limit of {} ({})",
                        price.what, price.limit, price.flag
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
    if over || work > price.limit {
        return Err(ApiError::too_large(
            format!(
                "the pairs take {}{work} tokens (windows x {}), over the limit of {} per \
                 request ({}): send them in several requests",
                if over { "at least " } else { "" },
                price.what,
                price.limit,
                price.flag
            ),
            Some("pairs".into()),
        ));
    }

    if !plans.is_empty() {
        let (reply, receive) = oneshot::channel();
        let job = Job {
            task,
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
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every pair has an outcome"))
        .collect())
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

/// What a request's pairs cost, in the units of `--max-batch-tokens`: a token of one gradient
/// pass.
struct Price {
    /// Gradient passes per token: the method's (each of the `top_k` spans is a backward of its
    /// own), or the sum of an evaluation's methods'.
    passes: usize,
    /// An evaluation: forward passes per pair besides leave-one-out's (the unperturbed input
    /// and 10 per curve per ranking), and whether leave-one-out runs (one per token).
    forwards: Option<(usize, bool)>,
    limit: usize,
    flag: &'static str,
    /// The passes, in words.
    what: String,
}

impl Price {
    fn of(task: &Task, options: &ExplainOptions, config: &ServeConfig) -> Self {
        let passes_of = |method: Method| {
            let passes = match method {
                Method::IntegratedGradients => options.steps,
                Method::Smoothgrad => options.samples,
                _ => 1,
            };
            passes.saturating_mul(options.top_k)
        };
        match task {
            Task::Explain => {
                let passes = passes_of(options.method);
                Self {
                    passes,
                    forwards: None,
                    limit: config.max_batch_tokens,
                    flag: "--max-batch-tokens",
                    what: format!("{passes} passes of the method and spans"),
                }
            }
            Task::Evaluate(e) => {
                let passes = e.methods.iter().map(|&m| passes_of(m)).sum();
                let curves = [Metric::Comprehensiveness, Metric::Sufficiency]
                    .iter()
                    .filter(|&&m| e.wants(m))
                    .count();
                let rankings = e.methods.len() + e.random_orders;
                let forwards = 1 + PERCENTS.len() * curves * rankings;
                let loo = e.wants(Metric::Loo);
                Self {
                    passes,
                    forwards: Some((forwards, loo)),
                    limit: config.max_evaluate_tokens,
                    flag: "--max-evaluate-tokens",
                    what: format!(
                        "{passes} passes of the methods, and a third of a pass per forward: \
                         {forwards}{}",
                        if loo { " + one per token" } else { "" }
                    ),
                }
            }
        }
    }

    /// The cost of a pair of `tokens` (all its windows).
    fn cost(&self, tokens: usize) -> usize {
        let forwards = match self.forwards {
            None => 0,
            Some((n, loo)) => (n + if loo { tokens } else { 0 }).div_ceil(3),
        };
        tokens.saturating_mul(self.passes.saturating_add(forwards))
    }
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
