"""The Python package against the CLI on the fixtures, its errors, and its GIL release."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import spangrad

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def fixture_pairs(arch):
    """The reference pairs of a fixture model, with ids of several JSON types."""
    expected = json.loads((FIXTURES / "expected" / f"{arch}.json").read_text())
    pairs = [
        {"id": i if i % 2 else f"p{i}", "question": p["question"], "context": p["context"]}
        for i, p in enumerate(expected["pairs"])
    ]
    pairs.append({"id": {"k": [1, None]}, "question": "", "context": "Jane wrote it."})
    pairs.append({"question": "Who?", "context": "Jane wrote it. " * 120})  # several windows
    return pairs


def dicts(results):
    """Explanations and failures as the CLI's JSON objects."""
    return [r.to_dict() for r in results]


def run_cli(cli, model, pairs, *flags, batch=None):
    """`spangrad explain --input` on the pairs in batches of `batch` (default: all in one): its
    JSON lines without the line numbers."""
    text = "\n".join(json.dumps(p) for p in pairs)
    out = subprocess.run(
        [cli, "explain", "--quiet", "--model", str(FIXTURES / model), "--input", "-",
         "--batch-size", str(batch or len(pairs)), *flags],
        input=text.encode(), capture_output=True, check=False,
    )
    assert out.stdout, out.stderr.decode()
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    for line in lines:
        line.pop("line")
    return lines


@pytest.mark.parametrize("model,arch", [
    ("bert-tiny", "bert"), ("distilbert-tiny", "distilbert"), ("roberta-tiny", "roberta"),
    ("xlm-roberta-tiny", "xlm-roberta"), ("electra-tiny", "electra"), ("albert-tiny", "albert"),
])
def test_explanations_equal_the_cli(cli, model, arch):
    pairs = fixture_pairs(arch)
    got = spangrad.Explainer(str(FIXTURES / model)).explain(pairs)
    want = run_cli(cli, model, pairs)
    assert len(got) == len(want) == len(pairs)
    for i, (g, w) in enumerate(zip(got, want)):
        if "error" in w:
            assert isinstance(g, spangrad.Failure)
            assert (g.error, g.id, g.field, g.index) == (w["error"], w["id"], w["field"], i)
            assert g.to_dict() == {"index": i, "id": w["id"], "error": w["error"],
                                   "field": w["field"]}
        else:
            assert isinstance(g, spangrad.Explanation)
            assert g.to_dict() == w, f"pair {i}"
            assert json.loads(g.to_json()) == w, f"pair {i}"
    assert got[-1].window["count"] > 1


def test_options_equal_the_cli_flags(cli):
    pairs = fixture_pairs("bert")[:3]
    explainer = spangrad.Explainer(
        str(FIXTURES / "bert-tiny"), span="argmax", max_length=24, method="grad-x-input"
    )
    want = run_cli(cli, "bert-tiny", pairs, "--span", "argmax", "--max-length", "24",
                   "--method", "grad-x-input")
    assert dicts(explainer.explain(pairs)) == want
    assert explainer.max_length == 24
    assert explainer.dtype == "f32"


def stub_keywords(function):
    """The keyword-only arguments of a method of Explainer in spangrad.pyi, with defaults."""
    import ast

    tree = ast.parse((REPO / "python" / "spangrad.pyi").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Explainer")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == function)
    return {a.arg: ast.literal_eval(d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)}


def test_every_option_is_a_keyword_with_the_clis_default(cli):
    options = spangrad.options()
    defaults = {o["name"]: o["default"] for o in options}
    # The stub lists every option, in order, with its default.
    assert stub_keywords("__init__") == defaults
    model = str(FIXTURES / "bert-tiny")
    explainer = spangrad.Explainer(model)
    assert explainer.options == defaults
    # Each option reaches the engine under its name.
    for o in options:
        given = o["default"] if o["default"] is not None else {
            "max_length": 64, "doc_stride": 16, "memory_limit_mib": 512.0, "dtype": "f32",
        }[o["name"]]
        assert spangrad.Explainer(model, **{o["name"]: given}).options[o["name"]] == given
    # The CLI's help states the same defaults.
    help_text = subprocess.run([cli, "explain", "--help"], capture_output=True, check=True).stdout
    for o in options:
        flag = "--" + o["name"].replace("_", "-")
        assert flag.encode() in help_text, flag
        if o["default"] not in (None, False) and o["name"] != "method":
            shown = o["default"] if isinstance(o["default"], str) else json.dumps(o["default"])
            section = help_text.split(flag.encode() + b" <")[1].split(b"\n      --")[0]
            assert f"[default: {shown}]".encode() in section, (flag, section)


def test_request_options_are_given_per_call(cli):
    pairs = fixture_pairs("bert")[:3]
    explainer = spangrad.Explainer(str(FIXTURES / "bert-tiny"))
    got = dicts(explainer.explain(pairs, method="integrated-gradients", steps=8, top_k=2))
    want = run_cli(cli, "bert-tiny", pairs, "--method", "integrated-gradients", "--steps", "8",
                   "--top-k", "2")
    assert got == want
    # The explainer's own options are unchanged.
    assert dicts(explainer.explain(pairs)) == run_cli(cli, "bert-tiny", pairs)
    arrays = explainer.explain_arrays([pairs[0]["question"]], [pairs[0]["context"]], span="argmax")
    assert arrays["answer_start"][0] == run_cli(cli, "bert-tiny", pairs[:1], "--span", "argmax")[0]["answer"]["token_start"]
    with pytest.raises(TypeError, match="chosen when the model is loaded"):
        explainer.explain(pairs, dtype="f32")
    with pytest.raises(TypeError, match='unexpected keyword argument "colour"'):
        explainer.explain(pairs, colour="red")
    with pytest.raises(spangrad.OptionError, match="top_k takes span best") as info:
        explainer.explain(pairs, top_k=2, span="argmax")
    assert info.value.option == "top_k"
    with pytest.raises(spangrad.OptionError, match="steps 0 must be between 1 and 10000") as info:
        explainer.explain(pairs, steps=0)
    assert info.value.option == "steps"
    with pytest.raises(spangrad.OptionError, match="noise_std") as info:
        explainer.explain(pairs, noise_std=float("nan"))


def test_handle_impossible_answer_equals_the_cli(cli):
    pairs = fixture_pairs("roberta")[:10]
    explainer = spangrad.Explainer(str(FIXTURES / "roberta-tiny"), handle_impossible_answer=True)
    got = dicts(explainer.explain(pairs))
    assert got == run_cli(cli, "roberta-tiny", pairs, "--handle-impossible-answer")
    assert any(e["answer"].get("impossible") for e in got)
    assert not all(e["answer"].get("impossible") for e in got)


def test_arrays_hold_the_explanations():
    explainer = spangrad.Explainer(str(FIXTURES / "distilbert-tiny"))
    pairs = fixture_pairs("distilbert")
    questions = np.array([p["question"] for p in pairs], dtype=object)
    contexts = [p["context"] for p in pairs]
    arrays = explainer.explain_arrays(questions, contexts)
    results = dicts(explainer.explain([{"question": q, "context": c}
                                       for q, c in zip(questions, contexts)]))
    n = len(pairs)
    assert arrays["scores"].dtype == np.float32
    assert arrays["scores"].shape == (n, int(arrays["lengths"].max()))
    for i, d in enumerate(results):
        if "error" in d:
            assert arrays["error"][i] == d["error"]
            assert arrays["lengths"][i] == 0 and arrays["answer_start"][i] == -1
            assert not arrays["scores"][i].any()
            continue
        length = len(d["tokens"])
        assert arrays["error"][i] is None
        assert arrays["lengths"][i] == length
        np.testing.assert_array_equal(
            arrays["scores"][i, :length], np.array([t["score"] for t in d["tokens"]], np.float32)
        )
        assert not arrays["scores"][i, length:].any()
        answer = d["answer"]
        assert arrays["answer"][i] == answer["text"]
        assert (arrays["answer_start"][i], arrays["answer_end"][i]) == (
            answer["token_start"], answer["token_end"])
        assert arrays["answer_char_start"][i] == (answer["char_start"] if answer["char_start"] is not None else -1)
        assert arrays["tokens"][i] == [t["text"] for t in d["tokens"]]
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        explainer.explain_arrays(["a", "b"], ["c"])


def test_two_cpu_devices_share_the_batch():
    pairs = fixture_pairs("bert")
    one = dicts(spangrad.Explainer(str(FIXTURES / "bert-tiny")).explain(pairs))
    two = dicts(spangrad.Explainer(str(FIXTURES / "bert-tiny"), device="cpu,cpu").explain(pairs))
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert a.get("error") == b.get("error")
        if "error" in a:
            continue
        assert a["answer"]["text"] == b["answer"]["text"]
        np.testing.assert_allclose([t["score"] for t in a["tokens"]],
                                   [t["score"] for t in b["tokens"]], atol=1e-5)


def test_bad_inputs_raise_the_right_exceptions(tmp_path):
    model = str(FIXTURES / "distilbert-tiny")
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        spangrad.Explainer(str(tmp_path / "missing"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with pytest.raises(OSError, match="not in the hub cache"):
            spangrad.Explainer("nobody/no-such-model")
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="unknown model_type"):
        spangrad.Explainer(str(broken))
    for kwargs, message in [
        ({"device": "gpu"}, "unknown device"),
        ({"dtype": "f64"}, "dtype"),
        ({"span": "widest"}, "span"),
        ({"method": "lime"}, "method"),
        ({"max_length": 3}, "max_length 3 must be at least 5"),
        ({"max_length": 5000}, "max_length 5000 exceeds"),
        ({"max_batch_tokens": 0}, "max_batch_tokens cannot be 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            spangrad.Explainer(model, **kwargs)
    with pytest.raises(RuntimeError, match="cuda"):
        spangrad.Explainer(model, device="cuda:0")
    with pytest.raises(ValueError, match="unknown preset"):
        spangrad.Explainer.preset("gpt-base")

    explainer = spangrad.Explainer(model)
    with pytest.raises(TypeError, match="list of dicts"):
        explainer.explain({"question": "q", "context": "c"})
    # A pair is read as on a JSON line or by the server: one that cannot be read fails alone,
    # naming its field; the others are explained.
    good = {"question": "Who?", "context": "Jane wrote it."}
    results = explainer.explain([
        5,
        {"id": "q", "question": "q"},
        {"question": 5, "context": "c"},
        {"id": object(), **good},
        {"id": float("nan"), **good},
        {"question": "Who\ud800?", "context": "Jane wrote it."},
        {"id": 1, "answer_start": -1, **good},
        good,
    ])
    failures = results[:-1]
    assert all(isinstance(f, spangrad.Failure) for f in failures)
    assert [f.index for f in failures] == list(range(7))
    assert "expected a JSON object" in failures[0].error and "found a number" in failures[0].error
    assert (failures[1].id, failures[1].field) == ("q", "context")
    assert failures[1].error == "invalid pair: missing field `context`"
    assert failures[2].field == "question" and "expected a string" in failures[2].error
    assert "not JSON" in failures[3].error and "not JSON" in failures[4].error
    assert "not valid Unicode" in failures[5].error
    assert (failures[6].id, failures[6].field) == (1, "answer_start")
    assert isinstance(results[-1], spangrad.Explanation)
    with pytest.raises(spangrad.PairError, match="not JSON") as info:
        explainer.explain([good, {"id": float("nan"), **good}], on_error="raise")
    assert (info.value.index, info.value.id, info.value.field) == (1, None, None)
    with pytest.raises(spangrad.PairError, match=r"pairs\[0\]: the question is empty") as info:
        explainer.explain([{"id": [1], "question": " ", "context": "c"}], on_error="raise")
    assert (info.value.id, info.value.field) == ([1], "question")
    assert issubclass(spangrad.PairError, ValueError)
    with pytest.raises(ValueError, match="on_error"):
        explainer.explain([], on_error="ignore")
    [failed] = explainer.explain([{"id": "x", "question": "Who?", "context": "Jane.",
                                   "answer": "Paris"}])
    assert failed.id == "x" and "not in the context" in failed.error
    assert failed.field == "answer"
    # An int past 64 bits comes back as the same int, explained or failed.
    big = 10**30 + 1
    explained, failed = explainer.explain([{"id": big, **good}, {"id": -big, "question": " ",
                                                                  "context": "c"}])
    assert explained.id == big and type(explained.id) is int
    assert explained.to_dict()["id"] == big
    assert failed.id == -big and failed.to_dict()["id"] == -big
    assert json.loads(failed.to_json()) == failed.to_dict()


def test_other_threads_run_while_it_computes():
    explainer = spangrad.Explainer(str(FIXTURES / "distilbert-tiny"))
    pairs = fixture_pairs("distilbert")[:-2] * 40
    done = threading.Event()
    took = []

    def work():
        start = time.perf_counter()
        explainer.explain(pairs)
        took.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
    worker.join()
    # With the GIL held for the whole explain, this loop would stall for all of it.
    assert took[0] > 0.2, f"the explain took {took[0]:.3f} s: too short to tell"
    assert ticks > 10_000, f"{ticks} ticks of the main thread in {took[0]:.2f} s"


def test_the_module_describes_itself():
    explainer = spangrad.Explainer(str(FIXTURES / "bert-tiny"))
    assert "bert-tiny" in repr(explainer) and explainer.device == "cpu"
    assert spangrad.__version__
    assert "one-hot" in spangrad.Explainer.__doc__
    assert "GIL" in spangrad.Explainer.explain.__doc__ or "order" in spangrad.Explainer.explain.__doc__
    preset = spangrad.Explainer.preset("distilbert-base")
    [result] = preset.explain([{"question": "w10 w11", "context": " ".join(f"w{i}" for i in range(100, 140))}])
    assert len(result.tokens) == 2 + 3 + 40


def test_the_wheel_works_in_a_clean_venv_with_numpy_alone(tmp_path):
    wheel = os.environ.get("SPANGRAD_WHEEL")
    if not wheel:
        message = "SPANGRAD_WHEEL (a built wheel) is not set"
        if os.environ.get("SPANGRAD_REQUIRE_WHEEL"):
            pytest.fail(message)
        pytest.skip(message)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", wheel], check=True)
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert installed - {"pip", "setuptools", "wheel"} == {"numpy", "spangrad"}, installed
    script = """
import spangrad, sys
e = spangrad.Explainer(sys.argv[1])
[r] = e.explain([{"question": "Who wrote it?", "context": "Jane Austen wrote it."}])
print(r.answer["text"])
try:
    r.tokens_frame()
except ImportError as error:
    print(error)
"""
    out = subprocess.run([python, "-c", script, str(FIXTURES / "bert-tiny")],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    answer, no_pandas = out.stdout.strip().splitlines()
    assert answer
    assert no_pandas == "tokens_frame() needs pandas: pip install pandas"


def test_an_explanation_is_an_object_with_the_jsons_fields():
    explainer = spangrad.Explainer(str(FIXTURES / "bert-tiny"))
    pair = fixture_pairs("bert")[0]
    [e] = explainer.explain([pair], top_k=2)
    d = e.to_dict()
    # Every field of the JSON is an attribute, of the same value.
    for key, value in d.items():
        got = getattr(e, key)
        if key == "alternatives":
            got = [a.to_dict() for a in got]
        assert got == value, key
    assert set(d) >= {"id", "answer", "tokens", "words", "method", "alternatives"}
    assert isinstance(e.alternatives[0], spangrad.Explanation)
    assert e.alternatives[0].question == e.question == pair["question"]
    assert e.context == pair["context"]
    assert e.windows == [] and e.model_answer is None and e.completeness_error is None
    assert e.scores.dtype == np.float32
    np.testing.assert_array_equal(e.scores, np.array([t["score"] for t in d["tokens"]], np.float32))
    # A float reads as the CLI's JSON writes it: the f32's shortest decimal.
    assert e.tokens[0]["score"] == json.loads(e.to_json())["tokens"][0]["score"]
    tokens = e.tokens_frame()
    assert list(tokens.columns) == list(d["tokens"][0])
    assert len(tokens) == len(d["tokens"]) and tokens["score"].tolist() == [
        t["score"] for t in d["tokens"]]
    words = e.words_frame()
    assert len(words) == len(d["words"]) and "score" in words.columns
    assert repr(e).startswith(f"Explanation(id={json.dumps(pair['id'])}, answer=")
    [windows] = explainer.explain([fixture_pairs("bert")[-1]], explain_windows="all")
    assert len(windows.windows) == windows.window["count"] > 1
    assert all(isinstance(w, spangrad.Explanation) for w in windows.windows)


def test_progress_is_told_as_pairs_are_explained(capsys):
    explainer = spangrad.Explainer(str(FIXTURES / "bert-tiny"))
    pairs = [p for p in fixture_pairs("bert") if p["question"]] * 15
    told = []
    results = explainer.explain(pairs, progress=lambda done, total: told.append((done, total)))
    n = len(pairs)
    assert n > 64 and told[-1] == (n, n)
    assert [done for done, _ in told] == sorted(done for done, _ in told)
    assert len(told) == -(-n // 64), told
    assert dicts(results) == dicts(explainer.explain(pairs))
    explainer.explain(pairs[:3], progress=True)
    assert "3/3" in capsys.readouterr().err
    arrays = []
    explainer.explain_arrays(["Who?"], ["Jane."], progress=lambda d, t: arrays.append((d, t)))
    assert arrays == [(1, 1)]
    with pytest.raises(TypeError, match="callable"):
        explainer.explain(pairs[:1], progress="yes")
    with pytest.raises(ZeroDivisionError):
        explainer.explain(pairs[:1], progress=lambda done, total: 1 / 0)


def test_html_is_the_clis_report(cli, tmp_path):
    model = str(FIXTURES / "bert-tiny")
    pairs = fixture_pairs("bert")[:3]
    explainer = spangrad.Explainer(model)
    results = explainer.explain(pairs)
    page = subprocess.run(
        [cli, "explain", "--quiet", "--model", model, "--input", "-", "--format", "html"],
        input="\n".join(json.dumps(p) for p in pairs).encode(), capture_output=True, check=True,
    ).stdout.decode()
    assert spangrad.Report(results).html == page
    spangrad.save_html(results, tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == page
    # One pair by several methods: one section, with a toggle between them.
    methods = explainer.explain(pairs, method="grad-x-input")
    toggled = subprocess.run(
        [cli, "explain", "--quiet", "--model", model, "--input", "-", "--format", "html",
         "--method", "onehot-norm,grad-x-input"],
        input="\n".join(json.dumps(p) for p in pairs).encode(), capture_output=True, check=True,
    ).stdout.decode()
    both = [e for pair in zip(results, methods) for e in pair]
    assert spangrad.Report(both).html == toggled
    framed = results[0]._repr_html_()
    assert framed.startswith("<iframe srcdoc=\"") and framed.endswith("</iframe>")
    assert "&lt;!DOCTYPE html&gt;" in framed and "<script" not in framed.split('"')[1]
    assert spangrad.Report(results, title="Mine").html.count("Mine") >= 2
    failed = explainer.explain([{"question": " ", "context": "c"}] + pairs[:1])
    assert spangrad.Report(failed).html == spangrad.Report(explainer.explain(pairs[:1])).html
    with pytest.raises(TypeError, match="takes Explanations"):
        spangrad.Report([{"question": "q"}])


def test_the_stub_lists_every_public_name():
    import ast

    tree = ast.parse((REPO / "python" / "spangrad.pyi").read_text())
    stub = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    # maturin's package holds the extension module as `spangrad.spangrad`.
    public = {name for name in dir(spangrad) if not name.startswith("_")} - {"spangrad"}
    assert public <= set(stub) | {"Pair", "Method", "Progress"}, public - set(stub)
    for name in ["Explainer", "Explanation", "Failure", "Report", "Evaluation"]:
        members = {n.name for n in stub[name].body if isinstance(n, ast.FunctionDef)}
        members |= {n.target.id for n in stub[name].body if isinstance(n, ast.AnnAssign)}
        actual = {m for m in dir(getattr(spangrad, name)) if not m.startswith("__")}
        assert actual <= members, (name, actual - members)


def test_evaluate_equals_the_cli(cli, tmp_path):
    pairs = fixture_pairs("bert")[:3] + [{"id": "bad", "question": "", "context": "x"}]
    methods = ["onehot-norm", "grad-x-input"]
    ev = spangrad.Explainer(str(FIXTURES / "bert-tiny")).evaluate(
        pairs, methods=methods, random_orders=2)
    summary = tmp_path / "summary.json"
    out = subprocess.run(
        [cli, "evaluate", "--quiet", "--model", str(FIXTURES / "bert-tiny"), "--input", "-",
         "--method", ",".join(methods), "--random-orders", "2", "--summary", str(summary)],
        input="\n".join(json.dumps(p) for p in pairs).encode(), capture_output=True, check=False,
    )
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(ev.results) == len(lines) == 4
    for got, want in zip(ev.results[:3], lines[:3]):
        want.pop("line")
        assert got == want
    failure = ev.results[3]
    assert isinstance(failure, spangrad.Failure)
    assert (failure.index, failure.id, failure.field) == (3, "bad", "question")
    assert ev.summary == json.loads(summary.read_text())
    assert [r["method"] for r in ev.summary["rows"]] == methods + ["random"]
    assert "onehot-norm" in ev.table() and "random" in ev.table()
    assert ev.to_html().count("<svg") == 2
    assert ev._repr_html_().startswith("<iframe srcdoc=")
    frame = ev.summary_frame()
    assert list(frame.index) == methods + ["random"]
    assert frame.loc["onehot-norm", "aopc_comprehensiveness"] == \
        ev.summary["rows"][0]["aopc_comprehensiveness"]["mean"]
    with pytest.raises(ValueError, match="metrics"):
        spangrad.Explainer(str(FIXTURES / "bert-tiny")).evaluate(pairs, metrics=["nope"])


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through WebDriver (selenium, and Debian's chromium-driver)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        message = f"no {', '.join(missing)}"
        if os.environ.get("SPANGRAD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--window-size=1100,900",
                f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_repr_html_renders_in_a_notebook(browser, tmp_path):
    """An output cell as Jupyter, VS Code and Colab fill it: `_repr_html_` set as a node's
    innerHTML (where no <script> of its own would run). The framed report loads, fits its
    height, and its tokens and toggles work."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    explainer = spangrad.Explainer(str(FIXTURES / "bert-tiny"))
    [e] = explainer.explain([{"question": "Who wrote the novel?",
                              "context": "The novel was written by Jane Austen in 1813."}])
    host = tmp_path / "notebook.html"
    host.write_text(
        "<!DOCTYPE html><html><body><div class='cell'>In [1]:</div><div id='output'></div>"
        f"<script>document.getElementById('output').innerHTML = {json.dumps(e._repr_html_())};"
        "</script></body></html>"
    )
    browser.get(host.as_uri())
    frame = browser.find_element(By.CSS_SELECTOR, "#output iframe")
    # Fitted to the page once loaded: no longer the 36em it starts at.
    WebDriverWait(browser, 20).until(lambda d: frame.get_attribute("style").count("px") >= 1)
    height = browser.execute_script("return arguments[0].getBoundingClientRect().height", frame)
    browser.switch_to.frame(frame)
    inner = browser.execute_script("return document.documentElement.scrollHeight")
    assert abs(height - inner) <= 8, (height, inner)
    tokens = browser.find_elements(
        By.CSS_SELECTOR, ".method[data-method='onehot-norm'] .view[data-unit=token] .t")
    shown = [t for t in e.tokens if t["segment"] != "special"]
    texts = [(e.question if t["segment"] == "question" else e.context)[t["char_start"]:t["char_end"]]
             for t in shown]
    assert [t.get_attribute("textContent") for t in tokens] == texts
    answer = browser.find_elements(By.CSS_SELECTOR, ".view[data-unit=token] .t.answer")
    assert answer, "the answer is marked"
    word_view = ".method[data-method='onehot-norm'] .view[data-unit=word]"
    assert browser.find_element(By.CSS_SELECTOR, word_view).is_displayed()
    browser.find_element(By.CSS_SELECTOR, "input[name=unit][value=token]").click()
    assert not browser.find_element(By.CSS_SELECTOR, word_view).is_displayed()
    browser.switch_to.default_content()
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
