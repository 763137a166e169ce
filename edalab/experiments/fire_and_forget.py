"""Logging and metrics as fire-and-forget: a synchronous HTTP call vs a producer (notebook 06).

An **app** role serves requests at a steady rate; for every request it emits one log
record through each method, timing the emit call alone (what the request's caller
waits for on top of the real work):

* ``http-sync``: ``POST`` to a log service and wait for its answer;
* ``kafka-acks0``, ``kafka-acks1``, ``kafka-acksall``: kafka-python's producer with
  ``acks=0 / 1 / "all"``; ``send()`` only puts the record in a buffer, a background
  thread sends it;
* ``kafka-acksall-wait``: the same, but the app waits for the broker's answer (flush);
* ``redis-stream`` (``XADD``) and ``redis-pubsub`` (``PUBLISH``): one round trip each.

Each method's receiver is its own role (``log-<method>``: the HTTP log service, or a
consumer). On the timeline every receiver is killed (SIGKILL) and later started again:
the run counts, per method, the records the app knew it lost (an error), the ones lost
silently, and the ones delivered after the restart. On the embedded broker (one Tansu,
in memory, no replicas) ``acks=1`` and ``acks="all"`` wait for the same single broker:
they can differ only in a cluster (docs/brokers.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab.harness import Scenario
from edalab.experiments._result import MethodRows

__all__ = ["FF_METHODS", "emit_logs", "collect_logs", "log_per_request", "FireAndForgetResult"]

#: the ways of emitting a log record compared (the column ``method``)
FF_METHODS = ("http-sync", "kafka-acks0", "kafka-acks1", "kafka-acksall", "kafka-acksall-wait",
              "redis-stream", "redis-pubsub")
_KAFKA_ACKS = {"kafka-acks0": 0, "kafka-acks1": 1, "kafka-acksall": "all", "kafka-acksall-wait": "all"}


def emit_logs(ctx, emitters: dict, rate_per_s: float, duration_s: float) -> None:
    """Role: the app. Per request, one log record through every emitter (method -> (spec,
    wait)); the time of each emit call goes to table ``emits``. ``wait`` flushes after each
    record (waits for the broker's answer). An emit that raises is a record the app knows
    it lost; the request itself goes on."""
    from edalab._events import new_event

    publishers = {method: (spec.publisher(), wait) for method, (spec, wait) in emitters.items()}
    emits = ctx.recorder.table_writer(ctx.name, "emits", ["method", "event_id", "seq", "t_ns", "latency_ms",
                                                          "ok", "detail"])
    try:
        if ctx.gate() is None:
            return
        start, n = time.monotonic(), 0
        order = list(publishers)
        while time.monotonic() - start < duration_s and not ctx.stopping:
            for method in order[n % len(order):] + order[:n % len(order)]:  # rotate: no method always first
                publisher, wait = publishers[method]
                event = new_event("request.logged", f"path-{n % 5}", {"request": n}, producer=method, seq=n)
                t_ns, t = time.time_ns(), time.perf_counter()
                try:
                    publisher.publish(event)
                    if wait:
                        publisher.flush(timeout_s=5.0)
                    ok, detail = True, ""
                except Exception as exc:  # noqa: BLE001 - logging must not fail the request
                    ok, detail = False, type(exc).__name__
                emits.write({"role": ctx.name, "method": method, "event_id": event.id, "seq": n, "t_ns": t_ns,
                             "latency_ms": (time.perf_counter() - t) * 1000, "ok": ok, "detail": detail})
            n += 1
            if ctx.sleep(start + n / rate_per_s - time.monotonic()):
                break
    finally:
        for method, (publisher, _) in publishers.items():
            try:
                publisher.flush(timeout_s=5.0)
            except Exception as exc:  # noqa: BLE001 - counted: buffered records that never made it
                ctx.note("flush_failed", method=method, error=repr(exc))
            publisher.close()
        emits.close()


def collect_logs(ctx, spec, group: str = "logs") -> None:
    """Role: a log consumer; records every record it receives, commits after each batch.
    A restarted one first takes over what a killed predecessor held (Redis Streams)."""
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)
    batch = subscriber.take_over_pending()
    ctx.ready()
    try:
        while not ctx.stopping:
            for delivery in batch:
                trace.record(delivery)
            if batch:
                subscriber.commit()
            batch = subscriber.receive(0.1)
    finally:
        subscriber.close()
        trace.close()


def _settled(run, accepted: dict[str, int], quiet_s: float = 2.0):
    """A condition for ``run.until``: every durable receiver has all its accepted records,
    or none got a new one for ``quiet_s`` (a record lost on the way never comes)."""
    last, changed = None, time.monotonic()

    def settled() -> bool:
        nonlocal last, changed
        run.watcher.update()
        counts = {m: run.watcher.delivered(roles=[f"log-{m}"]) for m in accepted}
        if counts != last:
            last, changed = counts, time.monotonic()
        return all(counts[m] >= n for m, n in accepted.items()) or time.monotonic() - changed > quiet_s

    return settled


def log_per_request(lab, *, app=emit_logs, methods=None, rate_per_s: float = 50.0, duration_s: float | None = None,
                    kill_at_s: float | None = None, back_at_s: float | None = None, quick: bool | None = None,
                    run_dir: str | Path | None = None) -> "FireAndForgetResult":
    """Emit one log record per request through each method; kill every receiver mid-run (notebook 06).

    Args:
        lab: from :func:`edalab.start`.
        app: the app role body ``app(ctx, emitters, rate_per_s, duration_s)`` (default
            :func:`emit_logs`; notebook 06 passes its own copy); it writes table ``emits``.
        methods: which of :data:`FF_METHODS`, as a list (default: all).
        rate_per_s: requests per second of the app (each emits one record per method).
        duration_s: seconds the app serves requests (default 10, quick 5).
        kill_at_s, back_at_s: seconds after the gate when every receiver is killed and
            started again (default 40 % and 60 % of ``duration_s``).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here.
    """
    from edalab._servers import free_port
    from edalab.experiments.rest_calls import CallEveryServiceSpec, rest_service

    quick = quick_mode(quick)
    if not callable(app):
        raise ConfigError(f"app must be a role body app(ctx, emitters, rate_per_s, duration_s), "
                          f"not {type(app).__name__}.")
    methods = list(dict.fromkeys(_checks.choices(FF_METHODS if methods is None else methods, "methods",
                                                 FF_METHODS)))
    rate = _checks.number(rate_per_s, "rate_per_s", unit="requests per second", positive=True,
                          sensible=(1, 300))
    duration = _checks.number((5.0 if quick else 10.0) if duration_s is None else duration_s, "duration_s",
                              unit="seconds", positive=True, sensible=(1, 300))
    kill_at = _checks.number(0.4 * duration if kill_at_s is None else kill_at_s, "kill_at_s", unit="seconds",
                             minimum=0, maximum=duration)
    back_at = _checks.number(0.6 * duration if back_at_s is None else back_at_s, "back_at_s", unit="seconds",
                             minimum=kill_at, maximum=duration)
    url = f"http://127.0.0.1:{free_port()}"
    sc = Scenario("fire-and-forget", run_dir=run_dir)
    emitters, durable = {}, []
    for method in methods:
        if method == "http-sync":
            spec = CallEveryServiceSpec((url,), timeout_s=2.0)
            sc.add(f"log-{method}", rest_service, kwargs={"url": url})
        else:
            spec = (lab.transport("kafka", partitions=1, acks=_KAFKA_ACKS[method]) if method in _KAFKA_ACKS
                    else lab.transport(method))
            sc.add(f"log-{method}", collect_logs, kwargs={"spec": spec, "group": f"logs-{method}"})
            if spec.capabilities.durable:
                durable.append(method)
        emitters[method] = (spec, method.endswith("-wait"))
    sc.add("app", app, kwargs={"emitters": emitters, "rate_per_s": rate, "duration_s": duration})
    with sc.run(progress="log records per request") as run:
        for method in methods:
            run.at(kill_at).kill(f"log-{method}")
            run.at(back_at).start(f"log-{method}")
        run.wait_finished("app", timeout_s=duration + 60)
        emits = sc.recorder.table("emits")
        accepted = emits[emits["ok"].astype(str).isin(["True", "true", "1"])]["method"].value_counts()
        receivers = [f"log-{m}" for m in methods]

        def all_back() -> bool:  # every restarted receiver is ready (a Kafka group join takes a while)
            ready = sc.recorder.lifecycle().query("what == 'ready'")["role"].value_counts()
            return all(ready.get(r, 0) >= 2 for r in receivers)

        run.until(all_back, timeout_s=60)
        run.until(_settled(run, {m: int(accepted.get(m, 0)) for m in durable}), timeout_s=30)
    params = dict(quick=quick, methods=methods, rate_per_s=rate, duration_s=duration, kill_at_s=kill_at,
                  back_at_s=back_at, run_dir=str(sc.run_dir))
    return analyse(emits, sc.recorder.received(), sc.recorder.lifecycle(), sc.recorder.notes(), params)


def analyse(emits, received, lifecycle, notes, params: dict) -> "FireAndForgetResult":
    """Pure: each emit's phase (receiver up, down, back) and the summary per method."""
    import numpy as np
    import pandas as pd

    from edalab.experiments.request_reply import _phase_bounds

    samples, rows = [], []
    for method in params["methods"]:
        mine = emits[emits["method"] == method].copy()
        mine["ok"] = mine["ok"].astype(str).isin(["True", "true", "1"])
        killed_ns, back_ns = _phase_bounds(lifecycle, f"log-{method}")
        mine["phase"] = np.select([mine["t_ns"] < killed_ns, mine["t_ns"] < back_ns], ["up", "down"], "back")
        got = received[received["role"] == f"log-{method}"]["event_id"] if len(received) else pd.Series([])
        got = got[got.isin(set(mine["event_id"]))]
        accepted = set(mine.loc[mine["ok"], "event_id"])
        up, down = mine[mine["phase"] == "up"], mine[mine["phase"] == "down"]
        rows.append({"method": method, "emitted": len(mine), "latency_p50_ms": up["latency_ms"].quantile(0.5),
                     "latency_p99_ms": up["latency_ms"].quantile(0.99), "latency_mean_ms": up["latency_ms"].mean(),
                     "down_latency_p50_ms": down["latency_ms"].quantile(0.5), "sent_while_down": len(down),
                     "app_errors": int((~mine["ok"]).sum()), "delivered": got.nunique(),
                     "lost_silently": len(accepted - set(got)), "lost": len(mine) - got.nunique(),
                     "duplicated": len(got) - got.nunique()})
        samples.append(mine)
    return FireAndForgetResult(pd.concat(samples, ignore_index=True), pd.DataFrame(rows), params)


@dataclass
class FireAndForgetResult(MethodRows):
    """What :func:`log_per_request` measured (notebook 06).

    ``samples``: every emit (method, event_id, seq, t_ns, latency_ms: the time the app
    waited for the emit call, ok, detail, phase up/down/back). ``summary``: one row per
    ``method``: ``latency_*_ms`` of the emit call while the receiver was up, the same
    while it was down (``down_latency_p50_ms``), records ``emitted``, ``app_errors`` (the
    app knew), ``delivered``, ``lost_silently`` (accepted, never delivered), ``lost``
    (both), ``duplicated``, ``sent_while_down``.
    """

    samples: "object"
    summary: "object"
    params: dict = field(default_factory=dict)

