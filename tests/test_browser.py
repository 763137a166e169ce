"""The course as a learner sees it: ``scripts/lab``'s JupyterLab in a real (headless) Chromium.

What runs: ``scripts/lab`` (edalab up's servers, then JupyterLab without a browser of its own,
a fixed token, loopback only) on a copy of the notebooks in a temporary folder (JupyterLab
saves what it runs; the repository's notebooks stay without outputs). Debian's
``/usr/bin/chromium``, driven by Playwright for Python, opens each notebook, waits for its
kernel, runs all cells (Run > Run All Cells, as a learner would) in quick mode, waits until
no cell is queued and the kernel is idle, saves, and fails on any error output, any cell that
did not run, or any widget the page could not display. Then it presses one widget's Run after
changing a setting and waits for its chart. Each notebook leaves a screenshot (its first
chart, or its top) in ``test-artifacts/browser/`` (git-ignored) with ``timings.txt``.

Which notebooks: ``EDALAB_BROWSER_NOTEBOOKS``: ``all``, ``none`` (only the widget check), or
numbers such as ``00,02,05`` (default: :data:`DEFAULT_NOTEBOOKS`); ``scripts/browser-test all``
runs them all. nbval already runs every notebook once; each one here costs its quick run again
plus a few seconds of browser work. Measured 2026-11-30 on 2 cores shared with other test runs
(load 4-10), all 13 and the widget check: serially 11 min 12 s (00 10 s, 01 26 s, 02 53 s,
03 75 s, 04 68 s, 05 51 s, 06 66 s, 07 62 s, 08 68 s, 09 61 s, 10 34 s, 11 46 s, 12 34 s,
widget 11 s, JupyterLab's start 6 s; again at load 2-4: 8 min 0 s, 00 9 s to 08 52 s); with
``pytest -n 3`` (load 5-7) about 4 min 10 s
(three at a time, each about as long as serially, the short ones up to 1.7x; one JupyterLab
per worker, 7-11 s to start).

In parallel (``scripts/test``: pytest-xdist, ``--dist loadfile``): the repository's conftest.py
makes each test of this file a work unit of its own (each notebook, and the widget check), so
the notebooks spread over the workers while every other file stays on one worker. Every worker that gets one starts its own ``scripts/lab`` (module-scoped fixture; without
xdist, one for the whole module) with its own state dir, ports and temporary folder, and stops
it (JupyterLab, kernels, the servers of its ``edalab up``) when the worker moves on to another
file or ends (a later browser item on that worker starts a new one).

Skipped, with the reason in pytest's summary (``-ra``), only where there is no browser:
Playwright not installed or no ``/usr/bin/chromium`` (``.ci/run`` installs both where it can).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("EDALAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
TOKEN = "edalab-browser-test"
#: notebooks run in the browser when EDALAB_BROWSER_NOTEBOOKS is not set: every one. With the
#: suite on 2 pytest-xdist workers (scripts/test), all 13 here and everything else took 13 min 27 s
#: on the 2-core development machine (2026-11-30, a clean clone's .ci/run).
DEFAULT_NOTEBOOKS = "all"
#: Chromium's flags on this machine: no sandbox as root, no GPU, and no background traffic
#: (the closed network refuses it, many connections at a time, at every start)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
#: the longest a notebook may take in the browser, quick mode, on a busy 2-core machine
NOTEBOOK_TIMEOUT_S = 300.0
#: how long scripts/lab may take until its JupyterLab answers (servers, then JupyterLab)
LAB_START_TIMEOUT_S = 180.0


def _selected_notebooks() -> list[str]:
    # Read at collection, before conftest's session fixture clears EDALAB_* variables.
    choice = os.environ.get("EDALAB_BROWSER_NOTEBOOKS", DEFAULT_NOTEBOOKS).strip().lower()
    every = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if choice == "all":
        return every
    if choice in ("", "none"):
        return []
    wanted = [n.strip().zfill(2) for n in choice.split(",") if n.strip()]
    chosen = [name for name in every if name[:2] in wanted]
    missing = sorted(set(wanted) - {name[:2] for name in chosen})
    if missing:
        raise pytest.UsageError(f"EDALAB_BROWSER_NOTEBOOKS names notebooks that do not exist: {missing}.")
    return chosen


NOTEBOOKS = _selected_notebooks()


def _why_no_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it where it can)"
    return None


@pytest.fixture(scope="module")
def browser_lab(tmp_path_factory):
    """(base URL, notebook folder, Playwright page) of scripts/lab's JupyterLab in Chromium.

    One per test module and pytest process: under pytest-xdist every worker that gets a
    browser item starts its own, so nothing here may be shared between workers. Each has its
    own temporary folder (the worker's basetemp) for the notebooks' copy, JupyterLab's
    settings, workspaces and runtime files, and its own ``EDALAB_STATE_DIR``: ``edalab up``
    then starts this JupyterLab's own servers (on free ports) instead of finding another
    worker's, or the other tests' session state dir. JupyterLab picks its port (free_port()
    is only where it starts looking) and the address comes from what ``edalab lab`` prints.
    Stopping ``scripts/lab`` stops JupyterLab, its kernels, and the servers it started.
    """
    reason = _why_no_browser()
    if reason:
        print(f"\ntest_browser: SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from edalab._servers import free_port

    tmp = tmp_path_factory.mktemp("browser")
    folder = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "lab-settings"
    # Every cell rendered (no virtual scrolling: the test reads every prompt), no autosave, no
    # "get Jupyter news?" toast over the screenshots.
    for plugin, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           ("docmanager-extension/plugin", {"autosave": False}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "EDALAB_QUICK": "1", "EDALAB_STATE_DIR": str(tmp / "edalab-state"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime")}
    _setup_once(tmp_path_factory, env)
    log_path = tmp / "lab.log"
    log = log_path.open("w")
    # scripts/lab passes --notebooks notebooks first; the later --notebooks (the copy) wins.
    lab = subprocess.Popen([str(ROOT / "scripts" / "lab"), "--notebooks", str(folder), "--no-browser",
                            f"--port={free_port()}", "--ServerApp.ip=127.0.0.1",
                            f"--IdentityProvider.token={TOKEN}"],
                           cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = _wait_for_address(lab, log_path, LAB_START_TIMEOUT_S)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield base, folder, page
            browser.close()
    finally:
        lab.send_signal(signal.SIGTERM)  # edalab lab stops JupyterLab (and its kernels), then the servers
        try:
            lab.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait(timeout=10)
        log.close()


def _setup_once(tmp_path_factory, env: dict) -> None:
    """Run scripts/setup while holding a lock that every worker of this pytest run shares.

    scripts/lab runs scripts/setup first, which reinstalls .venv when pyproject.toml is newer
    than its stamp: several xdist workers starting scripts/lab at the same moment would run
    pip in the same .venv at once. Here the first one does it and the others wait, and their
    scripts/lab then finds the stamp fresh. (The run's basetemp's parent is shared by its
    workers; without xdist the lock is simply uncontended.)
    """
    import fcntl

    lock_path = tmp_path_factory.getbasetemp().parent / "edalab-browser-setup.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([str(ROOT / "scripts" / "setup")], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=900)


def _wait_for_address(lab: subprocess.Popen, log_path: Path, timeout_s: float) -> str:
    """The base URL ``edalab lab`` prints once its JupyterLab answers (it read the port there)."""
    found = []

    def answered() -> bool:
        match = re.search(r"(http://127\.0\.0\.1:\d+)/lab\?token=", log_path.read_text(errors="replace"))
        if match:
            found.append(match.group(1))
            return True
        if lab.poll() is not None:
            raise AssertionError(f"scripts/lab exited ({lab.returncode}) before JupyterLab answered:\n"
                                 f"{log_path.read_text(errors='replace')[-3000:]}")
        return False

    _wait_for(answered, timeout_s, "JupyterLab to answer", log_path)
    return found[0]


def _api(base: str, path: str):
    try:
        answer = httpx.get(f"{base}/api/{path}", headers={"Authorization": f"token {TOKEN}"}, timeout=5,
                           trust_env=False)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _wait_for(condition, timeout_s: float, what: str, log: Path | None = None, step_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step_s)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"Waited {timeout_s:g} s for {what}.\n{tail}")


def _kernel_state(base: str, name: str) -> str | None:
    for session in _api(base, "sessions") or []:
        if session.get("path", "").endswith(name):
            return session["kernel"]["execution_state"]
    return None


def _open(page, base: str, name: str) -> None:
    page.goto(f"{base}/lab/tree/{name}?token={TOKEN}&reset")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.wait_for()


def _run_all_and_wait(page, base: str, name: str, timeout_s: float) -> None:
    _wait_for(lambda: _kernel_state(base, name) == "idle", 120, f"{name}'s kernel to start")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    prompts = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt")
    idle_since = [None]

    def finished() -> bool:
        queued = any("*" in text for text in prompts.all_inner_texts())
        if queued or _kernel_state(base, name) != "idle":
            idle_since[0] = None
            return False
        idle_since[0] = idle_since[0] or time.monotonic()
        return time.monotonic() - idle_since[0] > 1.0  # idle, and still idle a second later

    _wait_for(finished, timeout_s, f"{name} to run all its cells")


def _save(page, folder: Path, name: str) -> dict:
    before = (folder / name).stat().st_mtime_ns
    page.keyboard.press("Control+s")
    _wait_for(lambda: (folder / name).stat().st_mtime_ns != before, 30, f"{name} to be saved")
    time.sleep(0.3)  # the write may still be going on
    return json.loads((folder / name).read_text())


def _problems(page, notebook: dict) -> list[str]:
    """Errors in the saved outputs, code cells that did not run, widgets that failed to show."""
    found = []
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None and "".join(cell["source"]).strip():
            found.append(f"cell {i} did not run")
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output.get("traceback", [])))[-1500:]
                found.append(f"cell {i}: {output['ename']}: {output['evalue']}\n{trace}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    for text in ("Error displaying widget", "Failed to load model class"):
        if panel.get_by_text(text).count():
            found.append(f"the page shows '{text}' (the widget front end is missing or broken)")
    return found


def _screenshot(page, stem: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    charts = panel.locator(".jp-RenderedImage img")
    # Run All leaves the view at the last cell: show the first chart, else the notebook's top.
    (charts if charts.count() else panel.locator(".jp-Cell")).first.scroll_into_view_if_needed()
    path = ARTIFACTS / f"{stem}.png"
    page.screenshot(path=str(path))
    return path


def _record_time(name: str, seconds: float) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "timings.txt").open("a") as f:
        # which xdist worker, and how busy the machine was: times differ a lot with both
        where = os.environ.get("PYTEST_XDIST_WORKER", "serial")
        load_1min = os.getloadavg()[0]
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {name} {seconds:.1f} s ({where}, load {load_1min:.1f})\n")


def _shut_down_kernels(base: str) -> None:
    """End every session (and its kernel), so the next notebook starts on a quiet machine."""
    headers = {"Authorization": f"token {TOKEN}"}
    for session in _api(base, "sessions") or []:
        httpx.delete(f"{base}/api/sessions/{session['id']}", headers=headers, timeout=30, trust_env=False)


def _notebook_params(names: list[str]) -> list:
    """One pytest param per notebook (under ``scripts/test`` each is a work unit of its own:
    conftest.py's ``SPLIT_FILES``), or one that says why none runs."""
    if not names:
        return [pytest.param("", marks=pytest.mark.skip(
            reason="EDALAB_BROWSER_NOTEBOOKS chose no notebook (only the widget check runs)"))]
    return names


# The timeouts count the module's JupyterLab start too: it happens in the first item a worker runs.
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + LAB_START_TIMEOUT_S + 60)
@pytest.mark.parametrize("name", _notebook_params(NOTEBOOKS))
def test_notebook_runs_in_jupyterlab_without_errors(browser_lab, name):
    base, folder, page = browser_lab
    started = time.monotonic()
    _open(page, base, name)
    _run_all_and_wait(page, base, name, NOTEBOOK_TIMEOUT_S)
    saved = _save(page, folder, name)
    shot = _screenshot(page, name.removesuffix(".ipynb"))
    problems = _problems(page, saved)
    seconds = time.monotonic() - started
    _record_time(name, seconds)
    print(f"\n{name}: {seconds:.1f} s in the browser; screenshot {shot}")
    _shut_down_kernels(base)
    assert not problems, "\n".join(problems)
    images = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                 for c in saved["cells"] for o in c.get("outputs", []))
    if name[:2] != "00":  # every lesson after the setup draws its measurements
        assert images > 0, f"{name} showed no chart"


WIDGET_NOTEBOOK = {
    "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
              for source in ("import edalab\n\nlab = edalab.start()", "edalab.widgets.fan_out_widget(lab)")],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.timeout(300 + LAB_START_TIMEOUT_S)
def test_a_widget_reruns_with_a_changed_setting_and_shows_a_new_chart(browser_lab):
    base, folder, page = browser_lab
    name = "widget_check.ipynb"
    (folder / name).write_text(json.dumps(WIDGET_NOTEBOOK))
    started = time.monotonic()
    _open(page, base, name)
    _run_all_and_wait(page, base, name, 120)
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .widget-vbox").first
    widget.wait_for()
    transports = widget.locator(".widget-select-multiple", has_text="transports").locator("select")
    transports.select_option(["redis-pubsub"])  # the learner's change: only Redis pub/sub
    charts = widget.locator(".widget-output img")
    assert charts.count() == 0
    run = widget.locator("button", has_text="Run")
    run.click()
    # while it runs: the button is disabled and the run's progress bar shows under it
    page.wait_for_function("b => b.disabled", arg=run.element_handle(), timeout=10_000)
    widget.locator(".widget-output .widget-hprogress").first.wait_for(state="attached", timeout=60_000)
    charts.first.wait_for(timeout=180_000)
    page.wait_for_function("b => !b.disabled", arg=run.element_handle(), timeout=30_000)
    output = widget.locator(".widget-output").first.inner_text()
    shot = _screenshot(page, "widget_fan_out")
    _record_time("widget_check (fan_out_widget, one Run)", time.monotonic() - started)
    _shut_down_kernels(base)
    assert charts.count() == 1, output
    assert "redis-pubsub" in output and "kafka" not in output, output  # the changed setting was used
    assert "Error" not in output and "Loading widget" not in output, output  # the bar went away cleanly
    print(f"\nwidget: chart shown after Run; screenshot {shot}")
