"""Chaos scenarios shared by the short CI suite (tests/chaos/test_chaos.py) and the
longer benchmark (benchmarks/chaos.py, which writes docs/reliability.md).

Each scenario runs real roles on real servers through :class:`edalab.Scenario`: a
producer on a steady schedule, consumers of one group, and a fault on the timeline.
It returns one row of figures:

* ``sent``: events the producer tried to publish;
* ``acked``: events the transport accepted (publish returned; Kafka: flushed);
* ``delivered``: distinct acknowledged events some consumer recorded;
* ``duplicated``: receipts beyond the first of an event (redeliveries);
* ``lost``: acknowledged events never delivered;
* ``to_nobody``: pub/sub only, events whose PUBLISH reached no subscriber (Redis's
  own count of what it dropped);
* ``left_behind``: role or server processes still alive after the run (must be 0).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import psutil

import edalab
from edalab import EdalabError, workloads
from edalab._events import new_event
from edalab._servers import RedisServer

GROUP = "billing"
#: the transports whose capabilities say they keep events for an absent consumer
DURABLE = ("kafka", "redis-stream", "nats-queue")


# -- role bodies (run in their own processes) ------------------------------------------------

def chaos_produce(ctx, spec, rate_per_s: float, duration_s: float, retry_for_s: float = 10.0) -> None:
    """A producer that survives a broker restart: a publish that fails is retried on a
    new connection for up to ``retry_for_s``; only accepted events are traced (acked).
    Pub/sub: every event PUBLISH delivered to nobody is noted ("to nobody")."""
    trace = ctx.recorder.producer_trace(ctx.name)
    publisher = None
    attempts_failed = abandoned = 0
    try:
        for seq in ctx.on_schedule(workloads.steady(rate_per_s, duration_s)):
            event = new_event("order.ready", f"order-{seq % 10}", {"order": seq},
                              producer=ctx.name, seq=seq)
            give_up = time.monotonic() + retry_for_s
            while True:
                try:
                    if publisher is None:
                        publisher = spec.publisher()
                    publisher.publish(event)
                    break
                except EdalabError:
                    attempts_failed += 1
                    with contextlib.suppress(Exception):
                        publisher.close()
                    publisher = None
                    if time.monotonic() > give_up or ctx.sleep(0.05):
                        event = None
                        abandoned += 1
                        break
            if event is None:
                continue
            if getattr(publisher, "last_receivers", None) == 0:  # Redis pub/sub only
                ctx.note("to nobody", event_id=event.id)
            trace.record(event)
        if publisher is not None:
            publisher.flush()
    finally:
        ctx.note("producer done", attempts_failed=attempts_failed, abandoned=abandoned)
        if publisher is not None:
            publisher.close()
        trace.close()


def chaos_consume(ctx, spec, group: str = GROUP, take_over: bool = False) -> None:
    """A consumer that survives a broker restart (reconnects) and, with ``take_over``,
    starts by taking over what a killed predecessor left pending (Redis Streams)."""
    trace = ctx.recorder.consumer_trace(ctx.name, group)

    def open_subscriber():
        subscriber = spec.subscriber(group)
        subscriber.wait_ready(timeout_s=30.0)
        return subscriber, (subscriber.take_over_pending() if take_over else [])

    subscriber, first = open_subscriber()
    for delivery in first:
        trace.record(delivery)
    ctx.ready()
    try:
        while not ctx.stopping:
            try:
                deliveries = subscriber.receive(0.1)
            except EdalabError:  # the broker is away: reconnect until it is back
                with contextlib.suppress(Exception):
                    subscriber.close()
                while not ctx.stopping:
                    try:
                        subscriber, first = open_subscriber()
                        break
                    except EdalabError:
                        ctx.sleep(0.2)
                deliveries = first
            for delivery in deliveries:
                trace.record(delivery)
            if deliveries:  # processed (recorded): hand them back, at-least-once
                try:
                    subscriber.commit()
                except EdalabError:
                    pass  # the broker is away; they come again, as duplicates
    finally:
        if ctx.stopping:
            with contextlib.suppress(Exception):
                subscriber.commit()
        with contextlib.suppress(Exception):
            subscriber.close()
        trace.close()


# -- figures -------------------------------------------------------------------------

def figures(scenario, transport: str, fault: str) -> dict:
    recorder = scenario.recorder
    produced = recorder.produced()
    received = recorder.received()
    notes = recorder.notes()
    acked_ids = set(produced["event_id"]) if len(produced) else set()
    got = received[received["event_id"].isin(acked_ids)] if len(received) else received
    delivered = got["event_id"].nunique() if len(got) else 0
    done = notes[notes["what"] == "producer done"] if len(notes) else notes
    failed = int(done["attempts_failed"].sum()) if len(done) else 0
    abandoned = int(done["abandoned"].sum()) if len(done) else 0
    to_nobody = int((notes["what"] == "to nobody").sum()) if len(notes) else 0
    lifecycle = recorder.lifecycle()
    pids = {int(p) for p in lifecycle.get("pid", []) if p == p and p}
    left = [p for p in pids if _alive(p)]
    return {"transport": transport, "fault": fault, "sent": len(acked_ids) + abandoned,
            "acked": len(acked_ids), "delivered": delivered,
            "duplicated": int(len(got) - delivered), "lost": len(acked_ids) - delivered,
            "to_nobody": to_nobody, "publish_retries": failed,
            "left_behind": len(left), "processes_checked": len(pids)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _spec(lab, transport: str, consumers: int):
    if transport == "kafka":
        return lab.transport("kafka", partitions=max(2, consumers))
    if transport == "nats-queue":
        return lab.transport("nats-queue", ack_wait_s=1.0)
    return lab.transport(transport)


# -- the faults ------------------------------------------------------------------------

def consumer_killed_in_a_loop(lab, transport: str, run_dir: Path, *, kills: int = 3,
                              every_s: float = 1.0, down_s: float = 0.3, rate_per_s: float = 40,
                              settle_s: float = 20.0) -> dict:
    """SIGKILL the one consumer ``kills`` times while the producer sends; restart it
    ``down_s`` later each time. Durable transports must deliver every acked event."""
    spec = _spec(lab, transport, 1)
    duration_s = kills * every_s + 1.0
    sc = edalab.Scenario("chaos-kill", run_dir=run_dir / f"kill-{transport}")
    sc.add("orders", chaos_produce, kwargs={"spec": spec, "rate_per_s": rate_per_s,
                                            "duration_s": duration_s})
    sc.add("billing", chaos_consume, kwargs={"spec": spec, "take_over": transport == "redis-stream"})
    with sc.run(progress=False) as run:
        for k in range(kills):
            run.at(0.5 + k * every_s).kill("billing")
            run.at(0.5 + k * every_s + down_s).start("billing")
        run.wait_finished("orders", timeout_s=duration_s + 30)
        acked = len(sc.recorder.produced())
        durable = transport in DURABLE
        run.until_delivered(acked, group=GROUP, timeout_s=settle_s if durable else 1.0)
    return figures(sc, transport, f"consumer SIGKILLed x{kills}")


def consumer_paused_past_its_session(lab, transport: str, run_dir: Path, *, pause_s: float = 5.0,
                                     rate_per_s: float = 40, settle_s: float = 25.0) -> dict:
    """SIGSTOP one of two group members for ``pause_s`` (Kafka: more than twice the
    2 s session on the embedded broker), then SIGCONT it; every acked event must arrive."""
    spec = _spec(lab, transport, 2)
    duration_s = pause_s + 2.0
    sc = edalab.Scenario("chaos-pause", run_dir=run_dir / f"pause-{transport}")
    sc.add("orders", chaos_produce, kwargs={"spec": spec, "rate_per_s": rate_per_s,
                                            "duration_s": duration_s})
    sc.add("billing-1", chaos_consume, kwargs={"spec": spec})
    sc.add("billing-2", chaos_consume, kwargs={"spec": spec})
    with sc.run(progress=False) as run:
        run.at(0.5).pause("billing-1")
        run.at(0.5 + pause_s).resume("billing-1")
        run.wait_finished("orders", timeout_s=duration_s + 30)
        run.until_delivered(len(sc.recorder.produced()), group=GROUP, timeout_s=settle_s)
    return figures(sc, transport, f"consumer paused {pause_s:g} s")


def broker_killed_and_restarted(transport: str, run_dir: Path, *, down_s: float = 1.0,
                                after_s: float = 3.0, rate_per_s: float = 40,
                                settle_s: float = 20.0) -> dict:
    """SIGKILL the broker mid-stream and start it again on the same port ``down_s`` later.

    Redis with its append-only file (``appendonly yes``): Redis writes each command to
    the AOF before it answers, so a process kill loses nothing acknowledged (an OS
    crash could lose the last second: ``appendfsync everysec``). Only Redis here: the
    embedded Tansu on memory forgets everything (docs/brokers.md item 8) and on S3 has
    its own items (11, 12) measured by notebook 08. NATS (``nats-queue``): JetStream
    keeps its stream in a file store that the restart keeps, and a message leaves it only
    when acked.
    """
    assert transport in ("redis-stream", "redis-pubsub", "nats-queue")
    from edalab.transports.redis import RedisPubSubSpec, RedisStreamSpec

    name = f"chaos-{uuid.uuid4().hex[:8]}"
    if transport == "nats-queue":
        from types import SimpleNamespace

        from edalab._nats_server import NatsServer
        from edalab.transports.nats import NatsQueueSpec

        server = NatsServer(log_dir=run_dir / "nats").start()
    else:
        server = RedisServer(appendonly=True, log_dir=run_dir / f"redis-{transport}").start()
    old_pids = []
    try:
        if transport == "nats-queue":
            spec = NatsQueueSpec.from_lab(SimpleNamespace(nats_url=server.url), name, request_timeout_s=2.0,
                                          ack_wait_s=2.0)
        elif transport == "redis-stream":
            spec = RedisStreamSpec(url=server.url, stream=name, request_timeout_s=2.0, max_block_ms=500)
        else:
            spec = RedisPubSubSpec(url=server.url, channel=name, request_timeout_s=2.0)
        duration_s = 1.0 + down_s + after_s
        sc = edalab.Scenario("chaos-broker", run_dir=run_dir / f"broker-{transport}")
        sc.add("orders", chaos_produce, kwargs={"spec": spec, "rate_per_s": rate_per_s,
                                                "duration_s": duration_s})
        sc.add("billing", chaos_consume, kwargs={"spec": spec})

        def kill() -> None:
            old_pids.append(server.pid)
            server.kill()

        with sc.run(progress=False) as run:
            run.at(1.0).call(kill, label="broker killed")
            run.at(1.0 + down_s).call(lambda: server.restart(kill=False), label="broker started")
            run.wait_finished("orders", timeout_s=duration_s + 30)
            durable = transport in DURABLE
            run.until_delivered(len(sc.recorder.produced()), group=GROUP,
                                timeout_s=settle_s if durable else 1.0)
        row = figures(sc, transport, f"broker SIGKILLed, back after {down_s:g} s")
    finally:
        server.stop()
    broker_pids = [p for p in old_pids + [server.pid or 0] if p]
    row["left_behind"] += sum(_alive(p) for p in broker_pids)
    row["processes_checked"] += len(broker_pids)
    return row


def new_run_dir(base: Path | None = None) -> Path:
    path = (base or Path("/tmp")) / f"chaos-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path
