"""Notebook 11's exercise: meet a budget (servers, delay) by picking the method and poll interval.

The learner writes ``choose(calibration, budget) -> {"method": ..., "poll_interval_s": ...}``.
:func:`check_chooser` runs it on budgets built from the run's own calibration (so a
different machine gets budgets it can meet) and judges each choice with
:func:`edalab.scale.predict`: within the servers and the mean delay allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from edalab.exercises import Feedback, read_number

__all__ = ["check_choice", "check_chooser", "example_budgets", "hint", "solution", "reference_choose"]

_INTERVALS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Push first: where push and polling need as many servers, the budget's answer is push
# (it also has the shorter delay).
_PUSH_METHODS = ("sse", "long-poll")


def check_choice(calibration, budget: dict, choice) -> Feedback:
    """Is ``choice`` (``{"method", "poll_interval_s"}``) within ``budget`` by the model?

    ``budget``: ``clients``, ``update_rate_per_s``, ``max_servers``, ``max_delay_ms``.
    """
    from edalab import scale

    if not isinstance(choice, dict) or "method" not in choice:
        return Feedback(False, f"the choice must be a dict like {{'method': 'sse'}} or "
                               f"{{'method': 'rest-poll', 'poll_interval_s': 2.0}}, not {choice!r}.")
    method = choice["method"]
    if method not in scale.METHODS:
        return Feedback(False, f"method must be one of {', '.join(scale.METHODS)}, not {method!r}.")
    interval = 1.0
    if method == "rest-poll":
        interval = read_number(choice.get("poll_interval_s"), "poll_interval_s", unit="seconds", positive=True)
        if isinstance(interval, Feedback):
            return interval
    p = scale.predict(calibration, method, [budget["clients"]], poll_interval_s=interval,
                      update_rate_per_s=budget["update_rate_per_s"]).iloc[0]
    what = f"{method}" + (f" every {interval:g} s" if method == "rest-poll" else "")
    problems = []
    if p["servers"] > budget["max_servers"]:
        problems.append(f"needs {p['servers']:.0f} servers (budget {budget['max_servers']:g}; "
                        f"limited by {p['bottleneck']})")
    if p["latency_mean_ms"] > budget["max_delay_ms"]:
        problems.append(f"a mean delay of {p['latency_mean_ms']:.0f} ms (budget {budget['max_delay_ms']:g} ms)")
    if problems:
        return Feedback(False, f"for {budget['clients']:,.0f} clients and {budget['update_rate_per_s']:g} "
                               f"updates/s, {what} " + " and ".join(problems) + ".")
    return Feedback(True, f"{what}: {p['servers']:.0f} server(s), mean delay {p['latency_mean_ms']:.0f} ms.")


def _cheapest_within(calibration, budget: dict, methods=(*_PUSH_METHODS, "rest-poll")) -> tuple | None:
    """(servers, choice) of the fewest servers whose mean delay is within the budget, or None."""
    from edalab import scale

    best = None
    for method in methods:
        if method not in calibration.cpu_curves:
            continue
        for interval in (_INTERVALS_S if method == "rest-poll" else (1.0,)):
            p = scale.predict(calibration, method, [budget["clients"]], poll_interval_s=interval,
                              update_rate_per_s=budget["update_rate_per_s"]).iloc[0]
            if p["latency_mean_ms"] <= budget["max_delay_ms"] and (best is None or p["servers"] < best[0]):
                best = (p["servers"], {"method": method, "poll_interval_s": interval})
    return best


def example_budgets(calibration) -> list[dict]:
    """Two budgets built from this calibration: push is the answer to the first, polling to the second.

    * **rare**: a status of 200,000 clients that changes 0.01 times a second and must be
      known within a second (or just above push's own predicted delay, if that is longer). Push
      holds a connection per client and sends almost nothing; polling fast enough for
      that delay asks 200,000 / interval questions a second, which takes more servers.
    * **fast**: a value for 1,000,000 clients that changes 20 times a second and may be
      two minutes old. Polling every two minutes holds no connection between polls
      (longer than the server's keep-alive), so a server or two carry it; push holds a
      million connections whatever its CPU costs, so the connection cap alone needs
      ``clients / max_connections`` servers.

    The reasons are a connection count and a ratio of request rates, not this machine's
    speed or load; the split is checked here (a calibration without a push method gets
    the same budgets, unchecked). ``max_servers`` is the fewest servers within the delay.
    """
    from edalab import scale
    from edalab._errors import ConfigError

    push = [m for m in _PUSH_METHODS if m in calibration.cpu_curves]
    rare = {"clients": 200_000, "update_rate_per_s": 0.01, "max_delay_ms": 1000.0}
    if push:
        push_delay_ms = min(float(scale.predict(calibration, m, [rare["clients"]],
                                                update_rate_per_s=rare["update_rate_per_s"])
                                  ["latency_mean_ms"].iloc[0]) for m in push)
        # push must be able to meet it (the same model judges, so 100 ms more is enough); any
        # longer and polling slowly enough for it would need fewer servers
        rare["max_delay_ms"] = max(rare["max_delay_ms"], 100.0 * (math.ceil(push_delay_ms / 100) + 1))
    fast = {"clients": 1_000_000, "update_rate_per_s": 20.0, "max_delay_ms": 120_000.0}
    for budget in (rare, fast):
        best = _cheapest_within(calibration, budget)
        budget["max_servers"] = float(best[0]) if best else float("inf")
    if push and "rest-poll" in calibration.cpu_curves:
        # strictly: a choice of the other kind within the delay needs more servers than the budget
        poll_rare = _cheapest_within(calibration, rare, ("rest-poll",))
        push_fast = _cheapest_within(calibration, fast, push)
        if not (poll_rare is None or poll_rare[0] > rare["max_servers"]) or not (
                push_fast is None or push_fast[0] > fast["max_servers"]):
            raise ConfigError("this calibration's costs do not tell push from polling on the example budgets "
                              f"(rare status: polling {poll_rare}, push budget {rare['max_servers']:g} servers; "
                              f"fast value: push {push_fast}, polling budget {fast['max_servers']:g}): its "
                              "per-request cost is far from a Python server's (see calibration.cpu_curves); "
                              "rerun the sweep.")
    return [rare, fast]


def check_chooser(choose: Callable, calibration, budgets: list[dict] | None = None) -> Feedback:
    """Run the learner's ``choose(calibration, budget)`` on each budget and judge every choice."""
    if not callable(choose):
        return Feedback(False, f"pass your function choose(calibration, budget), not {choose!r}.")
    budgets = example_budgets(calibration) if budgets is None else budgets
    lines = []
    for budget in budgets:
        try:
            choice = choose(calibration, dict(budget))
        except Exception as exc:  # the learner's code: say what broke, do not crash the notebook
            return Feedback(False, f"choose() raised {type(exc).__name__}: {exc}")
        verdict = check_choice(calibration, budget, choice)
        if not verdict:
            return verdict
        lines.append(verdict.message)
    return Feedback(True, "every budget met: " + " | ".join(lines))


def reference_choose(calibration, budget: dict) -> dict:
    """The reference: of every method and a ladder of poll intervals, the fewest servers within the delay."""
    best = _cheapest_within(calibration, budget)
    return best[1] if best else {"method": "sse"}


def hint() -> str:
    return ("Try each method (and polling at intervals from 0.1 s to a few minutes) with "
            "edalab.scale.predict(calibration, method, [budget['clients']], poll_interval_s=..., "
            "update_rate_per_s=budget['update_rate_per_s']) and keep the one with the fewest servers whose "
            "latency_mean_ms is within the budget. Look at the bottleneck column too: a poller that waits "
            "longer than the server's keep-alive holds no connection between polls.")


def solution() -> str:
    return ("def choose(calibration, budget):\n"
            "    best = None\n"
            "    for method, interval in [('sse', 1.0), ('long-poll', 1.0)] + "
            "[('rest-poll', t) for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)]:\n"
            "        p = edalab.scale.predict(calibration, method, [budget['clients']], poll_interval_s=interval,\n"
            "                                 update_rate_per_s=budget['update_rate_per_s']).iloc[0]\n"
            "        if p['latency_mean_ms'] <= budget['max_delay_ms'] and (best is None or p['servers'] < best[0]):\n"
            "            best = (p['servers'], {'method': method, 'poll_interval_s': interval})\n"
            "    return best[1]")
