"""Kafka's own unit of scale: partitions x consumers in one group (notebook 11).

A topic with P partitions is read by at most P members of one group at a time, so a
group's throughput grows with min(P, consumers) until something else runs out (here:
this machine's two cores, or the broker). Each trial pre-loads a fresh topic with a
backlog, then starts C members that each handle an event in ``work_ms`` (a wait, like
a database call: the work is not this machine's CPU) and measures how fast the group
drains it. The same cells run on the embedded broker (Tansu) or on any Kafka cluster
``edalab.start`` connects to (``EDALAB_KAFKA_BOOTSTRAP``); the result says which.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import new_run_dir, quick_mode
from edalab._errors import ConfigError, RoleError
from edalab._events import new_event
from edalab.harness import Scenario

__all__ = ["partitions_x_consumers", "PartitionsResult", "work_through"]


def work_through(ctx, spec, group: str, work_ms: float, wait_for_assignment: bool = True) -> None:
    """Group member: take events, spend ``work_ms`` on each (a wait), record when each was done.

    ``wait_for_assignment=False`` for a member that may get no partition (more members
    than partitions): it is ready once it asked to join.
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    try:
        if wait_for_assignment:
            subscriber.wait_ready(timeout_s=30.0)    # joined: the group's join is not throughput
        if ctx.gate() is None:
            return
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                time.sleep(work_ms / 1000)
                # the trace's received_at_ns is when the work on it was done: the drain rate
                trace.record(delivery._replace(received_at_ns=time.time_ns()))
    finally:
        subscriber.close()
        trace.close()


def _preload(spec, events: int) -> None:
    publisher = spec.publisher()
    try:
        for seq in range(events):
            publisher.publish(new_event("order.placed", f"order-{seq}", {"order": seq}, producer="preload", seq=seq))
        publisher.flush(timeout_s=30.0)
    finally:
        publisher.close()


def partitions_x_consumers(lab, *, trials: Sequence[tuple[int, int]] | None = None, events: int | None = None,
                           work_ms: float = 20.0, quick: bool | None = None,
                           run_dir: str | Path | None = None, progress: bool = True) -> "PartitionsResult":
    """Drain a backlog with C members of one group on a P-partition topic, for each (P, C) in ``trials``.

    Args:
        lab: from :func:`edalab.start` (embedded broker, ``edalab up`` or a cluster).
        trials: (partitions, consumers) pairs (default (4, 1), (4, 2), (4, 4), (2, 4), (8, 8),
            (12, 12); quick: (2, 2), (1, 2)). A trial whose group never finishes joining
            (every member assigned within 30 s) is a row with ``settled`` False.
        events: backlog per trial (default 800; quick 40).
        work_ms: each member's time per event (a wait), milliseconds.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep each trial's traces in a subfolder of this folder.
        progress: show a progress bar per trial.
    """
    import pandas as pd

    quick = quick_mode(quick)
    default = ((2, 2), (1, 2)) if quick else ((4, 1), (4, 2), (4, 4), (2, 4), (8, 8), (12, 12))
    pairs = default if trials is None else trials
    if isinstance(pairs, (str, bytes)) or not all(isinstance(t, (tuple, list)) and len(t) == 2 for t in pairs):
        raise ConfigError(f"trials must be a list of (partitions, consumers) pairs, e.g. [(4, 2)], not {pairs!r}.")
    pairs = [(_checks.count(p, "partitions", minimum=1, maximum=64),
              _checks.count(c, "consumers", minimum=1, maximum=32, sensible_max=12, what="group members"))
             for p, c in pairs]
    if not pairs:
        raise ConfigError("trials must list at least one (partitions, consumers) pair.")
    events = _checks.count((40 if quick else 800) if events is None else events, "events", minimum=10,
                           sensible_max=20_000)
    work_ms = _checks.number(work_ms, "work_ms", unit="milliseconds", positive=True, sensible=(1, 200))
    root = Path(run_dir) if run_dir is not None else new_run_dir("partitions")
    rows = []
    for partitions, consumers in pairs:
        tag = uuid.uuid4().hex[:8]
        spec = lab.transport("kafka", topic=f"backlog-{tag}", partitions=partitions)
        _preload(spec, events)
        group = f"drain-{tag}"
        sc = Scenario("partitions", run_dir=root / f"p{partitions}-c{consumers}")
        for i in range(consumers):
            # members beyond the partition count get nothing: they must not hold up the start
            sc.add(f"member-{i + 1}", work_through, kwargs={"spec": spec, "group": group, "work_ms": work_ms,
                                                             "wait_for_assignment": consumers <= partitions},
                   ready_timeout_s=60.0)
        label = f"P={partitions} C={consumers}" if progress else False
        try:
            with sc.run(expect_events=events, progress=label) as run:
                run.until_delivered(events, group=group, timeout_s=events * work_ms / 1000 + 60)
        except RoleError as error:
            if "was assigned" not in str(error):
                raise
            # The group never finished joining (seen with 16 members on the embedded broker):
            # that is where this setup stops scaling, a finding, not a crash of the lesson.
            rows.append({"method": "kafka", "partitions": partitions, "consumers": consumers,
                         "active": min(partitions, consumers), "events": 0, "events_per_s": float("nan"),
                         "one_member_per_s": 1000 / work_ms, "members_with_events": 0, "settled": False})
            continue
        received = sc.recorder.received()
        done_s = (received["received_at_ns"].sort_values().to_numpy() - run.gate_ns) / 1e9
        # the middle 80 % of the backlog: without the group's last join and the tail
        lo, hi = done_s[int(0.1 * len(done_s))], done_s[int(0.9 * len(done_s)) - 1]
        rows.append({"method": "kafka", "partitions": partitions, "consumers": consumers,
                     "active": min(partitions, consumers), "events": len(received),
                     "events_per_s": 0.8 * len(done_s) / max(hi - lo, 1e-3),
                     "one_member_per_s": 1000 / work_ms,
                     "members_with_events": int(received["role"].nunique()), "settled": True})
    summary = pd.DataFrame(rows)
    summary["speedup"] = summary["events_per_s"] / summary["one_member_per_s"]
    # 1 while every member that can hold a partition adds a member's worth; lower where the machine stops scaling
    summary["efficiency"] = summary["speedup"] / summary["active"]
    params = dict(events=events, work_ms=work_ms, quick=quick, run_dir=str(root),
                  kafka=lab.kafka_bootstrap, kafka_mode=lab.kafka_mode)
    return PartitionsResult(summary, params)


@dataclass
class PartitionsResult:
    """What :func:`partitions_x_consumers` measured (notebook 11).

    Attributes:
        summary: one row per trial: ``partitions``, ``consumers``, ``active``
            (min of the two: members that can hold a partition), ``events_per_s`` (the
            group's drain rate over the middle of the backlog), ``speedup`` (over one
            member's ``1000 / work_ms``), ``efficiency`` (speedup per active member),
            ``members_with_events``, ``settled`` (False: the group never finished joining).
        params: the settings, and which Kafka ran (``kafka``, ``kafka_mode``).
    """

    summary: object
    params: dict = field(default_factory=dict)

    def which_kafka(self) -> str:
        """A sentence: the broker these trials ran on."""
        mode = self.params.get("kafka_mode")
        where = "the embedded broker (Tansu, one process)" if mode == "embedded" else f"Kafka ({mode})"
        return f"{where} at {self.params.get('kafka')}"
