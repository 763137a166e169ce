"""When the listener is down: what piles up, what is lost, what comes twice (notebook 04).

The restaurant's order service publishes ``order.placed`` events at a steady rate;
the billing service consumes them. Mid-stream billing goes away (a clean stop, or a
SIGKILL that gives it no chance to commit), stays away for a while, and comes back,
while orders keep coming. This runs side by side on Kafka, Redis Streams and Redis
pub/sub (the ``method`` column), each on its own topic, every role in its own process
(:class:`edalab.Scenario`). Lost, duplicated and late orders and the lag are counted
from the traces (:mod:`edalab.experiments._downtime_analysis`).

:func:`listener_down` runs the outage with a billing body you may write yourself
(default :func:`billing`); :func:`~edalab.experiments.replay` reads the same topics
again with a brand-new reader.

How :func:`billing` commits: it handles events one at a time (``work_ms`` each, so a
backlog takes time to drain) and commits its position (``Subscriber.commit``: a Kafka
offset commit, a Redis Streams ``XACK``) every ``commit_interval_s`` seconds, as
Kafka's auto-commit does every 5 s by default, and once more when stopped cleanly. A
SIGKILL skips that last commit, so the orders billed since the previous commit come
again after the restart: at-least-once delivery.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path


from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.experiments._downtime_analysis import LAG_STEP_S, DowntimeResult, analyse_trial
from edalab.experiments._replay import ReplayResult, replay
from edalab.harness import Run, Scenario
from edalab.roles import produce
from edalab.workloads import steady
from edalab._lazy import lazy_module

# Loaded on first use: billing's role process needs neither to start.
pd = lazy_module("pandas")

__all__ = ["METHODS", "STOP_MODES", "DowntimeResult", "ReplayResult", "listener_down", "replay",
           "billing", "billing_spec", "LAG_STEP_S"]

#: the transports compared (``lab.transport`` names), in the ``method`` column
METHODS = ("kafka", "redis-stream", "redis-pubsub")
#: ``"clean"``: SIGTERM, billing commits and exits; ``"kill"``: SIGKILL, no commit
STOP_MODES = ("clean", "kill")
#: the consumer group billing uses (where the transport has groups)
BILLING_GROUP = "billing"
#: spec options: billing decides when to commit, so no transport may commit by itself;
#: small Kafka polls keep the backlog in the topic until billing gets to it
_SPEC_OPTIONS = {"kafka": {"commit_each_receive": False, "max_poll_records": 10},
                 "redis-stream": {"ack": False}, "redis-pubsub": {}}


def billing(ctx, spec, group="billing", work_ms=20.0, commit_interval_s=1.0):
    """Bill each order (work_ms each); commit how far it got every commit_interval_s."""
    subscriber = spec.subscriber(group)
    billed = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)          # Kafka: join the group before listening
    in_hand = subscriber.take_over_pending()     # Streams: what a killed billing never acked

    def commit(through=None):                    # hand back what is billed (up to `through`)
        try:
            subscriber.commit(through)
            ctx.note("committed")
        except Exception as exc:                 # refused (a rebalance): billed again later
            ctx.note("commit_failed", error=repr(exc))

    ctx.note("listening", claimed=len(in_hand))
    ctx.ready()
    next_commit = time.monotonic() + commit_interval_s
    while not ctx.stopping:
        batch, in_hand = in_hand or subscriber.receive(0.1), []
        for delivery in batch:                   # a clean stop finishes the batch in hand
            time.sleep(work_ms / 1000)           # the billing work
            billed.record(delivery._replace(received_at_ns=time.time_ns()))
        if time.monotonic() >= next_commit:
            commit()
            next_commit = time.monotonic() + commit_interval_s
    commit()                                     # the goodbye a SIGKILL never says
    subscriber.close()


def billing_spec(lab, method: str):
    """The spec of a fresh topic for ``method`` on which only billing commits (no
    transport-side commits or acks), as :func:`listener_down` and exercise n04 use it."""
    return lab.transport(_checks.choices([method], "method", METHODS)[0], **_SPEC_OPTIONS[method])


def _check_parameters(methods, stop_modes, rate_per_s, before_s, down_s, after_s, work_ms,
                      commit_interval_s, drain_timeout_s, body, quick) -> dict:
    """Every parameter of :func:`listener_down`, checked before anything starts."""
    quick = quick_mode(quick)
    p = dict(methods=tuple(_checks.choices(methods, "methods", METHODS)),
             stop_modes=tuple(_checks.choices(stop_modes, "stop_modes", STOP_MODES)),
             rate_per_s=_checks.number(rate_per_s, "rate_per_s", unit="orders per second",
                                       positive=True, sensible=(1, 200)),
             work_ms=_checks.number(work_ms, "work_ms", unit="ms", minimum=0, sensible=(0, 200)),
             commit_interval_s=_checks.number(commit_interval_s, "commit_interval_s", unit="seconds",
                                              positive=True, sensible=(0.05, 30)),
             drain_timeout_s=_checks.number(drain_timeout_s, "drain_timeout_s", unit="seconds",
                                            positive=True, sensible=(1, 300)),
             quick=quick)
    p.update(_checks.phases(quick, dict(before_s=(1.5, 3.0), down_s=(2.0, 6.0), after_s=(2.5, 8.0)),
                            before_s=before_s, down_s=down_s, after_s=after_s))
    if len(set(p["methods"])) < len(p["methods"]) or len(set(p["stop_modes"])) < len(p["stop_modes"]):
        raise ConfigError(f"methods and stop_modes must not repeat a name (got {list(p['methods'])}, "
                          f"{list(p['stop_modes'])}).")
    capacity = 1000 / p["work_ms"] if p["work_ms"] else float("inf")
    if capacity <= p["rate_per_s"]:
        raise ConfigError(f"With work_ms={p['work_ms']:g} billing handles at most {capacity:.0f} "
                          f"orders per second, not more than rate_per_s={p['rate_per_s']:g}: it would "
                          f"never catch up. Lower work_ms or rate_per_s.")
    if not callable(body):
        raise ConfigError(f"billing must be a role body billing(ctx, spec, group, work_ms, "
                          f"commit_interval_s), not {type(body).__name__}.")
    p["capacity_per_s"] = capacity
    return p


def listener_down(lab, *, methods: Sequence[str] = METHODS, stop_modes: Sequence[str] = STOP_MODES,
                  rate_per_s: float = 20.0, before_s: float | None = None,
                  down_s: float | None = None, after_s: float | None = None, work_ms: float = 20.0,
                  commit_interval_s: float = 1.0, drain_timeout_s: float = 20.0,
                  billing: Callable = billing, quick: bool | None = None,
                  run_dir: str | Path | None = None, progress: bool = True) -> DowntimeResult:
    """Take billing down mid-stream on each method, bring it back, count (notebook 04).

    One round per stop mode (one after the other); in a round every method runs at
    once, each on its own topic/stream/channel: billing joins, the gate opens, orders
    flow at ``rate_per_s``. After ``before_s`` billing goes away (``"clean"``: SIGTERM,
    it commits and exits; ``"kill"``: SIGKILL half a commit interval after its latest
    commit, the average case for a crash); ``down_s`` later a new billing process
    starts; orders go on for ``after_s`` more seconds, then billing gets up to
    ``drain_timeout_s`` to catch up.

    Args:
        lab: from :func:`edalab.start`.
        methods: a list of :data:`METHODS`.
        stop_modes: a list of :data:`STOP_MODES`.
        rate_per_s: orders per second (steady).
        before_s, down_s, after_s: seconds of normal work, of downtime (from the stop
            to starting the new process; the measured ``away_s`` adds the restart) and
            of orders after billing is back. Defaults 3 / 6 / 8, quick 1.5 / 2 / 2.5.
        work_ms: billing's time per order (ms); ``1000 / work_ms`` must exceed
            ``rate_per_s`` or it never catches up. 0 means no work at all.
        commit_interval_s: seconds between billing's commits.
        drain_timeout_s: longest wait for billing to catch up at the end.
        billing: the billing role body, ``billing(ctx, spec, group, work_ms,
            commit_interval_s)``; by default this module's :func:`billing`. It must
            record what it billed in ``ctx.recorder.consumer_trace`` and note
            ``"listening"`` and each ``"committed"`` (``ctx.note``).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (one sub-folder per stop mode) instead of the
            runs folder.
        progress: show a progress bar.
    """
    p = _check_parameters(methods, stop_modes, rate_per_s, before_s, down_s, after_s, work_ms,
                          commit_interval_s, drain_timeout_s, billing, quick)
    rows, outages, samples, events, lags, specs, run_dirs = [], [], [], [], [], {}, []
    for stop_mode in p["stop_modes"]:
        sc = Scenario(f"downtime-{stop_mode}",
                      run_dir=None if run_dir is None else Path(run_dir) / stop_mode)
        run_dirs.append(str(sc.run_dir))
        trial_specs = {m: billing_spec(lab, m) for m in p["methods"]}
        _run_round(sc, stop_mode, trial_specs, billing, p, progress)
        for method, spec in trial_specs.items():
            specs[(method, stop_mode)] = spec
            row, outage, s, e, lag = analyse_trial(sc.recorder, method, stop_mode, f"billing-{method}",
                                                   f"orders-{method}", p["down_s"])
            rows.append(row), outages.append(outage), samples.append(s), events.append(e)
            lags.append(lag)
    p["run_dirs"] = run_dirs
    capabilities = {m: trial_specs[m].capabilities.to_dict() for m in p["methods"]}
    return DowntimeResult(pd.concat(samples, ignore_index=True), pd.concat(events, ignore_index=True),
                          pd.DataFrame(rows).set_index(["method", "stop_mode"]),
                          pd.DataFrame(outages).set_index(["method", "stop_mode"]),
                          pd.concat(lags, ignore_index=True), specs, capabilities, p)


def _run_round(sc: Scenario, stop_mode: str, specs: dict, body: Callable, p: dict,
               progress: bool) -> None:
    """One stop mode, every method at once: roles, the outage timeline, the drain."""
    # Orders go on until the timeline stops them; the schedule is only an upper bound.
    schedule_s = steady(p["rate_per_s"], p["before_s"] + 1.5 * p["commit_interval_s"]
                        + p["down_s"] + p["after_s"] + 60.0)
    for method, spec in specs.items():
        sc.add(f"billing-{method}", body, kwargs=dict(spec=spec, group=BILLING_GROUP, work_ms=p["work_ms"],
                                                      commit_interval_s=p["commit_interval_s"]),
               ready_timeout_s=40.0)
        sc.add(f"orders-{method}", produce, kwargs=dict(spec=spec, schedule_s=schedule_s,
                                                        event_type="order.placed"))
    billings = [f"billing-{m}" for m in specs]
    label = f"listener down ({stop_mode})" if progress else False
    with sc.run(progress=label) as run:
        if stop_mode == "clean":
            gone_at_s = {name: p["before_s"] for name in billings}
            for name in billings:
                run.at(p["before_s"]).stop(name)
        else:
            run.sleep(p["before_s"])
            gone_at_s = _kill_between_commits(run, sc, billings, p["commit_interval_s"])
        back_s = {name: gone_s + p["down_s"] for name, gone_s in gone_at_s.items()}
        restarted = set()

        def restart(name: str) -> None:
            # Not run.at().start(): that waits for each role's group join in turn, and
            # the others would restart late. All start at once.
            sc[name].start(wait=False)
            restarted.add(name)

        for name, at_s in back_s.items():
            run.at(at_s).call(functools.partial(restart, name), label=f"restart {name}")
        # Orders go on for after_s once billing is back (ready again), so the lag at
        # the restart is rate x time away however long the restart (a Kafka join) took.
        orders_stop_s = {}

        def schedule_orders_stop() -> bool:
            for method in specs:
                name = f"billing-{method}"
                if name not in orders_stop_s and name in restarted and sc[name].is_ready():
                    orders_stop_s[name] = run.elapsed_s() + p["after_s"]
                    run.at(orders_stop_s[name]).stop(f"orders-{method}")
            return len(orders_stop_s) == len(specs)

        if not run.until(schedule_orders_stop, timeout_s=max(back_s.values()) - run.elapsed_s() + 45):
            late = [n for n in billings if n not in orders_stop_s]
            raise ExperimentError(f"{late} did not come back (never ready) within 45 s of the restart. "
                                  f"The log of {late[0]} ends:\n{sc[late[0]].log_tail()}")
        orders = [sc[f"orders-{m}"] for m in specs]
        run.until(lambda: not any(role.alive for role in orders), timeout_s=p["after_s"] + 30)
        run.until(functools.partial(_drained, sc, specs), timeout_s=p["drain_timeout_s"], step_s=0.2)


def _kill_between_commits(run: Run, sc: Scenario, billings: list[str], commit_interval_s: float) -> dict:
    """Schedule a SIGKILL of each billing half a commit interval after its next commit.

    A crash lands anywhere between two commits; half an interval is the average case,
    and it makes the redelivery show in every run instead of by chance. The owner sees
    the commits as they happen in billing's notes. A billing that does not commit within
    three intervals is killed at once. Returns each kill's time (seconds after the gate).
    """
    since_ns, kill_at_s = time.time_ns(), {}
    gate_ns = run.gate_ns

    def schedule() -> bool:
        notes = sc.recorder.notes()
        commits = notes[(notes["what"] == "committed") & (notes["at_ns"] >= since_ns)]
        for name in billings:
            mine = commits.loc[commits["role"] == name, "at_ns"]
            if name not in kill_at_s and len(mine):
                kill_at_s[name] = (int(mine.min()) - gate_ns) / 1e9 + commit_interval_s / 2
                run.at(max(kill_at_s[name], run.elapsed_s())).kill(name)
        return len(kill_at_s) == len(billings)

    if not run.until(schedule, timeout_s=3 * commit_interval_s, step_s=0.02):
        for name in billings:
            if name not in kill_at_s:
                kill_at_s[name] = run.elapsed_s()
                run.at(kill_at_s[name]).kill(name)
    return kill_at_s


def _drained(sc: Scenario, specs: dict) -> bool:
    """Billing is done: a durable method billed every order; the others stopped receiving."""
    produced, received = sc.recorder.produced(), sc.recorder.received()
    for method, spec in specs.items():
        sent = set(produced.loc[produced["role"] == f"orders-{method}", "event_id"])
        got = received.loc[received["role"] == f"billing-{method}"]
        if spec.capabilities.durable and not sent <= set(got["event_id"]):
            return False
        # Non-durable: what was not pushed by now never will be; wait for the last one
        # pushed to be billed (the billed time stops moving within a few works).
        if not spec.capabilities.durable and len(got) and \
                time.time_ns() - int(got["received_at_ns"].max()) < 0.5e9:
            return False
    return True
