"""Shared fixtures: one embedded Lab per test session (the isolated state: ../conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import edalab


@pytest.fixture(scope="session")
def lab():
    """Embedded Kafka-protocol broker and Redis, shared by the tests of one run."""
    with edalab.start(use_up=False) as lab:
        yield lab


def run_edalab(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the ``edalab`` command line as a user would (same interpreter)."""
    script = Path(sys.executable).with_name("edalab")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "edalab._cli"]
    return subprocess.run([*cmd, *args], capture_output=True,
                          text=True, timeout=timeout, env=env or os.environ.copy())


def press_run(box) -> tuple[str, str]:
    """Press a widget's Run button as a learner would (edalab.widgets): check that it was
    disabled while the run went on and enabled after, and return what the output area
    shows (text of displayed objects) and what it wrote to stderr (errors, warnings)."""
    states = []
    box.run_button.observe(lambda change: states.append(change["new"]), "disabled")
    box.run_button.click()
    assert states == [True, False], states  # disabled while it ran, enabled again after
    outputs = box.output.outputs
    shown = " ".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    errors = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    return shown, errors
