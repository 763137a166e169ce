"""Notebook 11's exercise: meet a budget (servers, delay) by picking the method and poll interval.

The learner writes ``choose(calibration, budget) -> {"method": ..., "poll_interval_s": ...}``.
:func:`check_chooser` runs it on budgets built from the run's own calibration (so a
different machine gets budgets it can meet) and judges each choice with
:func:`edalab.scale.predict`: within the servers and the mean delay allowed.
"""

from __future__ import annotations

from collections.abc import Callable

from edalab.exercises import Feedback, read_number

__all__ = ["check_choice", "check_chooser", "example_budgets", "hint", "solution", "reference_choose"]

_INTERVALS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


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


def _cheapest_within(calibration, budget: dict) -> dict | None:
    from edalab import scale

    best = None
    for method in scale.METHODS:
        if method not in calibration.cpu_curves:
            continue
        for interval in (_INTERVALS_S if method == "rest-poll" else (1.0,)):
            p = scale.predict(calibration, method, [budget["clients"]], poll_interval_s=interval,
                              update_rate_per_s=budget["update_rate_per_s"]).iloc[0]
            if p["latency_mean_ms"] <= budget["max_delay_ms"] and (best is None or p["servers"] < best[0]):
                best = (p["servers"], {"method": method, "poll_interval_s": interval})
    return best


def example_budgets(calibration) -> list[dict]:
    """Budgets a choice can meet on this calibration: a rarely changing status that must arrive within seconds,
    and a fast-changing value that may be seconds old."""
    budgets = []
    for clients, rate, delay_ms in ((200_000, 0.01, 1500.0), (1_000_000, 20.0, 4000.0)):
        budget = {"clients": clients, "update_rate_per_s": rate, "max_delay_ms": delay_ms}
        best = _cheapest_within(calibration, budget)
        budget["max_servers"] = float(best[0]) if best else float("inf")
        budgets.append(budget)
    return budgets


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
    return ("Try each method (and polling at several intervals) with edalab.scale.predict(calibration, "
            "method, [budget['clients']], poll_interval_s=..., update_rate_per_s=budget['update_rate_per_s']) "
            "and keep the one with the fewest servers whose latency_mean_ms is within the budget.")


def solution() -> str:
    return ("def choose(calibration, budget):\n"
            "    best = None\n"
            "    for method, interval in [('sse', 1.0), ('long-poll', 1.0)] + "
            "[('rest-poll', t) for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)]:\n"
            "        p = edalab.scale.predict(calibration, method, [budget['clients']], poll_interval_s=interval,\n"
            "                                 update_rate_per_s=budget['update_rate_per_s']).iloc[0]\n"
            "        if p['latency_mean_ms'] <= budget['max_delay_ms'] and (best is None or p['servers'] < best[0]):\n"
            "            best = (p['servers'], {'method': method, 'poll_interval_s': interval})\n"
            "    return best[1]")
