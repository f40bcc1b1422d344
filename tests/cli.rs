//! The `spangrad` binary as a user runs it.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

use common::*;
use spangrad::Explanation;

fn spangrad(args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spangrad"));
    cmd.args(args)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("NO_COLOR");
    cmd
}

fn run(args: &[&str]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    spangrad(&args).output().unwrap()
}

/// `spangrad explain --model DIR --question Q --context C EXTRA...`
fn explain(model_dir: &str, question: &str, context: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "explain",
        "--model",
        model_dir,
        "--question",
        question,
        "--context",
        context,
    ];
    args.extend(extra);
    run(&args)
}

/// The reference pairs as JSON lines in `dir`, with ids `p0`, `p1`, ...
fn pairs_file(dir: &std::path::Path, expected: &Expected) -> std::path::PathBuf {
    let path = dir.join("pairs.jsonl");
    let lines: Vec<String> = expected
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"id": format!("p{i}"), "question": p.question, "context": p.context})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// `spangrad explain --model DIR --input FILE EXTRA...`
fn explain_file(model_dir: &str, input: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "explain",
        "--model",
        model_dir,
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn model(dir: &str) -> String {
    fixture(dir).display().to_string()
}

#[test]
fn explain_prints_the_answer_and_scored_words() {
    let p = &expected("bert").pairs[0];
    let out = explain(&model("bert-tiny"), &p.question, &p.context, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("answer:   {:?}", p.pipeline.answer)),
        "{stdout}"
    );
    // Not a terminal: plain text, each word followed by its score, no escape codes.
    assert!(!stdout.contains('\x1b'));
    assert!(stdout.contains("Jane["), "{stdout}");
}

#[test]
fn explain_json_is_a_full_explanation() {
    let p = &expected("distilbert").pairs[1];
    let out = explain(
        &model("distilbert-tiny"),
        &p.question,
        &p.context,
        &[
            "--format",
            "json",
            "--span",
            "argmax",
            "--saliency",
            "streaming",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e: Explanation = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (e.answer.token_start, e.answer.token_end),
        p.spans["argmax"]
    );
    assert_eq!(e.tokens.len(), p.input_ids.len());
    assert!(max_abs_diff(&scores(&e), &target(p, "argmax").score) < 1e-4);
}

#[test]
fn json_lines_report_bad_lines_and_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let mut lines: Vec<u8> = Vec::new();
    lines.extend(
        br#"{"id": "a", "question": "Who wrote the novel?", "context": "Jane Austen wrote it."}"#,
    );
    lines.extend(b"\n{not json}\n");
    lines.extend(b"{\"question\": \"caf\xe9?\", \"context\": \"x\"}\n");
    lines.extend(b"\n");
    lines.extend(br#"{"id": "d", "question": "", "context": "Some context."}"#);
    lines.extend(b"\n");
    lines.extend(br#"{"question": "Name?", "context": "Bob."}"#);
    std::fs::write(&input, lines).unwrap();
    let out = explain_file(&model("bert-tiny"), &input, &["--batch-size", "1"]);
    assert_eq!(out.status.code(), Some(1), "some lines failed");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2: invalid JSON"), "{stderr}");
    assert!(stderr.contains("line 3: not UTF-8"), "{stderr}");
    assert!(stderr.contains("line 5: the question is empty"), "{stderr}");
    assert!(stderr.contains("line 4: blank line"), "{stderr}");
    assert!(stderr.contains("4 of 6 lines failed"), "{stderr}");
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0]["id"], "a");
    assert!(rows[0]["answer"]["text"].is_string());
    assert_eq!(rows[1]["line"], 2);
    assert_eq!(rows[2]["line"], 3);
    assert_eq!(rows[3]["line"], 4);
    assert_eq!(rows[4]["id"], "d");
    assert!(rows[4]["error"].as_str().unwrap().contains("empty"));
    // One failure shape on every front: the field at fault, or null.
    assert_eq!(rows[4]["field"], "question");
    assert_eq!(rows[1]["field"], serde_json::Value::Null);
    // No id given: none is invented; every line says which input line it answers.
    assert!(rows[5].get("id").is_none(), "{}", rows[5]);
    assert_eq!(rows[5]["line"], 6);
    assert_eq!(rows[0]["line"], 1);
    assert_eq!(
        rows[5]["answer"]["text"],
        expected("bert").pairs[4].pipeline.answer
    );
}

#[test]
fn json_lines_batches_equal_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected("distilbert");
    let input = pairs_file(dir.path(), &expected);
    // The fixtures record the seed's behaviour: the long context cut to one window.
    let out = explain_file(
        &model("distilbert-tiny"),
        &input,
        &["--batch-size", "3", "--doc-stride", "0"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Vec<Explanation> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), expected.pairs.len());
    for (e, p) in got.iter().zip(&expected.pairs) {
        // The long context is cut to its first window: not the pipeline's answer.
        if p.pipeline_span.is_some() {
            assert_eq!(e.answer.text, p.pipeline.answer);
            assert!(max_abs_diff(&scores(e), &target(p, "pipeline").score) < 1e-4);
        }
    }
}

#[test]
fn seed_compat_end_is_last_exits_with_a_clear_error() {
    let crash = expected("distilbert")
        .seed_compat_crash
        .expect("fixture has a crash pair");
    let out = explain(
        &model("distilbert-tiny"),
        &crash.question,
        &crash.context,
        &["--span", "argmax", "--seed-compat"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("IndexError") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `spangrad ARGS` offline, with `cache` as the hub cache.
fn offline(cache: &std::path::Path, args: &[&str]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    spangrad(&args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache)
        .output()
        .unwrap()
}

#[test]
fn the_default_hub_model_offline_asks_for_a_local_directory() {
    let cache = tempfile::tempdir().unwrap();
    let out = offline(
        cache.path(),
        &["explain", "--question", "Who?", "--context", "Bob."],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("distilbert-base-cased-distilled-squad"),
        "{stderr}"
    );
    assert!(stderr.contains("pass a local model directory"), "{stderr}");
}

#[test]
fn a_hub_name_resolves_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    prepare_cache(cache.path(), "spangrad/tiny-bert", "bert-tiny");
    let out = offline(
        cache.path(),
        &[
            "explain",
            "--model",
            "spangrad/tiny-bert",
            "--question",
            "Name?",
            "--context",
            "Bob.",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("answer:   \"Bob\""));
}

#[test]
fn bad_arguments_fail_without_a_panic() {
    let bad_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let m = model("bert-tiny");
    let out = spangrad(&[
        "explain".as_ref(),
        "--model".as_ref(),
        m.as_ref(),
        "--question".as_ref(),
        bad_utf8,
        "--context".as_ref(),
        "Bob.".as_ref(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UTF-8"), "{}", text(&out.stderr));

    let out = explain("/no/such/dir", "q", "c", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("model directory not found: /no/such/dir"));

    let out = run(&["explain", "--model", &m, "--question", "q"]);
    assert_eq!(out.status.code(), Some(2), "--question needs --context");

    let out = explain(&m, "", "Bob.", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the question is empty"));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn bench_prints_a_table_with_the_dense_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("RESULTS.md");
    let out = run(&[
        "bench",
        "--preset",
        "distilbert-base",
        "--batch",
        "1",
        "--seq-len",
        "24",
        "--iters",
        "1",
        "--saliency",
        "dense,streaming,gram",
        "--record",
        record.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for name in [
        "| spangrad dense |",
        "| spangrad streaming |",
        "| spangrad gram |",
        "speed-up vs spangrad dense",
        "forward (s)",
        "Saved activations of one pass by the formula",
    ] {
        assert!(stdout.contains(name), "{stdout}");
    }
    let recorded = std::fs::read_to_string(record).unwrap();
    assert!(recorded.contains(&stdout.trim_end().to_string()) && recorded.contains("cores"));
}

/// Option errors name the flag and come before any loading; the device name ignores case.
#[test]
fn option_errors_name_the_flag_not_the_model() {
    let model = fixture("bert-tiny");
    for (flag, value) in [
        ("--max-length", "3"),
        ("--max-answer-len", "0"),
        ("--max-batch-tokens", "0"),
    ] {
        let out = run(&[
            "explain",
            "--model",
            model.to_str().unwrap(),
            "--question",
            "Who?",
            "--context",
            "Jane.",
            flag,
            value,
        ]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains(flag) && !err.contains("cannot load model"),
            "{flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--question",
        "Who wrote it?",
        "--context",
        "Jane Austen wrote it.",
        "--device",
        "CPU",
        "--max-answer-len",
        "18446744073709551612",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Ids of any JSON type come back as given; a byte-order mark does not fail line 1; an array
/// line is refused as not a pair; a lone surrogate is named.
#[test]
fn json_lines_take_any_id_a_bom_and_refuse_non_objects() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let mut lines: Vec<u8> = b"\xEF\xBB\xBF".to_vec();
    lines.extend(br#"{"id": 17, "question": "Who wrote it?", "context": "Jane Austen wrote it."}"#);
    lines.extend(b"\n");
    lines.extend(br#"{"id": {"doc": "x", "n": 2}, "question": "Who?", "context": "Bob did."}"#);
    lines.extend(b"\n");
    lines.extend(br#"["Who?", "Bob did."]"#);
    lines.extend(b"\n");
    lines.extend(br#"{"id": null, "question": "\ud800", "context": "x"}"#);
    lines.extend(b"\n");
    lines.extend(
        br#"{"id": 123456789012345678901234567890, "question": "Who?", "context": "Bob."}"#,
    );
    lines.extend(b"\n");
    lines.extend(br#"{"id": 1.50, "question": "Who?"}"#);
    lines.extend(b"\n");
    std::fs::write(&input, lines).unwrap();
    let out = explain_file(&model("bert-tiny"), &input, &[]);
    assert_eq!(out.status.code(), Some(1), "three lines fail");
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    // The id's text as it was: past 64 bits, or with a trailing zero, in an explanation as in
    // a failure.
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[4].starts_with(r#"{"id":123456789012345678901234567890,"#),
        "{}",
        lines[4]
    );
    assert!(lines[5].contains(r#""id":1.50,"#), "{}", lines[5]);
    assert_eq!(rows[0]["id"], 17);
    assert!(rows[0]["answer"].is_object(), "{}", rows[0]);
    assert_eq!(rows[1]["id"], serde_json::json!({"doc": "x", "n": 2}));
    assert!(rows[1]["answer"].is_object());
    assert!(
        rows[2]["error"]
            .as_str()
            .unwrap()
            .contains("found an array"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3]["error"].as_str().unwrap().contains("surrogate"),
        "{}",
        rows[3]
    );
}

/// A reader that stops early (`| head`) ends the run quietly; a closed stderr loses no result.
#[test]
fn closed_pipes_end_quietly_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let lines: String = (0..200)
        .map(|i| format!("{{\"id\": {i}, \"question\": \"Who wrote it?\", \"context\": \"Jane Austen wrote it.\"}}\n"))
        .collect();
    std::fs::write(&input, lines + "{bad\n").unwrap();
    let command = format!(
        "{} explain --model {} --input {}",
        env!("CARGO_BIN_EXE_spangrad"),
        model("bert-tiny"),
        input.display()
    );
    let errors = dir.path().join("stderr");
    let script = format!(
        "{command} 2>{} | head -c 50 >/dev/null; exit ${{PIPESTATUS[0]}}",
        errors.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = std::fs::read_to_string(&errors).unwrap();
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");

    let out = Command::new("bash")
        .args(["-c", &format!("{command} 2>&-")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the bad line fails, nothing panics"
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        201,
        "every line answered"
    );
}

/// Escape sequences in the input are shown, not sent to the terminal.
#[test]
fn text_output_escapes_control_characters_from_the_input() {
    let out = explain(
        &model("bert-tiny"),
        "Who wrote it?",
        "Jane\u{1b}[2J Austen wrote it in 1813.",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(stdout.contains("\\u{1b}"), "{stdout}");
    // A right-to-left override would make the rest of the line read backwards.
    let out = explain(
        &model("bert-tiny"),
        "Who wrote it?",
        "Jane \u{202e}Austen\u{202c} wrote it \u{2067}in 1813.",
        &[],
    );
    let stdout = text(&out.stdout);
    for c in ['\u{202e}', '\u{202c}', '\u{2067}'] {
        assert!(!stdout.contains(c), "{stdout:?}");
    }
    assert!(stdout.contains("\\u{202e}"), "{stdout}");
}

/// Every run ends with a summary line on stderr; `--quiet` drops it; on a terminal a JSON-lines
/// run draws a progress bar with the pairs done of the total (a pseudo-terminal from util-linux's
/// `script`).
#[test]
fn runs_summarise_and_show_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let lines: String = (0..40)
        .map(|i| format!("{{\"id\": {i}, \"question\": \"Who wrote it?\", \"context\": \"Jane Austen wrote it.\"}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let base = [
        "explain",
        "--model",
        &model("bert-tiny"),
        "--input",
        input.to_str().unwrap(),
    ];
    let out = run(&base);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("spangrad: 40 pairs, 0 failed,") && stderr.contains("pairs/s"),
        "{stderr}"
    );
    let quiet: Vec<&str> = base.iter().copied().chain(["--quiet"]).collect();
    assert!(run(&quiet).stderr.is_empty());
    let single = explain(
        &model("bert-tiny"),
        "Who wrote it?",
        "Jane Austen wrote it.",
        &[],
    );
    assert!(text(&single.stderr).contains("spangrad: 1 pairs, 0 failed,"));

    let command = format!(
        "{} {} --batch-size 4 >/dev/null",
        env!("CARGO_BIN_EXE_spangrad"),
        base.join(" ")
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("util-linux script");
    let screen = text(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(screen.contains("/40 pairs"), "progress bar: {screen:?}");
    assert!(screen.contains("spangrad: 40 pairs"), "{screen:?}");
}

#[test]
fn a_device_list_shares_batches_out_and_keeps_the_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected("bert");
    let input = pairs_file(dir.path(), &expected);
    let explain_on = |device: &str| {
        let out = explain_file(
            &model("bert-tiny"),
            &input,
            &["--batch-size", "2", "--device", device],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Explanation>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let one = explain_on("cpu");
    let two = explain_on("cpu,cpu");
    assert_eq!(two.len(), expected.pairs.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(
            b.id,
            Some(serde_json::json!(format!("p{i}")).into()),
            "input order"
        );
        assert_eq!(a.answer.text, b.answer.text);
        assert!(max_abs_diff(&scores(a), &scores(b)) < 1e-5);
    }
    let out = run(&[
        "explain",
        "--model",
        &model("bert-tiny"),
        "--question",
        "q",
        "--context",
        "c",
        "--device",
        "cpu,gpu",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown device \"gpu\""),
        "{}",
        text(&out.stderr)
    );
}

/// `--handle-impossible-answer` on a SQuAD 2.0-style head: "no answer" where the pipeline says
/// so, in the JSON (both scores) and the text; without the flag, the best span.
#[test]
fn handle_impossible_answer_reports_no_answer() {
    let expected = expected("roberta");
    let (won, lost): (Vec<&ExpectedPair>, Vec<&ExpectedPair>) = expected
        .pairs
        .iter()
        .filter(|p| p.pipeline_span.is_some())
        .partition(|p| p.pipeline_impossible.impossible == Some(true));
    let model = model("roberta-tiny");
    for (p, impossible) in [(won[0], true), (lost[0], false)] {
        let json = |extra: &[&str]| -> Explanation {
            let mut args = vec!["--format", "json"];
            args.extend(extra);
            let out = explain(&model, &p.question, &p.context, &args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            serde_json::from_str(text(&out.stdout).trim()).unwrap()
        };
        let e = json(&["--handle-impossible-answer"]);
        assert_eq!(e.answer.impossible, impossible, "{:?}", p.question);
        assert_eq!(e.answer.text, p.pipeline_impossible.answer);
        assert!(e.answer.null_score.is_some() && e.answer.best_span_probability.is_some());
        if impossible {
            assert_eq!(
                (e.target.start_token, e.target.end_token),
                (Some(0), Some(0))
            );
            assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        }
        let plain = json(&[]);
        assert!(!plain.answer.impossible && plain.answer.null_score.is_none());
        assert_eq!(plain.answer.text, p.pipeline.answer);

        let out = explain(
            &model,
            &p.question,
            &p.context,
            &["--handle-impossible-answer"],
        );
        let stdout = text(&out.stdout);
        assert_eq!(
            stdout.starts_with("answer:   no answer"),
            impossible,
            "{stdout}"
        );
        assert!(stdout.contains("null score"), "{stdout}");
    }
    // The seed's rules have no "no answer".
    let p = &expected.pairs[0];
    let out = explain(
        &model,
        &p.question,
        &p.context,
        &["--handle-impossible-answer", "--span", "argmax"],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--handle-impossible-answer"));
}

/// The reference pairs as JSON lines, the text of a pairs file.
fn pairs_text(expected: &Expected, n: usize) -> String {
    expected.pairs[..n]
        .iter()
        .map(|p| serde_json::json!({"question": p.question, "context": p.context}).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--input` given a pipe (`<(cmd)`, `/dev/stdin`, a named FIFO) explains every pair: the file
/// is read once.
#[test]
fn input_from_a_pipe_loses_no_pair() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs_file(dir.path(), &expected("bert"));
    let count = expected("bert").pairs.len();
    let model = model("bert-tiny");
    let lines = |out: &Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.lines().all(|l| !l.contains("\"error\"")), "{stdout}");
        stdout.lines().count()
    };
    let substituted = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} explain --quiet --model {model} --input <(cat {})",
            env!("CARGO_BIN_EXE_spangrad"),
            input.display()
        ))
        .output()
        .unwrap();
    assert_eq!(lines(&substituted), count);
    let from_stdin = spangrad(
        &[
            "explain",
            "--quiet",
            "--model",
            &model,
            "--input",
            "/dev/stdin",
        ]
        .map(std::ffi::OsStr::new),
    )
    .stdin(std::fs::File::open(&input).unwrap())
    .output()
    .unwrap();
    assert_eq!(lines(&from_stdin), count);
    let fifo = dir.path().join("pairs.fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let body = std::fs::read(&input).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, body).unwrap())
    };
    let from_fifo = run(&[
        "explain",
        "--quiet",
        "--model",
        &model,
        "--input",
        fifo.to_str().unwrap(),
    ]);
    writer.join().unwrap();
    assert_eq!(lines(&from_fifo), count);
}

/// With stdout closed nothing can be written: the run fails instead of reporting success.
#[test]
fn a_closed_stdout_is_an_error_not_a_silent_success() {
    let dir = tempfile::tempdir().unwrap();
    let input = pairs_file(dir.path(), &expected("bert"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} explain --quiet --model {} --input {} >&-",
            env!("CARGO_BIN_EXE_spangrad"),
            model("bert-tiny"),
            input.display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("standard output is closed"),
        "{}",
        text(&out.stderr)
    );
}

/// One output line per input line: a blank or whitespace-only line gets an error line of its
/// own, so outputs stay aligned with inputs.
#[test]
fn blank_lines_get_their_own_output_lines() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pairs_text(&expected("bert"), 2);
    let (first, second) = pairs.split_once('\n').unwrap();
    let path = dir.path().join("pairs.jsonl");
    std::fs::write(&path, format!("{first}\n\n  \t\n{second}\n")).unwrap();
    let out = explain_file(&model("bert-tiny"), &path, &["--quiet"]);
    assert!(!out.status.success(), "blank lines count as failed lines");
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 3, 4]);
    assert!(rows[1]["error"].as_str().unwrap().contains("blank line"));
    assert!(rows[2]["error"].as_str().unwrap().contains("blank line"));
    assert!(rows[0].get("answer").is_some() && rows[3].get("answer").is_some());
}

/// A checkpoint whose shapes disagree with its config is one short message, even with
/// `RUST_BACKTRACE=1` (candle then attaches a backtrace to its errors).
#[test]
fn shape_errors_carry_no_backtrace() {
    let dir = copy_fixture("bert-tiny");
    let config = dir.path().join("config.json");
    let text_ = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_.replace("\"hidden_size\": 36", "\"hidden_size\": 40"),
    )
    .unwrap();
    let words = [
        "explain",
        "--model",
        dir.path().to_str().unwrap(),
        "--question",
        "q",
        "--context",
        "c",
    ];
    let args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
    let out = spangrad(&args).env("RUST_BACKTRACE", "1").output().unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("shape mismatch"), "{stderr}");
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

/// A line far over `--max-input-bytes` fails alone without being held in memory (a 200 MB line
/// once took 640 MB): the run fits a data limit of 150 MB. The lines after it are explained.
#[test]
fn an_oversized_line_is_skipped_unread() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.jsonl");
    let big = serde_json::json!({"question": "q", "context": "x".repeat(200 << 20)}).to_string();
    let small = r#"{"question": "Who wrote it?", "context": "Jane wrote it."}"#;
    std::fs::write(&path, format!("{big}\n{small}\n")).unwrap();
    drop(big);
    let model = model("bert-tiny");
    let words = [
        "explain",
        "--quiet",
        "--model",
        &model,
        "--input",
        path.to_str().unwrap(),
    ];
    let args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
    let mut command = spangrad(&args);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 150 << 20,
                rlim_max: 150 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = command.output().unwrap();
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", text(&out.stderr));
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("--max-input-bytes"),
        "{}",
        rows[0]
    );
    assert!(rows[1].get("answer").is_some());
}

/// `spangrad evaluate`: a line per input line (a bad one fails alone, and the exit code says
/// so), the summary table on stderr, and options an evaluation cannot take refused up front.
#[test]
fn evaluate_writes_a_line_per_pair_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"question\":\"Who wrote it?\",\"context\":\"Jane Austen wrote it in 1813.\"}\n\
         not json\n\
         {\"id\":\"c\",\"question\":\"When?\",\"context\":\"It was written in 1813.\"}\n",
    )
    .unwrap();
    let model = model("bert-tiny");
    let input = input.to_str().unwrap();
    let out = run(&[
        "evaluate",
        "--model",
        &model,
        "--input",
        input,
        "--method",
        "grad-norm",
        "--random-orders",
        "1",
    ]);
    assert!(!out.status.success(), "a failed line fails the run");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (lines[0]["id"].as_str(), lines[0]["line"].as_u64()),
        (Some("a"), Some(1))
    );
    assert_eq!(lines[0]["methods"][0]["method"], "grad-norm");
    assert_eq!(lines[0]["random"]["rankings"].as_array().unwrap().len(), 1);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("JSON"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["id"], "c");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("grad-norm") && stderr.contains("random"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 3 lines failed"), "{stderr}");

    let html = run(&[
        "evaluate", "--model", &model, "--input", input, "-q", "--format", "html",
    ]);
    let page = text(&html.stdout);
    assert!(page.starts_with("<!DOCTYPE html>") && page.matches("<svg").count() == 2);
    for (flags, says) in [
        (vec!["--random-orders", "101"], "101"),
        (vec!["--top-k", "2"], "--top-k"),
        (vec!["--metrics", "loo,nope"], "nope"),
        (vec!["--method", "grad-norm,grad-norm"], "twice"),
    ] {
        let mut args = vec!["evaluate", "--model", &model, "--input", input];
        args.extend(&flags);
        let out = run(&args);
        assert!(!out.status.success(), "{flags:?}");
        assert!(out.stdout.is_empty(), "{flags:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{flags:?}: {}",
            text(&out.stderr)
        );
    }
}
