"""What the tests share: the spangrad binary."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli():
    """The spangrad binary: SPANGRAD_CLI, else a build in target/."""
    candidates = [os.environ.get("SPANGRAD_CLI")]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    candidates += [str(target / kind / "spangrad") for kind in ("release", "debug")]
    for path in candidates:
        if path and Path(path).is_file():
            return path
    message = "no spangrad binary: set SPANGRAD_CLI or run cargo build"
    if os.environ.get("SPANGRAD_REQUIRE_CLI"):
        pytest.fail(message)
    pytest.skip(message)
