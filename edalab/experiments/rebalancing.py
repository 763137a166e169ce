"""Rebalancing: a member joins the group, later one leaves, while events flow (notebook 03).

Partitions are handed out again whenever a group's membership changes. kafka-python
speaks the classic *eager* protocol: every member gives up all its partitions and
waits for the new assignment, so the whole group pauses. This experiment measures
that pause against the steady stream before it, counts what was lost or delivered
twice, and notes which partitions changed owner and which waited longest.

A member that stops cleanly does **not** commit its very last batch (see
:class:`edalab.transports.kafka.KafkaSubscriber`), so the partition's next owner gets
that batch again: at-least-once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab.experiments.competing import kitchen_workers, partitions_of_events, start_when_settled
from edalab.harness import Scenario
from edalab.roles import consume, produce

__all__ = ["RebalanceResult", "rebalance"]

_CHANGES = ("join", "leave")


@dataclass
class RebalanceResult:
    """What :func:`rebalance` measured (notebook 03). Times ``t_s`` are seconds since the
    first event was produced.

    Attributes:
        samples: one row per receipt, with ``t_s`` (received), ``produced_t_s``,
            ``latency_ms`` and ``partition``; ``role`` is the member.
        summary: one row for the group: ``produced``, ``delivered``, ``lost``,
            ``duplicated`` (over the whole run, rebalances included), ...
        changes: one row per membership change: ``change`` (``"join"``/``"leave"``),
            ``member``, ``at_s`` (asked for), ``done_s`` (the newcomer was ready / the
            leaver had exited), ``pause_s`` (the longest time after the change in
            which nobody in the group received anything), ``pause_start_s``,
            ``pause_end_s``, ``partition_pause_s`` (the longest time one partition's
            events were not delivered), ``slowest_partition`` (that partition),
            ``moved`` (partitions whose reader changed, a tuple), ``max_latency_ms``
            (the longest delay of an event produced after the change, before the next).
        steady_gap_ms: median time between consecutive deliveries before the first change.
        steady_latency_p50_ms: median delivery delay before the first change.
        params: the settings of the run.
    """

    samples: object
    summary: object
    changes: object
    steady_gap_ms: float
    steady_latency_p50_ms: float
    params: dict = field(default_factory=dict)

    @property
    def group(self):
        return self.summary.iloc[0]


def rebalance(lab, *, members: int = 2, partitions: int = 3, rate_per_s: float = 20.0,
              duration_s: float | None = None, changes: Sequence[str] = _CHANGES,
              join_at_s: float | None = None, leave_at_s: float | None = None, keys: int = 12,
              quick: bool | None = None, run_dir: str | Path | None = None) -> RebalanceResult:
    """Events flow steadily; one member joins the group, later one leaves (notebook 03).

    ``members`` workers start and the group settles; then a producer sends
    ``rate_per_s`` events a second, evenly spaced, for ``duration_s``. With ``"join"``
    a new worker starts at ``join_at_s``; with ``"leave"``, ``worker-1`` is stopped
    cleanly at ``leave_at_s`` (it closes its consumer and so leaves the group).
    Both happen on the run's timeline; a change waits until the one before is done.

    Args:
        lab: from :func:`edalab.start`.
        members: members before the join.
        partitions: partitions of the topic.
        rate_per_s: events per second (a steady stream, so a pause stands out).
        duration_s: seconds events flow (default 15, quick 6.5).
        changes: which of ``"join"`` and ``"leave"`` happen.
        join_at_s, leave_at_s: seconds after the producer started (defaults 25 % and
            65 % of the duration). When the newcomer can get no partition, the leave
            must come a session timeout after the join: a member leaving while another
            is still joining can stall the group on the embedded broker.
        keys: distinct order keys.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
    """
    from edalab import workloads

    quick = quick_mode(quick)
    members = _checks.count(members, "members", minimum=1, sensible_max=12, what="group members")
    partitions = _checks.count(partitions, "partitions", minimum=1, sensible_max=32)
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="events per second", positive=True,
                                sensible=(1, 500))
    duration_s = _checks.number((6.5 if quick else 15.0) if duration_s is None else duration_s,
                                "duration_s", unit="seconds", positive=True, sensible=(2, 120))
    changes = _checks.choices(changes, "changes", _CHANGES)
    join_at_s = _checks.number(0.25 * duration_s if join_at_s is None else join_at_s, "join_at_s",
                               unit="seconds", minimum=0, maximum=duration_s)
    leave_at_s = _checks.number(0.65 * duration_s if leave_at_s is None else leave_at_s, "leave_at_s",
                                unit="seconds", minimum=0, maximum=duration_s)
    keys = _checks.count(keys, "keys", minimum=1, sensible_max=1000)
    spec, group, names = kitchen_workers(lab, partitions, members)
    newcomer = f"worker-{members + 1}"
    session_s = spec.session_timeout_ms / 1000
    if set(changes) == set(_CHANGES) and members + 1 > partitions and leave_at_s < join_at_s + session_s:
        raise ConfigError(f"With {members + 1} members on {partitions} partitions the newcomer gets no "
                          f"partition and its join ends only later: leave_at_s must be at least "
                          f"join_at_s + {session_s:g} s (one session timeout), not {leave_at_s:g} s.")
    schedule = workloads.steady(rate_per_s, duration_s)
    sc = Scenario("rebalance", run_dir=run_dir)
    for name in names:
        sc.add(name, consume, kwargs={"spec": spec, "group": group})
    # The newcomer is ready once the rebalance gave it partitions (if any are left for it).
    sc.add(newcomer, consume, kwargs={"spec": spec, "group": group,
                                      "wait_for_assignment": members + 1 <= partitions}, start=False)
    sc.add("kitchen", produce, kwargs={"spec": spec, "schedule_s": schedule, "keys": keys}, start=False)
    with sc.run(expect_events=len(schedule), progress="rebalance") as run:
        t0_s = start_when_settled(run, sc.recorder, names, partitions, "kitchen")
        if "join" in changes:
            run.at(t0_s + join_at_s).start(newcomer)
        if "leave" in changes:
            leave_s = t0_s + leave_at_s
            if "join" in changes:
                # A change waits until the one before is done. On a loaded machine (a parallel
                # test suite) the newcomer's process took longer to start and join than the
                # 2.6 s between the two (quick): both rebalances fell in the leave's window and
                # the join showed no pause at all. The leave comes after the newcomer is ready
                # and its first receipts (at most a fetch wait) are in.
                run.until(lambda: sc[newcomer].alive and sc[newcomer].is_ready(),
                          timeout_s=leave_s - run.elapsed_s() + sc[newcomer].ready_timeout_s)
                leave_s = max(leave_s, run.elapsed_s() + 1.0)
            run.at(leave_s).stop(names[0])
        run.wait_finished("kitchen", timeout_s=duration_s + 30)
        run.until_delivered(len(schedule), group=group, timeout_s=10)
        gate_ns = run.gate_ns

    samples = sc.recorder.samples()
    partition_of = partitions_of_events(lab, spec.topic, len(schedule))
    samples["partition"] = samples["event_id"].map(partition_of).astype("Int64")
    origin_ns = int(sc.recorder.produced()["produced_at_ns"].min())
    samples["t_s"] = (samples["received_at_ns"] - origin_ns) / 1e9
    samples["produced_t_s"] = (samples["produced_at_ns"] - origin_ns) / 1e9
    summary = sc.recorder.summary(groups=[group]).reset_index().assign(group="kitchen-workers")
    moments = _moments(sc.recorder.lifecycle(), [newcomer, names[0]], gate_ns, origin_ns)
    change_table, steady_gap_ms, steady_p50_ms = pauses(samples, moments, duration_s)
    params = dict(members=members, partitions=partitions, rate_per_s=rate_per_s, duration_s=duration_s,
                  changes=tuple(changes), join_at_s=join_at_s, leave_at_s=leave_at_s, keys=keys,
                  events=len(schedule), quick=quick, topic=spec.topic, run_dir=str(sc.run_dir),
                  session_timeout_ms=spec.session_timeout_ms,
                  heartbeat_interval_ms=spec.heartbeat_interval_ms, kafka_embedded=lab.kafka_embedded)
    return RebalanceResult(samples, summary, change_table, steady_gap_ms, steady_p50_ms, params)


def _moments(lifecycle, roles: Sequence[str], gate_ns: int, origin_ns: int) -> list[tuple]:
    """(change, member, asked_s, done_s) from the timeline's lifecycle rows, in seconds
    since the first event. done = when the action returned; asked = its planned moment, or
    when the change before it was done if that was later (the owner runs one at a time)."""
    if "planned_s" not in lifecycle.columns:
        return []
    planned = lifecycle[lifecycle["role"].isin(roles) & lifecycle["planned_s"].notna()]
    kinds = {"started": "join", "stopped": "leave"}
    moments, previous_done_s = [], -np.inf
    for r in planned.itertuples():
        if r.what in kinds:
            done_s = (r.at_ns - origin_ns) / 1e9
            asked_s = max((gate_ns + r.planned_s * 1e9 - origin_ns) / 1e9, previous_done_s)
            moments.append((kinds[r.what], r.role, asked_s, done_s))
            previous_done_s = done_s
    return moments


def longest_gap(times: np.ndarray, after_s: float, until_s: float) -> tuple[float, float, float]:
    """Longest gap between consecutive times that ends in (after_s, until_s]: (length, start, end)."""
    times = np.sort(np.asarray(times, dtype=float))
    gap_start, gap_end = times[:-1], times[1:]
    inside = (gap_end > after_s) & (gap_end <= until_s)
    if not inside.any():
        return float("nan"), float("nan"), float("nan")
    gaps = gap_end[inside] - gap_start[inside]
    j = int(np.argmax(gaps))
    return float(gaps[j]), float(gap_start[inside][j]), float(gap_end[inside][j])


def _reader(part, before_s: float | None = None, after_s: float | None = None, until_s: float = np.inf):
    """The member that last received from this partition before ``before_s`` / in (after_s, until_s]."""
    rows = part[part["t_s"] < before_s] if before_s is not None else \
        part[(part["t_s"] > after_s) & (part["t_s"] <= until_s)]
    return rows["role"].iloc[-1] if len(rows) else None


def pauses(samples, moments: list[tuple], duration_s: float):
    """The silences after each membership change, and the steady state before the first.

    A pure function of the receipts (with ``t_s``, ``produced_t_s``, ``partition``)
    and the changes ``(change, member, at_s, done_s)``: (changes table, steady gap in
    ms, steady median delay in ms).
    """
    import pandas as pd

    times = samples["t_s"].to_numpy()
    first_change_s = moments[0][2] if moments else np.inf
    before = np.sort(times[times < first_change_s])
    steady_gap_ms = float(np.median(np.diff(before)) * 1000) if len(before) > 2 else float("nan")
    steady = samples[samples["t_s"] < first_change_s]
    steady_p50_ms = float(steady["latency_ms"].median()) if len(steady) else float("nan")
    end_s = max(duration_s, float(times.max()) if len(times) else 0.0) + 1.0
    rows = []
    for i, (kind, member, at_s, done_s) in enumerate(moments):
        until_s = moments[i + 1][2] if i + 1 < len(moments) else end_s
        pause_s, pause_start_s, pause_end_s = longest_gap(times, at_s, until_s)  # nobody received
        waits = {int(p): longest_gap(part["t_s"].to_numpy(), at_s, until_s)[0]
                 for p, part in samples.groupby("partition")}
        waits = {p: w for p, w in waits.items() if w == w}  # a partition's silence, others going on
        moved = tuple(sorted(int(p) for p, part in samples.groupby("partition")
                             if _reader(part, before_s=at_s) != _reader(part, after_s=at_s, until_s=until_s)))
        window = samples[(samples["produced_t_s"] >= at_s) & (samples["produced_t_s"] < until_s)]
        slowest = max(waits, key=waits.get) if waits else None
        rows.append({"change": kind, "member": member, "at_s": at_s, "done_s": done_s,
                     "pause_s": pause_s, "pause_start_s": pause_start_s, "pause_end_s": pause_end_s,
                     "partition_pause_s": waits[slowest] if waits else float("nan"),
                     "slowest_partition": slowest, "moved": moved,
                     "max_latency_ms": float(window["latency_ms"].max()) if len(window) else float("nan")})
    return pd.DataFrame(rows), steady_gap_ms, steady_p50_ms
