"""``edalab run``: every experiment of the catalog, its help, and its refusals.

One parametrised test checks each catalog entry's run with ``--quick`` (the entry's
smallest settings): the real ``edalab`` command, three runs at a time (see
``CONCURRENT_RUNS``), its files and its JSON summary. The refusal tests call the same
``main()`` in this process (no import cost); the help test runs the real command.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from edalab._cli import main
from edalab.experiments._catalog import CATALOG, names

from conftest import run_edalab

PNG = b"\x89PNG\r\n\x1a\n"


#: ``edalab run`` processes at a time: each waits mostly on its schedule and its servers,
#: so three share the 2 CI cores and the catalog takes about a third of the time in a row
CONCURRENT_RUNS = 3


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Every catalog entry run once with ``--quick --json`` as a user would, three at a time;
    name -> (CompletedProcess, out folder). Started together when the first test asks."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path_factory.mktemp("runs")

    def run(name):
        out = root / name
        return run_edalab("run", name, "--quick", "--out", str(out), "--json", timeout=600), out

    with ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        futures = {name: pool.submit(run, name) for name in names()}
        yield {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("entry", CATALOG, ids=names())
def test_each_experiment_runs_quick_and_writes_csv_png_and_json(entry, quick_runs):
    done, out = quick_runs[entry.name]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    answer = json.loads(done.stdout)  # --json alone: stdout is the JSON, the report went to stderr
    assert answer["experiment"] == entry.name and answer["quick"] is True, answer
    assert answer["summary"], answer  # the summary table, row by row
    assert entry.name in done.stderr and "wrote" in done.stderr, done.stderr
    # a progress bar said what ran (tqdm's text bar: "label: ... [00:01, ...]")
    assert "[00:" in done.stderr, f"{entry.name} showed no progress bar:\n{done.stderr[-2000:]}"
    csvs = [f for f in answer["files"] if f.endswith(".csv")]
    assert "summary.csv" in csvs, answer["files"]
    for name in csvs:
        assert len(pd.read_csv(out / name)) > 0 or name != "summary.csv", name
    assert len(pd.read_csv(out / "summary.csv")) == len(answer["summary"])
    pngs = [f for f in answer["files"] if f.endswith(".png")]
    assert len(pngs) == len(entry.charts) >= 1, answer["files"]
    for name in pngs:
        png = out / name
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5_000, name
    assert answer["params"].get("quick") in (True, None), answer["params"]


def test_polling_vs_push_json_file_has_the_headline_numbers(tmp_path):
    # the settings of one method and one interval: the smallest run with a model to compare
    out, summary = tmp_path / "pvp", tmp_path / "pvp.json"
    done = run_edalab("run", "polling-vs-push", "--quick", "--out", str(out), "--json", str(summary),
                      "--set", "methods=rest-poll", "--set", "events=6", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(summary.read_text())
    assert answer["settings"] == {"methods": ["rest-poll"], "events": 6}, answer["settings"]
    assert answer["headline"]["http_round_trip_ms"] > 0, answer["headline"]
    assert [row["method"] for row in answer["summary"]] == ["rest-poll"], answer["summary"]
    assert "http_round_trip_ms" in done.stdout and "summary.csv" in done.stdout, done.stdout


def test_help_lists_every_experiment():
    done = run_edalab("run", "--help")
    assert done.returncode == 0, done.stderr
    for entry in CATALOG:
        assert entry.name in done.stdout and entry.about[:40] in done.stdout, entry.name


@pytest.mark.parametrize("args, message", [
    (["nonsense"], "Unknown experiment 'nonsense'"),
    (["fan"], "Did you mean fan-out"),
    (["fan-out", "--set", "evnts=3"], "fan-out has no setting 'evnts'; it takes: services"),
    (["fan-out", "--set", "events"], "--set wants key=value"),
    (["fan-out", "--set", "body=print"], "is a function"),
    (["fan-out", "--set", "events=0"], "events"),                     # the experiment's own check
    (["waiter", "--set", "methods=carrier-pigeon"], "carrier-pigeon"),
])
def test_unknown_names_and_bad_settings_are_refused_without_a_traceback(tmp_path, capsys, args, message):
    assert main(["run", *args, "--out", str(tmp_path / "out")]) == 2  # in this process: no import cost
    err = capsys.readouterr().err
    assert err.startswith("edalab run: ") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_created_is_refused_before_anything_runs(capsys):
    started = time.monotonic()
    assert main(["run", "polling-vs-push", "--quick", "--out", "/proc/edalab-cannot-write-here"]) == 2
    err = capsys.readouterr().err
    assert "--out /proc/edalab-cannot-write-here cannot be created" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 5  # refused, not run
