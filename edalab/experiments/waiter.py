"""The waiter analogy: asking "is my order ready?" vs being told (notebook 01).

A small restaurant takes orders at random moments; the kitchen cooks each one for a
random time. The customer wants to know when the food is ready. Each ``method`` runs
the same orders on real servers, each role in its own process
(:mod:`edalab.experiments.waiter_roles`):

* **REST polling** (``"rest-poll"``): the kitchen posts ``order.placed`` and later
  ``order.ready`` to the HTTP event service, whose restaurant route answers
  ``GET /orders/{key}``; the customers ask it every ``poll_interval_s`` seconds until
  the answer is ``order.ready`` (one process plays all customers: one request per
  open order per interval, what many customers asking would cost the kitchen).
* **Events** (``"redis-pubsub"``, ``"kafka"``): the kitchen publishes ``order.ready``
  to a broker and one waiter, subscribed once, hears every order. The waiter's body
  is a parameter (``waiter=``): notebook 01 shows it in a cell to read and edit.

Per order the experiment measures the calls the listening side made, and the delay
between "the food is ready" (the kitchen created ``order.ready``) and "the customer
knows" (the answer or event reached the customers' or waiter's process). An event
method's calls are the waiter's requests shared equally over the orders: one
subscription, or one stream of broker fetches, serves every order.

Each method runs as one :class:`edalab.Scenario` with one start gate; the result is a
pure analysis of what the roles recorded (:mod:`edalab.experiments._waiter_tables`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edalab import _checks
from edalab._config import new_run_dir, quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.experiments import waiter_roles
from edalab.experiments._waiter_tables import DECIMALS, trial_tables
from edalab.harness import Scenario
from edalab.roles import Role
from edalab.workloads import restaurant_orders

__all__ = ["METHODS", "DECIMALS", "WaiterResult", "waiter_analogy", "expected_calls_per_order"]

#: The methods :func:`waiter_analogy` compares: REST polling and two event transports.
METHODS = ("rest-poll", "redis-pubsub", "kafka")

QUICK = dict(orders=10, cook_time_mean_s=1.0, poll_intervals_s=(0.2,))
FULL = dict(orders=40, cook_time_mean_s=2.0, poll_intervals_s=(0.2, 1.0))
#: Seconds the owner waits, after the kitchen's last order.ready, for the listener to hear it.
_SETTLE_S = 5.0


def expected_calls_per_order(poll_interval_s: float, cook_time_mean_s: float) -> float:
    """Mean "is it ready?" calls per order for the orders of :func:`edalab.workloads.restaurant_orders`.

    A customer asks ``poll_interval_s`` after ordering, then every ``poll_interval_s``,
    and the first ask after the food is ready hears "yes": ``ceil(cook / interval)``
    calls. With cook times uniform in [0.5, 1.5] x ``cook_time_mean_s`` this averages
    to about ``cook_time_mean_s / poll_interval_s + 0.5`` (computed exactly here). The
    round trip (about a millisecond) is left out. Both in seconds.
    """
    poll_interval_s = _checks.number(poll_interval_s, "poll_interval_s", unit="seconds", positive=True)
    cook_time_mean_s = _checks.number(cook_time_mean_s, "cook_time_mean_s", unit="seconds", positive=True)
    low, high = 0.5 * cook_time_mean_s / poll_interval_s, 1.5 * cook_time_mean_s / poll_interval_s
    # E[ceil(x)] for x uniform on [low, high]: integrate the step function piece by piece.
    edges = np.unique(np.concatenate([[low, high], np.arange(math.floor(low) + 1, math.ceil(high))]))
    widths = np.diff(edges)
    return float(np.sum(np.ceil(edges[:-1] + widths / 2) * widths) / (high - low))


@dataclass
class WaiterResult:
    """What :func:`waiter_analogy` measured (notebook 01).

    Numbers are rounded once, here (:data:`DECIMALS`: calls to 0.01, milliseconds to
    0.1, seconds to 0.001), so a table, a printed sentence and a chart legend show the
    same digits for the same number.

    Attributes:
        samples: one row per order and method: ``method``, ``poll_interval_s`` (NaN for
            events), ``label``, ``order``, ``key``, ``cook_s``, ``placed_at_s``,
            ``ready_at_s``, ``known_at_s`` (seconds after the gate; NaN if never known),
            ``calls`` (REST: that order's asks; events: every request the waiter made,
            subscribing included, shared equally over the orders) and ``latency_ms``
            (ready -> customer knows).
        summary: one row per method (and interval): ``orders``, ``heard``, ``lost``,
            ``calls_per_order``, ``model_calls_per_order`` (REST: ceil(cook/interval)
            averaged over this run's cook times), ``latency_mean_ms``,
            ``latency_p50_ms``, ``latency_p90_ms``, ``latency_max_ms``,
            ``requests_total`` = ``setup_requests`` (before the gate: SUBSCRIBE, group
            join fetches) + ``requests_open`` (after it), ``empty_responses`` (after the
            gate), ``open_s`` (gate until the last order was known). Kafka's requests
            are fetches; its heartbeats and offset commits are not counted. NaN where
            the listener's body reported no counters.
        asks: every REST ask: ``label``, ``order``, ``asked_at_s``, ``answered_at_s``,
            ``status``, ``ready`` (bool).
        kitchen: per method and order: ``label``, ``order``, ``placed_at_s``,
            ``ready_at_s``, ``stored_at_s`` (the transport confirmed the event).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    asks: pd.DataFrame
    kitchen: pd.DataFrame
    params: dict = field(default_factory=dict)

    def row(self, method: str, poll_interval_s: float | None = None) -> pd.Series:
        """The summary row of ``method`` (REST: the given interval, else the shortest)."""
        rows = self.summary[self.summary["method"] == method]
        if poll_interval_s is not None:
            rows = rows[np.isclose(rows["poll_interval_s"], poll_interval_s)]
        rows = rows.sort_values("poll_interval_s")
        if not len(rows):
            raise ConfigError(f"No {method!r} row in this result; it ran {self.labels}.")
        return rows.iloc[0]

    @property
    def labels(self) -> list[str]:
        """The labels of the trials, in the order they ran."""
        return list(self.summary["label"])


def _label(method: str, poll_interval_s: float) -> str:
    return f"rest-poll {poll_interval_s * 1000:g} ms" if method == "rest-poll" else method


def _check_waiter(body: Callable) -> Callable:
    """A waiter body must be ``body(ctx, spec)``; say so now, not from a crashed process."""
    if not callable(body):
        raise ConfigError(f"waiter must be a function waiter(ctx, spec), not {type(body).__name__}.")
    try:
        inspect.signature(body).bind(None, spec=None)
    except TypeError as exc:
        raise ConfigError(f"waiter must accept (ctx, spec), like the waiter cell of notebook 01: {exc}.") from None
    except ValueError:  # no signature to inspect (a builtin): let the role try
        pass
    return body


def _run_trial(trial_dir: Path, listener: tuple[str, Callable, dict], kitchen_spec,
               orders: list[dict], announce_placed: bool, settle_s: float) -> Scenario:
    """One method: the listener and the kitchen behind one gate; ends when all is heard."""
    sc = Scenario("waiter", run_dir=trial_dir)
    name, body, kwargs = listener
    sc.add(name, body, kwargs=kwargs, ready_timeout_s=45)
    sc.add("kitchen", waiter_roles.kitchen,
           kwargs={"spec": kitchen_spec, "orders": orders, "announce_placed": announce_placed})
    keys = {o["key"] for o in orders}
    last_ready_s = max((o["ready_at_s"] for o in orders), default=0.0)

    def everything_heard() -> bool:
        received = sc.recorder.received()
        return keys <= set(received.loc[received["role"] == name, "key"])

    with sc.run(progress=False) as run:
        run.wait_finished("kitchen", timeout_s=last_ready_s + 30.0)
        run.until(everything_heard, timeout_s=settle_s, step_s=0.05)
    return sc  # leaving the block stopped the listener cleanly (it writes its counters)


def waiter_analogy(lab, *, orders: int | None = None, poll_intervals_s: Sequence[float] | None = None,
                   cook_time_mean_s: float | None = None, order_rate_per_s: float = 4.0,
                   methods: Sequence[str] = METHODS, waiter: Callable | None = None,
                   quick: bool | None = None, seed: int = 1, run_dir: str | Path | None = None,
                   progress: bool = True) -> WaiterResult:
    """Run the restaurant every way in ``methods`` on ``lab``'s servers (notebook 01).

    Every method serves the same orders (same placement and cook times). All
    parameters are checked before anything starts: a wrong one raises ConfigError,
    one far outside the usual range warns (EdalabWarning) naming its unit.

    Args:
        lab: from :func:`edalab.start`.
        orders: orders per method, >= 1 (default 40; quick 10).
        poll_intervals_s: how often REST customers ask, a list of seconds (default
            [0.2, 1.0]; quick [0.2]).
        cook_time_mean_s: mean cooking time, seconds; each order cooks between half and
            one and a half times this (default 2.0; quick 1.0).
        order_rate_per_s: orders placed per second on average (random arrivals).
        methods: a list from :data:`METHODS` (default: all).
        waiter: the event methods' listener body ``waiter(ctx, spec)`` (default
            :func:`edalab.experiments.waiter_roles.waiter`, the one notebook 01 shows).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: same seed, same orders.
        run_dir: where the traces go (default a new folder under the runs directory).
        progress: show a progress bar over the methods.
    """
    quick = quick_mode(quick)
    defaults = QUICK if quick else FULL
    count = _checks.count(defaults["orders"] if orders is None else orders, "orders", minimum=1,
                          sensible_max=200)
    intervals = _checks.numbers(defaults["poll_intervals_s"] if poll_intervals_s is None else poll_intervals_s,
                                "poll_intervals_s", unit="seconds", positive=True, sensible=(0.01, 5.0))
    cook_mean_s = _checks.number(defaults["cook_time_mean_s"] if cook_time_mean_s is None else cook_time_mean_s,
                                 "cook_time_mean_s", unit="seconds", positive=True, sensible=(0.1, 20.0))
    rate = _checks.number(order_rate_per_s, "order_rate_per_s", unit="orders per second", positive=True,
                          sensible=(0.2, 50.0))
    seed = _checks.count(seed, "seed")
    methods = _checks.choices(methods, "methods", METHODS)
    waiter_body = _check_waiter(waiter_roles.waiter if waiter is None else waiter)
    root = Path(run_dir) if run_dir is not None else new_run_dir("waiter")
    trials = [(m, i) for m in methods for i in (intervals if m == "rest-poll" else (float("nan"),))]
    return _run(lab, trials, count, rate, cook_mean_s, seed, waiter_body, root, progress,
                params=dict(orders=count, poll_intervals_s=tuple(intervals), cook_time_mean_s=cook_mean_s,
                            order_rate_per_s=rate, methods=tuple(methods), quick=quick, seed=seed,
                            run_dir=str(root), custom_waiter=waiter is not None,
                            embedded_kafka=lab.kafka_embedded,
                            kafka_fetch_max_wait_ms=lab.kafka_defaults.fetch_max_wait_ms))


def _run(lab, trials, count, rate, cook_mean_s, seed, waiter_body, root: Path, progress: bool,
         params: dict) -> WaiterResult:
    from tqdm.auto import tqdm

    from edalab._recorder import Recorder
    from edalab._servers import free_port
    from edalab.transports.http import EventServiceSpec, serve_event_service
    from edalab.transports.http._restaurant import order_status_route

    base_url = f"http://127.0.0.1:{free_port()}"
    # One event service for every REST trial (keys differ per trial): started once, so
    # its start-up is not repeated per interval.
    service = Role("event-service", serve_event_service, Recorder(root / "event-service"),
                   kwargs={"base_url": base_url, "extra_routes": (order_status_route,)})
    tables: list[tuple] = []
    try:
        if any(m == "rest-poll" for m, _ in trials):
            service.start()
        bar = tqdm(trials, desc="waiter analogy", disable=not progress, leave=False)
        for method, interval in bar:
            label = _label(method, interval)
            bar.set_postfix_str(label)
            trial_name = label.replace(" ", "-")
            # Unique keys per trial: REST trials share one service, whose status route
            # must not answer from an earlier trial's orders.
            schedule = restaurant_orders(count, rate, cook_mean_s, seed, prefix=f"{trial_name}-order")
            if method == "rest-poll":
                spec = EventServiceSpec(base_url, mode="poll", poll_interval_s=interval)
                listener = ("customers", waiter_roles.customers,
                            dict(base_url=base_url, orders=schedule, poll_interval_s=interval))
                settle_s = max(_SETTLE_S, 3 * interval)
            else:
                spec = lab.transport(method)
                listener = ("waiter", waiter_body, dict(spec=spec))
                settle_s = _SETTLE_S
            sc = _run_trial(root / trial_name, listener, spec, schedule,
                            announce_placed=method == "rest-poll", settle_s=settle_s)
            tables.append(trial_tables(sc.recorder, listener[0], schedule, method, interval, label))
        bar.close()
    finally:
        service.stop(check=False)
    if not tables:
        raise ExperimentError("No trial ran; pass at least one method.")
    samples, summary, asks, kitchen = (pd.concat(part, ignore_index=True) for part in zip(*tables))
    return WaiterResult(samples=samples, summary=summary, asks=asks, kitchen=kitchen, params=params)
