"""Shared fixtures: one embedded Lab per test session, isolated ``edalab up`` state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import edalab


@pytest.fixture(autouse=True, scope="session")
def _isolated_state(tmp_path_factory):
    """Keep tests away from a learner's own ``edalab up`` and EDALAB_* settings."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("EDALAB_")}
    for k in saved:
        if k != "EDALAB_QUICK":
            del os.environ[k]
    os.environ["EDALAB_STATE_DIR"] = str(tmp_path_factory.mktemp("edalab-state"))
    yield
    os.environ.pop("EDALAB_STATE_DIR", None)
    os.environ.update(saved)


@pytest.fixture(scope="session")
def lab(_isolated_state):
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
