"""Every experiment ``edalab run NAME`` knows: what to call, its quick settings, its CSVs and charts.

``edalab run NAME --out DIR`` looks ``NAME`` up in :data:`CATALOG`, starts a lab, calls the
experiment function, then writes one CSV per table of the result and one PNG per chart
into ``DIR``, prints the summary table and (``--json``) a JSON summary. ``--quick`` runs
the short CI version: the function's own quick mode plus the entry's ``quick`` settings,
the smallest run that still shows the lesson's point (CI runs every entry that way, in
tests/test_cli_run.py, so keep them small: a few seconds each). ``--set key=value``
changes one setting; the experiment checks it like any other call (ConfigError).

How to add an experiment (one entry, nothing else to edit)
------------------------------------------------------------
Append an :class:`Experiment` to :data:`CATALOG`, next to its notebook's entries::

    Experiment(
        name="retry-storm",                  # the CLI name: lowercase words joined by "-"
        notebook="09",
        about="what one run measures, in one line (shown by `edalab run --help`)",
        function="retry_storm",              # an attribute of edalab.experiments (add it to
                                             # _WHERE in edalab/experiments/__init__.py)
        quick={"events": 20},                # settings added to quick=True under --quick
        charts=("storm_timeline", "storm_bars"),  # attributes of edalab.plots
    ),

* ``function`` is called as ``function(lab, **settings, quick=..., run_dir=..., progress=True)``;
  ``lab``, ``run_dir`` and ``progress`` only where its signature has them. Its result
  needs a ``summary`` DataFrame (printed, and in the JSON) and ``params`` (in the JSON).
* Tables: by default every DataFrame attribute of the result (``samples``, ``summary``,
  ...) becomes ``<attribute>.csv``; pass ``tables=`` (result -> {name: DataFrame}) to choose.
* Charts: a name of an :mod:`edalab.plots` function, or a function of the result; one
  that takes ``ax`` gets a fresh Axes, one without returns its Figure. Each becomes
  ``<name>.png`` (a function's ``__name__``).
* ``headline`` (optional): result -> {label: number}, printed and put in the JSON.
* Then run ``EDALAB_QUICK=1 .venv/bin/python -m pytest -q tests/test_cli_run.py -k NAME``: the
  test is parametrised over this catalog and checks the CSVs, PNGs and JSON of your entry.

This module imports only the standard library at the top: ``edalab --help`` and
``edalab run --help`` read the catalog without loading pandas or matplotlib.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edalab._errors import ConfigError

__all__ = ["Experiment", "CATALOG", "names", "find", "help_text", "parse_settings", "run_experiment"]

#: parameters the runner fills in itself; ``--set`` may not name them
_RUNNER_PARAMETERS = ("lab", "quick", "run_dir", "progress")


@dataclass(frozen=True)
class Experiment:
    """One entry of :data:`CATALOG` (see the module docstring for how to add one)."""

    name: str
    notebook: str
    about: str
    function: str
    quick: Mapping[str, Any] = field(default_factory=dict)
    charts: tuple = ()
    tables: Callable[[Any], Mapping[str, Any]] | None = None
    headline: Callable[[Any], Mapping[str, Any]] | None = None

    def load(self) -> Callable:
        """The experiment function (imported now, not when the catalog is read)."""
        import edalab.experiments

        return getattr(edalab.experiments, self.function)


def _scale_headline(result) -> dict:
    from edalab import scale

    return {"scale model max relative error": scale.max_rel_error(result)}


def _polling_headline(result) -> dict:
    return {"http_round_trip_ms": round(float(result.rtt_ms), 2),
            "polling_model_max_relative_error": round(float(result.model_max_rel_error()), 3)}


#: Every experiment of the course, in notebook order. Quick settings: as small as the
#: experiment allows while still showing its point (CI runs each one).
CATALOG: tuple[Experiment, ...] = (
    # 01
    Experiment("waiter", "01", "asking 'is it ready?' (REST polling) vs being told (Redis pub/sub, Kafka)",
               "waiter_analogy", quick={"methods": ["rest-poll", "redis-pubsub"], "orders": 3, "cook_time_mean_s": 0.3,
                                        "poll_intervals_s": [0.05], "order_rate_per_s": 10},
               charts=("calls_per_order", "delay_per_order", "order_timeline")),
    # 02
    Experiment("polling-vs-push", "02", "delay and requests per event: polling at several intervals vs push",
               "polling_vs_push", quick={"methods": ["rest-poll", "sse", "redis-pubsub"], "events": 10,
                                         "rate_per_s": 40, "poll_intervals_s": [0.05]},
               charts=("latency_vs_interval", "latency_cdf", "requests_per_event", "cpu_per_role"),
               headline=_polling_headline),
    # 03
    Experiment("fan-out", "03", "one publish, every service gets every event (Kafka groups, Redis pub/sub)",
               "fan_out", quick={"transports": ["redis-pubsub"], "events": 8, "rate_per_s": 50},
               charts=("fan_out_deliveries",)),
    Experiment("competing-consumers", "03", "one group shares the work: which member got which keys",
               "competing_consumers", quick={"members": 2, "partitions": 2, "events": 8, "rate_per_s": 50, "keys": 4},
               charts=("events_per_member", "key_routing")),
    Experiment("rebalance", "03", "a member joins, later one leaves: how long the group stops",
               "rebalance", quick={"changes": ["join"], "duration_s": 3.0},
               charts=("rebalance_timeline", "rebalance_latency")),
    Experiment("rest-vs-broker", "03", "the producer's cost per event as services are added: REST calls vs one publish",
               "rest_vs_broker", quick={"methods": ["rest-sequential", "kafka"], "events": 5,
                                        "services_counts": [1, 2]},
               charts=("publish_time_vs_services",)),
    # 04
    Experiment("listener-down", "04", "billing down mid-stream (clean stop, SIGKILL): lost, late, duplicated",
               "listener_down", quick={"methods": ["redis-stream", "redis-pubsub"], "stop_modes": ["clean"],
                                        "before_s": 0.5, "down_s": 0.5, "after_s": 0.5, "rate_per_s": 10},
               charts=("outcome_bars", "lag_panels", "timeline_panels")),
    # 05
    Experiment("webhook-outage", "05", "receivers down: webhook, webhook with retries, a broker",
               "webhook_outage", quick={"broker": "redis-stream", "before_s": 0.5, "down_s": 0.5, "after_s": 0.5},
               charts=("webhook_delay", "outage_outcomes", "outage_timeline")),
    Experiment("adding-subscribers", "05", "the sender's cost per event as subscribers are added, one slow",
               "adding_subscribers",
               quick={"broker": "redis-stream", "counts": [1, 2], "events_per_step": 4, "slow_ms": 50},
               charts=("fan_out_cost", "slow_subscriber")),
    # 06
    Experiment("authorization-check", "06", "a question that needs its answer now: REST vs request/reply on Redis",
               "authorization_check", quick={"up_s": 0.5, "down_s": 0.5, "after_s": 0.5},
               charts=("call_timeline", "call_latency_bars")),
    Experiment("log-per-request", "06", "fire-and-forget log records: what each method adds and loses",
               "log_per_request",
               quick={"duration_s": 1.5, "methods": ["http-sync", "kafka-acks1", "redis-pubsub"]},
               charts=("emit_latency_bars", "log_loss_bars")),
    Experiment("paging-under-inserts", "06", "paging a REST list while records are added vs reading a topic",
               "paging_under_inserts", quick={"records": 40}, charts=("paging_bars",)),
    # 07
    Experiment("chain-vs-events", "07", "kill billing in an HTTP chain and in the event version",
               "chain_vs_events", quick={"duration_s": 3.0}, charts=("chain_outcomes", "chain_timeline")),
    Experiment("scale-consumers", "07", "one slow consumer, then more instances in its group: lag over time",
               "scale_consumers", quick={"duration_s": 2.0, "chain": False}, charts=("scaling_lag",)),
    # 08
    Experiment("broker-goes-down", "08", "kill or freeze the broker mid-stream: sent, acknowledged, lost",
               "broker_goes_down", quick={"storages": ["memory"], "faults": ["kill"], "before_s": 0.5,
                                           "down_s": 0.5, "after_s": 0.5},
               charts=("broker_outage_timeline", "broker_outage_counts")),
    Experiment("what-survives", "08", "write, SIGKILL the server, restart: what each storage kept",
               "what_survives", quick={"methods": ["tansu-memory", "valkey"], "events": 10},
               charts=("survival_bars",)),
    Experiment("delivery-guarantees", "09", "billing SIGKILLed between its work and its commit, per commit policy: lost and double charges", "delivery_guarantees", quick={"methods": ["redis-stream"], "events": 200}, charts=("delivery_outcomes",)),  # 09
    # 10
    Experiment("event-content", "10", "thin events with REST callbacks vs events carrying the order: source load, bytes, stale window, API down",
               "notification_vs_state", quick={"subscriber_counts": [1, 2], "step_s": 1.0, "rate_per_s": 10},
               charts=("source_load", "bytes_per_update", "stale_window", "source_down_copies")),
    Experiment("many-clients", "11", "N clients polling, long-polling and on SSE against one real HTTP server; the scale model against the run",
               "many_clients_sweep", quick={"clients": [20, 60], "poll_intervals_s": [0.2], "window_s": 1.0},
               charts=("run_crossover", "staleness_chart"), headline=_scale_headline),  # 11
    # 12
    Experiment("restaurant", "12", "data/'s restaurant REST-orchestrated vs event-choreographed, the kitchen killed",
               "restaurant_both_ways", quick={"orders": 12, "kill_at_s": 0.5, "down_s": 0.5},
               charts=("restaurant_timeline", "restaurant_costs")),
)


def names() -> list[str]:
    """The CLI names, in notebook order."""
    return [e.name for e in CATALOG]


def find(name: str) -> Experiment:
    """The entry called ``name``; ConfigError listing every name if there is none."""
    for entry in CATALOG:
        if entry.name == name:
            return entry
    close = [n for n in names() if name and (name in n or n in name)]
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown experiment {name!r}.{hint} Choose from: {', '.join(names())} "
                      f"(`edalab run --help` says what each does).")


def help_text() -> str:
    """The experiment list for ``edalab run --help``."""
    width = max(len(n) for n in names())
    rows = [f"  {e.name:<{width}}  {e.notebook}  {e.about}" for e in CATALOG]
    return "experiments (name, notebook, what it measures):\n" + "\n".join(rows)


def _settable(function: Callable) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(function).parameters.items()
            if n not in _RUNNER_PARAMETERS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _is_body(parameter: inspect.Parameter) -> bool:
    """A role body or other function: a notebook passes one, the command line cannot."""
    return callable(parameter.default) or "Callable" in str(parameter.annotation)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if "," in text:
            return [_parse_value(part.strip()) for part in text.split(",") if part.strip()]
        return text


def parse_settings(entry: Experiment, pairs: list[str] | None) -> dict:
    """``["events=20", "methods=kafka,sse"]`` -> ``{"events": 20, "methods": ["kafka", "sse"]}``.

    Values are Python literals (``20``, ``0.5``, ``[1, 2]``, ``'text'``); a bare word is a
    string; ``a,b`` is a list. A single value for a setting whose default is a list
    becomes a one-item list. Unknown names, and functions (role bodies: only a notebook
    can pass those), are refused with the list of settable names.
    """
    parameters = _settable(entry.load())
    settings = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set wants key=value (e.g. --set events=20), not {pair!r}.")
        if key not in parameters:
            raise ConfigError(f"{entry.name} has no setting {key!r}; it takes: "
                              f"{', '.join(n for n, p in parameters.items() if not _is_body(p))}.")
        default = parameters[key].default
        if _is_body(parameters[key]):
            raise ConfigError(f"{key} of {entry.name} is a function (a role body); a notebook can pass "
                              f"your own, the command line cannot.")
        value = _parse_value(text.strip())
        wants_list = isinstance(default, (list, tuple)) or any(
            word in str(parameters[key].annotation) for word in ("Sequence", "list[", "tuple["))
        if wants_list and isinstance(value, (str, int, float)):
            value = [value]
        settings[key] = value
    return settings


def _frames(result) -> dict:
    """Every DataFrame attribute of ``result``, by attribute name."""
    import pandas as pd

    fields = getattr(result, "__dataclass_fields__", None) or vars(result)
    return {name: getattr(result, name) for name in fields
            if isinstance(getattr(result, name, None), pd.DataFrame)}


def _plain(value):
    """``value`` as JSON can hold it: numbers, strings, lists, dicts; NaN -> None."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if not isinstance(value.index, pd.RangeIndex) else value
        return json.loads(frame.to_json(orient="records", date_format="iso"))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if callable(value):
        return getattr(value, "__qualname__", repr(value))
    return str(value)


def _chart(chart, result):
    """Draw one chart of ``result``; returns (file stem, Figure)."""
    import matplotlib.pyplot as plt

    import edalab.plots

    draw = getattr(edalab.plots, chart) if isinstance(chart, str) else chart
    stem = chart if isinstance(chart, str) else draw.__name__
    if "ax" in inspect.signature(draw).parameters:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        draw(result, ax=ax)
    else:
        drawn = draw(result)
        fig = drawn if isinstance(drawn, plt.Figure) else drawn.figure
    return stem, fig


def run_experiment(name: str, out: Path, *, quick: bool = False, settings: Mapping[str, Any] | None = None,
                   json_to: str | None = None) -> dict:
    """``edalab run``: run ``name`` on a fresh lab, write CSVs and PNGs into ``out``, report.

    Settings are checked by the experiment before anything starts (ConfigError).
    ``json_to``: ``"-"`` prints the JSON summary on stdout (the human-readable report
    then goes to stderr), a path writes it there. Returns the summary as a dict.
    """
    entry = find(name)
    function = entry.load()
    chosen = dict(settings or {})
    parameters = inspect.signature(function).parameters
    kwargs = {**(entry.quick if quick else {}), **chosen}
    kwargs["quick"] = True if quick else None  # not --quick: $EDALAB_QUICK decides, as in a notebook
    out = Path(out)
    created = not out.exists()
    try:  # before anything runs: a run whose results cannot be written is not worth starting
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be created ({exc.strerror or exc}); choose a folder "
                          f"you can write to.") from None
    if "run_dir" in parameters:
        kwargs["run_dir"] = out / "traces"
    if "progress" in parameters:
        kwargs["progress"] = True  # text bars on stderr: what runs, how far
    report = sys.stderr if json_to == "-" else sys.stdout

    import matplotlib

    matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    import edalab
    from edalab import plots

    plots.use_course_style()
    print(f"Running {entry.name} (notebook {entry.notebook}){' in quick mode' if quick else ''}...",
          file=report, flush=True)
    started = time.monotonic()
    try:
        if "lab" in parameters:
            with edalab.start() as lab:
                result = function(lab, **kwargs)
        else:
            result = function(**kwargs)
    except ConfigError:
        if created:  # refused settings: nothing ran, leave no empty folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    elapsed_s = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    files = []
    for table, frame in (entry.tables or _frames)(result).items():
        frame.to_csv(out / f"{table}.csv", index=not isinstance(frame.index, pd.RangeIndex))
        files.append(f"{table}.csv")
    for chart in entry.charts:
        stem, fig = _chart(chart, result)
        fig.savefig(out / f"{stem}.png", dpi=110, bbox_inches="tight")  # legends may sit outside
        plt.close(fig)
        files.append(f"{stem}.png")
    summary = getattr(result, "summary", None)
    headline = dict(entry.headline(result)) if entry.headline else {}
    if summary is not None:
        print(summary.to_string(float_format=lambda v: f"{v:.2f}"), file=report)
    for label, value in headline.items():
        print(f"{label}: {value}", file=report)
    print(f"{entry.name} took {elapsed_s:.1f} s; wrote {len(files)} files to {out}: {', '.join(files)}",
          file=report)
    answer = {"experiment": entry.name, "notebook": entry.notebook, "quick": quick,
              "settings": _plain(chosen), "elapsed_s": round(elapsed_s, 2), "out": str(out), "files": files,
              "headline": _plain(headline), "params": _plain(getattr(result, "params", {})),
              "summary": _plain(summary) if summary is not None else None}
    if json_to == "-":
        print(json.dumps(answer, indent=1, allow_nan=False))
    elif json_to:
        Path(json_to).write_text(json.dumps(answer, indent=1, allow_nan=False) + "\n")
    return answer
