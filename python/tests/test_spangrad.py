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
            assert (g["error"], g["id"], g["index"]) == (w["error"], w["id"], i)
        else:
            assert g == w, f"pair {i}"
    assert got[-1]["window"]["count"] > 1


def test_options_equal_the_cli_flags(cli):
    pairs = fixture_pairs("bert")[:3]
    explainer = spangrad.Explainer(
        str(FIXTURES / "bert-tiny"), span="argmax", max_length=24, method="grad-x-input"
    )
    want = run_cli(cli, "bert-tiny", pairs, "--span", "argmax", "--max-length", "24",
                   "--method", "grad-x-input")
    assert explainer.explain(pairs) == want
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
    got = explainer.explain(pairs, method="integrated-gradients", steps=8, top_k=2)
    want = run_cli(cli, "bert-tiny", pairs, "--method", "integrated-gradients", "--steps", "8",
                   "--top-k", "2")
    assert got == want
    # The explainer's own options are unchanged.
    assert explainer.explain(pairs) == run_cli(cli, "bert-tiny", pairs)
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
    got = explainer.explain(pairs)
    assert got == run_cli(cli, "roberta-tiny", pairs, "--handle-impossible-answer")
    assert any(e["answer"].get("impossible") for e in got)
    assert not all(e["answer"].get("impossible") for e in got)


def test_arrays_hold_the_explanations():
    explainer = spangrad.Explainer(str(FIXTURES / "distilbert-tiny"))
    pairs = fixture_pairs("distilbert")
    questions = np.array([p["question"] for p in pairs], dtype=object)
    contexts = [p["context"] for p in pairs]
    arrays = explainer.explain_arrays(questions, contexts)
    dicts = explainer.explain([{"question": q, "context": c} for q, c in zip(questions, contexts)])
    n = len(pairs)
    assert arrays["scores"].dtype == np.float32
    assert arrays["scores"].shape == (n, int(arrays["lengths"].max()))
    for i, d in enumerate(dicts):
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
    one = spangrad.Explainer(str(FIXTURES / "bert-tiny")).explain(pairs)
    two = spangrad.Explainer(str(FIXTURES / "bert-tiny"), device="cpu,cpu").explain(pairs)
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
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a dict"):
        explainer.explain([5])
    with pytest.raises(ValueError, match=r'pairs\[1\] has no "context"'):
        explainer.explain([{"question": "q", "context": "c"}, {"question": "q"}])
    with pytest.raises(TypeError, match=r'pairs\[0\]\["question"\] must be a str'):
        explainer.explain([{"question": 5, "context": "c"}])
    # Data that cannot be read fails its pair alone; the others are explained.
    good = {"question": "Who?", "context": "Jane wrote it."}
    results = explainer.explain([
        {"id": object(), **good},
        {"id": float("nan"), **good},
        {"question": "Who\ud800?", "context": "Jane wrote it."},
        good,
    ])
    assert [r.get("index") for r in results[:3]] == [0, 1, 2]
    assert "not JSON" in results[0]["error"] and "not JSON" in results[1]["error"]
    assert "not valid Unicode" in results[2]["error"]
    assert "answer" in results[3]
    with pytest.raises(ValueError, match="not JSON"):
        explainer.explain([{"id": float("nan"), **good}], on_error="raise")
    with pytest.raises(ValueError, match="the question is empty"):
        explainer.explain([{"question": " ", "context": "c"}], on_error="raise")
    with pytest.raises(ValueError, match="on_error"):
        explainer.explain([], on_error="ignore")
    [failed] = explainer.explain([{"id": "x", "question": "Who?", "context": "Jane.",
                                   "answer": "Paris"}])
    assert failed["id"] == "x" and "not in the context" in failed["error"]
    # An int past 64 bits comes back as the same int, explained or failed.
    big = 10**30 + 1
    explained, failed = explainer.explain([{"id": big, **good}, {"id": -big, "question": " ",
                                                                  "context": "c"}])
    assert explained["id"] == big and type(explained["id"]) is int
    assert failed["id"] == -big


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
    assert len(result["tokens"]) == 2 + 3 + 40


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
    script = (
        "import spangrad, sys; "
        "e = spangrad.Explainer(sys.argv[1]); "
        "[r] = e.explain([{'question': 'Who wrote it?', 'context': 'Jane Austen wrote it.'}]); "
        "print(r['answer']['text'])"
    )
    out = subprocess.run([python, "-c", script, str(FIXTURES / "bert-tiny")],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip()
