"""Fan-out and competing consumers: who gets which event? (notebook 03)

The restaurant's kitchen publishes "order ready" events. Four experiments, each on
real servers with every producer, consumer and service in its own OS process:

* :func:`fan_out`: the waiter, billing and stock each subscribe in their *own*
  consumer group; every group gets every event (Kafka), and the same with Redis
  pub/sub, where every subscriber gets every event.
* :func:`competing_consumers`: one group (``kitchen-workers``) with several members
  on a topic with several partitions; the events are *split*, each delivered once
  to the group, and each key stays with one partition and so with one member.
* :func:`rebalance`: a member joins and another leaves while events flow; how long
  does the group stop delivering, and is anything lost or delivered twice?
* :func:`rest_vs_broker`: the REST alternative, a producer that calls every
  service itself, against a Kafka producer that publishes once, for 1..N services.

Commit behaviour that matters here (see :class:`edalab.transports.kafka.KafkaSubscriber`):
auto commit is off; each ``receive()`` first commits what the previous one returned,
a member commits what it got before a rebalance takes its partitions away, and a
member that stops does **not** commit its very last batch, so the partition's next
owner gets that batch again (at-least-once).
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab._events import Event, new_event
from edalab._recorder import Recorder, summarize
from edalab.experiments._trial import wait_for_receipts
from edalab.roles import Role, consume, poisson_schedule_s, produce
from edalab.transports._base import Publisher, TransportSpec

__all__ = [
    "FANOUT_TRANSPORTS",
    "REST_METHODS",
    "CallEveryServiceSpec",
    "CompetingResult",
    "FanOutResult",
    "RebalanceResult",
    "RestVsBrokerResult",
    "competing_consumers",
    "fan_out",
    "rebalance",
    "rest_vs_broker",
    "timed_produce",
]

#: transports :func:`fan_out` can compare
FANOUT_TRANSPORTS = ("kafka", "redis-pubsub")
#: the producers :func:`rest_vs_broker` compares
REST_METHODS = ("rest-sequential", "rest-parallel", "kafka")
#: the restaurant's services, in the order they are added
SERVICE_NAMES = ("waiter", "billing", "stock", "loyalty", "analytics", "delivery", "reviews", "hygiene")
#: seconds a group may take to settle (joins take ~1 s each on the embedded broker)
GROUP_SETTLE_TIMEOUT_S = 30.0
#: pause after starting processes and before timing anything: a fresh Python process
#: keeps a CPU busy for a moment after it said it is ready (first requests, lazy imports)
SETTLE_S = 0.5


# --------------------------------------------------------------------------------------
# Helpers shared by the experiments
# --------------------------------------------------------------------------------------


def _run_root(run_dir: str | Path | None, prefix: str) -> Path:
    return Path(run_dir or tempfile.mkdtemp(prefix=f"edalab-{prefix}-"))


def _kitchen_workers(lab, partitions: int, members: int):
    """A fresh topic and group for the kitchen workers: (topic, spec, group, member names)."""
    from edalab.transports.kafka import KafkaSpec

    tag = uuid.uuid4().hex[:8]
    topic = lab.create_topic(f"orders-to-cook-{tag}", partitions=partitions)
    names = [f"worker-{i}" for i in range(1, members + 1)]
    return topic, KafkaSpec.for_lab(lab, topic), f"kitchen-workers-{tag}", names


def _start_all(roles: Sequence[Role]) -> None:
    """Start role processes side by side (each takes ~0.5 s to import), then wait."""
    for role in roles:
        role.start(wait=False)
    for role in roles:
        role.wait_ready()


def _counter(recorder: Recorder, role: str, name: str) -> float:
    try:
        return float(json.loads((Path(recorder.run_dir) / f"counters-{role}.json").read_text())[name])
    except (OSError, ValueError, KeyError):
        return 0.0


def _wait_group_settled(recorder: Recorder, members: Sequence[str], partitions: int,
                        timeout_s: float = GROUP_SETTLE_TIMEOUT_S, window_s: float = 0.6) -> None:
    """Wait until a Kafka consumer group is done joining: ``min(members, partitions)``
    members fetch steadily.

    A member sends fetch requests only while it owns partitions, and nobody fetches
    while a rebalance is in progress, so "the fetch count of that many members grew
    during the last ``window_s``" means the group is stable. (The consume role's
    counters file is rewritten every 0.25 s, so the window sees it grow.)

    Raises:
        ExperimentError: the group did not settle within ``timeout_s``.
    """
    need = min(len(members), partitions)
    deadline = time.monotonic() + timeout_s
    before = {m: _counter(recorder, m, "requests") for m in members}
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = {m: _counter(recorder, m, "requests") for m in members}
        growing = [m for m in members if now[m] > before[m]]
        if len(growing) >= need:
            return
        before = now
    raise ExperimentError(
        f"The consumer group of {list(members)} did not settle within {timeout_s:.0f} s (fewer than "
        f"{need} members fetching). Is the broker overloaded? Check lab.describe() and retry.")


def _stop_all(roles: Sequence[Role]) -> None:
    """Stop roles side by side: each takes ~0.2-0.3 s to close its clients and exit."""
    from concurrent.futures import ThreadPoolExecutor

    roles = [r for r in roles if r.process is not None]
    if roles:
        with ThreadPoolExecutor(max_workers=len(roles)) as pool:
            for future in [pool.submit(role.stop) for role in roles]:
                future.result()


def _run_producer(producer: Role, last_s: float) -> None:
    """Wait for a producer role to finish its schedule; raise with its log if it failed."""
    producer.finish(timeout_s=last_s + 30.0)


def _partitions_of_events(lab, topic: str, expected: int, timeout_s: float = 10.0) -> dict[str, int]:
    """Read the topic back, partition by partition, and return ``event id -> partition``.

    This asks the broker where each event was stored instead of recomputing the
    producer's hash, so the key -> partition table is a measurement too.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=lab.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, bootstrap_timeout_ms=5000,
                             request_timeout_ms=15000,
                             fetch_max_wait_ms=lab.kafka_defaults.fetch_max_wait_ms)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
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


# --------------------------------------------------------------------------------------
# 1. Fan-out
# --------------------------------------------------------------------------------------


@dataclass
class FanOutResult:
    """What :func:`fan_out` measured (notebook 03).

    Attributes:
        samples: one row per receipt: ``transport``, ``service``, ``role``, ``group``,
            ``event_id``, ``key``, ``seq``, ``latency_ms``, ``duplicate``, ...
        summary: one row per transport and service: ``produced``, ``delivered``,
            ``lost``, ``duplicated``, ``out_of_order``, latency percentiles (ms).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)

    def every_service_got_everything(self, transport: str = "kafka") -> bool:
        """True when every service of ``transport`` received every produced event."""
        rows = self.summary[self.summary["transport"] == transport]
        return bool(len(rows)) and bool(((rows["delivered"] == rows["produced"]) & (rows["lost"] == 0)).all())


def fan_out(lab, *, services: Sequence[str] = SERVICE_NAMES[:3],
            transports: Sequence[str] = FANOUT_TRANSPORTS, events: int | None = None,
            rate_per_s: float = 30.0, partitions: int = 3, keys: int = 12,
            quick: bool | None = None, seed: int = 3,
            run_dir: str | Path | None = None) -> FanOutResult:
    """One kitchen publishes "order ready"; every service subscribes on its own (notebook 03).

    On Kafka each service is a consumer group of its own (one member each), reading a
    topic with ``partitions`` partitions; on Redis pub/sub each service is a subscriber
    of one channel. The consumers are subscribed (and on Kafka, their groups have
    joined) before the first event is sent.

    Args:
        lab: from :func:`edalab.start`.
        services: one consumer (and group) per name.
        transports: any of :data:`FANOUT_TRANSPORTS`.
        events: events published per transport (default 100, quick 30).
        rate_per_s: mean event rate (random, Poisson arrivals).
        partitions: partitions of the Kafka topic.
        keys: distinct order keys (``order-0`` .. ``order-{keys-1}``).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times repeat with the same seed.
        run_dir: where role traces go (a temporary folder by default).
    """
    quick = quick_mode(quick)
    events = events or (30 if quick else 100)
    unknown = set(transports) - set(FANOUT_TRANSPORTS)
    if unknown:
        raise ConfigError(f"Unknown transports {sorted(unknown)}; choose from {list(FANOUT_TRANSPORTS)}.")
    if not services or len(set(services)) != len(services):
        raise ConfigError(f"services must be distinct names, not {list(services)!r}.")
    if events < 1 or rate_per_s <= 0 or partitions < 1 or keys < 1:
        raise ConfigError("events, rate_per_s, partitions and keys must be positive.")
    root = _run_root(run_dir, "fanout")
    tag = uuid.uuid4().hex[:8]
    schedule = poisson_schedule_s(events, rate_per_s, seed)
    summaries, samples = [], []
    for transport in transports:
        recorder = Recorder(root / transport)
        if transport == "kafka":
            from edalab.transports.kafka import KafkaSpec

            spec = KafkaSpec.for_lab(lab, lab.create_topic(f"order-ready-{tag}", partitions=partitions))
            # Fresh group ids per run: a group keeps its committed offsets on the broker.
            group_of = {s: f"{s}-{tag}" for s in services}
        else:
            from edalab.transports.redis import RedisPubSubSpec

            spec = RedisPubSubSpec(lab.redis_url, f"order-ready-{tag}")
            group_of = {s: s for s in services}
        consumers = [Role(s, consume, recorder, spec=spec, group=group_of[s]) for s in services]
        producer = Role("kitchen", produce, recorder, spec=spec, schedule_s=schedule, keys=keys)
        try:
            _start_all(consumers)  # on Kafka, ready = the group joined and owns partitions
            producer.start()
            _run_producer(producer, schedule[-1])
            wait_for_receipts(recorder, list(services), events, timeout_s=10.0)
        finally:
            producer.kill()
            _stop_all(consumers)
        summary = recorder.summary(groups=[group_of[s] for s in services]).reset_index()
        service_of = {g: s for s, g in group_of.items()}
        summary.insert(0, "service", summary["group"].map(service_of))
        summary.insert(0, "transport", transport)
        summaries.append(summary)
        samples.append(recorder.samples().assign(transport=transport,
                                                 service=lambda d: d["role"]))
    summary = pd.concat(summaries, ignore_index=True)
    params = dict(services=tuple(services), transports=tuple(transports), events=events,
                  rate_per_s=rate_per_s, partitions=partitions, keys=keys, quick=quick, seed=seed,
                  run_dir=str(root))
    return FanOutResult(pd.concat(samples, ignore_index=True), summary, params)


# --------------------------------------------------------------------------------------
# 2. Competing consumers
# --------------------------------------------------------------------------------------


@dataclass
class CompetingResult:
    """What :func:`competing_consumers` measured (notebook 03).

    Attributes:
        samples: one row per receipt (``role`` is the member), plus ``partition``
            (where the broker stored that event).
        summary: one row for the group: ``produced``, ``delivered``, ``lost``,
            ``duplicated``, ``out_of_order``, latency percentiles (ms).
        members: one row per member, idle ones included: ``member``, ``delivered``
            (distinct events it got), ``duplicated``, ``out_of_order`` (per-key order
            broken within that member), ``partitions`` (those it read from, as a
            sorted tuple), ``keys`` (how many distinct keys it got).
        key_map: one row per key: ``key``, ``partition``, ``members`` (who got that
            key's events, comma-separated), ``events``.
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    members: pd.DataFrame
    key_map: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def group(self) -> pd.Series:
        """The group's one summary row."""
        return self.summary.iloc[0]

    def idle_members(self) -> list[str]:
        """Members that received nothing (no partition was left for them)."""
        return self.members.loc[self.members["delivered"] == 0, "member"].tolist()


def competing_consumers(lab, *, members: int = 3, partitions: int = 3, events: int | None = None,
                        rate_per_s: float = 30.0, keys: int = 12, quick: bool | None = None,
                        seed: int = 4, run_dir: str | Path | None = None) -> CompetingResult:
    """One consumer group, several members, a topic with several partitions (notebook 03).

    The members (``worker-1`` ..) join group ``kitchen-workers`` and the group settles
    before the first event is sent, so this is the steady state: no rebalance while
    events flow (:func:`rebalance` measures that).

    Args:
        lab: from :func:`edalab.start`.
        members: members of the group (more than ``partitions`` leaves some idle).
        partitions: partitions of the topic.
        events: events published (default 150, quick 40).
        rate_per_s: mean event rate (random, Poisson arrivals).
        keys: distinct order keys; a key always lands in the same partition.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times repeat with the same seed.
        run_dir: where role traces go (a temporary folder by default).
    """

    quick = quick_mode(quick)
    events = events or (40 if quick else 150)
    if members < 1 or partitions < 1 or events < 1 or rate_per_s <= 0 or keys < 1:
        raise ConfigError("members, partitions, events, rate_per_s and keys must be positive.")
    root = _run_root(run_dir, "competing")
    recorder = Recorder(root)
    topic, spec, group, names = _kitchen_workers(lab, partitions, members)
    schedule = poisson_schedule_s(events, rate_per_s, seed)
    # A member beyond the partition count never gets one: do not wait for it.
    workers = [Role(n, consume, recorder, spec=spec, group=group,
                    wait_for_assignment=members <= partitions) for n in names]
    producer = Role("kitchen", produce, recorder, spec=spec, schedule_s=schedule, keys=keys)
    try:
        _start_all(workers)
        _wait_group_settled(recorder, names, partitions)
        producer.start()
        _run_producer(producer, schedule[-1])
        wait_for_receipts(recorder, names, events, timeout_s=10.0, shared=True)
    finally:
        producer.kill()
        _stop_all(workers)

    samples = recorder.samples()
    partition_of = _partitions_of_events(lab, topic, events)
    samples["partition"] = samples["event_id"].map(partition_of).astype("Int64")
    summary = recorder.summary(groups=[group]).reset_index()
    summary["group"] = "kitchen-workers"
    members_table = _members_table(recorder, samples, names)
    key_map = _key_map(samples, recorder.produced(), partition_of)
    params = dict(members=members, partitions=partitions, events=events, rate_per_s=rate_per_s,
                  keys=keys, quick=quick, seed=seed, topic=topic, run_dir=str(root))
    return CompetingResult(samples, summary, members_table, key_map, params)


def _members_table(recorder: Recorder, samples: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Per member: delivered, duplicated and per-key order, each member on its own."""
    received = recorder.received()
    # Summarising with one "group" per member checks each member's own order.
    per_member = summarize(recorder.produced(), received.assign(group=received["role"]),
                           groups=list(names))
    rows = []
    for name in names:
        mine = samples[samples["role"] == name]
        rows.append({
            "member": name,
            "delivered": int(per_member.loc[name, "delivered"]),
            "duplicated": int(per_member.loc[name, "duplicated"]),
            "out_of_order": int(per_member.loc[name, "out_of_order"]),
            "partitions": tuple(sorted(int(p) for p in mine["partition"].dropna().unique())),
            "keys": int(mine["key"].nunique()),
        })
    return pd.DataFrame(rows)


def _key_map(samples: pd.DataFrame, produced: pd.DataFrame, partition_of: dict[str, int]) -> pd.DataFrame:
    """key -> partition (as stored by the broker) -> member(s) that received it."""
    produced = produced.assign(partition=produced["event_id"].map(partition_of))
    rows = []
    for key, events in produced.groupby("key", sort=False):
        stored_in = sorted({int(p) for p in events["partition"].dropna()})
        got = samples.loc[samples["key"] == key, "role"]
        rows.append({"key": key,
                     "partition": stored_in[0] if len(stored_in) == 1 else tuple(stored_in),
                     "members": ", ".join(sorted(set(got))),
                     "events": len(events)})
    table = pd.DataFrame(rows)
    order = table["key"].str.extract(r"(\d+)$")[0].astype(float)
    return table.assign(_order=order).sort_values("_order").drop(columns="_order").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# 3. Rebalancing
# --------------------------------------------------------------------------------------


@dataclass
class RebalanceResult:
    """What :func:`rebalance` measured (notebook 03).

    Times ``t_s`` are seconds since the first event was produced.

    Attributes:
        samples: one row per receipt, with ``t_s`` (received), ``produced_t_s``,
            ``latency_ms`` and ``partition``; ``role`` is the member.
        summary: one row for the group: ``produced``, ``delivered``, ``lost``,
            ``duplicated`` (over the whole run, rebalances included), ...
        changes: one row per membership change: ``change`` (``"join"``/``"leave"``),
            ``member``, ``at_s`` (when it was asked for), ``done_s`` (the new member
            owned partitions / the old one had exited), ``pause_s`` (the longest
            time after the change in which nobody in the group received anything),
            ``pause_start_s``, ``pause_end_s``, ``partition_pause_s`` (the longest
            time one partition's events were not delivered, while other members may
            have gone on), ``max_latency_ms`` (the longest delay of an event produced
            after the change and before the next one).
        steady_gap_ms: median time between consecutive deliveries to the group
            before the first change (how often something normally arrives).
        steady_latency_p50_ms: median delivery delay before the first change.
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    changes: pd.DataFrame
    steady_gap_ms: float
    steady_latency_p50_ms: float
    params: dict = field(default_factory=dict)

    @property
    def group(self) -> pd.Series:
        return self.summary.iloc[0]


def rebalance(lab, *, members: int = 2, partitions: int = 3, rate_per_s: float = 20.0,
              duration_s: float | None = None, changes: Sequence[str] = ("join", "leave"),
              join_at_s: float | None = None, leave_at_s: float | None = None, keys: int = 12,
              quick: bool | None = None, run_dir: str | Path | None = None) -> RebalanceResult:
    """Events flow steadily; one member joins the group, later one leaves (notebook 03).

    ``members`` workers start and settle; a producer sends ``rate_per_s`` events a
    second, evenly spaced, for ``duration_s``. With ``"join"`` in ``changes`` a new
    worker starts at ``join_at_s``; with ``"leave"``, ``worker-1`` is stopped cleanly
    at ``leave_at_s`` (SIGTERM: it finishes its loop, closes its consumer and so
    leaves the group, without committing its last batch).

    Args:
        lab: from :func:`edalab.start`.
        members: members before the join.
        partitions: partitions of the topic.
        rate_per_s: events per second (a steady stream, so a pause stands out).
        duration_s: how long events flow (default 15 s, quick 6.5 s).
        changes: which of ``"join"`` and ``"leave"`` happen.
        join_at_s, leave_at_s: seconds after the first event (defaults: at 25 % and
            65 % of the duration). A change waits until the one before has finished:
            a join until the newcomer owns partitions (or, when none are left for it,
            one session timeout).
        keys: distinct order keys.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: where role traces go (a temporary folder by default).
    """

    quick = quick_mode(quick)
    duration_s = duration_s or (6.5 if quick else 15.0)
    join_at_s = 0.25 * duration_s if join_at_s is None else join_at_s
    leave_at_s = 0.65 * duration_s if leave_at_s is None else leave_at_s
    if members < 1 or partitions < 1 or rate_per_s <= 0 or duration_s <= 0:
        raise ConfigError("members, partitions, rate_per_s and duration_s must be positive.")
    if not set(changes) <= {"join", "leave"}:
        raise ConfigError(f"changes must be taken from ('join', 'leave'), not {tuple(changes)!r}.")
    plan = sorted((at, kind) for at, kind in ((join_at_s, "join"), (leave_at_s, "leave"))
                  if kind in changes)
    if any(not 0 < at < duration_s for at, _ in plan):
        raise ConfigError(f"join_at_s and leave_at_s must lie inside (0, {duration_s}).")
    root = _run_root(run_dir, "rebalance")
    recorder = Recorder(root)
    topic, spec, group, names = _kitchen_workers(lab, partitions, members)
    workers = [Role(n, consume, recorder, spec=spec, group=group) for n in names]
    # The newcomer is ready once the rebalance gave it partitions (if any are left for it).
    newcomer = Role(f"worker-{members + 1}", consume, recorder, spec=spec, group=group,
                    wait_for_assignment=members + 1 <= partitions)
    events = round(duration_s * rate_per_s)
    schedule = [i / rate_per_s for i in range(events)]
    producer = Role("kitchen", produce, recorder, spec=spec, schedule_s=schedule, keys=keys)
    moments = []
    try:
        _start_all(workers)
        _wait_group_settled(recorder, names, partitions)
        producer.start()
        origin = time.monotonic()  # the producer's schedule starts when it is ready
        for at_s, kind in plan:
            time.sleep(max(0.0, origin + at_s - time.monotonic()))
            asked_ns = time.time_ns()
            if kind == "join":
                newcomer.start()
                moments.append(("join", newcomer.name, asked_ns, time.time_ns()))
                if members + 1 > partitions:
                    # Ready does not mean joined for a member that gets no partition. A
                    # member leaving while another is still joining left the group stuck
                    # for good on the embedded broker (Tansu 0.6.0), so give the join time.
                    time.sleep(spec.session_timeout_ms / 1000)
            else:
                workers[0].stop()
                moments.append(("leave", workers[0].name, asked_ns, time.time_ns()))
        _run_producer(producer, schedule[-1])
        wait_for_receipts(recorder, [r.name for r in [*workers, newcomer]], events, timeout_s=10.0,
                          shared=True)
    finally:
        producer.kill()
        _stop_all([*workers, newcomer])

    samples = recorder.samples()
    partition_of = _partitions_of_events(lab, topic, events)
    samples["partition"] = samples["event_id"].map(partition_of).astype("Int64")
    origin_ns = int(recorder.produced()["produced_at_ns"].min())
    samples["t_s"] = (samples["received_at_ns"] - origin_ns) / 1e9
    samples["produced_t_s"] = (samples["produced_at_ns"] - origin_ns) / 1e9
    summary = recorder.summary(groups=[group]).reset_index()
    summary["group"] = "kitchen-workers"
    change_table, steady_gap_ms, steady_p50_ms = _pauses(samples, moments, origin_ns, duration_s)
    params = dict(members=members, partitions=partitions, rate_per_s=rate_per_s,
                  duration_s=duration_s, changes=tuple(changes), join_at_s=join_at_s,
                  leave_at_s=leave_at_s, keys=keys,
                  events=events, quick=quick, topic=topic, run_dir=str(root),
                  session_timeout_ms=spec.session_timeout_ms,
                  heartbeat_interval_ms=spec.heartbeat_interval_ms,
                  kafka_embedded=lab.kafka_embedded)
    return RebalanceResult(samples, summary, change_table, steady_gap_ms, steady_p50_ms, params)


def _longest_gap(times: np.ndarray, after_s: float, until_s: float) -> tuple[float, float, float]:
    """Longest gap between consecutive times that ends in (after_s, until_s]: (length, start, end)."""
    times = np.sort(times)
    gap_start, gap_end = times[:-1], times[1:]
    inside = (gap_end > after_s) & (gap_end <= until_s)
    if not inside.any():
        return float("nan"), float("nan"), float("nan")
    gaps = gap_end[inside] - gap_start[inside]
    j = int(np.argmax(gaps))
    return float(gaps[j]), float(gap_start[inside][j]), float(gap_end[inside][j])


def _pauses(samples: pd.DataFrame, moments: list, origin_ns: int,
            duration_s: float) -> tuple[pd.DataFrame, float, float]:
    """The silences after each membership change, and the steady state before the first."""
    times = samples["t_s"].to_numpy()
    starts = [(asked_ns - origin_ns) / 1e9 for _, _, asked_ns, _ in moments]
    first_change_s = starts[0] if starts else np.inf
    before = np.sort(times[times < first_change_s])
    steady_gap_ms = float(np.median(np.diff(before)) * 1000) if len(before) > 2 else float("nan")
    steady = samples[samples["t_s"] < first_change_s]
    steady_p50_ms = float(steady["latency_ms"].median()) if len(steady) else float("nan")
    end_s = max(duration_s, float(times.max()) if len(times) else 0.0) + 1.0
    rows = []
    for i, (kind, member, asked_ns, done_ns) in enumerate(moments):
        at_s = starts[i]
        until_s = starts[i + 1] if i + 1 < len(starts) else end_s
        # The group's silence: nobody received anything.
        pause_s, pause_start_s, pause_end_s = _longest_gap(times, at_s, until_s)
        # A partition's silence: its events waited even while other members went on.
        partition_pause_s = max((_longest_gap(part["t_s"].to_numpy(), at_s, until_s)[0]
                                 for _, part in samples.groupby("partition")), default=float("nan"))
        window = samples[(samples["produced_t_s"] >= at_s) & (samples["produced_t_s"] < until_s)]
        rows.append({"change": kind, "member": member, "at_s": at_s,
                     "done_s": (done_ns - origin_ns) / 1e9, "pause_s": pause_s,
                     "pause_start_s": pause_start_s, "pause_end_s": pause_end_s,
                     "partition_pause_s": partition_pause_s,
                     "max_latency_ms": float(window["latency_ms"].max()) if len(window) else float("nan")})
    return pd.DataFrame(rows), steady_gap_ms, steady_p50_ms


# --------------------------------------------------------------------------------------
# 4. The REST alternative: the producer calls every service itself
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallEveryServiceSpec(TransportSpec):
    """A REST producer that POSTs each event to every service's ``/events`` (notebook 03).

    The list of URLs lives in the *producer*: adding a service means changing it.
    ``parallel`` makes the calls at the same time (one thread per service) instead of
    one after another. Services are edalab event services
    (:func:`edalab.transports.http.serve_event_service`); they store what they get.
    """

    urls: tuple[str, ...]
    parallel: bool = False
    timeout_s: float = 5.0

    kind = "rest-calls"

    def __post_init__(self) -> None:
        if not self.urls or not all(isinstance(u, str) and u.startswith("http") for u in self.urls):
            raise ConfigError(f"urls must be a non-empty tuple of http:// URLs, not {self.urls!r}.")

    def publisher(self) -> _CallEveryServicePublisher:
        return _CallEveryServicePublisher(self)

    def subscriber(self, group: str | None = None):
        raise ConfigError("CallEveryServiceSpec only sends; each service receives on its own "
                          "server (serve_event_service).")


class _CallEveryServicePublisher(Publisher):
    """``publish`` returns when every service answered 202 (it stored the event)."""

    def __init__(self, spec: CallEveryServiceSpec) -> None:
        from edalab.transports.http import HttpPublisher

        self.spec = spec
        self._publishers = [HttpPublisher(url, timeout_s=spec.timeout_s) for url in spec.urls]
        self._pool = None
        if spec.parallel and len(spec.urls) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=len(spec.urls), thread_name_prefix="rest-call")

    def publish(self, event: Event) -> None:
        if self._pool is None:
            for publisher in self._publishers:
                publisher.publish(event)
        else:
            for future in [self._pool.submit(p.publish, event) for p in self._publishers]:
                future.result(timeout=self.spec.timeout_s + 1.0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for publisher in self._publishers:
            publisher.close()


def timed_produce(ctx, stages: list, count: int, interval_s: float, keys: int = 12,
                  gated: bool = False, gate_timeout_s: float = 60.0,
                  event_type: str = "order.ready") -> None:
    """Producer role that times each publish, stage after stage (notebook 03).

    ``stages`` is a list of ``(stage_name, spec)``. For each stage the role publishes
    ``count`` events, one every ``interval_s`` seconds, and records how long it was
    busy until each event was safely handed over: for REST, until every service
    answered; for Kafka, ``publish`` plus ``flush`` (the broker acknowledged it with
    ``acks=all``). Rows go to ``publish-times-<role>.csv`` in the run directory
    (``stage, seq, event_id, publish_ms``); events also go to the producer trace.

    With ``gated`` the role waits for a file ``go-<role>-<stage>`` in the run directory
    before each stage (the experiment first changes what listens), and writes
    ``done-<role>-<stage>`` after it. Sequence numbers continue across stages.
    """
    run_dir = Path(ctx.recorder.run_dir)
    trace = ctx.recorder.producer_trace(ctx.name)
    by_spec: dict = {}  # one client per distinct spec: Kafka stages share one producer
    for _, spec in stages:
        if spec not in by_spec:
            by_spec[spec] = spec.publisher()
    publishers = [(stage, by_spec[spec]) for stage, spec in stages]
    ctx.ready()
    seq = 0
    try:
        with open(run_dir / f"publish-times-{ctx.name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["stage", "seq", "event_id", "publish_ms"])
            for stage, publisher in publishers:
                if gated:
                    go, give_up = run_dir / f"go-{ctx.name}-{stage}", time.monotonic() + gate_timeout_s
                    while not go.exists():
                        if ctx.sleep(0.02):
                            return
                        if time.monotonic() > give_up:
                            raise ExperimentError(f"No go for stage {stage!r} within {gate_timeout_s} s "
                                                  f"(no file {go}); the experiment stopped driving "
                                                  f"this producer.")
                start = time.monotonic()
                for i in range(count):
                    if ctx.sleep(start + i * interval_s - time.monotonic()):
                        return
                    event = new_event(event_type, f"order-{seq % keys}", {"order": seq, "stage": stage},
                                      producer=ctx.name, seq=seq)
                    trace.record(event)
                    t0 = time.perf_counter()
                    publisher.publish(event)
                    publisher.flush()
                    writer.writerow([stage, seq, event.id, (time.perf_counter() - t0) * 1000])
                    seq += 1
                f.flush()
                (run_dir / f"done-{ctx.name}-{stage}").touch()
    finally:
        for publisher in by_spec.values():
            publisher.close()
        trace.close()


@dataclass
class RestVsBrokerResult:
    """What :func:`rest_vs_broker` measured (notebook 03).

    Attributes:
        samples: one row per published event: ``method`` (one of :data:`REST_METHODS`),
            ``services``, ``seq``, ``event_id``, ``publish_ms`` (how long the producer
            was busy with it).
        summary: one row per method and number of services: ``events``,
            ``publish_p50_ms``, ``publish_mean_ms``, ``publish_p90_ms``,
            ``delivered_min`` (the fewest of those events any of the services
            received), ``producer_urls`` (addresses the producer had to know).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)

    def cost_ratio(self, method: str, services: int | None = None) -> float:
        """Median publish time with ``services`` (default: the most) over that with the fewest."""
        rows = self.summary[self.summary["method"] == method].set_index("services")["publish_p50_ms"]
        return float(rows.loc[services if services is not None else rows.index.max()] / rows.loc[rows.index.min()])


def _stored_ids(url: str, timeout_s: float = 5.0) -> set[str]:
    """Every event id one event service stored (paging through ``GET /events``)."""
    import httpx

    got: set[str] = set()
    after = -1
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        while True:
            response = client.get("/events", params={"after": after})
            response.raise_for_status()
            answer = response.json()
            if not answer["events"]:
                return got
            got.update(e["id"] for e in answer["events"])
            after = answer["next"]


def _wait_stage(producer: Role, marker: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if not producer.alive or time.monotonic() > deadline:
            producer.kill()
            raise ExperimentError(f"The producer did not finish stage {marker.name} within "
                                  f"{timeout_s:.0f} s. Its log ends:\n{producer.log_tail()}")
        time.sleep(0.02)


def rest_vs_broker(lab, *, services_counts: Sequence[int] | None = None,
                   methods: Sequence[str] = REST_METHODS, events: int | None = None,
                   rate_per_s: float = 80.0, quick: bool | None = None,
                   run_dir: str | Path | None = None) -> RestVsBrokerResult:
    """How the producer's cost grows with the number of services: REST vs Kafka (notebook 03).

    ``max(services_counts)`` services run as HTTP servers (edalab event services),
    each in its own process. For each number of services n:

    * ``rest-sequential``: the producer POSTs each event to n services, one call
      after another (its list of URLs grows with n);
    * ``rest-parallel``: the same n calls made at the same time (n threads);
    * ``kafka``: n consumer groups read the topic (one per service); the producer
      publishes once and waits for the broker's acknowledgement, with the very same
      settings for every n.

    Each (method, n) publishes ``events`` events, evenly spaced at ``rate_per_s``, after
    one unreported warm-up stage of as many events (fresh processes are slow at first).
    Delivery is counted afterwards: from each service's log for REST, from each
    consumer group's trace for Kafka.

    Args:
        lab: from :func:`edalab.start`.
        services_counts: numbers of services to try (default 1-6, quick 1 and 3).
        methods: any of :data:`REST_METHODS`.
        events: events per (method, n) (default 150, quick 40).
        rate_per_s: events per second.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: where traces go (a temporary folder by default).
    """
    from edalab._servers import free_port
    from edalab.transports.http import serve_event_service
    from edalab.transports.kafka import KafkaSpec

    quick = quick_mode(quick)
    counts = tuple(sorted(set(services_counts or ((1, 3) if quick else (1, 2, 3, 4, 5, 6)))))
    events = events or (40 if quick else 150)
    unknown = set(methods) - set(REST_METHODS)
    if unknown:
        raise ConfigError(f"Unknown methods {sorted(unknown)}; choose from {list(REST_METHODS)}.")
    if not counts or counts[0] < 1 or counts[-1] > len(SERVICE_NAMES) or events < 1 or rate_per_s <= 0:
        raise ConfigError(f"services_counts must lie in 1..{len(SERVICE_NAMES)}; events and "
                          f"rate_per_s must be positive.")
    root = _run_root(run_dir, "rest-vs-broker")
    tag = uuid.uuid4().hex[:8]
    names = SERVICE_NAMES[:counts[-1]]
    interval_s = 1.0 / rate_per_s
    stage_timeout_s = events * interval_s + 30.0
    rows, samples = [], []

    rest_methods = [m for m in methods if m != "kafka"]
    if rest_methods:
        recorder = Recorder(root / "rest")
        urls = {s: f"http://127.0.0.1:{free_port()}" for s in names}
        services = [Role(s, serve_event_service, Recorder(root / "services"), base_url=urls[s])
                    for s in names]
        # A first, unreported stage warms up the fresh service processes.
        stages = [("warm-up", CallEveryServiceSpec(tuple(urls.values())))]
        stages += [(f"{m}-{n}", CallEveryServiceSpec(tuple(urls[s] for s in names[:n]),
                                                     parallel=m == "rest-parallel"))
                   for m in rest_methods for n in counts]
        producer = Role("rest-producer", timed_produce, recorder, stages=stages, count=events,
                        interval_s=interval_s, gated=True)
        try:
            _start_all([*services, producer])  # the producer waits at its gate meanwhile
            time.sleep(SETTLE_S)
            for stage, _ in stages:
                (Path(recorder.run_dir) / f"go-rest-producer-{stage}").touch()
            _run_producer(producer, len(stages) * events * interval_s)
            stored = {s: _stored_ids(urls[s]) for s in names}
        finally:
            producer.kill()
            _stop_all(services)
        times = _timings(recorder, "rest-producer")
        for m in rest_methods:
            for n in counts:
                mine = times[times["stage"] == f"{m}-{n}"]
                ids = set(mine["event_id"])
                rows.append(_timing_row(mine, m, n, delivered_min=min(len(ids & stored[s]) for s in names[:n]),
                                        producer_urls=n))
                samples.append(mine.assign(method=m, services=n))

    if "kafka" in methods:
        recorder = Recorder(root / "kafka")
        spec = KafkaSpec.for_lab(lab, lab.create_topic(f"order-ready-{tag}", partitions=3))
        groups = {s: f"{s}-{tag}" for s in names}
        # The same spec at every stage: the producer does not know who listens.
        stages = [("warm-up", spec)] + [(f"kafka-{n}", spec) for n in counts]
        producer = Role("kafka-producer", timed_produce, recorder, stages=stages, count=events,
                        interval_s=interval_s, gated=True)
        consumers: list[Role] = []
        run_dir_path = Path(recorder.run_dir)
        try:
            producer.start(wait=False)
            for i, n in enumerate(counts):
                new = [Role(s, consume, recorder, spec=spec, group=groups[s])
                       for s in names[len(consumers):n]]
                _start_all(new)  # ready = joined its group and got partitions
                consumers += new
                producer.wait_ready()
                time.sleep(SETTLE_S)
                if i == 0:  # warm up the producer and the broker with the first group reading
                    (run_dir_path / "go-kafka-producer-warm-up").touch()
                    _wait_stage(producer, run_dir_path / "done-kafka-producer-warm-up", stage_timeout_s)
                (run_dir_path / f"go-kafka-producer-kafka-{n}").touch()
                _wait_stage(producer, run_dir_path / f"done-kafka-producer-kafka-{n}", stage_timeout_s)
            _run_producer(producer, 0.0)
            wait_for_receipts(recorder, [r.name for r in consumers], events * len(stages), timeout_s=10.0)
        finally:
            producer.kill()
            _stop_all(consumers)
        received = recorder.received()
        times = _timings(recorder, "kafka-producer")
        for n in counts:
            mine = times[times["stage"] == f"kafka-{n}"]
            ids = set(mine["event_id"])
            got = min(len(ids & set(received.loc[received["role"] == s, "event_id"])) for s in names[:n])
            rows.append(_timing_row(mine, "kafka", n, delivered_min=got, producer_urls=1))
            samples.append(mine.assign(method="kafka", services=n))

    params = dict(services_counts=counts, methods=tuple(methods), events=events,
                  rate_per_s=rate_per_s, quick=quick, run_dir=str(root), services=names)
    return RestVsBrokerResult(pd.concat(samples, ignore_index=True), pd.DataFrame(rows), params)


def _timings(recorder: Recorder, role: str) -> pd.DataFrame:
    path = Path(recorder.run_dir) / f"publish-times-{role}.csv"
    try:
        return pd.read_csv(path, dtype={"stage": str, "event_id": str})
    except (OSError, pd.errors.EmptyDataError):
        raise ExperimentError(f"Producer {role} recorded no publish times; see its log "
                              f"{recorder.run_dir}/role-{role}.log.") from None


def _timing_row(times: pd.DataFrame, method: str, services: int, **extra) -> dict:
    t = times["publish_ms"].to_numpy(dtype=float)
    if not len(t):
        raise ExperimentError(f"No publish times for {method} with {services} services.")
    return {"method": method, "services": services, "events": len(t),
            "publish_p50_ms": float(np.median(t)), "publish_mean_ms": float(t.mean()),
            "publish_p90_ms": float(np.percentile(t, 90)), **extra}
