"""Notebook 07's small real run: a chain of services over HTTP vs the same flow over events.

:func:`chain_vs_events` checks :mod:`edalab.topology`'s arithmetic. Both designs run
side by side, each service its own process:

* ``rest-chain``: guest -> orders -> kitchen -> billing, each an HTTP server that calls
  the next and waits (:func:`~edalab.experiments._chain_roles.http_service`);
* ``kafka`` (or ``redis-stream``): guest -> orders, which publishes ``order.placed``
  and answers once the broker acknowledged it; kitchen and billing consume the topic
  in their own groups (the ``consumer`` body, default
  :func:`~edalab.experiments._chain_roles.event_service`).

The timeline kills both billing services at ``kill_at_s`` and starts them again
``down_s`` later. Each order is *accepted* (the guest got 200), *failed*, and among the
accepted *delayed* when billing finished it more than ``delayed_after_s`` after it was
placed. The measured billing downtime gives topology's prediction of the accepted
fraction for each design.

:func:`scale_consumers` runs one slow consumer (billing) at a rate above what one
instance handles, with 1 and then 2 instances in one group (competing consumers on a
topic with enough partitions), and measures throughput and lag.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.experiments._chain_analysis import CHAIN, analyse_chain, backlog_row, scale_row
from edalab.experiments._chain_roles import event_service, guest, http_service
from edalab.harness import Scenario
from edalab.roles import produce
from edalab.experiments._result import MethodRows

__all__ = ["CHAIN", "EVENT_METHODS", "chain_vs_events", "ChainResult", "scale_consumers", "ScaleResult"]

#: the broker transports the event version may use (the ``method`` column)
EVENT_METHODS = ("kafka", "redis-stream")
_TOPIC_OPTIONS = {"kafka": lambda partitions: {"partitions": partitions}}


@dataclass
class ChainResult(MethodRows):
    """What :func:`chain_vs_events` measured (notebook 07).

    Attributes:
        samples: one row per order: ``method``, ``order``, ``sent_s`` (after the gate),
            ``accepted`` (bool), ``status``, ``latency_ms`` (the guest's wait for the
            answer), ``billed_s`` (when billing finished it; NaN if never),
            ``done_ms`` (placed -> billed).
        summary: one row per method: ``orders``, ``accepted``, ``failed``, ``delayed``,
            ``lost`` (accepted, never billed), ``accepted_fraction``,
            ``predicted_fraction`` (topology's arithmetic with billing's measured
            availability), ``billing_availability``, ``latency_p50_ms``,
            ``latency_mean_ms``, ``latency_p90_ms`` (accepted orders), ``done_p50_ms``.
        down_s: per method, (billing killed, billing ready again) in seconds after the gate.
        params: the settings of the run.
    """

    samples: object
    summary: object
    down_s: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def _validate(rate_per_s, duration_s, kill_at_s, down_s, work_ms, quick):
    duration_s = _checks.number((6.0 if quick else 16.0) if duration_s is None else duration_s, "duration_s",
                                unit="seconds", positive=True, sensible=(3, 120))
    kill_at_s = _checks.number(duration_s * 0.25 if kill_at_s is None else kill_at_s, "kill_at_s",
                               unit="seconds", minimum=0, maximum=duration_s)
    down_s = _checks.number(duration_s * 0.375 if down_s is None else down_s, "down_s", unit="seconds",
                            positive=True, sensible=(0.5, 60))
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                sensible=(2, 100))
    work_ms = _checks.number(work_ms, "work_ms", unit="milliseconds", minimum=0, sensible=(0, 200))
    return rate_per_s, duration_s, kill_at_s, down_s, work_ms


def chain_vs_events(lab, *, method: str = "kafka", rate_per_s: float = 20.0, duration_s: float | None = None,
                    kill_at_s: float | None = None, down_s: float | None = None, work_ms: float = 5.0,
                    delayed_after_s: float = 1.0, consumer: Callable | None = None, quick: bool | None = None,
                    run_dir: str | Path | None = None) -> ChainResult:
    """Kill billing in a synchronous HTTP chain and in the event version; count orders (notebook 07).

    Args:
        lab: from :func:`edalab.start`.
        method: the broker of the event version, one of :data:`EVENT_METHODS`.
        rate_per_s: orders a second each guest places, evenly spaced.
        duration_s: how long the guests place orders (default 16 s, quick 6 s).
        kill_at_s: when billing is killed, seconds after the gate (default a quarter in).
        down_s: how long after the kill billing is started again (default 3/8 of the run).
        work_ms: each service's own work per order, one order at a time.
        delayed_after_s: an accepted order billed later than this after it was placed is delayed.
        consumer: the event services' body ``(ctx, spec, service, group, method, work_ms)``
            (default :func:`~edalab.experiments._chain_roles.event_service`).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
    """
    from edalab._servers import free_port
    from edalab.workloads import steady

    quick = quick_mode(quick)
    method = _checks.choices([method], "method", EVENT_METHODS)[0]
    rate_per_s, duration_s, kill_at_s, down_s, work_ms = _validate(rate_per_s, duration_s, kill_at_s,
                                                                   down_s, work_ms, quick)
    delayed_after_s = _checks.number(delayed_after_s, "delayed_after_s", unit="seconds", positive=True,
                                     sensible=(0.05, 30))
    if consumer is not None and not callable(consumer):
        raise ConfigError(f"consumer must be a role body function(ctx, spec, service, group, method, work_ms), "
                          f"not {type(consumer).__name__}.")
    body = consumer or event_service
    tag = uuid.uuid4().hex[:8]
    spec = lab.transport(method)
    schedule = steady(rate_per_s, duration_s)
    urls = {name: f"http://127.0.0.1:{free_port()}" for name in (*CHAIN, "orders-ev")}
    sc = Scenario("service-chain", run_dir=run_dir)
    for i, name in enumerate(CHAIN):
        nxt = urls[CHAIN[i + 1]] if i + 1 < len(CHAIN) else None
        sc.add(f"{name}-rest", http_service, kwargs={"url": urls[name], "service": name, "method": "rest-chain",
                                                     "work_ms": work_ms, "next_url": nxt})
    sc.add("orders-ev", http_service, kwargs={"url": urls["orders-ev"], "service": "orders", "method": method,
                                              "work_ms": work_ms, "spec": spec})
    for name in CHAIN[1:]:
        sc.add(f"{name}-ev", body, kwargs={"spec": spec, "service": name, "group": f"{name}-{tag}",
                                          "method": method, "work_ms": work_ms})
    for m, url in (("rest-chain", urls["orders"]), (method, urls["orders-ev"])):
        sc.add(f"guest-{'rest' if m == 'rest-chain' else 'ev'}", guest,
               kwargs={"url": url, "method": m, "schedule_s": schedule})
    with sc.run(progress=f"billing killed: HTTP chain and {method}") as run:
        for role in ("billing-rest", "billing-ev"):
            run.at(kill_at_s).kill(role)
            run.at(kill_at_s + down_s).start(role)
        for role in ("guest-rest", "guest-ev"):
            run.wait_finished(role, timeout_s=duration_s + 30)
        run.until(lambda: kill_at_s + down_s < run.elapsed_s() and _all_billed(sc.recorder, method),
                  timeout_s=kill_at_s + down_s + 40, step_s=0.2)
        gate_ns = run.gate_ns
    params = dict(method=method, rate_per_s=rate_per_s, duration_s=duration_s, kill_at_s=kill_at_s,
                  down_s=down_s, work_ms=work_ms, delayed_after_s=delayed_after_s, quick=quick,
                  run_dir=str(sc.run_dir))
    samples, summary, down = analyse_chain(sc.recorder, gate_ns, method, delayed_after_s, params)
    return ChainResult(samples, summary, down, params)


def _all_billed(recorder, method: str) -> bool:
    """Whether billing (event version) finished every order the guest got accepted."""
    calls, handled = recorder.table("calls"), recorder.table("handled")
    if calls.empty or handled.empty:
        return False
    accepted = set(calls.loc[(calls["method"] == method) & (calls["accepted"] == 1), "order"])
    billed = set(handled.loc[(handled["method"] == method) & (handled["service"] == "billing"), "order"])
    return accepted <= billed


@dataclass
class ScaleResult:
    """What :func:`scale_consumers` measured (notebook 07).

    Attributes:
        samples: lag over time: ``method``, ``instances``, ``t_s`` (after the gate),
            ``produced`` (orders due so far), ``processed`` (billed so far; the chain:
            answered), ``lag`` (the difference: in the topic, or in the chain's guest).
        summary: one row per method and number of instances: ``method``, ``instances``,
            ``produced``, ``processed``, ``failed``, ``throughput_per_s`` (processed per
            second while orders arrived), ``lag_max``, ``drain_s`` (gate -> last order
            processed), ``latency_p50_ms``, ``latency_p90_ms`` (events: published ->
            billed; the chain: due -> answered, what the guest waited).
        params: the settings of the run.
    """

    samples: object
    summary: object
    params: dict = field(default_factory=dict)


def scale_consumers(lab, *, instances: Sequence[int] = (1, 2), rate_per_s: float = 60.0, work_ms: float = 25.0,
                    duration_s: float | None = None, partitions: int = 4, method: str = "kafka",
                    consumer: Callable | None = None, chain: bool = True, guest_concurrency: int = 8,
                    quick: bool | None = None, run_dir: str | Path | None = None) -> ScaleResult:
    """One slow consumer (billing, ``work_ms`` per order) with 1, 2, ... instances in one group (notebook 07).

    With ``chain`` it first runs the same billing behind HTTP (guest -> orders ->
    billing, method ``rest-chain``, one instance): there the backlog waits in the
    guest, whose ``guest_concurrency`` callers are all busy, instead of in the topic.

    Args:
        lab: from :func:`edalab.start`.
        instances: numbers of billing instances to try, each 1..``partitions``.
        rate_per_s: orders a second (above one instance's ``1000 / work_ms`` makes a backlog).
        work_ms: billing's work per order, one order at a time per instance.
        duration_s: how long orders arrive (default 10 s, quick 3 s).
        partitions: of each fresh Kafka topic: at most this many instances share the work.
        method: one of :data:`EVENT_METHODS`.
        consumer: the billing body (default :func:`~edalab.experiments._chain_roles.event_service`).
        chain: also run the synchronous chain with one billing, for comparison.
        guest_concurrency: orders the chain's guest may have waiting for an answer at once.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep each run's traces in a subfolder of this folder.
    """
    from edalab.workloads import steady

    quick = quick_mode(quick)
    method = _checks.choices([method], "method", EVENT_METHODS)[0]
    partitions = _checks.count(partitions, "partitions", minimum=1, maximum=32)
    if isinstance(instances, (str, bytes)) or not isinstance(instances, Iterable):
        raise ConfigError(f"instances must be a list of numbers of instances, e.g. [1, 2], not {instances!r}.")
    counts = sorted({_checks.count(n, "instances", minimum=1, maximum=partitions,
                                   what="billing instances (at most one per partition)") for n in instances})
    if not counts:
        raise ConfigError("instances must list at least one number, e.g. [1, 2].")
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                sensible=(2, 300))
    work_ms = _checks.number(work_ms, "work_ms", unit="milliseconds", positive=True, sensible=(1, 500))
    duration_s = _checks.number((3.0 if quick else 10.0) if duration_s is None else duration_s, "duration_s",
                                unit="seconds", positive=True, sensible=(2, 120))
    if consumer is not None and not callable(consumer):
        raise ConfigError(f"consumer must be a role body function, not {type(consumer).__name__}.")
    if not isinstance(chain, bool):
        raise ConfigError(f"chain must be True or False, not {chain!r}.")
    guest_concurrency = _checks.count(guest_concurrency, "guest_concurrency", minimum=1, maximum=64)
    import pandas as pd

    schedule = steady(rate_per_s, duration_s)
    rows, samples = [], []
    if chain:
        row, lag = _chain_stage(schedule, work_ms, duration_s, guest_concurrency,
                                Path(run_dir) / "rest-chain" if run_dir is not None else None)
        rows.append(row)
        samples.append(lag)
    for n in counts:
        spec = lab.transport(method, **_TOPIC_OPTIONS.get(method, lambda p: {})(partitions))
        sc = Scenario(f"scale-{n}", run_dir=Path(run_dir) / f"instances-{n}" if run_dir is not None else None)
        group = f"billing-{uuid.uuid4().hex[:8]}"
        sc.add("orders", produce, kwargs={"spec": spec, "schedule_s": schedule, "event_type": "order.placed",
                                          "keys": 64})
        for i in range(n):
            sc.add(f"billing-{i + 1}", consumer or event_service,
                   kwargs={"spec": spec, "service": "billing", "group": group, "method": method, "work_ms": work_ms})
        with sc.run(expect_events=len(schedule), progress=f"billing x{n} ({method})") as run:
            run.wait_finished("orders", timeout_s=duration_s + 30)
            total = len(schedule)
            run.until(lambda: _processed(sc.recorder) >= total,
                      timeout_s=total * work_ms / 1000 + 30, step_s=0.2)
            gate_ns = run.gate_ns
        row, lag = scale_row(sc.recorder, gate_ns, method, n, duration_s)
        rows.append(row)
        samples.append(lag)
    params = dict(instances=tuple(counts), rate_per_s=rate_per_s, work_ms=work_ms, duration_s=duration_s,
                  partitions=partitions, method=method, chain=chain, guest_concurrency=guest_concurrency,
                  quick=quick)
    return ScaleResult(pd.concat(samples, ignore_index=True), pd.DataFrame(rows), params)


def _chain_stage(schedule: list[float], work_ms: float, duration_s: float, concurrency: int, run_dir):
    """guest -> orders -> billing over HTTP at the same rate; the backlog waits in the guest."""
    from edalab._servers import free_port

    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    sc = Scenario("scale-rest-chain", run_dir=run_dir)
    sc.add("orders", http_service, kwargs={"url": urls[0], "service": "orders", "method": "rest-chain",
                                           "work_ms": 0.0, "next_url": urls[1], "timeout_s": 30.0})
    sc.add("billing", http_service, kwargs={"url": urls[1], "service": "billing", "method": "rest-chain",
                                            "work_ms": work_ms})
    sc.add("guest", guest, kwargs={"url": urls[0], "method": "rest-chain", "schedule_s": schedule,
                                   "timeout_s": 30.0, "concurrency": concurrency})
    with sc.run(progress="HTTP chain, one billing") as run:
        run.wait_finished("guest", timeout_s=duration_s + len(schedule) * work_ms / 1000 + 30)
        gate_ns = run.gate_ns
    calls = sc.recorder.table("calls")
    if calls.empty:
        raise ExperimentError(f"The chain's guest wrote no call; see the role logs in {sc.run_dir}.")
    ok = calls[calls["accepted"] == 1]
    return backlog_row("rest-chain", 1, gate_ns, duration_s, due_ns=calls["due_ns"], done_ns=ok["answered_ns"],
                        delay_ms=(ok["answered_ns"] - ok["due_ns"]) / 1e6, failed=len(calls) - len(ok))


def _processed(recorder) -> int:
    handled = recorder.table("handled")
    return 0 if handled.empty else handled["order"].nunique()
