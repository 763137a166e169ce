"""The REST alternative to fan-out: the producer calls every service itself (notebook 03).

Without a broker the kitchen must POST each event to every service, so its list of
addresses grows with every service added, and it waits for each answer. This
experiment times how long the producer is busy per event for 1..N services:

* ``rest-sequential``: one call after another (:class:`CallEveryServiceSpec`);
* ``rest-parallel``: the same calls at the same time, one thread per service;
* ``kafka``: one publish, waiting for the broker's acknowledgement (``acks="all"``),
  with the same settings whatever the number of services; n services are n
  consumer groups reading the topic.

Each (method, n) is one stage of one :class:`edalab.Scenario`. The HTTP services start
with the run (idle until called); consumer groups start on the timeline just before
the first stage that needs them; then the owner starts a fresh producer role for the
stage, which warms up and publishes the measured events. Publish times go to the
Recorder's ``publish_times`` table; deliveries to each service's trace.
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab._events import Event, new_event
from edalab.experiments.fanout import SERVICE_NAMES
from edalab.harness import Scenario
from edalab.roles import consume
from edalab.transports._base import Capabilities, Publisher, TransportSpec

__all__ = ["REST_METHODS", "CallEveryServiceSpec", "RestVsBrokerResult", "rest_service",
           "rest_vs_broker", "timed_publish"]

#: the producers :func:`rest_vs_broker` compares (the column ``method``)
REST_METHODS = ("rest-sequential", "rest-parallel", "kafka")
#: events each stage's fresh producer sends first, unmeasured (first calls are slow); quick: half
WARMUP_EVENTS = 20


@dataclass(frozen=True)
class CallEveryServiceSpec(TransportSpec):
    """A REST producer that POSTs each event to every service (notebook 03).

    The list of URLs lives in the *producer*: adding a service means changing it.
    ``parallel`` makes the calls at the same time (one thread per service) instead of
    one after another. Each service is a :func:`rest_service` role (``POST /hook``).
    """

    urls: tuple[str, ...]
    parallel: bool = False
    timeout_s: float = 5.0

    kind = "rest-calls"
    capabilities = Capabilities(durable=False, groups=False, replay=False, key_ordering=True)

    def __post_init__(self) -> None:
        if isinstance(self.urls, str) or not self.urls or \
                not all(isinstance(u, str) and u.startswith("http") for u in self.urls):
            raise ConfigError(f"urls must be a non-empty tuple of http:// URLs, not {self.urls!r}.")

    def publisher(self) -> "_CallEveryServicePublisher":
        return _CallEveryServicePublisher(self)

    def subscriber(self, group: str | None = None):
        raise ConfigError("CallEveryServiceSpec only sends; each service receives on its own "
                          "server (the rest_service role).")


class _CallEveryServicePublisher(Publisher):
    """``publish`` returns when every service answered (it recorded the event)."""

    def __init__(self, spec: CallEveryServiceSpec) -> None:
        import httpx

        self.spec = spec
        self._clients = [httpx.Client(base_url=url, timeout=spec.timeout_s) for url in spec.urls]
        self._pool = None
        if spec.parallel and len(spec.urls) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=len(spec.urls), thread_name_prefix="rest-call")

    @staticmethod
    def _post(client, body: bytes) -> None:
        client.post("/hook", content=body, headers={"content-type": "application/json"}).raise_for_status()

    def publish(self, event: Event) -> None:
        body = event.to_bytes()
        if self._pool is None:
            for client in self._clients:
                self._post(client, body)
        else:
            for future in [self._pool.submit(self._post, c, body) for c in self._clients]:
                future.result(timeout=self.spec.timeout_s + 1.0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for client in self._clients:
            client.close()


def rest_service(ctx, url: str) -> None:
    """Role: one service as an HTTP server at ``url`` that records every event POSTed to it."""
    from urllib.parse import urlparse

    from edalab.transports.http import BackgroundServer, webhook_receiver_app

    trace = ctx.recorder.consumer_trace(ctx.name)
    where = urlparse(url)
    with BackgroundServer(webhook_receiver_app(trace.record), host=where.hostname, port=where.port):
        ctx.ready()
        while not ctx.sleep(0.5):
            pass
    trace.close()


def timed_publish(ctx, spec, stage: str, count: int, interval_s: float, warmup: int = WARMUP_EVENTS,
                  keys: int = 12) -> None:
    """Producer role: ``warmup`` events, then ``count`` timed ones, one every ``interval_s``.

    For each measured event it writes how long it was busy until the event was safely
    handed over (REST: every service answered; Kafka: ``publish`` plus ``flush``, the
    broker acknowledged it) to table ``publish_times``: ``stage, seq, event_id, publish_ms``.
    """
    publisher = spec.publisher()
    trace = ctx.recorder.producer_trace(ctx.name)
    table = ctx.recorder.table_writer(ctx.name, "publish_times", ["stage", "seq", "event_id", "publish_ms"])
    try:
        if ctx.gate() is None:
            return
        start = time.monotonic()
        for seq in range(warmup + count):
            if ctx.sleep(start + seq * interval_s - time.monotonic()):
                return
            event = new_event("order.ready", f"order-{seq % keys}", {"order": seq}, producer=ctx.name, seq=seq)
            began = time.perf_counter()
            publisher.publish(event)
            publisher.flush()
            busy_ms = (time.perf_counter() - began) * 1000
            trace.record(event)
            if seq >= warmup:
                table.write({"role": ctx.name, "stage": stage, "seq": seq, "event_id": event.id,
                             "publish_ms": busy_ms})
    finally:
        publisher.close()
        trace.close()
        table.close()


@dataclass
class RestVsBrokerResult:
    """What :func:`rest_vs_broker` measured (notebook 03).

    Attributes:
        samples: one row per measured event: ``method``, ``services``, ``seq``,
            ``event_id``, ``publish_ms`` (how long the producer was busy with it).
        summary: one row per method and number of services: ``events``,
            ``publish_p50_ms``, ``publish_mean_ms``, ``publish_p90_ms``,
            ``delivered_min`` (the fewest of those events any of the services
            received), ``producer_urls`` (addresses the producer had to know).
        params: the settings of the run.
    """

    samples: object
    summary: object
    params: dict = field(default_factory=dict)

    def cost_ratio(self, method: str, services: int | None = None) -> float:
        """Median publish time with ``services`` (default: the most) over that with the fewest."""
        rows = self.summary[self.summary["method"] == method].set_index("services")["publish_p50_ms"]
        return float(rows.loc[services if services is not None else rows.index.max()] / rows.loc[rows.index.min()])


def rest_vs_broker(lab, *, services_counts: Sequence[int] | None = None,
                   methods: Sequence[str] = REST_METHODS, events: int | None = None,
                   rate_per_s: float = 80.0, quick: bool | None = None,
                   run_dir: str | Path | None = None) -> RestVsBrokerResult:
    """How the producer's cost grows with the number of services: REST vs Kafka (notebook 03).

    Args:
        lab: from :func:`edalab.start`.
        services_counts: numbers of services to try, each in 1..8 (default 1-6, quick 1 and 3).
        methods: any of :data:`REST_METHODS`.
        events: measured events per (method, n) (default 150, quick 60: a median of 30 moved
            by 20 % under a parallel test suite; at least 1).
        rate_per_s: events per second, evenly spaced.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
    """
    import pandas as pd

    from edalab._servers import free_port

    quick = quick_mode(quick)
    counts = (1, 3) if quick else (1, 2, 3, 4, 5, 6)
    if services_counts is not None:
        if isinstance(services_counts, (str, bytes)) or not isinstance(services_counts, Iterable):
            raise ConfigError(f"services_counts must be a list of numbers of services, e.g. [1, 3], "
                              f"not {services_counts!r}.")
        counts = [_checks.count(n, "services_counts", minimum=1, maximum=len(SERVICE_NAMES))
                  for n in services_counts]
    counts = tuple(sorted(set(counts)))
    if not counts:
        raise ConfigError("services_counts must list at least one number of services, e.g. [1, 3].")
    methods = _checks.choices(methods, "methods", REST_METHODS)
    events = _checks.count((60 if quick else 150) if events is None else events, "events", minimum=1,
                           sensible_max=2000, what="events per stage")
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="events per second", positive=True,
                                sensible=(5, 500))
    warmup = WARMUP_EVENTS // 2 if quick else WARMUP_EVENTS
    names = SERVICE_NAMES[:counts[-1]]
    tag = uuid.uuid4().hex[:8]
    urls = [f"http://127.0.0.1:{free_port()}" for _ in names]
    kafka_spec = lab.transport("kafka", partitions=3) if "kafka" in methods else None
    # What listens for each method, and what its producer is given with n services.
    family = {"rest-sequential": "http", "rest-parallel": "http", "kafka": "kafka"}
    spec_for = {"rest-sequential": lambda n: CallEveryServiceSpec(tuple(urls[:n])),
                "rest-parallel": lambda n: CallEveryServiceSpec(tuple(urls[:n]), parallel=True),
                "kafka": lambda n: kafka_spec}
    addresses = {"rest-sequential": lambda n: n, "rest-parallel": lambda n: n, "kafka": lambda n: 1}
    listener = {"http": lambda i: (rest_service, {"url": urls[i]}),
                "kafka": lambda i: (consume, {"spec": kafka_spec, "group": f"{names[i]}-{tag}"})}
    # An HTTP service sits idle until called, so all start with the run, side by side; a
    # consumer group reads (and keeps the broker busy) from its start, so each starts just
    # before the first stage that needs it.
    with_run = {"http": True, "kafka": False}
    sc = Scenario("rest-vs-broker", run_dir=run_dir)
    for fam in dict.fromkeys(family[m] for m in methods):
        for i, name in enumerate(names):
            body, kwargs = listener[fam](i)
            sc.add(f"{name}-{fam}", body, kwargs=kwargs, start=with_run[fam])
    stages = [(m, n, f"{m}-{n}") for m in methods for n in counts]
    for method, n, stage in stages:
        sc.add(stage, timed_publish, kwargs={"spec": spec_for[method](n), "stage": stage, "count": events,
                                             "interval_s": 1.0 / rate_per_s, "warmup": warmup},
               start=False)
    stage_s = (warmup + events) / rate_per_s
    with sc.run(progress="REST calls vs one publish") as run:
        running = {f"{name}-{fam}" for fam in with_run if with_run[fam] for name in names}
        for method, n, stage in stages:
            needed = [f"{name}-{family[method]}" for name in names[:n]]
            new = [sc[r] for r in needed if r not in running]
            if new:
                run.at(run.elapsed_s()).call(partial(_start_together, new),
                                             label=f"start {', '.join(r.name for r in new)}")
            run.at(run.elapsed_s()).start(stage)  # returns once the producer is ready
            run.sleep(0)
            running.update(needed)
            run.wait_finished(stage, timeout_s=stage_s + 30)
            # Wait (a while) for every service to have it all; the summary shows who missed what.
            run.until(lambda: _each_got(sc.recorder, stage, needed, warmup + events),
                      timeout_s=10, step_s=0.1)
    times = sc.recorder.table("publish_times")
    if times.empty:
        raise ExperimentError(f"No producer recorded publish times; see the role logs in {sc.run_dir}.")
    received = sc.recorder.received()
    rows, samples = [], []
    for method, n, stage in stages:
        mine = times[times["stage"] == stage]
        ids = set(mine["event_id"])
        got = [len(ids & set(received.loc[received["role"] == f"{name}-{family[method]}", "event_id"]))
               for name in names[:n]]
        rows.append(_timing_row(mine, method, n, delivered_min=min(got), producer_urls=addresses[method](n)))
        samples.append(mine.assign(method=method, services=n))
    params = dict(services_counts=counts, methods=tuple(methods), events=events, rate_per_s=rate_per_s,
                  quick=quick, run_dir=str(sc.run_dir), services=names, warmup_events=warmup)
    return RestVsBrokerResult(pd.concat(samples, ignore_index=True), pd.DataFrame(rows), params)


def _start_together(roles) -> None:
    """Start roles side by side (each takes a moment to import and join), then wait for all."""
    for role in roles:
        role.start(wait=False)
    for role in roles:
        role.wait_ready()


def _each_got(recorder, producer: str, roles: Sequence[str], count: int) -> bool:
    """Whether each of ``roles`` received ``count`` distinct events of ``producer``."""
    received = recorder.received()
    mine = received[received["producer"] == producer]
    return all(mine.loc[mine["role"] == r, "event_id"].nunique() >= count for r in roles)


def _timing_row(times, method: str, services: int, **extra) -> dict:
    import numpy as np

    t = times["publish_ms"].to_numpy(dtype=float)
    if not len(t):
        raise ExperimentError(f"No publish times for {method} with {services} services.")
    return {"method": method, "services": services, "events": len(t),
            "publish_p50_ms": float(np.median(t)), "publish_mean_ms": float(t.mean()),
            "publish_p90_ms": float(np.percentile(t, 90)), **extra}
