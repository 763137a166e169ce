"""Load on edalab itself (issue #12): the embedded servers and the recorder under the
heaviest workload a notebook offers, and ten times it.

Shared by the short CI test (tests/load/test_load.py) and the longer benchmark
(benchmarks/load.py, whose figures go in docs/reliability.md and the README).

What it checks is edalab's own bookkeeping, not the brokers: a consumer role counts in
its own memory every delivery its client library handed it, and the Recorder's trace
must hold exactly those rows (``recorded == client_received``): the recorder never
drops or invents a receipt, however fast they come. The owner follows the run through
:class:`edalab.DeliveryWatcher` (``until_delivered``), whose memory must grow with the
number of distinct events only (a set of ids), never with re-reading whole traces.
"""

from __future__ import annotations

import os
import time

import psutil

import edalab
from edalab import workloads
from edalab.roles import produce

#: the notebooks' largest ``rate_per_s`` for a producer role (the sensible maximum the
#: experiments accept, e.g. fan_out's): the heaviest workload a notebook offers
HEAVIEST_RATE_PER_S = 500.0


def counting_consumer(ctx, spec, group: str = "load") -> None:
    """Record every delivery and count, apart from the recorder, what the client handed over."""
    subscriber = spec.subscriber(group)
    subscriber.wait_ready(timeout_s=30.0)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    client_received = 0
    try:
        ctx.ready()
        while not ctx.stopping:
            deliveries = subscriber.receive(0.1)
            client_received += len(deliveries)
            for delivery in deliveries:
                trace.record(delivery)
            if deliveries:
                subscriber.commit()
    finally:
        ctx.note("client_received", n=client_received)
        subscriber.close()
        trace.close()


def _rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def load_run(lab, transport: str, rate_per_s: float, duration_s: float, *, timeout_s: float = 120.0) -> dict:
    """One producer at ``rate_per_s`` for ``duration_s`` and one consumer on ``transport``.

    Returns sent (the producer's trace), client_received (the consumer's own count),
    recorded (rows in its trace), delivered (distinct events), achieved_rate_per_s,
    drained_s (last send to last delivery), owner_rss_growth_mb (the owner's memory while
    following the run), watcher_ids (ids the watcher holds).
    """
    spec = lab.transport(transport, **({"partitions": 1} if transport == "kafka" else {}))
    schedule_s = workloads.steady(rate_per_s, duration_s)
    sc = edalab.Scenario(f"load-{transport}")
    sc.add("consumer", counting_consumer, kwargs={"spec": spec})
    sc.add("producer", produce, kwargs={"spec": spec, "schedule_s": schedule_s})
    rss_before = _rss_mb()
    with sc.run(expect_events=len(schedule_s), progress=False) as run:
        run.wait_finished("producer", timeout_s=duration_s * 10 + 60)
        sent_by_s = run.elapsed_s()
        run.until_delivered(len(schedule_s), roles=["consumer"], timeout_s=timeout_s)
        drained_s = run.elapsed_s() - sent_by_s
        rss_growth = _rss_mb() - rss_before
        watcher_ids = run.watcher.produced + run.watcher.delivered()  # the ids it holds
    received = sc.recorder.received()
    produced = sc.recorder.produced()
    notes = sc.recorder.notes(role="consumer")
    client_received = int(notes.loc[notes["what"] == "client_received", "n"].iloc[-1])
    span_s = (produced["produced_at_ns"].max() - produced["produced_at_ns"].min()) / 1e9
    return {"transport": transport, "rate_per_s": rate_per_s, "sent": len(produced),
            "achieved_rate_per_s": (len(produced) - 1) / span_s if span_s > 0 else float("nan"),
            "client_received": client_received, "recorded": len(received),
            "delivered": received["event_id"].nunique(), "drained_s": drained_s,
            "owner_rss_growth_mb": rss_growth, "watcher_ids": watcher_ids}


def elapsed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t
