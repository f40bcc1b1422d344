//! `spangrad serve` over loopback: every endpoint and error, results equal to the CLI's, a load
//! test with 64 concurrent clients, and a bounded soak of the real binary.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::*;
use serde_json::{json, Value};
use spangrad::explain::PairPlan;
use spangrad::serve::api::ModelInfo;
use spangrad::serve::{Backend, ExplainerBackend, Loader, Priced, Running, ServeConfig};
use spangrad::{ExplainOptions, Explainer, Explanation, QaPair};

fn explainer(dir: &str) -> Explainer {
    Explainer::from_dir(&fixture(dir), ExplainOptions::default(), &Device::Cpu).unwrap()
}

fn loader(backend: impl Backend) -> Loader {
    Box::new(move || Ok(Arc::new(backend) as Arc<dyn Backend>))
}

/// A server on loopback, once it is ready.
fn start(backend: impl Backend, config: ServeConfig) -> Running {
    let server = Running::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        loader(backend),
        config,
    )
    .unwrap();
    wait_ready(&server);
    server
}

fn wait_ready(server: &Running) {
    let start = Instant::now();
    while get(server, "/health").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fixture_server(config: ServeConfig) -> Running {
    start(
        ExplainerBackend::new(explainer("distilbert-tiny"), "distilbert-tiny"),
        config,
    )
}

/// An answer: status, headers we look at, and the body as JSON (or text).
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
    text: String,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn call(request: ureq::Request, body: Option<&[u8]>) -> Answer {
    let result = match body {
        // A body is JSON unless the test says otherwise.
        Some(b) if request.header("Content-Type").is_none() => request
            .set("Content-Type", "application/json")
            .send_bytes(b),
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let retry_after = response.header("retry-after").map(str::to_string);
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

fn post(server: &Running, body: &str) -> Answer {
    let request = agent().post(&format!("{}/v1/explain", server.url()));
    call(request, Some(body.as_bytes()))
}

/// [`PAIR`] posted from another thread.
fn post_in_background(server: &Running) -> std::thread::JoinHandle<Answer> {
    let url = format!("{}/v1/explain", server.url());
    std::thread::spawn(move || call(agent().post(&url), Some(PAIR.as_bytes())))
}

/// A connection to the server at `url` that has sent `POST /v1/explain` as JSON with `headers`
/// (each ending in CRLF), a `Content-Length` of `length`, then `body`: the requests no client
/// library sends (two Authorization headers, a body late or cut short).
fn raw_post(url: &str, headers: &str, length: usize, body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/explain HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {length}\r\n\r\n{body}"
    )
    .unwrap();
    stream
}

fn get(server: &Running, path: &str) -> Answer {
    call(agent().get(&format!("{}{path}", server.url())), None)
}

fn assert_error(answer: &Answer, status: u16, field: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert!(
        answer.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        answer.text
    );
    assert_eq!(answer.body["field"].as_str(), field, "{}", answer.text);
}

const PAIR: &str =
    r#"{"question":"Who wrote the novel?","context":"Jane Austen wrote it in 1813."}"#;

/// The value of a metric line, e.g. `spangrad_batch_pairs_count`.
fn metric(server: &Running, line: &str) -> f64 {
    let text = get(server, "/metrics").text;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line} not in\n{text}"))
}

#[test]
fn every_endpoint_answers() {
    let server = fixture_server(ServeConfig::default());
    let health = get(&server, "/health");
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ready"))
    );

    let model: ModelInfo = serde_json::from_str(&get(&server, "/v1/model").text).unwrap();
    assert_eq!(model.architecture, "distilbert");
    assert_eq!((model.hidden_size, model.num_layers), (36, 2));
    assert_eq!(
        (model.device.as_str(), model.dtype.as_str()),
        ("cpu", "f32")
    );
    assert_eq!(model.limits.max_pairs_per_request, 64);

    let one = post(&server, PAIR);
    assert_eq!(one.status, 200, "{}", one.text);
    let e: Explanation = serde_json::from_str(&one.text).unwrap();
    assert!(!e.answer.text.is_empty());

    let spec = get(&server, "/openapi.json").body;
    for path in [
        "/v1/explain",
        "/health",
        "/v1/model",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
    let schemas = &spec["components"]["schemas"];
    // The document is derived from the types: every field of an explanation is in it.
    let explanation = serde_json::to_value(&e).unwrap();
    for key in explanation.as_object().unwrap().keys() {
        assert!(
            schemas["Explanation"]["properties"][key].is_object(),
            "{key} missing from the schema"
        );
    }
    assert!(schemas["RequestOptions"]["properties"]["top_k"].is_object());

    let metrics = get(&server, "/metrics");
    assert_eq!(metrics.status, 200);
    for name in [
        "spangrad_requests_total{status=\"200\"}",
        "spangrad_pairs_total{result=\"explained\"} 1",
        "spangrad_batch_pairs_count 1",
        "spangrad_queue_seconds_count 1",
        "spangrad_compute_seconds_count 1",
        "spangrad_tokens_per_second",
        "spangrad_device_memory_bytes{kind=\"used\"}",
        "spangrad_resident_memory_bytes",
    ] {
        assert!(
            metrics.text.contains(name),
            "{name} not in\n{}",
            metrics.text
        );
    }
    assert_error(&get(&server, "/v2/nothing"), 404, None);
    assert_error(&get(&server, "/v1/explain"), 405, None);
    server.stop().unwrap();
}

#[test]
fn health_says_loading_until_the_model_is_loaded() {
    let (release, wait) = mpsc::channel::<()>();
    let backend = ExplainerBackend::new(explainer("distilbert-tiny"), "slow to load");
    let load: Loader = Box::new(move || {
        wait.recv().unwrap();
        Ok(Arc::new(backend) as Arc<dyn Backend>)
    });
    let server = Running::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        load,
        ServeConfig::default(),
    )
    .unwrap();
    let health = get(&server, "/health");
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (503, Some("loading"))
    );
    let early = post(&server, PAIR);
    assert_error(&early, 503, None);
    assert_eq!(early.retry_after.as_deref(), Some("1"));
    release.send(()).unwrap();
    wait_ready(&server);
    assert_eq!(post(&server, PAIR).status, 200);
}

#[test]
fn a_failed_load_stops_the_server_with_its_error() {
    let load: Loader = Box::new(|| Err(spangrad::Error::Device("no such card".into())));
    let server = Running::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        load,
        ServeConfig::default(),
    )
    .unwrap();
    let error = server.stop().unwrap_err().to_string();
    assert!(error.contains("no such card"), "{error}");
}

#[test]
fn bad_requests_get_json_errors_naming_the_field() {
    let server = fixture_server(ServeConfig {
        max_body_bytes: 4096,
        max_pairs_per_request: 3,
        max_batch_tokens: 200,
        ..ServeConfig::default()
    });
    assert_error(&post(&server, "{\"question\": "), 400, None);
    assert_error(&post(&server, "[1, 2]"), 422, None);
    assert_error(&post(&server, r#"{"context":"c"}"#), 422, Some("question"));
    assert_error(
        &post(&server, r#"{"question":5,"context":"c"}"#),
        422,
        Some("question"),
    );
    assert_error(
        &post(&server, r#"{"question":"  ","context":"Jane wrote it."}"#),
        422,
        Some("question"),
    );
    assert_error(
        &post(&server, r#"{"question":"Who?","context":""}"#),
        422,
        Some("context"),
    );
    assert_error(
        &post(&server, r#"{"question":"q","context":"c","colour":"red"}"#),
        422,
        Some("colour"),
    );
    let unknown = r#"{"question":"q","context":"c","options":{"spam":"best"}}"#;
    assert_error(&post(&server, unknown), 422, Some("options.spam"));
    let bad_value = r#"{"question":"q","context":"c","options":{"span":"widest"}}"#;
    assert_error(&post(&server, bad_value), 422, Some("options.span"));
    let bad_combination = r#"{"question":"q","context":"c","options":{"top_k":2,"span":"argmax"}}"#;
    assert_error(&post(&server, bad_combination), 422, Some("options.top_k"));
    let too_long = r#"{"question":"q","context":"c","options":{"max_length":5000}}"#;
    assert_error(&post(&server, too_long), 422, Some("options.max_length"));
    let absent = r#"{"question":"Who?","context":"Jane wrote it.","answer":"Paris"}"#;
    assert_error(&post(&server, absent), 422, Some("answer"));
    let far = r#"{"question":"Who?","context":"Jane.","answer":"Jane","answer_start":18446744073709551615}"#;
    assert_error(&post(&server, far), 422, Some("answer"));
    let start_alone = r#"{"question":"Who?","context":"Jane.","answer_start":0}"#;
    assert_error(&post(&server, start_alone), 422, Some("answer"));
    let noise =
        r#"{"question":"q","context":"c","options":{"method":"smoothgrad","noise_std":1e308}}"#;
    assert_error(&post(&server, noise), 422, Some("options.noise_std"));
    let huge = r#"{"question":"q","context":"c","options":{"method":"smoothgrad","samples":288230376151711745}}"#;
    assert_error(&post(&server, huge), 422, Some("options.samples"));
    // Each of the top_k spans is a backward pass of its own: 50 x ~9 tokens > 200.
    let spans = r#"{"question":"Who?","context":"Jane wrote it.","options":{"top_k":50}}"#;
    assert_error(&post(&server, spans), 413, Some("context"));

    // Limits: body, pairs, tokens.
    let big = json!({"question": "q", "context": "word ".repeat(2000)}).to_string();
    assert_error(&post(&server, &big), 413, None);
    let four = json!({"pairs": vec![json!({"question": "q", "context": "c"}); 4]}).to_string();
    assert_error(&post(&server, &four), 413, Some("pairs"));
    // Two windows of the model's 200 positions.
    // Priced from its words, not tokenised: 240 words in 2 windows of the question and its 3
    // special tokens take at least 248.
    let long = json!({"question": "Who?", "context": "Jane wrote it. ".repeat(80)}).to_string();
    let answer = post(&server, &long);
    assert_error(&answer, 413, Some("context"));
    assert!(
        answer.text.contains("at least 248 tokens"),
        "{}",
        answer.text
    );
    // The first two pairs are over the budget together: the third is not priced.
    let half = json!({"question": "Who?", "context": "Jane wrote it. ".repeat(35)});
    let over = json!({"pairs": vec![half; 3]}).to_string();
    let answer = post(&server, &over);
    assert_error(&answer, 413, Some("pairs"));
    assert!(answer.text.contains("at least"), "{}", answer.text);
    let pair = json!({"question": "Who?", "context": "Jane wrote it. ".repeat(20)});
    let together = json!({ "pairs": vec![pair; 3] });
    assert_error(&post(&server, &together.to_string()), 413, Some("pairs"));
    let steps = r#"{"question":"Who?","context":"Jane wrote it.","options":{"method":"integrated-gradients","steps":50}}"#;
    assert_error(&post(&server, steps), 413, Some("context"));

    // One bad pair in a list fails alone, with its index and id.
    let mixed = json!({"pairs": [
        {"question": "Who wrote it?", "context": "Jane Austen wrote it.", "id": "good"},
        {"question": "", "context": "Jane Austen wrote it.", "id": "empty"},
        {"question": "Who?", "id": 3},
        {"question": "When?", "context": "In 1813.", "extra": 1},
    ]});
    let mixed = post(&server, &mixed.to_string());
    assert_eq!(mixed.status, 413, "4 pairs > 3: {}", mixed.text);
    let mixed = json!({"pairs": [
        {"question": "Who wrote it?", "context": "Jane Austen wrote it.", "id": "good"},
        {"question": "", "context": "Jane Austen wrote it.", "id": "empty"},
        {"question": "Who?", "id": 3},
    ]});
    let answer = post(&server, &mixed.to_string());
    assert_eq!(answer.status, 200, "{}", answer.text);
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results[0]["id"], "good");
    assert!(results[0]["answer"]["text"].is_string());
    assert_eq!(
        (
            &results[1]["index"],
            &results[1]["id"],
            &results[1]["status"],
            &results[1]["field"]
        ),
        (
            &json!(1),
            &json!("empty"),
            &json!(422),
            &json!("pairs[1].question")
        )
    );
    assert_eq!(results[2]["field"], "pairs[2].context");
    assert_eq!(results[2]["id"], 3, "an unreadable pair's id is echoed");

    // Ids come back as their JSON text: an integer past 64 bits stays that integer.
    let big = "123456789012345678901234567890";
    let body = format!(
        r#"{{"pairs": [{{"id": {big}, "question": "Who wrote it?", "context": "Jane wrote it."}},
                     {{"id": -{big}, "question": 1, "context": "Jane wrote it."}}]}}"#
    );
    let answer = post(&server, &body);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains(&format!(r#""id":{big},"#)),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains(&format!(r#""id":-{big},"#)),
        "{}",
        answer.text
    );
    let one = post(
        &server,
        &format!(r#"{{"id": {big}.0, "question": "Who wrote it?", "context": "Jane wrote it."}}"#),
    );
    assert!(
        one.text.starts_with(&format!(r#"{{"id":{big}.0,"#)),
        "{}",
        one.text
    );
}

#[test]
fn an_api_key_is_required_when_set() {
    let server = fixture_server(ServeConfig {
        api_key: Some("s3cret".into()),
        ..ServeConfig::default()
    });
    let url = format!("{}/v1/explain", server.url());
    let none = call(agent().post(&url), Some(PAIR.as_bytes()));
    assert_error(&none, 401, Some("authorization"));
    let wrong = agent().post(&url).set("Authorization", "Bearer s3cres");
    assert_error(
        &call(wrong, Some(PAIR.as_bytes())),
        401,
        Some("authorization"),
    );
    let right = agent().post(&url).set("Authorization", "Bearer s3cret");
    assert_eq!(call(right, Some(PAIR.as_bytes())).status, 200);
    assert_eq!(get(&server, "/metrics").status, 401);
    assert_eq!(get(&server, "/health").status, 200, "probes need no key");
    assert_eq!(get(&server, "/openapi.json").status, 200);
    // Without the key, no path is told from another: no 404 or 405 to list them by.
    assert_error(&get(&server, "/no/such/path"), 401, Some("authorization"));
    assert_error(&get(&server, "/v1/explain"), 401, Some("authorization"));
    let keyed = |path: &str| {
        agent()
            .get(&format!("{}{path}", server.url()))
            .set("Authorization", "Bearer s3cret")
    };
    assert_eq!(call(keyed("/no/such/path"), None).status, 404);
    assert_eq!(call(keyed("/v1/explain"), None).status, 405);
    // Two keys: refused, whichever comes first.
    // (ureq sends one header of a name: the request is written by hand.)
    for (first, second) in [
        ("Bearer s3cret", "Bearer wrong"),
        ("Bearer wrong", "Bearer s3cret"),
    ] {
        use std::io::Read;
        let headers =
            format!("Authorization: {first}\r\nAuthorization: {second}\r\nConnection: close\r\n");
        let mut stream = raw_post(&server.url(), &headers, PAIR.len(), PAIR);
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    }
}

/// A body sent slowly gets 408 at the body timeout, or at the request timeout (which runs
/// from arrival) if that is shorter: not after the body is in.
#[test]
fn a_slow_body_times_out_from_arrival() {
    use std::io::{Read, Write};
    let short = Duration::from_millis(800);
    let long = Duration::from_secs(60);
    for (request_timeout, body_timeout, flag) in [
        (short, long, "--request-timeout-ms"),
        (long, short, "--body-timeout-ms"),
    ] {
        let server = fixture_server(ServeConfig {
            request_timeout,
            body_timeout,
            ..ServeConfig::default()
        });
        let mut stream = raw_post(&server.url(), "Connection: close\r\n", PAIR.len(), "");
        let start = std::time::Instant::now();
        // One byte every 100 ms: the whole body would take seconds.
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                for b in PAIR.bytes() {
                    if stream.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let waited = start.elapsed();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains(flag), "{response}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        drop(stream);
        writer.join().unwrap();
    }
}

/// The idle clock and the header clock are two: a connection that sends nothing is closed at
/// the idle timeout, one that has begun a request has the header timeout to finish its
/// headers.
#[test]
fn idle_and_header_timeouts_are_apart() {
    use std::io::{Read, Write};
    let server = fixture_server(ServeConfig {
        idle_timeout: Duration::from_millis(500),
        header_timeout: Duration::from_secs(20),
        ..ServeConfig::default()
    });
    let address = server.url().trim_start_matches("http://").to_string();
    let read_all = |stream: &mut std::net::TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    };
    let start = Instant::now();
    let mut silent = std::net::TcpStream::connect(&address).unwrap();
    assert_eq!(read_all(&mut silent), "");
    let held = start.elapsed();
    assert!(
        held < Duration::from_secs(5),
        "a silent client was held {held:?}"
    );

    // Headers a byte every 50 ms: 2 s in all, four idle timeouts, within the header timeout.
    let mut trickle = std::net::TcpStream::connect(&address).unwrap();
    let request =
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: aaaaaaaa\r\nConnection: close\r\n\r\n";
    for b in request.bytes() {
        trickle.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = read_all(&mut trickle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// A page in the user's browser can post `text/plain` without a CORS preflight, and reach a
/// loopback server under a rebound DNS name: bodies must be declared JSON, and `Host` must be
/// an IP literal, localhost or an `--allowed-hosts` name. No CORS header is sent.
#[test]
fn cross_site_requests_are_refused() {
    let server = fixture_server(ServeConfig {
        allowed_hosts: vec!["qa.internal".into()],
        ..ServeConfig::default()
    });
    let url = format!("{}/v1/explain", server.url());
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let request = agent().post(&url).set("Content-Type", content_type);
        assert_error(&call(request, Some(PAIR.as_bytes())), 415, None);
    }
    let charset = agent()
        .post(&url)
        .set("Content-Type", "application/json; charset=utf-8");
    assert_eq!(call(charset, Some(PAIR.as_bytes())).status, 200);
    let port = server.url().rsplit(':').next().unwrap().to_string();
    for (host, status) in [
        (format!("attacker.example:{port}"), 421),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        (format!("qa.internal:{port}"), 200),
        ("QA.internal".to_string(), 200),
    ] {
        let request = agent().post(&url).set("Host", &host);
        let answer = call(request, Some(PAIR.as_bytes()));
        assert_eq!(answer.status, status, "{host}: {}", answer.text);
    }
    let response = agent()
        .post(&url)
        .set("Content-Type", "application/json")
        .set("Origin", "http://attacker.example")
        .send_bytes(PAIR.as_bytes())
        .unwrap();
    assert!(response.header("access-control-allow-origin").is_none());
}

/// The fixture model behind a hook: slow, or panicking on a question.
struct Hooked {
    inner: ExplainerBackend,
    delay: Duration,
    /// Explaining a pair whose question holds this panics.
    panic_on: Option<&'static str>,
}

impl Hooked {
    fn new(delay: Duration, panic_on: Option<&'static str>) -> Self {
        Self {
            inner: ExplainerBackend::new(explainer("distilbert-tiny"), "hooked"),
            delay,
            panic_on,
        }
    }
}

impl Backend for Hooked {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn options(&self) -> &ExplainOptions {
        self.inner.options()
    }
    fn plan(
        &self,
        options: &ExplainOptions,
        pairs: &[QaPair],
        budget: usize,
    ) -> spangrad::Result<Vec<spangrad::Result<Priced>>> {
        self.inner.plan(options, pairs, budget)
    }
    fn explain(
        &self,
        options: &ExplainOptions,
        plans: &[&PairPlan],
    ) -> spangrad::Result<Vec<spangrad::Result<Explanation>>> {
        std::thread::sleep(self.delay);
        if let Some(word) = self.panic_on {
            assert!(
                !plans.iter().any(|p| p.question().contains(word)),
                "a bug met {word}"
            );
        }
        self.inner.explain(options, plans)
    }
    fn evaluate(
        &self,
        options: &ExplainOptions,
        evaluate: &spangrad::evaluate::EvaluateOptions,
        plans: &[&PairPlan],
    ) -> spangrad::Result<Vec<spangrad::Result<spangrad::evaluate::Evaluation>>> {
        self.inner.evaluate(options, evaluate, plans)
    }
}

#[test]
fn a_panic_fails_its_pair_with_500_and_the_server_goes_on() {
    let server = start(
        Hooked::new(Duration::ZERO, Some("boom")),
        ServeConfig::default(),
    );
    let boom = r#"{"question":"boom?","context":"Jane wrote it."}"#;
    assert_error(&post(&server, boom), 500, None);
    assert_eq!(post(&server, PAIR).status, 200, "the server keeps serving");
    let list = json!({"pairs": [
        {"question": "Who wrote it?", "context": "Jane wrote it."},
        {"question": "boom?", "context": "Jane wrote it."},
    ]});
    let answer = post(&server, &list.to_string());
    assert_eq!(answer.status, 200);
    let results = answer.body["results"].as_array().unwrap();
    assert!(
        results[0]["answer"].is_object(),
        "the innocent pair is explained"
    );
    assert_eq!(results[1]["status"], 500);
    assert!(metric(&server, "spangrad_requests_total{status=\"500\"}") >= 1.0);
}

#[test]
fn a_full_queue_answers_429_and_a_slow_answer_504() {
    let server = start(
        Hooked::new(Duration::from_millis(700), None),
        ServeConfig {
            max_queue: 1,
            max_pairs_per_request: 1,
            request_timeout: Duration::from_millis(1000),
            ..ServeConfig::default()
        },
    );
    // The first request is computing (700 ms), the second waits in the queue, the third finds
    // it full.
    let first = post_in_background(&server);
    std::thread::sleep(Duration::from_millis(200));
    let second = post_in_background(&server);
    std::thread::sleep(Duration::from_millis(200));
    let third = post(&server, PAIR);
    assert_error(&third, 429, None);
    let retry: u64 = third.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(first.join().unwrap().status, 200);
    // The second starts after ~700 ms and needs 700 more: past its 1 s.
    assert_error(&second.join().unwrap(), 504, None);
    assert_eq!(
        metric(&server, "spangrad_requests_total{status=\"429\"}"),
        1.0
    );
}

/// A flood where the queue would outlast the timeout: what cannot finish in time is refused
/// at once (429), so that what is admitted is answered; nothing waits in the queue to die.
#[test]
fn a_flood_is_admitted_by_the_wait_it_would_have() {
    let server = start(
        Hooked::new(Duration::from_millis(300), None),
        ServeConfig {
            // One request per batch, each 300 ms; a queue with room for all.
            max_batch_tokens: 16,
            max_pairs_per_request: 1,
            request_timeout: Duration::from_millis(1000),
            ..ServeConfig::default()
        },
    );
    // The first batch times the device.
    assert_eq!(post(&server, PAIR).status, 200);
    const CLIENTS: usize = 12;
    const ROUNDS: usize = 3;
    let statuses: Vec<u16> = (0..CLIENTS)
        .map(|_| {
            let url = format!("{}/v1/explain", server.url());
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|_| call(agent().post(&url), Some(PAIR.as_bytes())).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(count(504), 0, "{statuses:?}");
    assert!(count(200) >= 3, "{statuses:?}");
    assert!(count(429) >= CLIENTS, "{statuses:?}");
    assert_eq!(count(200) + count(429), CLIENTS * ROUNDS, "{statuses:?}");
}

/// `spangrad explain --input` on `pairs` in batches of `batch`: its JSON lines without the line
/// numbers.
fn cli_json_lines(dir: &str, pairs: &[Value], batch: usize) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pairs.jsonl");
    let lines: Vec<String> = pairs.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args(["explain", "--quiet", "--model"])
        .arg(fixture(dir))
        .arg("--input")
        .arg(&input)
        .args(["--batch-size", &batch.to_string()])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("line");
            v
        })
        .collect()
}

/// `POST /v1/evaluate` gives the CLI's lines and summary; a bad pair fails alone, and options
/// an evaluation cannot take are refused whole.
#[test]
fn evaluations_equal_the_cli() {
    let pairs: Vec<Value> = expected("bert")
        .pairs
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, p)| json!({"id": i, "question": p.question, "context": p.context}))
        .chain([json!({"id": "bad", "question": "", "context": "Jane wrote it."})])
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pairs.jsonl");
    let lines: Vec<String> = pairs.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let summary = tmp.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args(["evaluate", "--quiet", "--model"])
        .arg(fixture("bert-tiny"))
        .arg("--input")
        .arg(&input)
        .args([
            "--method",
            "onehot-norm,grad-x-input",
            "--random-orders",
            "2",
        ])
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    let cli: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("line");
            v
        })
        .collect();
    let server = start(
        ExplainerBackend::new(explainer("bert-tiny"), "bert-tiny"),
        ServeConfig::default(),
    );
    let url = format!("{}/v1/evaluate", server.url());
    let evaluate = json!({"methods": ["onehot-norm", "grad-x-input"], "random_orders": 2});
    let body = json!({"pairs": pairs, "evaluate": evaluate});
    let answer = call(agent().post(&url), Some(body.to_string().as_bytes()));
    assert_eq!(answer.status, 200, "{}", answer.text);
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results[..3], cli[..3]);
    assert_eq!(results[3]["index"], 3);
    assert_eq!(results[3]["field"], "pairs[3].question");
    assert_eq!(results[3]["status"], 422);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(answer.body["summary"], summary);
    assert_eq!(summary["pairs"], 3);

    let refused = |body: Value| call(agent().post(&url), Some(body.to_string().as_bytes()));
    let seed = refused(json!({"pairs": pairs, "options": {"seed_compat": true}}));
    assert_error(&seed, 422, Some("evaluate"));
    let single = refused(json!({"question": "q", "context": "c"}));
    assert_error(&single, 422, Some("pairs"));
    let unknown = refused(json!({"pairs": pairs, "evaluate": {"method": ["grad-norm"]}}));
    assert_error(&unknown, 422, Some("evaluate"));
    // The work limit is the evaluation's own; a pair over it fails alone.
    let small = start(
        ExplainerBackend::new(explainer("bert-tiny"), "bert-tiny"),
        ServeConfig {
            max_evaluate_tokens: 1000,
            ..ServeConfig::default()
        },
    );
    let url = format!("{}/v1/evaluate", small.url());
    let answer = call(agent().post(&url), Some(body.to_string().as_bytes()));
    assert_eq!(answer.status, 200, "{}", answer.text);
    let over = &answer.body["results"][1];
    assert_eq!(over["status"], 413);
    let error = over["error"].as_str().unwrap();
    assert!(error.contains("--max-evaluate-tokens"), "{error}");
    assert_eq!(answer.body["summary"]["pairs"], 1);
}

#[test]
fn answers_equal_the_cli_for_the_same_pairs() {
    let pairs: Vec<Value> = expected("bert")
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": i, "question": p.question, "context": p.context}))
        .chain([json!({"id": "long", "question": "Who?", "context": "Jane wrote it. ".repeat(60)})])
        .collect();
    // The same pairs in the same passes give the same bits: all pairs in one request and in
    // one CLI batch, then each pair alone.
    let cli = cli_json_lines("bert-tiny", &pairs, pairs.len());
    assert_eq!(cli.len(), pairs.len());
    let server = start(
        ExplainerBackend::new(explainer("bert-tiny"), "bert-tiny"),
        ServeConfig::default(),
    );
    let many = post(&server, &json!({ "pairs": pairs }).to_string());
    assert_eq!(many.status, 200, "{}", many.text);
    assert_eq!(many.body["results"].as_array().unwrap(), &cli);
    let alone = cli_json_lines("bert-tiny", &pairs, 1);
    for (pair, expected) in pairs.iter().zip(&alone) {
        let one = post(&server, &pair.to_string());
        assert_eq!(&one.body, expected);
    }
    // Options: the CLI's flags, by name.
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args(["explain", "--quiet", "--format", "json", "--model"])
        .arg(fixture("bert-tiny"))
        .args([
            "--question",
            "Who wrote it?",
            "--context",
            "Jane Austen wrote it in 1813.",
        ])
        .args([
            "--top-k",
            "2",
            "--method",
            "grad-x-input",
            "--max-length",
            "12",
        ])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let request = json!({
        "question": "Who wrote it?", "context": "Jane Austen wrote it in 1813.",
        "options": {"top_k": 2, "method": "grad-x-input", "max_length": 12},
    });
    assert_eq!(post(&server, &request.to_string()).body, cli);
}

#[test]
fn sixty_four_concurrent_clients_share_batches_and_get_their_own_answers() {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 3;
    let explainer = explainer("distilbert-tiny");
    let pairs: Vec<QaPair> = std::fs::read_to_string(fixture("fidelity-pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let server = start(
        ExplainerBackend::new(explainer.clone(), "distilbert-tiny"),
        ServeConfig {
            max_wait: Duration::from_millis(20),
            ..ServeConfig::default()
        },
    );
    let url = format!("{}/v1/explain", server.url());
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, barrier, answers) = (url.clone(), barrier.clone(), answers.clone());
            let pairs = pairs.clone();
            std::thread::spawn(move || {
                let agent = agent();
                barrier.wait();
                for round in 0..ROUNDS {
                    let i = (c * ROUNDS + round) % pairs.len();
                    let p = &pairs[i];
                    let body = json!({"id": i, "question": p.question, "context": p.context});
                    let answer = call(agent.post(&url), Some(body.to_string().as_bytes()));
                    answers
                        .lock()
                        .unwrap()
                        .push((i, answer.status, answer.text));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), CLIENTS * ROUNDS);
    for (i, status, body) in answers.iter() {
        assert_eq!(*status, 200, "{body}");
        let got: Explanation = serde_json::from_str(body).unwrap();
        let mut alone = explainer.explain_one(&pairs[*i]).unwrap();
        alone.id = Some(json!(i).into());
        assert_eq!(got.id, alone.id, "each client gets its own answer");
        let span = |e: &Explanation| {
            let a = &e.answer;
            (
                a.text.clone(),
                a.char_start,
                a.char_end,
                a.token_start,
                a.token_end,
            )
        };
        assert_eq!(span(&got), span(&alone));
        assert_eq!(got.tokens.len(), alone.tokens.len());
        // Batched with other pairs (padded to their length) or alone, the same sums are taken
        // in another order at most: equal to the last bits.
        assert!((got.answer.score - alone.answer.score).abs() <= 1e-5);
        for (g, a) in got.tokens.iter().zip(&alone.tokens) {
            assert_eq!(g.text, a.text);
            assert!(
                (g.score - a.score).abs() <= 1e-5,
                "{} vs {}",
                g.score,
                a.score
            );
            assert!((g.start_logit - a.start_logit).abs() <= 1e-5);
        }
    }
    let batches = metric(&server, "spangrad_batch_pairs_count");
    let pairs_in_batches = metric(&server, "spangrad_batch_pairs_sum");
    assert_eq!(pairs_in_batches, (CLIENTS * ROUNDS) as f64);
    assert!(
        pairs_in_batches / batches > 1.5,
        "mean batch {} pairs: requests were not batched together",
        pairs_in_batches / batches
    );
    assert!(metric(&server, "spangrad_batch_pairs_bucket{le=\"1.0\"}") < batches);
    assert_eq!(
        metric(&server, "spangrad_pairs_total{result=\"explained\"}"),
        (CLIENTS * ROUNDS) as f64
    );
}

/// `spangrad serve` as a process, with the address it printed.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    fn start(dir: &str) -> Self {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spangrad"))
            .args([
                "serve",
                "--port",
                "0",
                "--max-batch-tokens",
                "1000000",
                "--model",
            ])
            .arg(fixture(dir))
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = rest.split_whitespace().next().map(str::to_string);
            }
            if line.contains("ready:") {
                break;
            }
        }
        // Keep reading stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: url.expect("the server prints its address"),
        }
    }

    fn resident_bytes(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
            .unwrap()
            * 1024
    }

    fn terminate(&self) {
        // SAFETY: kill(2) with a child's pid and SIGTERM.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

/// Slowloris: hundreds of connections sending their headers a byte at a time are closed
/// within the header timeout, and a normal client keeps getting answers meanwhile; an idle
/// kept-alive connection is closed too.
#[test]
fn slow_and_idle_clients_are_closed_while_others_are_answered() {
    use std::io::{Read, Write};
    let server = fixture_server(ServeConfig {
        header_timeout: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(1000),
        ..ServeConfig::default()
    });
    let address = server.url().trim_start_matches("http://").to_string();
    let start = Instant::now();
    let slow: Vec<std::thread::JoinHandle<Duration>> = (0..200)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let opened = Instant::now();
                // A byte every 200 ms, never finishing the headers (bounded: 100 bytes).
                for b in b"POST /v1/explain HTTP/1.1\r\nHost: localhost\r\nX-Padding: "
                    .iter()
                    .chain([b'a'; 60].iter())
                {
                    if stream.write_all(&[*b]).is_err() {
                        return opened.elapsed();
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                opened.elapsed()
            })
        })
        .collect();
    // A normal client while they trickle.
    for _ in 0..5 {
        assert_eq!(post(&server, PAIR).status, 200);
    }
    for handle in slow {
        let held = handle.join().unwrap();
        assert!(
            held < Duration::from_secs(5),
            "a slow client was held {held:?}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(15));
    // Idle after one request: closed within the timeout.
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let idle = Instant::now();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(
        idle.elapsed() < Duration::from_secs(5),
        "{:?}",
        idle.elapsed()
    );
}

/// Every answer is counted by status, those hyper gives itself (a head it cannot parse, or too
/// large) too; a declared body over the limit is refused before it is waited for.
#[test]
fn metrics_count_every_answer() {
    use std::io::{Read, Write};
    let server = fixture_server(ServeConfig {
        max_body_bytes: 1000,
        ..ServeConfig::default()
    });
    let address = server.url().trim_start_matches("http://").to_string();
    let send = |head: &[u8]| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and close before all of a large head is sent.
        let _ = stream.write_all(head);
        let mut answer = vec![0; 12];
        stream.read_exact(&mut answer).unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let declared = b"POST /v1/explain HTTP/1.1\r\nHost: localhost\r\n\
                     Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{}";
    let mut large = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    large.extend(vec![b'a'; 600_000]);
    large.extend(b"\r\n\r\n");
    let mut sent = std::collections::HashMap::new();
    for (head, status) in [
        (&declared[..], "413"),
        (&large[..], "431"),
        (&b"GARBAGE\r\n\r\n"[..], "400"),
    ] {
        for _ in 0..3 {
            let answer = send(head);
            assert_eq!(answer, format!("HTTP/1.1 {status}"), "{status}");
            *sent.entry(status).or_insert(0.0) += 1.0;
        }
    }
    let big = json!({"question": "q", "context": "word ".repeat(500)}).to_string();
    assert_error(&post(&server, &big), 413, None);
    *sent.get_mut("413").unwrap() += 1.0;
    // hyper's own answers (400, 431) are counted as their connection ends, just after the
    // client has read them.
    for (status, count) in sent {
        let name = format!("spangrad_requests_total{{status=\"{status}\"}}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&server, &name) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(metric(&server, &name), count, "{status}");
    }
}

/// A client that half-closes its side after sending the request still gets the answer.
#[test]
fn a_half_closed_client_gets_its_answer() {
    use std::io::Read;
    let server = fixture_server(ServeConfig::default());
    let mut stream = raw_post(&server.url(), "", PAIR.len(), PAIR);
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(response.contains("\"answer\""), "{response}");
}

/// Waits up to `limit` for the child to exit.
fn exits_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A client holding a request half sent does not hold a stopping server: SIGTERM exits within
/// the drain timeout, and a second SIGTERM at once.
#[test]
fn sigterm_with_half_sent_requests_exits_in_time() {
    let half_sent = |url: &str| raw_post(url, "", 100, "{\"question\"");
    let mut server = Process::start_with("distilbert-tiny", &["--drain-timeout-ms", "1000"]);
    let held = half_sent(&server.url);
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let status = exits_within(&mut server.child, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    drop(held);

    let mut server = Process::start("distilbert-tiny");
    let held = half_sent(&server.url);
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "draining for 30 s"
    );
    server.terminate();
    let status = exits_within(&mut server.child, Duration::from_secs(5));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    drop(held);
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_soak_keeps_memory_flat_and_sigterm_drains_requests_in_flight() {
    const CLIENTS: usize = 8;
    let mut server = Process::start("distilbert-tiny");
    let url = format!("{}/v1/explain", server.url);
    let pairs: Vec<String> = std::fs::read_to_string(fixture("fidelity-pairs.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let run_for = |duration: Duration| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, pairs) = (url.clone(), pairs.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    let start = Instant::now();
                    let mut k = c;
                    while start.elapsed() < duration {
                        let answer =
                            call(agent.post(&url), Some(pairs[k % pairs.len()].as_bytes()));
                        assert_eq!(answer.status, 200, "{}", answer.text);
                        k += CLIENTS;
                    }
                    k / CLIENTS
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .sum::<usize>()
    };
    // Warm up until the allocator has what a pass needs, then soak.
    run_for(Duration::from_secs(3));
    let before = server.resident_bytes();
    let requests = run_for(Duration::from_secs(10));
    let after = server.resident_bytes();
    eprintln!(
        "soak: {requests} requests, resident {:.1} -> {:.1} MiB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    assert!(requests > 100, "only {requests} requests in the soak");
    let growth = after as f64 - before as f64;
    assert!(
        growth < 16.0 * 1024.0 * 1024.0,
        "resident memory grew {:.1} MiB over {requests} requests ({:.1} -> {:.1} MiB)",
        growth / 1048576.0,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );

    // SIGTERM while a long request computes (SmoothGrad: many passes): it is answered, then
    // the process exits 0.
    let big: Vec<Value> = pairs
        .iter()
        .take(64)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let body = json!({ "pairs": big, "options": {"method": "smoothgrad", "samples": 8} });
    let in_flight = std::thread::spawn({
        let url = url.clone();
        move || {
            let answer = call(agent().post(&url), Some(body.to_string().as_bytes()));
            (answer, Instant::now())
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let terminated = Instant::now();
    server.terminate();
    let (answer, answered) = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["results"].as_array().unwrap().len(), 64);
    assert!(
        answered > terminated,
        "the request was not in flight at SIGTERM"
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Whether `program args...` runs and succeeds here.
fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn curl_and_the_python_client_get_the_cli_explanations() {
    if !available("curl", &["--version"]) || !available("python3", &["-c", "import requests"]) {
        assert!(
            std::env::var_os("SPANGRAD_REQUIRE_CLIENTS").is_none(),
            "SPANGRAD_REQUIRE_CLIENTS is set but curl or python3 with requests is missing"
        );
        eprintln!("SKIPPED: curl or python3 with requests is missing");
        return;
    }
    let server = start(
        ExplainerBackend::new(explainer("bert-tiny"), "bert-tiny"),
        ServeConfig::default(),
    );
    let (question, context) = (
        "Who wrote the novel?",
        "The novel was written by Jane Austen in 1813.",
    );

    // The README's curl example.
    let body = json!({"question": question, "context": context}).to_string();
    let curl = Command::new("curl")
        .args(["-s", "-X", "POST", &format!("{}/v1/explain", server.url())])
        .args(["-H", "Content-Type: application/json", "-d", &body])
        .output()
        .unwrap();
    let cli = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args(["explain", "--quiet", "--format", "json", "--model"])
        .arg(fixture("bert-tiny"))
        .args(["--question", question, "--context", context])
        .output()
        .unwrap();
    let curl: Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(curl, serde_json::from_slice::<Value>(&cli.stdout).unwrap());

    // examples/serve_client.py, the README's Python client.
    let pairs: Vec<Value> = expected("bert")
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": format!("p{i}"), "question": p.question, "context": p.context}))
        .chain([json!({"id": "bad", "question": "", "context": context})])
        .collect();
    let mut python = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/serve_client.py"
        ))
        .arg(server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: Vec<String> = pairs.iter().map(Value::to_string).collect();
    std::io::Write::write_all(
        &mut python.stdin.take().unwrap(),
        input.join("\n").as_bytes(),
    )
    .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cli = cli_json_lines("bert-tiny", &pairs, pairs.len());
    assert_eq!(got.len(), pairs.len());
    for (got, cli) in got.iter().zip(&cli).take(pairs.len() - 1) {
        assert_eq!(got, cli);
    }
    let bad = got.last().unwrap();
    assert_eq!((&bad["id"], &bad["status"]), (&json!("bad"), &json!(422)));
    assert_eq!(cli.last().unwrap()["error"], bad["error"]);
}

#[test]
fn serve_with_a_model_that_cannot_load_exits_with_its_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args(["serve", "--port", "0", "--model"])
        .arg(fixture("no-such-model-dir"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot load the model"), "{stderr}");
    assert!(stderr.contains("model directory not found"), "{stderr}");
}

/// A refused request's body is waited for (up to a bound) before the answer: a client that
/// sends its head, then its body, then reads (ureq, curl without `Expect`) would otherwise
/// write into a closed connection and meet a broken pipe instead of the 413 or 415.
#[test]
fn a_refused_body_is_answered_not_cut_off() {
    use std::io::{Read, Write};
    let server = fixture_server(ServeConfig {
        max_body_bytes: 4096,
        ..ServeConfig::default()
    });
    let address = server.url().trim_start_matches("http://").to_string();
    let body = format!(r#"{{"question":"q","context":"{}"}}"#, "w ".repeat(5000));
    for (kind, status) in [("application/json", "413"), ("text/plain", "415")] {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST /v1/explain HTTP/1.1\r\nHost: {address}\r\nContent-Type: {kind}\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        // Time for a server that answers on the head alone to answer, and close.
        std::thread::sleep(Duration::from_millis(300));
        let (first, second) = body.as_bytes().split_at(body.len() / 2);
        let sent = stream.write_all(first).and_then(|()| {
            std::thread::sleep(Duration::from_millis(100));
            stream.write_all(second)
        });
        assert!(sent.is_ok(), "{status}: the body is cut off: {sent:?}");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "{read:?} after {answer:?}");
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
}
