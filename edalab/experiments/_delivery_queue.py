"""Queue vs log on real servers: NATS JetStream's work queue against Kafka (notebook 09).

The same orders go to a JetStream work queue (``lab.transport("nats-queue")``: a
message is gone once acked, each message acked, nak'ed or left to time out on its
own) and to a Kafka topic with two partitions (a retained log: a group keeps a
position per partition). Two competing workers of one group read each; a few
orders are poison. Mid-stream one worker is SIGKILLed. Afterwards a *new* group tries
to read the same orders.

* :func:`queue_worker`: ack each order when done; ``nak`` a poison order, which
  JetStream delivers again (to any worker) and, after ``max_deliver`` deliveries,
  gives up on (a dead letter, ``spec.dead_letters()``). What the killed worker held
  unacked comes back to the other after ``ack_wait_s``.
* :func:`log_worker`: handle events in partition order, send a poison one to a
  dead-letter topic of its own (a log cannot skip one message: its position is one
  number per partition), commit the position after each batch. The killed worker's
  partition moves to the other after the group notices (session timeout), which
  starts at the last committed position.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, EdalabError
from edalab._lazy import lazy_module
from edalab.harness import Scenario
from edalab.workloads import steady
from edalab.experiments._result import MethodRows

pd = lazy_module("pandas")

__all__ = ["QUEUE_METHODS", "QueueLogResult", "queue_vs_log", "queue_worker", "log_worker", "poison_producer"]

#: what :func:`queue_vs_log` compares, in the ``method`` column
QUEUE_METHODS = ("nats-queue", "kafka")


def queue_worker(ctx, spec, group="kitchen", work_ms=10.0):
    """Handle each message: ack it when done (it leaves the queue); nak a poison one
    (delivered again, to any worker, until JetStream gives up after max_deliver)."""
    subscriber = spec.subscriber(group)
    handled = ctx.recorder.consumer_trace(ctx.name, group)
    took = ctx.recorder.table_writer(ctx.name, "took", ["event_id", "at_ns"])
    ctx.ready()
    while not ctx.stopping:
        batch = subscriber.receive(0.1)                  # at most fetch_batch: the prefetch
        for delivery in batch:
            took.write({"role": ctx.name, "event_id": delivery.event.id, "at_ns": time.time_ns()})
        for delivery in batch:
            time.sleep(work_ms / 1000)                   # the work
            if delivery.event.payload.get("poison"):
                ctx.note("nak", event_id=delivery.event.id, seq=delivery.event.seq,
                         delivery=subscriber.delivery_count(delivery))
                subscriber.nak(delivery)                 # failed: again later
                continue
            handled.record(delivery._replace(received_at_ns=time.time_ns()))
            subscriber.ack(delivery)                     # done: JetStream deletes it
    subscriber.close()


def log_worker(ctx, spec, dead_spec, group="kitchen", work_ms=10.0):
    """Handle each event in partition order; a poison one goes to a dead-letter topic;
    commit the position after each batch."""
    subscriber = spec.subscriber(group)
    dead = dead_spec.publisher()
    handled = ctx.recorder.consumer_trace(ctx.name, group)
    took = ctx.recorder.table_writer(ctx.name, "took", ["event_id", "at_ns"])
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    while not ctx.stopping:
        batch = subscriber.receive(0.1)
        for delivery in batch:
            took.write({"role": ctx.name, "event_id": delivery.event.id, "at_ns": time.time_ns()})
        for delivery in batch:
            time.sleep(work_ms / 1000)
            if delivery.event.payload.get("poison"):
                dead.publish(delivery.event)             # park it; the position moves on
                ctx.note("dead-lettered", event_id=delivery.event.id, seq=delivery.event.seq)
                continue
            handled.record(delivery._replace(received_at_ns=time.time_ns()))
        if batch:
            dead.flush()
            subscriber.commit()                          # one position per partition
    dead.close()
    subscriber.close()


def poison_producer(ctx, spec, schedule_s, poison_seqs, keys=8):
    """Publish an order at each time of ``schedule_s``; those in ``poison_seqs`` are poison."""
    from edalab._events import new_event

    publisher = spec.publisher()
    trace = ctx.recorder.producer_trace(ctx.name)
    try:
        for seq in ctx.on_schedule(schedule_s):
            event = new_event("order.placed", f"order-{seq % keys}",
                              {"order": seq, "poison": seq in poison_seqs}, producer=ctx.name, seq=seq)
            publisher.publish(event)
            trace.record(event)
        publisher.flush()
    finally:
        publisher.close()
        trace.close()


@dataclass
class QueueLogResult(MethodRows):
    """What :func:`queue_vs_log` measured.

    Attributes:
        summary: one row per ``method``: ``produced``, ``poison``, ``delivered``
            (good orders handled), ``handled_twice`` (handled again after the kill),
            ``held_at_kill`` (good orders worker a had taken and not finished when it was
            killed), ``takeover_s`` (from the kill until worker b took the first of them),
            ``latency_p50_ms``, ``latency_max_ms``, ``out_of_order`` (orders handled
            after a later order of the same key), ``dead_lettered``,
            ``read_by_new_group`` (orders a brand-new reader found afterwards) and
            ``left_in_broker`` (messages still stored after the run).
        new_group: per method, what happened when a second group tried to read.
        params: the checked parameters, with ``run_dir``.
    """

    summary: pd.DataFrame
    new_group: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return self.summary.set_index("method").round({"latency_p50_ms": 0, "latency_max_ms": 0})


def queue_vs_log(lab, *, methods: Sequence[str] = QUEUE_METHODS, events: int | None = None,
                 work_ms: float = 10.0, ack_wait_s: float = 1.0, max_deliver: int = 3,
                 kill_at_s: float = 0.3, quick: bool | None = None,
                 run_dir: str | Path | None = None, progress: bool = True) -> QueueLogResult:
    """Two competing workers per method, a backlog with poison orders, one worker SIGKILLed
    mid-stream while it holds orders; then a new group tries to read the same orders.

    Args:
        lab: from :func:`edalab.start` (with its NATS server).
        methods: a list of :data:`QUEUE_METHODS`.
        events: orders per method, sent at once (default 400, quick 160); every 30th
            from the 20th is poison.
        work_ms: a worker's time per order (ms).
        ack_wait_s: JetStream redelivers a message not acked within this time.
        max_deliver: JetStream's deliveries per message before it gives up.
        kill_at_s: when worker ``a`` is SIGKILLed (seconds after the gate), while both
            work through the backlog.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here instead of the runs folder.
        progress: show a progress bar.
    """
    quick = quick_mode(quick)
    methods = tuple(_checks.choices(methods, "methods", QUEUE_METHODS))
    events = _checks.count((160 if quick else 400) if events is None else events, "events", minimum=30,
                           sensible_max=5000, what=" orders")
    work_ms = _checks.number(work_ms, "work_ms", unit="ms", positive=True, sensible=(1, 100))
    ack_wait_s = _checks.number(ack_wait_s, "ack_wait_s", unit="seconds", positive=True, sensible=(0.2, 30))
    max_deliver = _checks.count(max_deliver, "max_deliver", minimum=2, maximum=20, what=" deliveries")
    kill_at_s = _checks.number(kill_at_s, "kill_at_s", unit="seconds", positive=True, sensible=(0.1, 60))
    if len(set(methods)) < len(methods):
        raise ConfigError(f"methods must not repeat a name (got {list(methods)}).")
    both_s = events * work_ms / 2000
    if kill_at_s >= both_s:
        raise ConfigError(f"kill_at_s={kill_at_s:g} s must fall while the two workers are busy (about "
                          f"{both_s:g} s for {events} orders of {work_ms:g} ms): kill earlier or send more.")
    p = dict(methods=methods, events=events, work_ms=work_ms, ack_wait_s=ack_wait_s,
             max_deliver=max_deliver, kill_at_s=kill_at_s, quick=quick)
    poison = frozenset(range(20, events, 30))
    sc = Scenario("queue-vs-log", run_dir=run_dir)
    p["run_dir"] = str(sc.run_dir)
    specs, dead_specs = {}, {}
    # Each worker takes at most 10 messages at a time (RabbitMQ's prefetch); only the workers ack/commit.
    options = {"nats-queue": dict(ack_wait_s=ack_wait_s, max_deliver=max_deliver, fetch_batch=10),
               "kafka": dict(partitions=2, commit_each_receive=False, max_poll_records=10)}
    for method in methods:
        specs[method] = lab.transport(method, **options[method])
        # A queue settles each message itself; a log needs a dead-letter topic of its own.
        body, extra = queue_worker, {}
        if specs[method].capabilities.replay:
            dead_specs[method] = lab.transport(method, partitions=1)
            body, extra = log_worker, {"dead_spec": dead_specs[method]}
        for member in ("a", "b"):
            sc.add(f"worker-{method}-{member}", body, kwargs=dict(spec=specs[method], group="kitchen",
                                                                  work_ms=work_ms, **extra), ready_timeout_s=40.0)
        sc.add(f"orders-{method}", poison_producer, kwargs=dict(
            spec=specs[method], schedule_s=steady(1000.0, events / 1000.0), poison_seqs=poison))
    good = events - len(poison)
    with sc.run(expect_events=good * len(methods), progress="queue vs log" if progress else False) as run:
        for method in methods:
            run.at(kill_at_s).kill(f"worker-{method}-a")
        for method in methods:
            run.wait_finished(f"orders-{method}", timeout_s=30)
        for method in methods:
            run.until_delivered(good, roles=[f"worker-{method}-a", f"worker-{method}-b"],
                                timeout_s=events * work_ms / 1000 + 30)
        # The queue's poison messages run out their deliveries (each worker notes its naks).
        naks = len(poison) * max_deliver * sum(not specs[m].capabilities.replay for m in methods)
        run.until(lambda: _naks(sc) >= naks, timeout_s=max_deliver * ack_wait_s + 5, step_s=0.1)
        run.sleep(0.2)
    summary, new_group = _after(sc, lab, methods, specs, dead_specs, poison)
    return QueueLogResult(summary, new_group, p)


def _after(sc: Scenario, lab, methods, specs: dict, dead_specs: dict, poison: frozenset):
    """Count from the traces; then ask each broker what is left and let a new group try."""
    from edalab.experiments._survival import read_all

    produced, received, took = sc.recorder.produced(), sc.recorder.received(), sc.recorder.table("took")
    life = sc.recorder.lifecycle()
    rows, new_group = [], {}
    for method in methods:
        sent = produced[produced["role"] == f"orders-{method}"]
        mine = received[received["role"].str.startswith(f"worker-{method}-")].sort_values("received_at_ns")
        first = mine.drop_duplicates("event_id")
        latency_ms = (first["received_at_ns"] - first["produced_at_ns"]) / 1e6
        a, b = f"worker-{method}-a", f"worker-{method}-b"
        kill_ns = int(life.loc[(life["role"] == a) & (life["what"] == "killed"), "at_ns"].iloc[0])
        # What a had taken and not finished when it died: where and when did it go?
        held = set(took.loc[took["role"] == a, "event_id"]) - set(mine.loc[mine["role"] == a, "event_id"])
        held -= set(sent.loc[sent["event_id"].isin(held) & sent["seq"].isin(poison), "event_id"])
        taken_by_b = took[(took["role"] == b) & took["event_id"].isin(held) & (took["at_ns"] > kill_ns)]
        spec = specs[method]
        if spec.capabilities.replay:
            read_again = len(read_all(spec, 5.0, expect=len(sent)) & set(sent["event_id"]))
            new_group[method] = (f"a new group read {read_again} of {len(sent)} orders from the beginning: "
                                 f"the log keeps them (until retention), whoever read them before")
            dead = len(read_all(dead_specs[method], 5.0, expect=len(poison)))
            left = read_again
        else:
            read_again = 0
            try:
                spec.subscriber("audit").close()
                new_group[method] = "a second group could subscribe"
            except EdalabError as error:
                new_group[method] = f"a second group was refused: {error}"
            # JetStream publishes its give-up advisory just after the last delivery: wait for it.
            deadline = time.monotonic() + 5.0
            while (dead := len(spec.dead_letters())) < len(poison) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = spec.pending()
        rows.append({"method": method, "produced": len(sent), "poison": len(poison),
                     "delivered": first["event_id"].nunique(), "handled_twice": len(mine) - len(first),
                     "held_at_kill": len(held),
                     "takeover_s": (int(taken_by_b["at_ns"].min()) - kill_ns) / 1e9 if len(taken_by_b) else float("nan"),
                     "latency_p50_ms": latency_ms.median(), "latency_max_ms": latency_ms.max(),
                     "out_of_order": _out_of_order(first), "dead_lettered": dead,
                     "read_by_new_group": read_again, "left_in_broker": left})
    return pd.DataFrame(rows), new_group


def _naks(sc: Scenario) -> int:
    notes = sc.recorder.notes()
    return int((notes["what"] == "nak").sum()) if len(notes) else 0


def _out_of_order(first: pd.DataFrame) -> int:
    """Orders first handled after an order of the same key that was sent later."""
    late = 0
    for _key, group in first.groupby("key"):
        seqs = group["seq"].to_numpy()
        late += int(sum(seqs[i] > seqs[i + 1:].min() for i in range(len(seqs) - 1)))
    return late
