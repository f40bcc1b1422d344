//! The HTML report in a real headless browser (Debian's chromium and chromium-driver, driven
//! through WebDriver by fantoccini): it loads with no console errors, has one element per token with the
//! token's text, shades higher scores darker, marks the answer, shows a token's values on
//! focus, and its toggles switch between words and tokens and between methods. It saves a
//! screenshot (`SPANGRAD_SCREENSHOT=path` also copies it there: the README's is made so).
//! The evaluation page's table and SVG curves are checked against its JSON summary.
//! Without chromium the test says SKIPPED on stderr, and fails when `SPANGRAD_REQUIRE_BROWSER`
//! is set (CI sets it).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use spangrad::text::Segment;
use spangrad::Explanation;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }
}

/// The browser's console log (`POST /session/{id}/se/log`, chromedriver's), which WebDriver's
/// standard commands do not read.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn browser_available() -> bool {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os("SPANGRAD_REQUIRE_BROWSER").is_some() {
        panic!("SPANGRAD_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED html_report_in_a_real_browser: no {CHROMIUM} and {CHROMEDRIVER} \
         (apt-get install chromium chromium-driver)"
    );
    false
}

/// Two pairs explained by two methods: JSON lines on stdout, the report in `page`.
fn make_report(dir: &Path) -> (PathBuf, Vec<Explanation>) {
    let input = dir.join("pairs.jsonl");
    let lines = [
        json!({"question": "Who wrote the novel?", "context": "The novel was written by Jane Austen in 1813 and published in London."}),
        json!({"question": "Où se trouve la bibliothèque?", "context": "La bibliothèque municipale se trouve près du café Émile, à Zürich, depuis 1894."}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let page = dir.join("report.html");
    // From the checkout, given the fixture's absolute path: the title shows it relative.
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", "--model", fixture("bert-tiny").to_str().unwrap()])
        .args(["--input", input.to_str().unwrap(), "--quiet"])
        .args([
            "--method",
            "onehot-norm,grad-x-input",
            "--html",
            page.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let explanations = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (page, explanations)
}

#[test]
fn html_report_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (page, explanations) = make_report(dir.path());
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = session(&driver, &dir.path().join("profile")).await;
        check_report(&client, &page, &explanations).await;
        client.close().await.unwrap();
    });
}

/// A headless Chromium session, its console logged.
async fn session(driver: &Driver, profile: &Path) -> Client {
    let options = json!({"binary": CHROMIUM, "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1100,760", format!("--user-data-dir={}", profile.display())
    ]});
    let mut capabilities = Capabilities::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Runs `script` in the page, its value as JSON.
async fn run(client: &Client, script: &str) -> Value {
    client.execute(script, Vec::new()).await.unwrap()
}

async fn check_report(client: &Client, page: &Path, explanations: &[Explanation]) {
    client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();

    // One element per question and context token, with its text, in the token view of the
    // first method.
    let tokens = run(client,
        "return Array.from(document.querySelectorAll('#pair-1 .method[data-method=\"onehot-norm\"] \
         .view[data-unit=token] .t')).map(e => [e.textContent, parseFloat(e.dataset.score), \
         getComputedStyle(e).backgroundColor, e.classList.contains('answer')]);",
    ).await;
    let tokens = tokens.as_array().expect("a list of tokens");
    let first = &explanations[0];
    let expected: Vec<(usize, &spangrad::explain::TokenExplanation)> = first
        .tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.segment != Segment::Special)
        .collect();
    assert_eq!(tokens.len(), expected.len(), "one element per token");
    let question = "Who wrote the novel?";
    let context = "The novel was written by Jane Austen in 1813 and published in London.";
    for (el, (i, t)) in tokens.iter().zip(&expected) {
        let source = if t.segment == Segment::Question {
            question
        } else {
            context
        };
        let text: String = source
            .chars()
            .skip(t.char_start)
            .take(t.char_end - t.char_start)
            .collect();
        assert_eq!(el[0], text.as_str());
        assert!((el[1].as_f64().unwrap() - t.score as f64).abs() < 1e-6);
        let in_answer = t.segment == Segment::Context
            && (first.answer.token_start..=first.answer.token_end).contains(i);
        assert_eq!(el[3], in_answer, "the answer is marked: token {i}");
    }
    // Shading: a higher score is never lighter.
    let luminance = |css: &Value| {
        let rgb: Vec<f64> = css
            .as_str()
            .unwrap()
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|c| c.trim().parse::<f64>().unwrap())
            .collect();
        0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    };
    let mut by_score: Vec<&Value> = tokens.iter().collect();
    by_score.sort_by(|a, b| a[1].as_f64().unwrap().total_cmp(&b[1].as_f64().unwrap()));
    for pair in by_score.windows(2) {
        assert!(
            luminance(&pair[1][2]) <= luminance(&pair[0][2]) + 1e-9,
            "{pair:?}"
        );
    }
    assert!(luminance(&by_score[0][2]) > luminance(&by_score[by_score.len() - 1][2]));

    // Words are shown first; the toggles switch to tokens and to the second method.
    let visible = "return [document.querySelector('#pair-1 .method[data-method=\"onehot-norm\"] \
         .view[data-unit=word]').hidden, document.querySelector('#pair-1 \
         .method[data-method=\"grad-x-input\"]').hidden];";
    assert_eq!(run(client, visible).await, json!([false, true]));
    run(
        client,
        "document.querySelector('input[name=unit][value=token]').click(); \
         document.querySelector('input[name=method][value=\"grad-x-input\"]').click(); return 0;",
    )
    .await;
    assert_eq!(run(client, visible).await, json!([true, false]));
    // Focusing a token shows its values. Focused as a user does, by a click through WebDriver:
    // a script's focus() leaves `:focus` unmatched while the headless window has no focus.
    client
        .find(Locator::Css(
            "#pair-1 .method[data-method=\"grad-x-input\"] .view[data-unit=token] .t.answer",
        ))
        .await
        .expect("the answer's token is found")
        .click()
        .await
        .unwrap();
    let tip = run(
        client,
        "const t = document.activeElement; \
         return t.matches('.t.answer') ? getComputedStyle(t, '::after').content : 'not focused';",
    )
    .await;
    let tip = tip.as_str().unwrap();
    assert!(
        tip.contains("score") && tip.contains("gradient × input"),
        "{tip}"
    );
    // Both pairs are listed and present.
    assert_eq!(
        run(client, "return document.querySelectorAll('nav li').length;").await,
        json!(2)
    );
    assert_eq!(
        run(
            client,
            "return document.querySelectorAll('section.pair').length;"
        )
        .await,
        json!(2)
    );
    if std::env::var_os("SPANGRAD_FIXTURES").is_none() {
        assert_eq!(
            run(client, "return document.title;").await,
            json!("spangrad: tests/fixtures/bert-tiny")
        );
    }

    // No console errors.
    let log = client.issue_cmd(ConsoleLog).await.unwrap();
    let severe: Vec<&Value> = log
        .as_array()
        .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(severe.is_empty(), "console errors: {severe:?}");

    // Back to words and the first method, for the screenshot.
    run(
        client,
        "document.querySelector('input[name=unit][value=word]').click(); \
         document.querySelector('input[name=method][value=\"onehot-norm\"]').click(); return 0;",
    )
    .await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    std::fs::write(&shot, &png).unwrap();
    if let Some(path) = std::env::var_os("SPANGRAD_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
}

/// `spangrad evaluate --format html` in the browser: the summary table says what the JSON
/// summary says, each chart has a curve of ten points per method and the random baseline's
/// (dashed), drawn higher for higher values, and the page loads nothing and logs no error.
#[test]
fn evaluation_page_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let lines = [
        json!({"question": "Who wrote the novel?", "context": "The novel was written by Jane Austen in 1813 and published in London."}),
        json!({"question": "Where is the library?", "context": "The city library is near the station, beside the old market."}),
        json!({"question": "When was it built?", "context": "The bridge was built in 1902 by a local company."}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let (page, summary) = (
        dir.path().join("eval.html"),
        dir.path().join("summary.json"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_spangrad"))
        .args([
            "evaluate",
            "--model",
            fixture("bert-tiny").to_str().unwrap(),
        ])
        .args([
            "--input",
            input.to_str().unwrap(),
            "--quiet",
            "--format",
            "html",
        ])
        .args([
            "--method",
            "onehot-norm,grad-x-input",
            "--random-orders",
            "2",
        ])
        .args(["--summary", summary.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&page, &out.stdout).unwrap();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = session(&driver, &dir.path().join("profile")).await;
        client
            .goto(&format!("file://{}", page.display()))
            .await
            .unwrap();
        let rows = run(
            &client,
            "return Array.from(document.querySelectorAll('tbody tr')).map(r => \
             Array.from(r.children).map(c => c.textContent));",
        )
        .await;
        let rows = rows.as_array().unwrap();
        let want = summary["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "two methods and the random baseline");
        for (row, w) in rows.iter().zip(want) {
            assert_eq!(row[0], w["method"]);
            let mean = w["aopc_comprehensiveness"]["mean"].as_f64().unwrap();
            let cell = row[1].as_str().unwrap();
            assert!(
                cell.starts_with(&format!("{mean:.4} ± ")),
                "{cell} vs {mean}"
            );
        }
        let charts = run(
            &client,
            "return Array.from(document.querySelectorAll('figure svg')).map(svg => \
             Array.from(svg.querySelectorAll('polyline')).map(p => [p.querySelector('title')\
             .textContent, p.getAttribute('stroke-dasharray'), Array.from(p.points).map(q => \
             [q.x, q.y])]));",
        )
        .await;
        let charts = charts.as_array().unwrap();
        assert_eq!(charts.len(), 2, "comprehensiveness and sufficiency");
        for (chart, curve) in charts.iter().zip(["comprehensiveness", "sufficiency"]) {
            let lines = chart.as_array().unwrap();
            assert_eq!(lines.len(), 3);
            for (line, w) in lines.iter().zip(want) {
                assert_eq!(line[0], w["method"]);
                assert_eq!(
                    line[1].is_string(),
                    w["method"] == "random",
                    "dashed: random"
                );
                let points = line[2].as_array().unwrap();
                let values = w[curve].as_array().unwrap();
                assert_eq!(points.len(), 10);
                for (p, q) in points.iter().zip(points.iter().skip(1)) {
                    assert!(p[0].as_f64() < q[0].as_f64(), "x follows k");
                }
                // SVG's y grows downwards: a higher value is drawn higher.
                for (a, b) in points
                    .iter()
                    .zip(values)
                    .zip(points.iter().zip(values).skip(1))
                {
                    let ((pa, va), (pb, vb)) = (a, b);
                    let (ya, yb) = (pa[1].as_f64().unwrap(), pb[1].as_f64().unwrap());
                    let (va, vb) = (va.as_f64().unwrap(), vb.as_f64().unwrap());
                    if (va - vb).abs() > 1e-9 {
                        assert_eq!(va > vb, ya < yb, "{curve} {}", w["method"]);
                    }
                }
            }
        }
        let loaded = run(
            &client,
            "return [document.scripts.length, performance.getEntriesByType('resource').length];",
        )
        .await;
        assert_eq!(loaded, json!([0, 0]), "no script, nothing loaded");
        let log = client.issue_cmd(ConsoleLog).await.unwrap();
        let severe: Vec<&Value> = log
            .as_array()
            .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").collect())
            .unwrap_or_default();
        assert!(severe.is_empty(), "console errors: {severe:?}");
        let png = client.screenshot().await.unwrap();
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("evaluation.png");
        std::fs::write(shot, &png).unwrap();
        client.close().await.unwrap();
    });
}
