"""schemathesis against a running `spangrad serve`: every response is documented and matches
its schema, the schema refuses what the server refuses, and no client input makes a 5xx."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis():
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found:
        return found
    message = "schemathesis is not installed (scripts/test installs it)"
    if os.environ.get("SPANGRAD_REQUIRE_CLI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=[None, "s3cret"], ids=["open", "api-key"])
def server(cli, request):
    """`spangrad serve` on the BERT fixture, on a free port; with an API key or without."""
    flags = ["--api-key", request.param] if request.param else []
    proc = subprocess.Popen(
        [cli, "serve", "--model", str(REPO / "tests" / "fixtures" / "bert-tiny"),
         "--port", "0", *flags],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        for line in proc.stderr:
            found = re.search(r"listening on (http://\S+)", line)
            url = url or (found and found.group(1))
            if "ready:" in line:
                break
        assert url, "the server did not start"
        yield url, request.param
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_schema_says_what_the_server_does(server, tmp_path):
    url, key = server
    auth = ["-H", f"Authorization: Bearer {key}"] if key else []
    run = subprocess.run(
        [schemathesis(), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
         "--checks", "all", "--max-examples", "150", "--seed", "1", *auth],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
