"""Notebook 12's capstone: the restaurant of ``data/`` built both ways, on the same orders.

:func:`restaurant_both_ways` runs two restaurants side by side, every service its
own process, both fed the committed order trace (``data/orders.csv``, prices from
``data/menu.csv``) by their own guest:

* ``rest``: REST-orchestrated. The orders service calls stock, kitchen and billing
  over real HTTP, one after the other, and waits for each
  (:func:`~edalab.experiments._restaurant_roles.orders_service`,
  :func:`~edalab.experiments._restaurant_roles.rest_service`).
* ``kafka``: event-choreographed on the embedded Kafka-protocol broker. The orders
  service publishes ``order.placed``; stock, kitchen and billing each consume it in
  their own group; the kitchen publishes ``order.cooked``, which the orders service
  consumes to know the dish is served
  (:func:`~edalab.experiments._restaurant_roles.event_service`).

The timeline kills both kitchens at ``kill_at_s`` and starts them again ``down_s``
later. Measured end to end: order-to-served latency, requests per order, CPU per
service, and what became of the orders placed while the kitchen was away.

:func:`add_event_restaurant` declares the event version in any scenario: the
loyalty exercise (``edalab.exercises.n12``) adds its subscriber next to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab.experiments._chain_roles import guest
from edalab.experiments._restaurant_analysis import analyse_restaurant, served_orders
from edalab.experiments._restaurant_roles import SERVICES, event_service, orders_service, rest_service
from edalab.harness import Scenario
from edalab.experiments._result import MethodRows

__all__ = ["restaurant_both_ways", "RestaurantResult", "add_event_restaurant", "evening", "METHODS"]

#: the two designs, as the ``method`` column names them
METHODS = ("rest", "kafka")
_GUEST_CONCURRENCY = 64  # orders a guest may have waiting at once: enough for the busiest minute


@dataclass
class RestaurantResult(MethodRows):
    """What :func:`restaurant_both_ways` measured (notebook 12).

    Attributes:
        samples: one row per method and order: ``method``, ``order``, ``order_id``,
            ``placed_s`` (after the gate), ``accepted`` (the guest got 200), ``status``,
            ``served_s`` (NaN if never), ``latency_ms`` (placed -> served), ``cook_ms``,
            ``overhead_ms`` (latency minus cooking), ``outcome`` (``served``,
            ``waited``: served after the kitchen came back though placed before,
            ``failed``, ``lost``: accepted, never served).
        summary: one row per method: ``orders``, ``served``, ``waited``, ``failed``,
            ``lost``, ``cooked_twice``, ``latency_p50_ms``, ``latency_p99_ms``,
            ``overhead_p50_ms`` (latency minus cooking, orders the outage did not
            touch), ``calls_per_order`` (requests someone waited for: HTTP
            calls and publishes), ``fetches_per_order`` (Kafka fetch requests),
            ``cpu_s`` (all services).
        cpu: one row per method and service: ``method``, ``service``, ``cpu_s``.
        kitchen_away_s: per method, (killed, ready again) in seconds after the gate.
        params: the settings of the run.
    """

    samples: object
    summary: object
    cpu: object
    kitchen_away_s: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def row(self, method: str) -> dict:
        """The summary row of ``method`` as a dict (counts as whole numbers)."""
        return {k: (int(v) if k in _COUNTS else v) for k, v in super().row(method).items()}


_COUNTS = ("orders", "served", "waited", "failed", "lost", "cooked_twice")


def evening(orders: int, speed: float) -> list[dict]:
    """The first ``orders`` orders of ``data/orders.csv``, ``speed`` times faster, as dicts.

    Each: ``order`` (0, 1, ...: the guest's sequence), ``order_id``, ``placed_s``,
    ``table``, ``item_id``, ``quantity``, ``amount_eur`` (price x quantity) and
    ``cook_s`` (the trace's cook time divided by ``speed``).
    """
    from edalab.workloads import menu, order_trace

    trace = order_trace()
    orders = _checks.count(orders, "orders", minimum=1, maximum=len(trace), what="orders of data/orders.csv")
    speed = _checks.number(speed, "speed", unit="times faster than the trace", positive=True, sensible=(0.5, 8))
    prices = menu().set_index("item_id")["price_eur"]
    return [dict(order=n, order_id=int(r.order_id), placed_s=float(r.placed_at_s) / speed, table=int(r.table),
                 item_id=str(r.item_id), quantity=int(r.quantity),
                 amount_eur=round(float(prices[r.item_id]) * int(r.quantity), 2), cook_s=float(r.cook_time_s) / speed)
            for n, r in enumerate(trace.head(orders).itertuples())]


def add_event_restaurant(sc: Scenario, lab, rows: list[dict], *, suffix: str = "-ev", work_ms: float = 5.0):
    """Declare the event-choreographed restaurant in ``sc``: guest, orders, stock, kitchen,
    billing (roles named ``<service><suffix>``, the guest ``guest<suffix>``).

    Returns the ``order.placed`` spec (a fresh one-partition Kafka topic), so another
    subscriber can be added in its own group without touching these services.
    """
    from edalab._servers import free_port

    tag = uuid.uuid4().hex[:8]
    placed = lab.transport("kafka", topic=f"orders-placed-{tag}", partitions=1)
    cooked = lab.transport("kafka", topic=f"orders-cooked-{tag}", partitions=1)
    # The kitchen commits only when its stove is empty, not on every receive.
    kitchen_spec = lab.transport("kafka", topic=placed.topic, partitions=1, commit_each_receive=False)
    url = f"http://127.0.0.1:{free_port()}"
    sc.add(f"orders{suffix}", orders_service, kwargs=dict(url=url, method="kafka", orders=rows, placed_spec=placed,
                                                        cooked_spec=cooked, group="orders"))
    for service in SERVICES:
        sc.add(f"{service}{suffix}", event_service,
               kwargs=dict(spec=kitchen_spec if service == "kitchen" else placed, service=service, method="kafka",
                           group=service, work_ms=work_ms, cooked_spec=cooked if service == "kitchen" else None))
    sc.add(f"guest{suffix}", guest, kwargs=dict(url=url, method="kafka", schedule_s=[r["placed_s"] for r in rows],
                                                 timeout_s=10.0, concurrency=_GUEST_CONCURRENCY))
    return placed


def _add_rest_restaurant(sc: Scenario, rows: list[dict], work_ms: float) -> None:
    from edalab._servers import free_port

    urls = {name: f"http://127.0.0.1:{free_port()}" for name in ("orders", *SERVICES)}
    sc.add("orders-rest", orders_service, kwargs=dict(url=urls["orders"], method="rest", orders=rows,
                                                      urls={s: urls[s] for s in SERVICES}))
    for service in SERVICES:
        sc.add(f"{service}-rest", rest_service, kwargs=dict(url=urls[service], service=service, method="rest",
                                                            work_ms=work_ms, cooks=service == "kitchen"))
    sc.add("guest-rest", guest, kwargs=dict(url=urls["orders"], method="rest", schedule_s=[r["placed_s"] for r in rows],
                                            timeout_s=10.0, concurrency=_GUEST_CONCURRENCY))


def restaurant_both_ways(lab, *, orders: int | None = None, speed: float | None = None, kill_at_s: float | None = None,
                         down_s: float = 2.0, work_ms: float = 5.0, quick: bool | None = None,
                         run_dir: str | Path | None = None) -> RestaurantResult:
    """Run the evening's orders through both restaurants; kill both kitchens for a while (notebook 12).

    Args:
        lab: from :func:`edalab.start`.
        orders: how many orders of ``data/orders.csv`` (default all 120, quick 32).
        speed: play the trace this many times faster, placing and cooking alike
            (default 2, quick 3).
        kill_at_s: when both kitchens are killed, seconds after the gate (default a
            quarter of the evening in).
        down_s: seconds after the kill when they are started again.
        work_ms: each service's own work per order, one order at a time.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
    """
    quick = quick_mode(quick)
    speed = (3.0 if quick else 2.0) if speed is None else speed
    rows = evening(32 if quick and orders is None else 120 if orders is None else orders, speed)
    evening_s = rows[-1]["placed_s"]
    kill_at_s = _checks.number(evening_s * 0.25 if kill_at_s is None else kill_at_s, "kill_at_s", unit="seconds",
                               minimum=0, maximum=max(evening_s, 0.1))
    down_s = _checks.number(down_s, "down_s", unit="seconds", positive=True, sensible=(0.5, 30))
    work_ms = _checks.number(work_ms, "work_ms", unit="milliseconds", minimum=0, sensible=(0, 100))
    sc = Scenario("restaurant", run_dir=run_dir)
    _add_rest_restaurant(sc, rows, work_ms)
    add_event_restaurant(sc, lab, rows, work_ms=work_ms)
    last_cook_s = max(r["placed_s"] + r["cook_s"] for r in rows)
    with sc.run(progress="the evening: REST and events, a kitchen killed") as run:
        for role in ("kitchen-rest", "kitchen-ev"):
            run.at(kill_at_s).kill(role)
            run.at(kill_at_s + down_s).start(role)
        for role in ("guest-rest", "guest-ev"):
            run.wait_finished(role, timeout_s=last_cook_s + down_s + 30)
        accepted = _accepted(sc.recorder)
        run.until(lambda: accepted <= served_orders(sc.recorder, "kafka"), timeout_s=down_s + 30, step_s=0.2)
        cpu = run.cpu_seconds()
        gate_ns = run.gate_ns
    params = dict(orders=len(rows), speed=speed, kill_at_s=kill_at_s, down_s=down_s, work_ms=work_ms,
                  evening_s=evening_s, quick=quick, run_dir=str(sc.run_dir))
    return RestaurantResult(*analyse_restaurant(sc.recorder, gate_ns, rows, cpu), params=params)


def _accepted(recorder) -> set[int]:
    calls = recorder.table("calls")
    return set(calls.loc[(calls["method"] == "kafka") & (calls["accepted"] == 1), "order"]) if len(calls) else set()
