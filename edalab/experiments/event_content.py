""""What goes in an event": a thin notification that makes consumers call back, or the whole order (notebook 10).

:func:`notification_vs_state` runs the orders service and its subscribers, each role
its own process (:class:`edalab.Scenario`), on a Kafka topic per design:

* **event-notification**: the event says "order 17 changed (version 3)"; each
  subscriber calls the service's REST API (``GET /orders/17``, a real HTTP server) for
  the order: one callback per event per subscriber;
* **state-transfer** (event-carried state transfer): the event carries the whole order;
  each subscriber keeps its own copy and calls nobody.

The run goes in steps with 1, 2, 4 ... subscribers of each kind (every subscriber
process starts with the run; one added in a later step gets the events from that step
on: :class:`~edalab.experiments._event_roles.FromStep`; each step ends with a short
pause, so its callbacks are answered before the next begins), measuring the callbacks, the requests per second
and the CPU they cost the source, the bytes per update and how long a subscriber's copy
lags the source (the stale-data window). In a last step the REST API is killed while
the service goes on publishing: callbacks fail, the state-transfer copies stay current.
Role bodies: :mod:`edalab.experiments._event_roles`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab.experiments._event_roles import FromStep, notified_consumer, order_api, order_source, state_consumer
from edalab.experiments._result import MethodRows
from edalab.harness import Scenario

__all__ = ["METHODS", "notification_vs_state", "EventContentResult", "order_updates"]

#: the two designs compared (the ``method`` column)
METHODS = ("event-notification", "state-transfer")
STATUSES = ("placed", "cooking", "ready", "served")
_QUIET_S = 0.4   # the pause at the end of each step (seconds)


def order_updates(count: int) -> list[dict]:
    """The first ``count`` order updates of the evening in ``data/`` (menu and orders).

    Each order goes placed -> cooking -> ready -> served; updates of different orders
    interleave in time order. An update is the whole order as the source stores it,
    with its ``version`` (1 for placed ... 4 for served) and the status history.
    """
    from edalab.workloads import menu, order_trace

    dishes = menu().set_index("item_id")
    moments = []
    for row in order_trace().itertuples():
        at = (row.placed_at_s, row.placed_at_s + 0.2, row.placed_at_s + 0.2 + row.cook_time_s,
              row.placed_at_s + 0.7 + row.cook_time_s)
        moments += [(t, int(row.order_id), k) for k, t in enumerate(at)]
    orders = {int(r.order_id): r for r in order_trace().itertuples()}
    updates = []
    for _, order_id, k in sorted(moments)[:count]:
        row = orders[order_id]
        dish = dishes.loc[row.item_id]
        updates.append({"order_id": order_id, "table": int(row.table), "item_id": row.item_id, "name": dish["name"],
                        "category": dish["category"], "quantity": int(row.quantity),
                        "price_eur": float(dish["price_eur"]),
                        "total_eur": round(float(dish["price_eur"]) * int(row.quantity), 2),
                        "cook_time_s": float(row.cook_time_s), "placed_at_s": float(row.placed_at_s),
                        "status": STATUSES[k], "history": list(STATUSES[:k + 1]), "version": k + 1})
    return updates


@dataclass
class EventContentResult(MethodRows):
    """What :func:`notification_vs_state` measured (notebook 10).

    Attributes:
        summary: one row per ``method`` and ``step``: ``subscribers``, ``phase`` ("up" or
            "source down"), ``updates``, ``event_bytes`` (mean per event), ``callbacks``,
            ``callbacks_per_update``, ``failed`` (callbacks that got no order),
            ``callback_bytes`` (mean answer size), ``bytes_per_update`` (what one
            subscriber received per update: event plus answer), ``newer_seen``
            (callbacks that found a later version than the event announced),
            ``latency_p50_ms``, ``latency_p90_ms`` (the stale-data window: source
            updated -> subscriber's copy caught up, successful copies only).
        source: one row per step: the REST API's ``requests_per_s`` and ``cpu_ms_per_s``.
        samples: one row per copy a subscriber made (``latency_ms`` is its stale window).
        params: the settings used.
    """

    summary: pd.DataFrame
    source: pd.DataFrame
    samples: pd.DataFrame
    params: dict = field(default_factory=dict)

    def step(self, method: str, subscribers: int, phase: str = "up") -> dict:
        """The summary row of ``method`` at ``subscribers`` in ``phase``."""
        s = self.summary
        rows = s[(s["method"] == method) & (s["subscribers"] == subscribers) & (s["phase"] == phase)]
        if rows.empty:
            raise ConfigError(f"No step {method!r} x{subscribers} ({phase}) in this result.")
        return rows.iloc[0].to_dict()

    def table(self) -> pd.DataFrame:
        return self.summary


def _validate(counts, rate_per_s, step_s, quick):
    if isinstance(counts, (str, int)) or not isinstance(counts, Sequence):
        raise ConfigError(f"subscriber_counts must be a list of counts, e.g. [1, 2, 4], not {counts!r}.")
    counts = sorted({_checks.count(n, "subscriber_counts", minimum=1, maximum=6) for n in counts})
    if not counts:
        raise ConfigError("subscriber_counts must list at least one count, e.g. [1, 2, 4].")
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="order updates per second", positive=True,
                                sensible=(2, 100))
    step_s = _checks.number((2.0 if quick else 4.0) if step_s is None else step_s, "step_s", unit="seconds",
                            positive=True, sensible=(1, 30))
    if step_s < 1.0:
        raise ConfigError(f"step_s must be at least 1 second (each step ends with a pause of {_QUIET_S:g} s), "
                          f"not {step_s:g}.")
    return counts, rate_per_s, step_s


def notification_vs_state(lab, *, subscriber_counts: Sequence[int] | None = None, rate_per_s: float = 20.0,
                          step_s: float | None = None, consumer: Callable = notified_consumer,
                          quick: bool | None = None, run_dir: str | Path | None = None,
                          progress: bool = True) -> EventContentResult:
    """Thin events with callbacks vs fat events, as subscribers grow, then with the source's API down (notebook 10).

    Args:
        lab: from :func:`edalab.start`.
        subscriber_counts: subscribers of each design per step (default 1, 2, 4; quick 1, 2).
        rate_per_s: order updates per second (each one thin and one fat event).
        step_s: seconds per step (default 4; quick 2); one more step runs with the API down.
        consumer: the event-notification subscriber's body ``(ctx, spec, api_url, group)``
            (default :func:`~edalab.experiments._event_roles.notified_consumer`).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
        progress: show a progress bar.
    """
    from edalab._servers import free_port

    quick = quick_mode(quick)
    counts = ((1, 2) if quick else (1, 2, 4)) if subscriber_counts is None else subscriber_counts
    counts, rate_per_s, step_s = _validate(counts, rate_per_s, step_s, quick)
    if not callable(consumer):
        raise ConfigError(f"consumer must be a role body consumer(ctx, spec, api_url, group), "
                          f"not {type(consumer).__name__}.")
    steps = [*counts, counts[-1]]                       # the last step: the API is down
    # Each step ends with a pause of _QUIET_S, so its last callbacks are answered before
    # the next step's subscribers join or the API is killed.
    per_step = int(rate_per_s * (step_s - _QUIET_S))
    schedule_s = [k * step_s + i / rate_per_s for k in range(len(steps)) for i in range(per_step)]
    updates = order_updates(len(schedule_s))
    if len(updates) < len(schedule_s):
        raise ConfigError(f"data/orders.csv has {len(updates)} order updates and this run needs "
                          f"{len(schedule_s)}: lower rate_per_s or step_s.")
    tag = uuid.uuid4().hex[:8]
    thin, fat = lab.transport("kafka", partitions=1), lab.transport("kafka", partitions=1)
    api_url = f"http://127.0.0.1:{free_port()}"
    sc = Scenario("event-content", run_dir=run_dir)
    sc.add("orders-api", order_api, kwargs=dict(port=int(api_url.rsplit(":", 1)[1]), redis_url=lab.redis_url,
                                                prefix=f"orders-{tag}"))
    sc.add("orders", order_source, kwargs=dict(redis_url=lab.redis_url, prefix=f"orders-{tag}", thin_spec=thin,
                                               fat_spec=fat, updates=updates, schedule_s=schedule_s,
                                               steps=[k for k in range(len(steps)) for _ in range(per_step)]))
    for i in range(1, counts[-1] + 1):
        first = next(k for k, n in enumerate(counts) if n >= i)   # the step subscriber i is added in
        sc.add(f"notified-{i}", consumer, ready_timeout_s=40.0,
               kwargs=dict(spec=FromStep(thin, first), api_url=api_url, group=f"n{i}-{tag}"))
        sc.add(f"state-{i}", state_consumer, ready_timeout_s=40.0,
               kwargs=dict(spec=FromStep(fat, first), group=f"s{i}-{tag}"))
    down_at_s = (len(steps) - 1) * step_s
    with sc.run(progress="subscribers growing" if progress else False) as run:
        run.at(down_at_s).kill("orders-api")
        run.wait_finished("orders", timeout_s=len(steps) * step_s + 60)
        # the subscribers there from the first step get every event; the others end with them
        run.until_delivered(len(schedule_s), roles=[f"notified-{i}" for i in range(1, counts[0] + 1)]
                            + [f"state-{i}" for i in range(1, counts[0] + 1)], each=True, timeout_s=20)
        run.sleep(0.3)
        gate_ns = run.gate_ns
    summary, source, samples = _analyse(sc.recorder, steps, step_s, gate_ns)
    params = dict(subscriber_counts=counts, rate_per_s=rate_per_s, step_s=step_s, quick=quick,
                  run_dir=str(sc.run_dir), down_at_s=down_at_s, consumer=getattr(consumer, "__name__", "consumer"))
    return EventContentResult(summary, source, samples, params)


def _analyse(recorder, steps: list[int], step_s: float, gate_ns: int):
    """Pure: the summary, the source's load per step and the samples, from the run's tables."""
    published, copies, load = recorder.table("published"), recorder.table("copies"), recorder.table("api_load")
    copies = copies.assign(latency_ms=(copies["applied_ns"] - copies["updated_ns"]) / 1e6)
    phase = {k: "source down" if k == len(steps) - 1 else "up" for k in range(len(steps))}
    rows, source = [], []
    for k, n in enumerate(steps):
        lo, hi = gate_ns + int(k * step_s * 1e9), gate_ns + int((k + 1) * step_s * 1e9)
        window = load[(load["t_ns"] >= lo) & (load["t_ns"] < hi)] if len(load) else load
        if len(window) >= 2:
            span_s = (window["t_ns"].iloc[-1] - window["t_ns"].iloc[0]) / 1e9
            requests = (window["requests"].iloc[-1] - window["requests"].iloc[0]) / span_s
            cpu = (window["cpu_s"].iloc[-1] - window["cpu_s"].iloc[0]) * 1000 / span_s
        else:                                            # the API was down all step
            requests = cpu = 0.0
        source.append({"step": k, "subscribers": n, "phase": phase[k], "requests_per_s": requests,
                       "cpu_ms_per_s": cpu})
        for method in METHODS:
            pub = published[(published["method"] == method) & (published["step"] == k)]
            got = copies[(copies["method"] == method) & (copies["step"] == k)]
            ok = got[got["ok"] == 1]
            updates = len(pub)
            calls = len(got) if method == "event-notification" else 0
            answer = float(ok["bytes"].mean()) if calls and len(ok) else 0.0
            rows.append({"method": method, "step": k, "subscribers": n, "phase": phase[k], "updates": updates,
                         "event_bytes": float(pub["bytes"].mean()) if updates else np.nan,
                         "copies": len(got), "callbacks": calls,
                         "callbacks_per_update": calls / updates if updates else np.nan,
                         "failed": int((got["ok"] == 0).sum()), "callback_bytes": answer,
                         "bytes_per_update": (float(pub["bytes"].mean()) if updates else 0.0) + answer,
                         "newer_seen": int((ok["version_seen"] > ok["version"]).sum()),
                         "latency_p50_ms": float(ok["latency_ms"].quantile(0.5)) if len(ok) else np.nan,
                         "latency_p90_ms": float(ok["latency_ms"].quantile(0.9)) if len(ok) else np.nan})
    return pd.DataFrame(rows), pd.DataFrame(source), copies
