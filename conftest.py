"""The whole suite's settings, for tests/ and notebooks/ alike (a conftest below the root
would not see nbval's notebook items): an isolated edalab state per test process, and
the grouping that lets ``scripts/test`` run the suite on pytest-xdist workers."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

#: EDALAB_* variables that configure the test run itself, kept when the rest are cleared
TEST_SETTINGS = ("EDALAB_QUICK", "EDALAB_BROWSER_NOTEBOOKS", "EDALAB_CHROMIUM")

#: Files whose tests are each a work unit of their own under ``scripts/test`` (pytest-xdist):
#: the browser test runs one notebook per test, minutes each, and they need nothing in common
#: but a JupyterLab per worker. Every other file stays on one worker.
SPLIT_FILES = ("tests/test_browser.py",)

#: Work units that run longest go to the workers first (pytest-xdist hands units out in
#: order): the browser's notebooks, then nbval's notebooks, then the slow package tests.
#: A unit not listed here counts as short. Only the order changes, never what runs.
SLOW_FIRST = ("tests/test_browser.py", "notebooks/", "tests/chaos/", "tests/load/", "tests/test_cli_run.py",
              "tests/test_capstone.py", "tests/test_delivery.py", "tests/test_event_content.py")


def pytest_configure(config):
    """Keep every test, and every notebook kernel nbval starts, away from a learner's own
    ``edalab up`` and EDALAB_* settings: one fresh state folder per test process (each
    pytest-xdist worker has its own), set before collection so kernels inherit it."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("EDALAB_")}
    for k in saved:
        if k not in TEST_SETTINGS:
            del os.environ[k]
    state = tempfile.mkdtemp(prefix="edalab-test-state-")
    os.environ["EDALAB_STATE_DIR"] = state
    config.stash[_SAVED] = (saved, state)


def pytest_unconfigure(config):
    saved, state = config.stash.get(_SAVED, ({}, None))
    os.environ.pop("EDALAB_STATE_DIR", None)
    os.environ.update(saved)
    if state:
        shutil.rmtree(state, ignore_errors=True)


_SAVED = pytest.StashKey[tuple]()


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``scripts/test``), the longest units first; a serial run keeps its order."""
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    if hasattr(config, "workerinput"):  # a worker collects; the controller schedules in that order
        items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that each test of :data:`SPLIT_FILES` is its own unit.

    A file's tests stay together on one worker: module fixtures start their servers once,
    and a notebook's cells share one kernel and run in order. (pytest-xdist's
    ``loadgroup`` would say this with markers, but pytest 9.2 no longer lets it rename
    the tests it groups.) Units go out in collection order, slow ones first (above).
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPLIT_FILES else path

    config.option.loadscopereorder = False  # keep the slow-first order, not "most tests first"
    return FileScheduling(config, log)
