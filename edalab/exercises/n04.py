"""Exercises of notebook 04 (when the listener is down).

**Lag and catch-up** (on paper). The scenario (:data:`SCENARIO`): billing was away
for ``down_s`` seconds while orders arrived at a steady ``rate_per_s``; once back it
bills ``capacity_per_s`` orders a second, and orders keep arriving meanwhile.

1. How many orders wait for billing when it is back (the lag)? :func:`check_lag_at_restart`
2. How many seconds until billing has caught up? :func:`check_catch_up_s`

**Change the consumer** (measured). Change billing so that it commits after every
order, predict how many orders are billed twice after a SIGKILL, and let
:func:`check_duplicates` run your billing body through the harness next to the
course's billing (:func:`measure_duplicates`) and compare.
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass
from typing import Callable

from edalab.exercises import Feedback, read_number

__all__ = ["SCENARIO", "check_lag_at_restart", "check_catch_up_s", "hint", "solution",
           "DuplicatesRun", "measure_duplicates", "judge_duplicates", "check_duplicates",
           "solution_billing", "duplicates_hint", "duplicates_solution"]

#: the exercise's numbers: seconds away, orders per second, orders billing handles per second
SCENARIO = {"down_s": 45.0, "rate_per_s": 12.0, "capacity_per_s": 40.0}
#: relative tolerance of the lag checks (answers may be rounded)
REL_TOL = 0.05


def _close(value: float, expected: float, abs_tol: float) -> bool:
    return abs(value - expected) <= max(abs_tol, REL_TOL * abs(expected))


def check_lag_at_restart(answer, down_s: float = SCENARIO["down_s"],
                         rate_per_s: float = SCENARIO["rate_per_s"]) -> Feedback:
    """Check the number of orders waiting when billing comes back (within 5 % or 1 order).

    ``down_s`` and ``rate_per_s`` default to :data:`SCENARIO`; pass other values to
    check a prediction for any outage, e.g. the one measured in the notebook.
    """
    value = read_number(answer, "the lag at restart", unit="orders", minimum=0)
    if isinstance(value, Feedback):
        return value
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
    """Check the seconds from billing's return until the lag is back to zero (within 5 %)."""
    value = read_number(answer, "the catch-up time", unit="seconds", positive=True)
    if isinstance(value, Feedback):
        return value
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
    """A nudge for the lag questions."""
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


# -- change the consumer: commit after every order ----------------------------------------


def solution_billing(ctx, spec, group="billing", work_ms=20.0, commit_interval_s=1.0):
    """Billing that commits after every order it billed (commit_interval_s is unused)."""
    subscriber = spec.subscriber(group)
    billed = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)
    in_hand = subscriber.take_over_pending()
    ctx.note("listening", claimed=len(in_hand))
    ctx.ready()
    while not ctx.stopping:
        batch, in_hand = in_hand or subscriber.receive(0.1), []
        for delivery in batch:
            time.sleep(work_ms / 1000)
            billed.record(delivery._replace(received_at_ns=time.time_ns()))
            subscriber.commit(through=delivery)  # this order is billed: hand back up to it
            ctx.note("committed")
    subscriber.close()


@dataclass(frozen=True)
class DuplicatesRun:
    """One measurement of :func:`measure_duplicates`: your billing and the course's, side
    by side on one topic, both killed at the same moment and restarted."""

    method: str
    produced: int
    yours_duplicated: int
    yours_lost: int
    reference_duplicated: int
    reference_lost: int
    commit_interval_s: float
    rate_per_s: float
    run_dir: str

    def __str__(self) -> str:
        return (f"{self.method}, {self.produced} orders at {self.rate_per_s:g}/s, SIGKILL half a "
                f"commit interval after the reference's commit: your billing billed "
                f"{self.yours_duplicated} twice and lost {self.yours_lost}; the reference (commit "
                f"every {self.commit_interval_s:g} s) billed {self.reference_duplicated} twice and "
                f"lost {self.reference_lost}.")


def measure_duplicates(lab, body: Callable, *, method: str = "redis-stream", rate_per_s: float = 40.0,
                       commit_interval_s: float = 1.0, work_ms: float = 5.0,
                       progress: bool = True) -> DuplicatesRun:
    """Run ``body`` and the course's billing on one topic, SIGKILL both mid-stream, count.

    Both consume every order (two consumer groups on one Kafka topic or Redis stream).
    A second after the gate the owner waits for the reference billing's next commit
    (its notes), kills both half a commit interval later, starts both again 0.3 s
    after that, stops the orders, and waits (at most 15 s) until both billed
    everything. About 7 s on Redis Streams, a few more on Kafka (group joins).
    """
    from edalab import _checks
    from edalab._errors import ConfigError
    from edalab.experiments.downtime import billing, billing_spec
    from edalab.harness import Scenario
    from edalab.roles import produce
    from edalab.workloads import steady

    if not callable(body):
        raise ConfigError(f"body must be a billing function like billing(ctx, spec, group, work_ms, "
                        f"commit_interval_s), not {type(body).__name__}.")
    method = _checks.choices([method], "method", ("kafka", "redis-stream"))[0]
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                sensible=(5, 200))
    commit_interval_s = _checks.number(commit_interval_s, "commit_interval_s", unit="seconds",
                                       positive=True, sensible=(0.2, 5))
    work_ms = _checks.number(work_ms, "work_ms", unit="ms", minimum=0, sensible=(0, 1000 / rate_per_s))
    spec = billing_spec(lab, method)
    sc = Scenario("n04-duplicates")
    args = dict(spec=spec, work_ms=work_ms, commit_interval_s=commit_interval_s)
    sc.add("billing-yours", body, kwargs={**args, "group": "billing-yours"}, ready_timeout_s=40)
    sc.add("billing-reference", billing, kwargs={**args, "group": "billing-reference"}, ready_timeout_s=40)
    sc.add("orders", produce, kwargs=dict(spec=spec, schedule_s=steady(rate_per_s, 60.0),
                                          event_type="order.placed"))
    names = ("billing-yours", "billing-reference")
    with sc.run(progress="your billing vs the course's" if progress else False) as run:
        run.sleep(1.0)
        since_ns = time.time_ns()

        def reference_committed() -> bool:
            notes = sc.recorder.notes("billing-reference")
            return bool(((notes["what"] == "committed") & (notes["at_ns"] >= since_ns)).any())

        run.until(reference_committed, timeout_s=3 * commit_interval_s, step_s=0.01)
        kill_s = run.elapsed_s() + commit_interval_s / 2
        for name in names:
            run.at(kill_s).kill(name)
            run.at(kill_s + 0.3).call(functools.partial(sc[name].start, wait=False),
                                      label=f"restart {name}")
        run.at(kill_s + 0.5).stop("orders")
        run.until(lambda: not sc["orders"].alive, timeout_s=kill_s - run.elapsed_s() + 30)

        def all_billed() -> bool:
            sent = set(sc.recorder.produced()["event_id"])
            received = sc.recorder.received()
            return all(sent <= set(received.loc[received["role"] == n, "event_id"]) for n in names)

        run.until(all_billed, timeout_s=15, step_s=0.2)
    produced = sc.recorder.produced()
    received = sc.recorder.received()
    counts = {}
    for name in names:
        mine = received[(received["role"] == name) & received["event_id"].isin(produced["event_id"])]
        distinct = mine["event_id"].nunique()
        counts[name] = (len(mine) - distinct, len(produced) - distinct)
    return DuplicatesRun(method, len(produced), *counts["billing-yours"], *counts["billing-reference"],
                         commit_interval_s, rate_per_s, str(sc.run_dir))


def judge_duplicates(prediction, measured: DuplicatesRun | None) -> Feedback:
    """Compare a prediction of the duplicates with a :class:`DuplicatesRun` (within 2 or 25 %)."""
    value = read_number(prediction, "your prediction of the orders billed twice", unit="orders",
                        minimum=0)
    if isinstance(value, Feedback):
        return value
    if not isinstance(measured, DuplicatesRun):
        return Feedback(False, "there is no measurement to compare with: run "
                               "n04.measure_duplicates(lab, my_billing) and pass its result.")
    yours, reference = measured.yours_duplicated, measured.reference_duplicated
    if measured.yours_lost:
        return Feedback(False, f"your billing lost {measured.yours_lost} orders: it committed orders "
                               f"it had not billed yet. commit() hands back everything received so far, the "
                               f"rest of the batch too: commit(through=delivery) hands back up to one order.")
    if abs(value - yours) <= max(2.0, 0.25 * yours):
        return Feedback(True, f"you predicted {value:g}; your billing billed {yours} orders twice "
                              f"after the SIGKILL, the reference (commit every "
                              f"{measured.commit_interval_s:g} s) {reference}. Duplicates = orders "
                              f"billed since the last commit; the price is one commit per order.")
    if abs(value - reference) <= max(2.0, 0.25 * reference) and abs(yours - reference) > 2:
        return Feedback(False, f"{value:g} is about what the reference billing got ({reference}). "
                               f"Yours billed {yours} twice: how many orders had it billed since its "
                               f"last commit when it was killed?")
    return Feedback(False, f"you predicted {value:g}, your billing billed {yours} orders twice "
                           f"(the reference {reference}). {duplicates_hint()}")


def check_duplicates(prediction, lab, body: Callable, *, method: str = "redis-stream") -> Feedback:
    """Check a prediction by running ``body`` (see :func:`measure_duplicates`) and judging it.

    An answer that is not a number is refused at once, before anything runs.
    """
    value = read_number(prediction, "your prediction of the orders billed twice", unit="orders",
                        minimum=0)
    if isinstance(value, Feedback):
        return value
    if not callable(body):
        return Feedback(False, f"pass your billing function itself (my_billing, without quotes or "
                               f"parentheses), not {body!r}.")
    return judge_duplicates(value, measure_duplicates(lab, body, method=method))


def duplicates_hint() -> str:
    """A nudge for the duplicates question."""
    return ("After a SIGKILL the new billing starts from the last commit: every order billed after "
            "that commit is billed again. How many orders can billing have billed between its last "
            "commit and the kill, if it commits after each one?")


def duplicates_solution() -> str:
    """The body that commits after every order, and why it gives (almost) no duplicates."""
    return (inspect.getsource(solution_billing)
            + "\nAt most one duplicate: only an order billed but not yet committed when the kill "
              "lands (the few ms between record and commit) comes again. The price: one commit "
              "request per order instead of one per second.")
