"""Exercise of notebook 04 (when the listener is down): predict the lag and the catch-up.

The scenario (:data:`SCENARIO`): billing was away for ``down_s`` seconds while orders
arrived at a steady ``rate_per_s``; once back it can bill ``capacity_per_s`` orders a
second, and orders keep arriving meanwhile.

1. How many orders are waiting for billing at the moment it is back (the lag)?
   :func:`check_lag_at_restart`
2. How many seconds after that until billing has caught up (lag back to zero)?
   :func:`check_catch_up_s`
"""

from __future__ import annotations

import math

from edalab.exercises import Feedback

__all__ = ["SCENARIO", "check_lag_at_restart", "check_catch_up_s", "hint", "solution"]

#: the exercise's numbers: seconds away, orders per second, orders billing handles per second
SCENARIO = {"down_s": 45.0, "rate_per_s": 12.0, "capacity_per_s": 40.0}
#: relative tolerance of the checks (answers may be rounded)
REL_TOL = 0.05


def _number(answer) -> float | None:
    if isinstance(answer, bool):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _close(value: float, expected: float, abs_tol: float) -> bool:
    return abs(value - expected) <= max(abs_tol, REL_TOL * abs(expected))


def check_lag_at_restart(answer, down_s: float = SCENARIO["down_s"],
                         rate_per_s: float = SCENARIO["rate_per_s"]) -> Feedback:
    """Check the number of orders waiting when billing comes back (within 5 % or 1 order).

    ``down_s`` and ``rate_per_s`` default to :data:`SCENARIO`; pass other values to
    check your prediction for any outage, e.g. the one measured in the notebook.
    """
    value = _number(answer)
    if value is None:
        return Feedback(False, f"Give a number of orders, not {answer!r}.")
    expected = rate_per_s * down_s
    if _close(value, expected, 1.0):
        return Feedback(True, f"{value:g} orders wait: every order of the {down_s:g} s outage "
                              f"(at {rate_per_s:g} per second) is still in the topic, none was lost.")
    if _close(value, down_s, 0.5):
        return Feedback(False, "That is the outage in seconds. How many orders arrive in that time?")
    if _close(value, down_s * rate_per_s / 2, 1.0):
        return Feedback(False, "Half of it: the lag counts every order since billing went away, "
                               "not the average wait.")
    return Feedback(False, f"{value:g} is not it. Orders keep arriving at a steady rate while "
                           f"nobody reads them; nothing is removed from the topic.")


def check_catch_up_s(answer, down_s: float = SCENARIO["down_s"],
                     rate_per_s: float = SCENARIO["rate_per_s"],
                     capacity_per_s: float = SCENARIO["capacity_per_s"]) -> Feedback:
    """Check the seconds from billing's return until the lag is back to zero (within 5 %).

    Parameters default to :data:`SCENARIO`.
    """
    value = _number(answer)
    if value is None:
        return Feedback(False, f"Give a number of seconds, not {answer!r}.")
    if capacity_per_s <= rate_per_s:
        return Feedback(False, "With capacity_per_s <= rate_per_s billing never catches up; "
                               "pick a scenario where it is faster than the orders.")
    backlog = rate_per_s * down_s
    expected = backlog / (capacity_per_s - rate_per_s)
    if _close(value, expected, 0.05):
        return Feedback(True, f"{value:g} s: the backlog of {backlog:g} orders shrinks by only "
                              f"{capacity_per_s - rate_per_s:g} a second, because "
                              f"{rate_per_s:g} new orders arrive every second meanwhile.")
    if _close(value, backlog / capacity_per_s, 0.05):
        return Feedback(False, "That would be right if no new orders arrived while billing catches "
                               "up. They do: how fast does the backlog really shrink?")
    if _close(value, backlog / rate_per_s, 0.05):
        return Feedback(False, "That divides by the order rate. Billing works through the backlog at "
                               "its own speed, minus the new orders coming in.")
    return Feedback(False, f"{value:g} s is not it. Think of the backlog as a bathtub: billing "
                           f"drains it, new orders fill it.")


def hint() -> str:
    """A nudge for both questions."""
    return ("1. The topic keeps every order that nobody read: count the orders that arrived during "
            "the outage.\n"
            "2. After the restart billing removes capacity_per_s orders a second from the backlog, "
            "but rate_per_s new ones arrive every second. By how much does the backlog shrink each "
            "second?")


def solution() -> str:
    """The worked answer for :data:`SCENARIO`."""
    d, r, c = SCENARIO["down_s"], SCENARIO["rate_per_s"], SCENARIO["capacity_per_s"]
    backlog = r * d
    return (f"1. lag at restart = rate x time away = {r:g}/s x {d:g} s = {backlog:g} orders.\n"
            f"2. the backlog shrinks by capacity - rate = {c:g} - {r:g} = {c - r:g} orders/s, so "
            f"catching up takes {backlog:g} / {c - r:g} = {backlog / (c - r):.2f} s.\n"
            f"   In general: catch-up = rate x down / (capacity - rate). As the rate approaches "
            f"the capacity, catching up takes longer and longer: a consumer that runs near its "
            f"limit may take hours to recover from minutes of downtime.")
