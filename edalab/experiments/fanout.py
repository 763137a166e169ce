"""Fan-out: every service gets every event, and the kitchen knows none of them (notebook 03).

The restaurant's kitchen publishes one "order ready" event per dish it sends out.
The waiter, billing (and in the exercise, stock) each read them in a consumer group
of their *own*: a topic is a log, each group keeps its own position in it, so every
group gets every event. Redis pub/sub fans out too, by pushing each message to every
subscriber connected at that moment.

Notebook 03 shows the body each service runs (:func:`service`) in a cell; the learner
may edit it and pass it to :func:`fan_out`, which runs it in one process per service
through an :class:`edalab.Scenario`. ``extra_services`` adds subscribers the kitchen
knows nothing about (the exercise's stock service, checked by
:func:`edalab.exercises.n03.check_new_subscriber`).

The other experiments of notebook 03 live next to this one:
:mod:`edalab.experiments.competing` (one group, several members),
:mod:`edalab.experiments.rebalancing` (members join and leave while events flow) and
:mod:`edalab.experiments.rest_calls` (a REST producer that calls every service).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab._events import new_event
from edalab.harness import Scenario

__all__ = ["FANOUT_TRANSPORTS", "SERVICE_NAMES", "FanOutResult", "fan_out", "kitchen",
           "kitchen_orders", "service"]

#: transports :func:`fan_out` compares (both fan out; only Kafka keeps the events)
FANOUT_TRANSPORTS = ("kafka", "redis-pubsub")
#: the restaurant's services, in the order notebook 03 adds them
SERVICE_NAMES = ("waiter", "billing", "stock", "loyalty", "analytics", "delivery", "reviews", "hygiene")
#: transport options that shape the topic: only a Kafka topic has partitions
_TOPIC_OPTIONS = {"kafka": lambda partitions: {"partitions": partitions}}


def service(ctx, spec, group: str) -> None:
    """The body every fan-out service runs (notebook 03 shows it in a cell).

    It reads in consumer group ``group`` (its own name: a group of its own gets every
    event), records each delivery, and commits on a clean stop. On Redis pub/sub
    ``group`` is only a label: every subscriber gets every event.
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)  # Kafka: the group has joined
    ctx.ready()
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            trace.record(delivery)  # a real service would serve, bill or count here
    subscriber.commit()
    subscriber.close()
    trace.close()


def kitchen(ctx, spec, schedule_s: Sequence[float], orders: Sequence[dict]) -> None:
    """Producer role: one ``order.ready`` event per entry of ``orders``, at ``schedule_s``.

    Each payload is an order line of ``data/orders.csv`` (``order``, ``table``,
    ``dish``, ``quantity``), keyed by table, so the stock service can count dishes.
    The kitchen names no service: it publishes once to the topic.
    """
    publisher = spec.publisher()
    trace = ctx.recorder.producer_trace(ctx.name)
    try:
        if ctx.gate() is None:
            return
        start = time.monotonic()
        for seq, (at_s, order) in enumerate(zip(schedule_s, orders)):
            if ctx.sleep(start + at_s - time.monotonic()):
                break
            event = new_event("order.ready", f"table-{order['table']}", dict(order),
                              producer=ctx.name, seq=seq)
            publisher.publish(event)
            trace.record(event)  # only once the transport accepted it
        publisher.flush()
    finally:
        publisher.close()
        trace.close()


def kitchen_orders(events: int) -> list[dict]:
    """The first ``events`` order lines of ``data/orders.csv`` with their dish names
    (the trace repeats when more are asked for): what :func:`kitchen` sends."""
    from edalab import workloads

    names = workloads.menu().set_index("item_id")["name"]
    lines = [{"order": int(r.order_id), "table": int(r.table), "dish": str(names[r.item_id]),
              "quantity": int(r.quantity)} for r in workloads.order_trace().itertuples()]
    return [lines[i % len(lines)] for i in range(events)]


@dataclass
class FanOutResult:
    """What :func:`fan_out` measured (notebook 03).

    Attributes:
        samples: one row per receipt: ``method`` (the transport), ``service``,
            ``role``, ``group``, ``event_id``, ``key``, ``seq``, ``latency_ms``, ...
        summary: one row per method and service: ``group``, ``produced``,
            ``delivered``, ``lost``, ``duplicated``, ``out_of_order``,
            ``latency_p50_ms``, ``latency_p99_ms``, ...
        orders: the payloads the kitchen sent, one row per event (``order``,
            ``table``, ``dish``, ``quantity``), the same for every method.
        notes: what the services noted (``ctx.note``): ``method``, ``role``, ``what``
            and the values, e.g. the stock service's ``counts``.
        params: the settings of the run.
    """

    samples: object
    summary: object
    orders: object
    notes: object
    params: dict = field(default_factory=dict)

    def every_service_got_everything(self, method: str = "kafka") -> bool:
        """True when every service of ``method`` received every produced event."""
        rows = self.summary[self.summary["method"] == method]
        return bool(len(rows)) and bool(((rows["delivered"] == rows["produced"]) & (rows["lost"] == 0)).all())


def fan_out(lab, *, services: Sequence[str] = SERVICE_NAMES[:2],
            transports: Sequence[str] = FANOUT_TRANSPORTS, events: int | None = None,
            rate_per_s: float = 30.0, partitions: int = 3, body: Callable = service,
            extra_services: Mapping[str, Callable] | None = None, quick: bool | None = None,
            seed: int = 3, run_dir: str | Path | None = None, progress: bool = True) -> FanOutResult:
    """One kitchen publishes "order ready"; every service subscribes on its own (notebook 03).

    Each service in ``services`` runs ``body(ctx, spec, group=<its name>)`` in its own
    process: on Kafka a consumer group of its own, on Redis pub/sub one subscriber of
    the channel. Each of ``extra_services`` (name -> ``body(ctx, spec)``) is a
    subscriber that chooses its group itself, as a new team's service would. All are
    ready (subscribed, groups joined) before the gate opens and the first event goes out.

    Args:
        lab: from :func:`edalab.start`.
        services: one process (and group) per name.
        transports: any of :data:`FANOUT_TRANSPORTS`, compared as ``method``.
        events: events published per transport (default 100, quick 30; at least 1).
        rate_per_s: mean event rate (random, Poisson arrivals), events per second.
        partitions: partitions of the Kafka topic.
        body: what each service runs (default :func:`service`).
        extra_services: more subscribers, name -> ``body(ctx, spec)``.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times repeat with the same seed.
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
        progress: show a progress bar while waiting for deliveries.
    """
    quick = quick_mode(quick)
    transports = _checks.choices(transports, "transports", FANOUT_TRANSPORTS)
    if isinstance(services, str) or not all(isinstance(s, str) for s in services):
        raise ConfigError(f"services must be a list of names, e.g. ['waiter', 'billing'], not {services!r}.")
    if extra_services is not None and not isinstance(extra_services, Mapping):
        raise ConfigError(f"extra_services must be a dict of name -> body(ctx, spec), not {extra_services!r}.")
    extra = dict(extra_services or {})
    names = [*services, *extra]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"services and extra_services must be distinct names, not {names!r}.")
    events = _checks.count((30 if quick else 100) if events is None else events, "events", minimum=1,
                           sensible_max=2000, what="events per transport")
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="events per second", positive=True,
                                sensible=(1, 500))
    partitions = _checks.count(partitions, "partitions", minimum=1, sensible_max=32)
    if not callable(body) or not all(callable(b) for b in extra.values()):
        raise ConfigError("body and every value of extra_services must be a function body(ctx, spec, ...).")
    from edalab import workloads

    schedule = workloads.poisson(events, rate_per_s, seed)
    orders = kitchen_orders(events)
    root = Path(run_dir) if run_dir is not None else None
    samples, summaries, notes, run_dirs = [], [], [], []
    for method in transports:
        spec = lab.transport(method, **_TOPIC_OPTIONS.get(method, lambda p: {})(partitions))
        sc = Scenario(f"fanout-{method}", run_dir=None if root is None else root / method)
        for name in services:
            sc.add(name, body, kwargs={"spec": spec, "group": name})
        for name, extra_body in extra.items():
            sc.add(name, extra_body, kwargs={"spec": spec}, ready_timeout_s=20)
        sc.add("kitchen", kitchen, kwargs={"spec": spec, "schedule_s": schedule, "orders": orders})
        with sc.run(expect_events=events, progress=progress and f"fan-out: {method}") as run:
            run.wait_finished("kitchen", timeout_s=schedule[-1] + 30)
            # Per group, not per role: a body that joined another service's group shares
            # that group's events, and waiting for it alone would wait in vain.
            for name in services:
                run.until_delivered(events, group=name, timeout_s=10)
            if extra:
                run.until_delivered(events, roles=list(extra), each=True, timeout_s=1.5)
        summary = sc.recorder.summary(groups=list(services)).reset_index()
        received = sc.recorder.received()
        group_of = dict(zip(received["role"], received["group"]))
        service_of = {group_of.get(n, n): n for n in reversed(names)}
        summary.insert(0, "service", summary["group"].map(service_of).fillna(summary["group"]))
        summary.insert(0, "method", method)
        summaries.append(summary)
        samples.append(sc.recorder.samples().assign(method=method, service=lambda d: d["role"]))
        notes.append(sc.recorder.notes().assign(method=method))
        run_dirs.append(str(sc.run_dir))
    import pandas as pd

    params = dict(services=tuple(services), extra_services=tuple(extra), transports=tuple(transports),
                  events=events, rate_per_s=rate_per_s, partitions=partitions, quick=quick, seed=seed,
                  run_dirs=run_dirs)
    return FanOutResult(pd.concat(samples, ignore_index=True), pd.concat(summaries, ignore_index=True),
                        pd.DataFrame(orders), pd.concat(notes, ignore_index=True), params)
