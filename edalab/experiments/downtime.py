"""When the listener is down: what piles up, what is lost, what comes twice (notebook 04).

The restaurant's order service publishes ``order.placed`` events at a steady rate;
the billing service consumes them. Mid-stream billing goes away (a clean stop, or a
SIGKILL that gives it no chance to commit), stays away for a while, and comes back,
while orders keep coming. This is done side by side on

* Kafka (a topic read by consumer group ``billing``),
* Redis Streams (a stream read by consumer group ``billing``),
* Redis pub/sub (a channel; no groups, no storage),

each consumer and producer in its own OS process (:class:`edalab.Role`). Everything
is counted from the traces the roles write: events lost, events delivered twice,
how long the events sent while billing was away waited, and the lag (events produced
so far minus events billed so far) over time.

:func:`listener_down` runs the outage; :func:`replay` then reads the same topics
again with a brand-new reader, from the beginning or from an offset.

How billing commits (the :func:`billing` role): it handles events one at a time
(``work_ms`` each, so a backlog takes time to drain) and commits its position
(Kafka offset commit, Redis Streams ``XACK``) every ``commit_interval_s`` seconds,
as Kafka's auto-commit does every 5 s by default, and once more when it is stopped
cleanly. A SIGKILL skips that last commit, so the events handled since the previous
commit are delivered again after the restart: at-least-once delivery.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab._recorder import Recorder
from edalab.roles import Role, RoleContext, produce
from edalab.transports._base import Delivery

__all__ = ["TRANSPORTS", "STOP_MODES", "DowntimeResult", "ReplayResult", "listener_down", "replay",
           "billing", "replay_reader", "steady_schedule_s"]

#: the transports compared, by their ``TransportSpec.kind``
TRANSPORTS = ("kafka", "redis-stream", "redis-pubsub")
#: ``"clean"``: SIGTERM, billing commits and exits; ``"kill"``: SIGKILL, no commit
STOP_MODES = ("clean", "kill")
#: the consumer group billing uses on Kafka and Redis Streams
BILLING_GROUP = "billing"
#: seconds between points of the lag time series
LAG_STEP_S = 0.02

_LIFECYCLE = "lifecycle-{role}.jsonl"
_CONSUMER_LAG = "consumer-lag-{role}.csv"


# --------------------------------------------------------------------------- roles


def _note(ctx: RoleContext, what: str, **values) -> None:
    """Append one line to this role's life-cycle log (kept across restarts)."""
    path = Path(ctx.recorder.run_dir) / _LIFECYCLE.format(role=ctx.name)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"what": what, "at_ns": time.time_ns(), **values}) + "\n")


def billing(ctx: RoleContext, spec, group: str = BILLING_GROUP, receive_timeout_s: float = 0.1,
            work_ms: float = 20.0, commit_interval_s: float = 1.0,
            counters_every_s: float = 0.25) -> None:
    """The billing service as a role: handle each event, commit now and then (notebook 04).

    Args:
        spec: a Kafka, Redis Streams or Redis pub/sub spec. For Kafka and Streams the
            spec should not commit by itself (``commit_each_receive=False``,
            ``ack=False``): this role decides when to commit.
        group: the consumer group (ignored by pub/sub).
        receive_timeout_s: longest wait of one ``receive()`` (seconds).
        work_ms: time spent on each event (milliseconds), so billing can handle at
            most ``1000 / work_ms`` events a second and a backlog takes time to drain.
        commit_interval_s: seconds between commits (Kafka offsets, Streams XACK).
        counters_every_s: how often the counters file is rewritten.

    Each event is recorded when billing has *handled* it (after ``work_ms``), so the
    delay measured is "order placed" to "order billed". On start it takes over what a
    killed predecessor left unacknowledged on Redis Streams (``XAUTOCLAIM``); Kafka
    does that by itself (the group restarts from the last committed offset). On a
    clean stop (SIGTERM) it finishes the events in hand, commits and exits. Its
    life cycle (listening, each commit, closed) goes to ``lifecycle-<role>.jsonl``;
    on Kafka, the client's own lag reading (``KafkaSubscriber.lag()``) goes to
    ``consumer-lag-<role>.csv``.
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    kind = spec.kind
    work_s = max(0.0, work_ms) / 1000
    handled = 0
    in_hand: list[Delivery] = []
    if kind == "kafka":
        # Join the group before saying "ready", so the restart time includes the join.
        subscriber.wait_for_assignment(timeout_s=30.0)
    elif kind == "redis-stream":
        # Billing runs one member at a time, so whatever is pending belongs to a dead
        # predecessor. (With several live members, claim only entries idle for longer
        # than their commit interval, or you steal work still in progress.)
        in_hand = subscriber.claim_stale(min_idle_ms=0)
        _note(ctx, "claimed", count=len(in_hand))
    lag_file = None
    if kind == "kafka":
        lag_file = open(Path(ctx.recorder.run_dir) / _CONSUMER_LAG.format(role=ctx.name), "a",
                        encoding="utf-8")

    def commit() -> None:
        if kind == "redis-pubsub":
            return  # pub/sub has nothing to commit
        try:
            subscriber.commit() if kind == "kafka" else subscriber.ack()
        except Exception as exc:  # noqa: BLE001 - a refused commit means redelivery, not a crash
            _note(ctx, "commit_failed", handled=handled, error=f"{type(exc).__name__}: {exc}")
            return
        _note(ctx, "committed", handled=handled)

    _note(ctx, "listening")
    ctx.ready()
    next_commit = time.monotonic() + commit_interval_s
    next_counters = time.monotonic() + counters_every_s
    try:
        while not ctx.stopping:
            batch = in_hand or subscriber.receive(receive_timeout_s)
            in_hand = []
            # A clean stop still finishes the batch in hand: committing a batch also
            # commits its unhandled events, which would then be lost (at-most-once).
            for delivery in batch:
                if work_s:
                    time.sleep(work_s)
                trace.record(Delivery(delivery.event, time.time_ns()))
                handled += 1
            now = time.monotonic()
            if lag_file is not None:
                lags = subscriber.lag()
                if lags:  # known once a fetch answered
                    lag_file.write(f"{time.time_ns()},{sum(lags.values())}\n")
                    lag_file.flush()
            if now >= next_commit:
                commit()
                next_commit = now + commit_interval_s
            if now >= next_counters:
                trace.write_counters(subscriber.counters, received=handled)
                next_counters = now + counters_every_s
        commit()  # the clean goodbye a SIGKILL never gets to say
    finally:
        trace.write_counters(subscriber.counters, received=handled)
        subscriber.close()
        trace.close()
        if lag_file is not None:
            lag_file.close()
        _note(ctx, "closed", handled=handled)


def replay_reader(ctx: RoleContext, spec, start: int | Literal["beginning"] = "beginning",
                  idle_s: float = 1.0, max_wait_s: float = 10.0,
                  receive_timeout_s: float = 0.1) -> None:
    """A reader that replays a topic from ``start``, then exits by itself (notebook 04).

    ``start`` is ``"beginning"`` or an offset *n* (skip the first *n* events):

    * Kafka: a consumer outside any group, assigned every partition and seeked to
      ``start`` (``assign_and_seek``); nothing is committed.
    * Redis Streams: a new consumer group created at the id of entry *n - 1*
      (or at id 0), so it reads entries *n*, *n + 1*, ...; the group is removed at the end.
    * Redis pub/sub: subscribes and waits; there is nothing to replay.

    It stops ``idle_s`` seconds after the last event, or after ``max_wait_s`` if
    none came. Events are recorded as received (no work time).
    """
    trace = ctx.recorder.consumer_trace(ctx.name)
    client = replay_group = None
    if spec.kind == "kafka":
        subscriber = spec.subscriber(None)
        subscriber.assign_and_seek(start)
    elif spec.kind == "redis-stream":
        import redis

        client = redis.Redis.from_url(spec.url, socket_connect_timeout=5, socket_timeout=10)
        start_id = "0"
        if start != "beginning" and start > 0:
            entries = client.xrange(spec.stream, count=start)
            # The group starts *after* this id, i.e. at entry number ``start``.
            start_id = entries[-1][0] if len(entries) == start else "$"
        replay_group = f"replay-{uuid.uuid4().hex[:8]}"
        client.xgroup_create(spec.stream, replay_group, id=start_id, mkstream=True)
        subscriber = spec.subscriber(replay_group)
    else:
        subscriber = spec.subscriber(None)
    ctx.ready()
    received = 0
    deadline = time.monotonic() + max_wait_s
    try:
        while not ctx.stopping and time.monotonic() < deadline:
            deliveries = subscriber.receive(receive_timeout_s)
            for delivery in deliveries:
                trace.record(delivery)
                received += 1
            if deliveries:
                deadline = time.monotonic() + idle_s
    finally:
        trace.write_counters(subscriber.counters, received=received)
        subscriber.close()
        trace.close()
        if client is not None:
            client.xgroup_destroy(spec.stream, replay_group)  # a replay leaves no group behind
            client.close()


def steady_schedule_s(rate_per_s: float, duration_s: float) -> list[float]:
    """Send times (seconds from start) of events at a steady ``rate_per_s`` for ``duration_s``.

    Steady rather than random arrivals: "down for D seconds at R events a second"
    then means exactly R x D events waiting (notebook 04's exercise).
    """
    if rate_per_s <= 0 or duration_s < 0:
        raise ConfigError(f"rate_per_s must be > 0 and duration_s >= 0 "
                          f"(got {rate_per_s}, {duration_s}).")
    return (np.arange(int(rate_per_s * duration_s)) / rate_per_s).tolist()


# --------------------------------------------------------------------------- results


@dataclass
class DowntimeResult:
    """What :func:`listener_down` measured (notebook 04). Times are seconds from the
    trial's first event unless the name says ``_ns`` (wall clock, ns since the epoch).

    Attributes:
        samples: one row per receipt by billing (redeliveries included): transport,
            stop_mode, event_id, seq, produced_at_ns, received_at_ns (when billing had
            handled it), latency_ms, duplicate, sent_while_down, sent_s, received_s,
            after_restart.
        events: one row per produced event: transport, stop_mode, event_id, seq,
            produced_at_ns, sent_s, sent_while_down, receipts, delivered,
            first_received_s, latency_ms (to the first receipt).
        summary: one row per (transport, stop_mode): produced, delivered, lost,
            duplicated, sent_while_down, lost_while_down, lost_other,
            delivered_late (sent while down, delivered after the restart),
            late_latency_mean_ms, late_latency_min_ms, late_latency_max_ms,
            live_latency_p50_ms (events sent before the stop), down_s
            (requested), away_s (measured: stopped listening to listening again),
            restart_s (starting the new process until it listens), lag_at_restart,
            catch_up_s (restart until no more than one event waits; NaN if it never
            did), uncommitted_at_stop (events billed after its last commit when it
            stopped), claimed_on_restart (Streams entries taken over from the dead
            member), commit_failures (commits the broker refused; those events
            come again).
        outages: one row per trial with the wall-clock moments (ns): first_event_ns,
            stop_requested_ns, down_at_ns, restart_requested_ns, up_at_ns, last_event_ns.
        lag: one row per (transport, stop_mode, t_s) every ``LAG_STEP_S``: produced
            and billed so far (distinct events) and lag = produced - billed.
        consumer_lag: Kafka only: the billing consumer's own lag reading
            (``KafkaSubscriber.lag()``: high watermark minus position) with t_s.
        specs: the transport spec of each trial, keyed ``(transport, stop_mode)``,
            so :func:`replay` can read the same topics again.
        params: the settings of the run.
    """

    samples: pd.DataFrame
    events: pd.DataFrame
    summary: pd.DataFrame
    outages: pd.DataFrame
    lag: pd.DataFrame
    consumer_lag: pd.DataFrame
    specs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def row(self, transport: str, stop_mode: str = "clean") -> pd.Series:
        """The summary row of one trial (counts stay integers)."""
        key = (transport, stop_mode)
        try:
            return pd.Series({c: self.summary.at[key, c] for c in self.summary.columns},
                             dtype=object, name=key)
        except KeyError:
            raise ConfigError(f"No trial {transport!r} / {stop_mode!r} in this result; it has "
                              f"{list(self.summary.index)}.") from None

    def outage(self, transport: str, stop_mode: str = "clean") -> pd.Series:
        """The outage moments of one trial (see ``outages``)."""
        return self.outages.loc[(transport, stop_mode)]

    def trial_lag(self, transport: str, stop_mode: str = "clean") -> pd.DataFrame:
        """The lag time series of one trial."""
        lag = self.lag
        return lag[(lag["transport"] == transport) & (lag["stop_mode"] == stop_mode)]


@dataclass
class ReplayResult:
    """What :func:`replay` read (notebook 04).

    Attributes:
        samples: one row per replayed receipt: transport, event_id, seq, ...
        summary: one row per transport: start, produced (events in the topic),
            expected (produced minus the skipped offset), replayed (distinct events
            read), first_seq, last_seq, in_order (seq strictly increasing).
        params: the settings.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the experiment


def _make_spec(lab, transport: str, name: str, kafka_max_poll_records: int):
    if transport == "kafka":
        from edalab.transports.kafka import KafkaSpec

        # Small polls: the backlog stays in the topic (and in lag()) until billing
        # gets to it, instead of all of it moving into the client at once.
        return KafkaSpec.for_lab(lab, lab.create_topic(name, partitions=1),
                                 commit_each_receive=False, max_poll_records=kafka_max_poll_records)
    if transport == "redis-stream":
        from edalab.transports.redis import RedisStreamSpec

        return RedisStreamSpec.for_lab(lab, name, ack=False)
    if transport == "redis-pubsub":
        from edalab.transports.redis import RedisPubSubSpec

        return RedisPubSubSpec.for_lab(lab, name)
    raise ConfigError(f"Unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}.")


def _lifecycle(run_dir: Path, role: str) -> list[dict]:
    try:
        lines = (run_dir / _LIFECYCLE.format(role=role)).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut short by SIGKILL
    return out


def _distinct_received(recorder: Recorder) -> int:
    return int(recorder.received()["event_id"].nunique())


def _produced_count(recorder: Recorder) -> int:
    return len(recorder.produced())


def _wait_until(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def _check_alive(trials: dict, when: str) -> None:
    for transport, t in trials.items():
        for role in (t["consumer"], t["producer"]):
            if not role.alive:
                raise ExperimentError(f"The {role.name} role on {transport} died {when} (exit code "
                                      f"{role.exitcode}). Its log ends:\n{role.log_tail()}")


def _kill_between_commits(trials: dict, commit_interval_s: float) -> None:
    """SIGKILL each billing half a commit interval after its latest commit.

    A crash lands anywhere between two commits; half an interval is the average
    case, and it makes the redelivery visible in every run instead of by chance.
    Pub/sub billing has no commits and is killed at once.
    """
    half_ns = int(commit_interval_s * 0.5e9)
    give_up_ns = time.time_ns() + int(3 * commit_interval_s * 1e9)
    waiting = dict(trials)
    while waiting:
        now_ns = time.time_ns()
        for transport, t in list(waiting.items()):
            commits = [n["at_ns"] for n in _lifecycle(t["recorder"].run_dir, "billing")
                       if n["what"] == "committed"]
            due_ns = commits[-1] + half_ns if commits else now_ns
            # Past the middle of this interval: wait for the next commit (or give up).
            if transport == "redis-pubsub" or now_ns >= give_up_ns or (
                    due_ns <= now_ns < due_ns + int(0.1 * half_ns)):
                m = t["moments"]
                m["stop_requested_ns"] = time.time_ns()
                t["consumer"].kill()
                # The kernel closed billing's sockets when it died: it was gone at the signal.
                m["down_at_ns"] = m["stop_requested_ns"]
                del waiting[transport]
        time.sleep(0.002)


def _run_round(lab, stop_mode: str, transports: Sequence[str], root: Path, tag: str, *,
               rate_per_s: float, before_s: float, down_s: float, after_s: float, work_ms: float,
               commit_interval_s: float, kafka_max_poll_records: int, drain_timeout_s: float,
               bar) -> dict:
    """All transports at once, one stop mode: returns per transport its recorder, spec
    and outage moments."""
    trials = {}
    for transport in transports:
        spec = _make_spec(lab, transport, f"billing-{tag}-{stop_mode}-{transport}",
                          kafka_max_poll_records)
        recorder = Recorder(root / f"{transport}-{stop_mode}")
        # Orders keep coming until told to stop; the schedule is only an upper bound.
        schedule = steady_schedule_s(rate_per_s, before_s + down_s + after_s + 120.0)
        trials[transport] = dict(
            spec=spec, recorder=recorder,
            consumer=Role("billing", billing, recorder, spec=spec, group=BILLING_GROUP,
                          work_ms=work_ms, commit_interval_s=commit_interval_s,
                          ready_timeout_s=40.0),
            producer=Role("orders", produce, recorder, spec=spec, schedule_s=schedule,
                          event_type="order.placed"),
            moments={})
    roles = [t["consumer"] for t in trials.values()] + [t["producer"] for t in trials.values()]
    try:
        bar.set_postfix_str(f"{stop_mode}: starting billing and orders")
        for t in trials.values():
            t["consumer"].start(wait=False)
        for t in trials.values():
            t["consumer"].wait_ready()
        for t in trials.values():
            t["producer"].start(wait=False)
        for t in trials.values():
            t["producer"].wait_ready()
        time.sleep(before_s)

        _check_alive(trials, "before the outage")
        bar.set_postfix_str(f"{stop_mode}: billing is down")
        if stop_mode == "kill":
            _kill_between_commits(trials, commit_interval_s)
        else:
            for t in trials.values():
                m = t["moments"]
                m["stop_requested_ns"] = time.time_ns()
                t["consumer"].stop()
                # Billing stopped listening when it closed its subscriber, not at the signal.
                closed = [n for n in _lifecycle(t["recorder"].run_dir, "billing")
                          if n["what"] == "closed"]
                m["down_at_ns"] = closed[-1]["at_ns"] if closed else time.time_ns()
        first_stop_ns = min(t["moments"]["stop_requested_ns"] for t in trials.values())
        time.sleep(max(0.0, first_stop_ns / 1e9 + down_s - time.time()))

        bar.set_postfix_str(f"{stop_mode}: restarting billing")
        for t in trials.values():
            t["moments"]["restart_requested_ns"] = time.time_ns()
            t["consumer"].start(wait=False)
        for t in trials.values():
            t["consumer"].wait_ready()
            listening = [n for n in _lifecycle(t["recorder"].run_dir, "billing")
                         if n["what"] == "listening"]
            t["moments"]["up_at_ns"] = listening[-1]["at_ns"]
        time.sleep(after_s)
        _check_alive(trials, "after the restart")

        bar.set_postfix_str(f"{stop_mode}: draining")
        for t in trials.values():
            t["producer"].stop()
            if t["producer"].exitcode not in (0, None):
                raise ExperimentError(f"The order producer failed (exit code "
                                      f"{t['producer'].exitcode}). Its log ends:\n"
                                      f"{t['producer'].log_tail()}")
        for transport, t in trials.items():
            recorder = t["recorder"]
            produced = _produced_count(recorder)
            if transport == "redis-pubsub":
                # Nothing waits anywhere: billing is done once it stops receiving.
                last = [-1]

                def settled(recorder=recorder, last=last) -> bool:
                    now = len(recorder.received())
                    done = now == last[0]
                    last[0] = now
                    return done

                _wait_until(settled, drain_timeout_s, step_s=0.5)
            else:
                _wait_until(lambda recorder=recorder, produced=produced:
                            _distinct_received(recorder) >= produced, drain_timeout_s)
    finally:
        for role in roles:
            role.stop()
    return trials


def _assemble(trials_by_mode: dict, params: dict) -> DowntimeResult:
    sample_tables, event_tables, summaries, outages, lags, consumer_lags = [], [], [], [], [], []
    for stop_mode, trials in trials_by_mode.items():
        for transport, t in trials.items():
            recorder: Recorder = t["recorder"]
            m = dict(t["moments"])
            produced = recorder.produced().sort_values("produced_at_ns", ignore_index=True)
            samples = recorder.samples()
            if not len(produced):
                raise ExperimentError(f"The order producer on {transport} sent nothing. Its log "
                                      f"ends:\n{t['producer'].log_tail()}")
            t0 = int(produced["produced_at_ns"].iloc[0])
            m["first_event_ns"] = t0
            m["last_event_ns"] = int(produced["produced_at_ns"].iloc[-1])
            down_at, up_at = m["down_at_ns"], m["up_at_ns"]

            samples = samples[~samples["unexpected"]].copy()
            samples["sent_while_down"] = samples["produced_at_ns"].between(down_at, up_at)
            samples["sent_s"] = (samples["produced_at_ns"] - t0) / 1e9
            samples["received_s"] = (samples["received_at_ns"] - t0) / 1e9
            samples["after_restart"] = samples["received_at_ns"] >= m["restart_requested_ns"]
            samples.insert(0, "stop_mode", stop_mode)
            samples.insert(0, "transport", transport)

            first = (samples.sort_values("received_at_ns", kind="stable")
                     .drop_duplicates("event_id").set_index("event_id"))
            events = produced[["event_id", "seq", "produced_at_ns"]].copy()
            events["sent_s"] = (events["produced_at_ns"] - t0) / 1e9
            events["sent_while_down"] = events["produced_at_ns"].between(down_at, up_at)
            events["receipts"] = events["event_id"].map(samples["event_id"].value_counts()) \
                .fillna(0).astype(int)
            events["delivered"] = events["receipts"] > 0
            events["first_received_s"] = events["event_id"].map(first["received_s"])
            events["latency_ms"] = events["event_id"].map(first["latency_ms"])
            events.insert(0, "stop_mode", stop_mode)
            events.insert(0, "transport", transport)

            # Lag: produced so far minus billed so far (distinct events), from the traces.
            end_ns = max(m["last_event_ns"], int(samples["received_at_ns"].max())
                         if len(samples) else 0)
            grid_ns = np.arange(t0, end_ns + int(LAG_STEP_S * 1e9), int(LAG_STEP_S * 1e9))
            produced_so_far = np.searchsorted(produced["produced_at_ns"].to_numpy(), grid_ns,
                                              side="right")
            billed_so_far = np.searchsorted(np.sort(first["received_at_ns"].to_numpy()), grid_ns,
                                            side="right")
            lag = pd.DataFrame({"transport": transport, "stop_mode": stop_mode,
                                "t_s": (grid_ns - t0) / 1e9, "produced": produced_so_far,
                                "billed": billed_so_far, "lag": produced_so_far - billed_so_far})
            lags.append(lag)

            # Waiting: events produced but not yet billed that *will* be billed.
            delivered = events[events["delivered"]]
            sent = delivered["produced_at_ns"].to_numpy()
            got = (delivered["first_received_s"].to_numpy() * 1e9 + t0).astype(np.int64)
            after_up = grid_ns[grid_ns >= up_at]
            waiting = np.array([int(((sent <= g) & (got > g)).sum()) for g in after_up])
            caught_up = after_up[waiting <= 1]
            lag_at_restart = int(np.searchsorted(produced["produced_at_ns"].to_numpy(), up_at,
                                                 side="right")
                                 - np.searchsorted(np.sort(first["received_at_ns"].to_numpy()),
                                                   up_at, side="right"))

            notes = _lifecycle(recorder.run_dir, "billing")
            first_life = [n for n in notes if n["at_ns"] <= m["restart_requested_ns"]]
            commits = [n["handled"] for n in first_life if n["what"] == "committed"]
            handled_before = int((samples["received_at_ns"] < m["restart_requested_ns"]).sum())
            claimed = [n["count"] for n in notes
                       if n["what"] == "claimed" and n["at_ns"] > m["restart_requested_ns"]]

            down = events[events["sent_while_down"]]
            late = down[down["delivered"]]
            # Before the outage: the delay billing shows when nothing piles up.
            live = events[(events["produced_at_ns"] < m["stop_requested_ns"]) & events["delivered"]]
            summary = recorder.summary(groups=[BILLING_GROUP]).loc[BILLING_GROUP]
            summaries.append({
                "transport": transport, "stop_mode": stop_mode,
                "produced": int(summary["produced"]), "delivered": int(summary["delivered"]),
                "lost": int(summary["lost"]), "duplicated": int(summary["duplicated"]),
                "sent_while_down": len(down),
                "lost_while_down": int((~down["delivered"]).sum()),
                "lost_other": int(summary["lost"]) - int((~down["delivered"]).sum()),
                "delivered_late": len(late),
                "late_latency_mean_ms": float(late["latency_ms"].mean()) if len(late) else np.nan,
                "late_latency_min_ms": float(late["latency_ms"].min()) if len(late) else np.nan,
                "late_latency_max_ms": float(late["latency_ms"].max()) if len(late) else np.nan,
                "live_latency_p50_ms": float(live["latency_ms"].median()) if len(live) else np.nan,
                "down_s": params["down_s"],
                "away_s": (up_at - down_at) / 1e9,
                "restart_s": (up_at - m["restart_requested_ns"]) / 1e9,
                "lag_at_restart": lag_at_restart,
                "catch_up_s": (caught_up[0] - up_at) / 1e9 if len(caught_up) else np.nan,
                "uncommitted_at_stop": (handled_before - commits[-1] if commits else handled_before)
                if transport != "redis-pubsub" else 0,
                "claimed_on_restart": int(sum(claimed)),
                "commit_failures": sum(n["what"] == "commit_failed" for n in notes),
            })
            outages.append({"transport": transport, "stop_mode": stop_mode,
                            **{k: m[k] for k in ("first_event_ns", "stop_requested_ns", "down_at_ns",
                                                 "restart_requested_ns", "up_at_ns",
                                                 "last_event_ns")}})
            sample_tables.append(samples)
            event_tables.append(events)

            lag_path = Path(recorder.run_dir) / _CONSUMER_LAG.format(role="billing")
            if lag_path.exists() and lag_path.stat().st_size:
                readings = pd.read_csv(lag_path, names=["at_ns", "lag"], on_bad_lines="skip")
                readings = readings.dropna().astype({"at_ns": "int64", "lag": "int64"})
                readings["t_s"] = (readings["at_ns"] - t0) / 1e9
                readings.insert(0, "stop_mode", stop_mode)
                readings.insert(0, "transport", transport)
                consumer_lags.append(readings)

    summary = pd.DataFrame(summaries).set_index(["transport", "stop_mode"])
    outage_table = pd.DataFrame(outages).set_index(["transport", "stop_mode"])
    consumer_lag = (pd.concat(consumer_lags, ignore_index=True) if consumer_lags else
                  pd.DataFrame(columns=["transport", "stop_mode", "at_ns", "lag", "t_s"]))
    specs = {(transport, mode): t["spec"] for mode, trials in trials_by_mode.items()
             for transport, t in trials.items()}
    return DowntimeResult(pd.concat(sample_tables, ignore_index=True),
                          pd.concat(event_tables, ignore_index=True), summary, outage_table,
                          pd.concat(lags, ignore_index=True), consumer_lag, specs, params)


def listener_down(lab, *, transports: Sequence[str] = TRANSPORTS,
                  stop_modes: Sequence[str] = STOP_MODES, rate_per_s: float = 20.0,
                  before_s: float | None = None, down_s: float | None = None,
                  after_s: float | None = None, work_ms: float = 20.0,
                  commit_interval_s: float = 1.0, kafka_max_poll_records: int = 10,
                  drain_timeout_s: float = 20.0, quick: bool | None = None,
                  run_dir: str | Path | None = None, progress: bool = True) -> DowntimeResult:
    """Take billing down mid-stream on each transport, bring it back, count (notebook 04).

    For each stop mode (one after the other) and each transport (at the same time,
    each on its own topic/stream/channel): billing starts and joins its group, the
    order service starts producing at ``rate_per_s``; after ``before_s`` billing is
    stopped (``"clean"``: SIGTERM, it commits and exits; ``"kill"``: SIGKILL); after
    ``down_s`` a new billing process starts (a SIGKILL lands half a commit interval after
    billing's latest commit, the average case for a crash); orders go on for ``after_s`` more
    seconds, then stop, and billing gets up to ``drain_timeout_s`` to catch up.

    Args:
        lab: from :func:`edalab.start`.
        transports: any of :data:`TRANSPORTS`.
        stop_modes: any of :data:`STOP_MODES`.
        rate_per_s: orders per second (steady).
        before_s, down_s, after_s: seconds of normal work, of downtime (from the stop
            to starting the new process; the measured ``away_s`` adds the restart),
            and of producing after billing is back. Defaults 3 / 6 / 8 s, quick 1.5 / 2 / 3 s.
        work_ms: billing's time per event (ms); it can handle ``1000 / work_ms``
            events a second, which must exceed ``rate_per_s`` or it never catches up.
        commit_interval_s: seconds between billing's commits.
        kafka_max_poll_records: most events one Kafka poll hands billing.
        drain_timeout_s: longest wait for billing to catch up at the end.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: where the role traces go (a temporary folder by default).
        progress: show a progress bar.
    """
    quick = quick_mode(quick)
    before_s = before_s if before_s is not None else (1.5 if quick else 3.0)
    down_s = down_s if down_s is not None else (2.0 if quick else 6.0)
    after_s = after_s if after_s is not None else (3.0 if quick else 8.0)
    transports = tuple(transports)
    stop_modes = tuple(stop_modes)
    unknown = (set(transports) - set(TRANSPORTS)) | (set(stop_modes) - set(STOP_MODES))
    if unknown or not transports or not stop_modes:
        raise ConfigError(f"transports must come from {TRANSPORTS} and stop_modes from "
                          f"{STOP_MODES} (got {transports}, {stop_modes}).")
    if min(before_s, down_s, after_s) <= 0 or rate_per_s <= 0 or commit_interval_s <= 0:
        raise ConfigError("before_s, down_s, after_s, rate_per_s and commit_interval_s must be "
                          "positive.")
    if work_ms < 0 or (work_ms > 0 and 1000 / work_ms <= rate_per_s):
        raise ConfigError(f"With work_ms={work_ms} billing handles at most "
                          f"{1000 / work_ms if work_ms else float('inf'):.0f} events/s, not more "
                          f"than rate_per_s={rate_per_s}: it would never catch up. Lower work_ms "
                          f"or rate_per_s.")
    root = Path(run_dir or tempfile.mkdtemp(prefix="edalab-downtime-"))
    tag = uuid.uuid4().hex[:8]
    params = dict(transports=transports, stop_modes=stop_modes, rate_per_s=rate_per_s,
                  before_s=before_s, down_s=down_s, after_s=after_s, work_ms=work_ms,
                  capacity_per_s=1000 / work_ms if work_ms else float("inf"),
                  commit_interval_s=commit_interval_s,
                  kafka_max_poll_records=kafka_max_poll_records, quick=quick, run_dir=str(root))

    from tqdm.auto import tqdm

    trials_by_mode = {}
    bar = tqdm(stop_modes, desc="listener down", disable=not progress, leave=False)
    for stop_mode in bar:
        trials_by_mode[stop_mode] = _run_round(
            lab, stop_mode, transports, root, tag, rate_per_s=rate_per_s, before_s=before_s,
            down_s=down_s, after_s=after_s, work_ms=work_ms, commit_interval_s=commit_interval_s,
            kafka_max_poll_records=kafka_max_poll_records, drain_timeout_s=drain_timeout_s,
            bar=bar)
    bar.close()
    return _assemble(trials_by_mode, params)


def replay(lab, result: DowntimeResult, *, start: int | Literal["beginning"] = "beginning",
           stop_mode: str = "clean", transports: Sequence[str] | None = None,
           idle_s: float = 0.5, max_wait_s: float = 10.0, pubsub_wait_s: float = 1.5,
           run_dir: str | Path | None = None) -> ReplayResult:
    """Read the topics of ``result`` again with a brand-new reader (notebook 04).

    A new reader (one :func:`replay_reader` role per transport, all at once) starts
    at ``start`` (``"beginning"`` or an offset: skip that many events) on the topic,
    stream or channel of the ``stop_mode`` trial. Kafka and Redis Streams still hold
    every event; a pub/sub channel holds nothing.

    Args:
        lab: from :func:`edalab.start` (unused beyond the specs; kept for symmetry).
        result: from :func:`listener_down`.
        start: ``"beginning"`` or the number of events to skip.
        idle_s: a reader stops this long after its last event.
        max_wait_s: a Kafka or Streams reader that gets nothing stops after this long.
        pubsub_wait_s: how long the pub/sub reader listens (nothing is published
            any more, so it can only show that there is nothing to replay).
    """
    del lab  # the specs in result carry the addresses
    if not (start == "beginning" or (isinstance(start, int) and not isinstance(start, bool)
                                     and start >= 0)):
        raise ConfigError(f"start must be 'beginning' or an offset >= 0, not {start!r}.")
    transports = tuple(transports or [t for t in TRANSPORTS if (t, stop_mode) in result.specs])
    missing = [t for t in transports if (t, stop_mode) not in result.specs]
    if missing:
        raise ConfigError(f"The result has no {stop_mode!r} trial for {missing}.")
    root = Path(run_dir or tempfile.mkdtemp(prefix="edalab-replay-"))
    skip = 0 if start == "beginning" else start
    roles = {}
    for transport in transports:
        recorder = Recorder(root / transport)
        roles[transport] = Role("audit", replay_reader, recorder,
                                spec=result.specs[(transport, stop_mode)], start=start,
                                idle_s=idle_s, max_wait_s=pubsub_wait_s
                                if transport == "redis-pubsub" else max_wait_s)
    try:
        for role in roles.values():
            role.start(wait=False)
        for role in roles.values():
            role.wait_ready()
        for role in roles.values():
            role.finish(timeout_s=max_wait_s + 30.0)
    finally:
        for role in roles.values():
            role.stop()
    tables, rows = [], []
    for transport, role in roles.items():
        received = role.recorder.received()
        received.insert(0, "transport", transport)
        tables.append(received)
        produced = int(result.summary.loc[(transport, stop_mode), "produced"])
        seqs = received.drop_duplicates("event_id")["seq"].to_numpy()
        rows.append({"transport": transport, "start": start, "produced": produced,
                     "expected": max(0, produced - skip) if transport != "redis-pubsub" else 0,
                     "replayed": int(received["event_id"].nunique()),
                     "first_seq": int(seqs[0]) if len(seqs) else -1,
                     "last_seq": int(seqs[-1]) if len(seqs) else -1,
                     "in_order": bool(np.all(np.diff(seqs) > 0))})
    return ReplayResult(pd.concat(tables, ignore_index=True),
                        pd.DataFrame(rows).set_index("transport"),
                        dict(start=start, stop_mode=stop_mode, transports=transports,
                             idle_s=idle_s, max_wait_s=max_wait_s, pubsub_wait_s=pubsub_wait_s,
                             run_dir=str(root)))
