"""Competing consumers: one group, several members, the events split (notebook 03).

The kitchen's cooks form one consumer group (``kitchen-workers``) on a topic with
several partitions. The group hands each partition to exactly one member, so each
event is handled once, and all events of one key (one partition) go to one member,
in order. :func:`rebalance` (in :mod:`edalab.experiments.rebalancing`) measures what
happens when the membership changes; the helpers here are shared with it.

Commit behaviour that matters here (see :class:`edalab.transports.kafka.KafkaSubscriber`):
auto commit is off; each ``receive()`` first commits what the previous one returned,
and a member commits what it got before a rebalance takes its partitions away.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ExperimentError
from edalab._events import Event
from edalab._recorder import Recorder, summarize
from edalab.harness import Run, Scenario
from edalab.roles import consume, produce

__all__ = ["CompetingResult", "competing_consumers", "GROUP_SETTLE_TIMEOUT_S"]

#: seconds a group may take to settle (joins take about a second each on the embedded broker)
GROUP_SETTLE_TIMEOUT_S = 30.0


def kitchen_workers(lab, partitions: int, members: int):
    """A fresh topic and group for the cooks: (spec, group, member names)."""
    tag = uuid.uuid4().hex[:8]
    spec = lab.transport("kafka", topic=f"orders-to-cook-{tag}", partitions=partitions)
    return spec, f"kitchen-workers-{tag}", [f"worker-{i}" for i in range(1, members + 1)]


def group_settled(recorder: Recorder, members: Sequence[str], partitions: int,
                  window_s: float = 0.6) -> Callable[[], bool]:
    """A condition for :meth:`edalab.Run.until`: the group is done joining.

    A member sends fetch requests only while it owns partitions, and nobody fetches
    during a rebalance, so "``min(members, partitions)`` members' request counters
    grew during the last ``window_s``" means the group is stable. (The consume role
    rewrites its counters every 0.25 s, so the window sees them grow.)
    """
    need = min(len(members), partitions)

    def requests() -> dict[str, float]:
        counters = recorder.counters()
        return dict(zip(counters["role"], counters["requests"].fillna(0)))

    state = {"since": time.monotonic(), "before": requests()}

    def settled() -> bool:
        if time.monotonic() - state["since"] < window_s:
            return False
        now = requests()
        growing = sum(now.get(m, 0) > state["before"].get(m, 0) for m in members)
        state.update(since=time.monotonic(), before=now)
        return growing >= need

    return settled


def start_when_settled(run: Run, recorder: Recorder, members: Sequence[str], partitions: int,
                       role: str) -> float:
    """Wait until the group settled, then start ``role`` (the producer) on the timeline;
    returns the moment it was ready, in seconds after the gate."""
    if not run.until(group_settled(recorder, members, partitions), timeout_s=GROUP_SETTLE_TIMEOUT_S,
                     step_s=0.05):
        raise ExperimentError(
            f"The consumer group of {list(members)} did not settle within {GROUP_SETTLE_TIMEOUT_S:.0f} s "
            f"(fewer than {min(len(members), partitions)} members fetching). Is the broker overloaded? "
            f"Check lab.describe() and retry.")
    run.at(run.elapsed_s()).start(role)
    run.sleep(0)  # runs the start now: it returns once the role is ready
    return run.elapsed_s()


def partitions_of_events(lab, topic: str, expected: int, timeout_s: float = 10.0) -> dict[str, int]:
    """Read the topic back, partition by partition: ``event id -> partition``.

    This asks the broker where each event was stored instead of recomputing the
    producer's hash, so the key -> partition table is a measurement too.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=lab.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=15000,
                             fetch_max_wait_ms=lab.kafka_defaults.fetch_max_wait_ms)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        where: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(where) < expected and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    where[Event.from_bytes(record.value).id] = tp.partition
        return where
    finally:
        consumer.close(autocommit=False, timeout_ms=5000)


@dataclass
class CompetingResult:
    """What :func:`competing_consumers` measured (notebook 03).

    Attributes:
        samples: one row per receipt (``role`` is the member), plus ``partition``
            (where the broker stored that event).
        summary: one row for the group: ``produced``, ``delivered``, ``lost``,
            ``duplicated``, ``out_of_order``, ``latency_p50_ms``, ...
        members: one row per member, idle ones included: ``member``, ``delivered``
            (distinct events it got), ``duplicated``, ``out_of_order`` (per-key order
            broken within that member), ``partitions`` (those it read from, a sorted
            tuple), ``keys`` (how many distinct keys it got).
        key_map: one row per key: ``key``, ``partition``, ``members`` (who got that
            key's events, comma-separated), ``events``.
        params: the settings of the run.
    """

    samples: object
    summary: object
    members: object
    key_map: object
    params: dict = field(default_factory=dict)

    @property
    def group(self):
        """The group's one summary row."""
        return self.summary.iloc[0]

    def idle_members(self) -> list[str]:
        """Members that received nothing (no partition was left for them)."""
        return self.members.loc[self.members["delivered"] == 0, "member"].tolist()


def competing_consumers(lab, *, members: int = 3, partitions: int = 3, events: int | None = None,
                        rate_per_s: float = 30.0, keys: int = 12, quick: bool | None = None,
                        seed: int = 4, run_dir: str | Path | None = None) -> CompetingResult:
    """One consumer group, several members, a topic with several partitions (notebook 03).

    The members (``worker-1`` ..) join one group; the producer starts once the group
    has settled, so this is the steady state: no rebalance while events flow.

    Args:
        lab: from :func:`edalab.start`.
        members: members of the group (more than ``partitions`` leaves some idle).
        partitions: partitions of the topic.
        events: events published (default 150, quick 40; at least 1).
        rate_per_s: mean event rate (random, Poisson arrivals), events per second.
        keys: distinct order keys; a key always lands in the same partition.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times repeat with the same seed.
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
    """
    from edalab import workloads

    quick = quick_mode(quick)
    members = _checks.count(members, "members", minimum=1, sensible_max=12, what="group members")
    partitions = _checks.count(partitions, "partitions", minimum=1, sensible_max=32)
    events = _checks.count((40 if quick else 150) if events is None else events, "events", minimum=1,
                           sensible_max=5000)
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="events per second", positive=True,
                                sensible=(1, 500))
    keys = _checks.count(keys, "keys", minimum=1, sensible_max=1000)
    schedule = workloads.poisson(events, rate_per_s, seed)
    spec, group, names = kitchen_workers(lab, partitions, members)
    sc = Scenario("competing", run_dir=run_dir)
    for name in names:  # a member beyond the partition count never gets one: do not wait for it
        sc.add(name, consume, kwargs={"spec": spec, "group": group,
                                      "wait_for_assignment": members <= partitions})
    sc.add("kitchen", produce, kwargs={"spec": spec, "schedule_s": schedule, "keys": keys}, start=False)
    with sc.run(expect_events=events, progress="competing consumers") as run:
        start_when_settled(run, sc.recorder, names, partitions, "kitchen")
        run.wait_finished("kitchen", timeout_s=schedule[-1] + 30)
        run.until_delivered(events, group=group, timeout_s=10)

    samples = sc.recorder.samples()
    partition_of = partitions_of_events(lab, spec.topic, events)
    samples["partition"] = samples["event_id"].map(partition_of).astype("Int64")
    summary = sc.recorder.summary(groups=[group]).reset_index().assign(group="kitchen-workers")
    params = dict(members=members, partitions=partitions, events=events, rate_per_s=rate_per_s,
                  keys=keys, quick=quick, seed=seed, topic=spec.topic, run_dir=str(sc.run_dir))
    return CompetingResult(samples, summary, members_table(sc.recorder, samples, names),
                           key_map(samples, sc.recorder.produced(), partition_of), params)


def members_table(recorder: Recorder, samples, names: Sequence[str]):
    """Per member: delivered, duplicated and per-key order, each member on its own."""
    import pandas as pd

    received = recorder.received()
    # Summarising with one "group" per member checks each member's own order.
    per_member = summarize(recorder.produced(), received.assign(group=received["role"]), groups=list(names))
    rows = []
    for name in names:
        mine = samples[samples["role"] == name]
        rows.append({"member": name,
                     "delivered": int(per_member.loc[name, "delivered"]),
                     "duplicated": int(per_member.loc[name, "duplicated"]),
                     "out_of_order": int(per_member.loc[name, "out_of_order"]),
                     "partitions": tuple(sorted(int(p) for p in mine["partition"].dropna().unique())),
                     "keys": int(mine["key"].nunique())})
    return pd.DataFrame(rows)


def key_map(samples, produced, partition_of: dict[str, int]):
    """key -> partition (as stored by the broker) -> member(s) that received it."""
    import pandas as pd

    produced = produced.assign(partition=produced["event_id"].map(partition_of))
    rows = []
    for key, events in produced.groupby("key", sort=False):
        stored_in = sorted({int(p) for p in events["partition"].dropna()})
        got = samples.loc[samples["key"] == key, "role"]
        rows.append({"key": key, "partition": stored_in[0] if len(stored_in) == 1 else tuple(stored_in),
                     "members": ", ".join(sorted(set(got))), "events": len(events)})
    table = pd.DataFrame(rows)
    order = table["key"].str.extract(r"(\d+)$")[0].astype(float)
    return table.assign(_order=order).sort_values("_order").drop(columns="_order").reset_index(drop=True)
