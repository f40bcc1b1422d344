"""examples/ray_explain.py on a local Ray with 2 CPU actors: the CLI's explanations, in order."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from test_spangrad import FIXTURES, REPO, fixture_pairs, run_cli


@pytest.fixture(scope="module")
def ray_available():
    if importlib.util.find_spec("ray") is None:
        message = "Ray is not installed (pip install 'ray[data]')"
        if os.environ.get("SPANGRAD_REQUIRE_RAY"):
            pytest.fail(message)
        pytest.skip(message)


def test_the_ray_pipeline_equals_the_cli(cli, ray_available, tmp_path):  # noqa: F811
    pairs = [p for p in fixture_pairs("bert") if p.get("question")] * 3
    pairs = [dict(p, id=f"p{i}") for i, p in enumerate(pairs)]
    bad = {"id": "empty", "question": " ", "context": "Jane wrote it."}
    pairs.insert(2, bad)
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    output = tmp_path / "explained.jsonl"
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ray_explain.py"),
         "--model", str(FIXTURES / "bert-tiny"), "--input", str(source),
         "--output", str(output), "--actors", "2", "--batch-size", "1"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "2 actors" in run.stdout
    got = [json.loads(line) for line in output.read_text().splitlines()]
    want = run_cli(cli, "bert-tiny", pairs, batch=1)
    assert len(got) == len(want) == len(pairs)
    for i, (g, w) in enumerate(zip(got, want)):
        if "error" in w:
            assert (g["id"], g["error"], g["field"]) == (w["id"], w["error"], w["field"])
        else:
            assert g == w, f"pair {i}"
