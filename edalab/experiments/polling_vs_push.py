"""Polling vs push: how late does a consumer learn about an event, and what does it cost?

The headline experiment of the course (notebook 02; ``edalab run polling-vs-push``).
One stream of "order ready" events, produced at random moments, is delivered by:

* REST polling at a sweep of intervals ("is it ready?", the guest who keeps asking);
* long polling (the server holds the question until there is news);
* Server-Sent Events and webhooks (HTTP push);
* Redis pub/sub (push), a Redis Streams blocking read, a Kafka consumer (a long-poller).

Each method is one :class:`~edalab.Scenario`: a consumer role (by default
:func:`receive_events`; notebook 02 passes its own copy of it) and a producer role,
started together, with the producer's schedule starting at the one gate. Measured
for each: the delay of every delivery, requests and empty responses per delivered
event, and CPU seconds of consumer, producer and the server in the middle.

The model drawn over polling: with events arriving at random moments, an event waits
on average half a poll interval for the next poll, plus about one HTTP round trip
(publishing it and fetching it), so mean delay ≈ interval / 2 + RTT.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edalab import _checks
from edalab._config import new_run_dir, quick_mode
from edalab._errors import ConfigError
from edalab._recorder import Recorder
from edalab.harness import Scenario
from edalab.roles import Role, produce
from edalab.workloads import poisson

if TYPE_CHECKING:
    from edalab.experiments._polling_analysis import PollingVsPushResult

__all__ = ["polling_vs_push", "receive_events", "METHODS", "PUSH_METHODS", "POLL_METHOD"]

# Light at import (no numpy, no pandas): edalab.experiments binds polling_vs_push from
# here eagerly, and every role process imports that package.
POLL_METHOD = "rest-poll"
PUSH_METHODS = ("long-poll", "sse", "webhook", "redis-pubsub", "redis-stream", "kafka")
METHODS = (POLL_METHOD, *PUSH_METHODS)
#: methods served by the HTTP event service, and the EventServiceSpec mode of each
HTTP_MODES = {POLL_METHOD: "poll", "long-poll": "long-poll", "sse": "sse", "webhook": "webhook"}
#: the lab server in the middle of each broker method (its CPU is measured when the lab started it)
BROKER_SERVERS = {"redis-pubsub": "redis", "redis-stream": "redis", "kafka": "kafka"}
FULL_INTERVALS_S = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# Quick (CI): the same rate, fewer events and intervals. 20 ms keeps fewer than one event
# per interval (mostly empty polls) and is long enough that scheduling jitter on a busy
# machine stays small next to it.
QUICK_INTERVALS_S = (0.02, 0.1, 0.5)


def receive_events(ctx, spec, receive_timeout_s: float = 0.25) -> None:
    """The consumer role of notebook 02: receive and record every event, count the cost.

    ``spec.subscriber()`` is the method: a poller that asks every interval, a long
    poll, an SSE stream, a webhook server, a Redis or Kafka subscriber. Each
    ``receive`` waits at most ``receive_timeout_s`` seconds. Counted are the requests
    from the gate (when the first event may come) up to the latest delivery: the idle
    tail while the run stops is not part of what an event cost.
    """
    subscriber = spec.subscriber()
    subscriber.wait_ready(timeout_s=30.0)       # e.g. the Kafka group join: not a delay
    trace = ctx.recorder.consumer_trace(ctx.name)
    try:
        if ctx.gate() is None:                  # ready; wait until every role is
            return
        while not ctx.stopping:
            deliveries = subscriber.receive(receive_timeout_s)
            for delivery in deliveries:
                trace.record(delivery)          # the event and when it arrived
            if deliveries:                      # requests and empty answers up to the latest event
                trace.write_counters(subscriber.counters)
    finally:
        subscriber.close()
        trace.close()


def _http_rtt_ms(base_url: str, rate_per_s: float, rounds: int = 40) -> float:
    """Median round trip of ``GET /health``, spaced like the experiment's events.

    Spaced, not back to back: on a virtual machine an idle process answers 100-200 us
    slower than a busy one, and the events arrive with idle gaps, so this is the
    round trip the model's "+ RTT" should use.
    """
    import httpx
    import numpy as np

    gaps = np.diff([0.0, *poisson(rounds, rate_per_s, seed=11)])
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.get("/health")
        times = []
        for gap in gaps:
            time.sleep(min(gap, 0.2))
            t = time.perf_counter()
            client.get("/health")
            times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a server process so far (NaN if unknown or gone)."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (psutil.Error, TypeError, ValueError):
        return math.nan


def _check_parameters(quick, poll_intervals_s, methods, events, rate_per_s, seed, consumer) -> dict:
    """Every parameter checked and defaulted before anything starts (ConfigError / EdalabWarning)."""
    quick = quick_mode(quick)
    intervals = _checks.numbers(
        (QUICK_INTERVALS_S if quick else FULL_INTERVALS_S) if poll_intervals_s is None else poll_intervals_s,
        "poll_intervals_s", unit="seconds", positive=True, maximum=60, sensible=(0.005, 5.0))
    methods = _checks.choices(METHODS if methods is None else methods, "methods", METHODS)
    events = _checks.count((24 if quick else 200) if events is None else events,
                           "events", minimum=1, sensible_max=5000, what="events per method")
    rate_per_s = _checks.number(20.0 if rate_per_s is None else rate_per_s, "rate_per_s",
                                unit="events per second", positive=True, sensible=(0.5, 500))
    seed = _checks.count(seed, "seed")
    if not callable(consumer):
        raise ConfigError(f"consumer must be a role body consumer(ctx, spec, receive_timeout_s), "
                          f"not {type(consumer).__name__}.")
    if events / rate_per_s > 600:
        warnings.warn(f"{events} events at {rate_per_s:g} events per second take "
                              f"{events / rate_per_s:.0f} s per method: is the rate right?",
                              _checks.EdalabWarning, stacklevel=3)
    return dict(quick=quick, poll_intervals_s=tuple(sorted(set(intervals))), methods=tuple(dict.fromkeys(methods)),
                events=events, rate_per_s=rate_per_s, seed=seed)


def polling_vs_push(lab, *, poll_intervals_s: Sequence[float] | None = None,
                    methods: Sequence[str] | None = None, events: int | None = None,
                    rate_per_s: float | None = None, consumer: Callable = receive_events,
                    quick: bool | None = None, seed: int = 1, run_dir: str | Path | None = None,
                    progress: bool = True) -> PollingVsPushResult:
    """Run the polling-vs-push comparison on ``lab``'s servers (notebook 02).

    Args:
        lab: from :func:`edalab.start`.
        poll_intervals_s: REST poll intervals to sweep, in seconds (default 20 ms to
            1 s; quick: 20, 100, 500 ms). Milliseconds typed as seconds are refused.
        methods: which of :data:`METHODS` to run, as a list (default: all).
        events: events per method (default 200, quick 24); at least 1.
        rate_per_s: mean event rate in events per second (default 20); arrival times
            are random (Poisson), the same for every method.
        consumer: the consumer role body ``consumer(ctx, spec, receive_timeout_s)``,
            run as its own process (default :func:`receive_events`).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times are reproducible with the same seed.
        run_dir: keep the traces here (default: a new folder in the runs directory).
        progress: show a progress bar over the trials.
    """
    from edalab._servers import free_port
    from edalab.experiments._polling_analysis import combine
    from edalab.transports.http import EventServiceSpec, serve_event_service

    p = _check_parameters(quick, poll_intervals_s, methods, events, rate_per_s, seed, consumer)
    root = Path(run_dir) if run_dir is not None else new_run_dir("polling-vs-push")
    schedule_s = poisson(p["events"], p["rate_per_s"], p["seed"])
    trials = [(m, i) for m in p["methods"]
              for i in (p["poll_intervals_s"] if m == POLL_METHOD else (math.nan,))]
    base_url = f"http://127.0.0.1:{free_port()}"
    # The event service is infrastructure, like the lab's servers: one process for the
    # whole sweep; each reader starts at the end of its log, so trials do not mix.
    service = Role("event-service", serve_event_service, Recorder(root / "event-service"),
                   kwargs={"base_url": base_url})
    server_pids = {row["service"]: row["pid"] for row in lab.describe()}
    rows, samples, rtt_ms = [], [], math.nan
    try:
        if any(m in HTTP_MODES for m in p["methods"]):
            service.start()
            rtt_ms = _http_rtt_ms(base_url, p["rate_per_s"], rounds=20 if p["quick"] else 40)
        from tqdm.auto import tqdm

        # One bar over the trials (not one per trial): a bar redrawn per event floods a
        # notebook's output channel over a sweep of minutes.
        bar = tqdm(trials, desc="polling vs push", unit="trial", disable=not progress, leave=False)
        for method, interval in bar:
            if method in HTTP_MODES:
                spec = EventServiceSpec(base_url, mode=HTTP_MODES[method],
                                        poll_interval_s=0.1 if math.isnan(interval) else interval)
                server_cpu = service.cpu_seconds
            else:
                spec = lab.transport(method)
                pid = server_pids.get(BROKER_SERVERS[method])
                server_cpu = lambda pid=pid: _process_cpu_s(pid)  # noqa: E731
            name = method if math.isnan(interval) else f"{method}-{interval * 1000:g}ms"
            bar.set_postfix_str(name)
            # A poller must not hold a receive past its next tick; the others may wait a
            # little when idle (a long poll's point), not so long that stopping waits.
            row, trial_samples = _run_trial(
                root / name, method, interval, spec, schedule_s, consumer,
                receive_timeout_s=0.1 if method == POLL_METHOD else 0.25,
                settle_s=max(5.0, 0.0 if math.isnan(interval) else 3 * interval), server_cpu=server_cpu)
            rows.append(row)
            samples.append(trial_samples)
        bar.close()
    finally:
        service.stop()
    params = {**p, "run_dir": str(root)}
    return combine(rows, samples, rtt_ms, p["rate_per_s"], params)


def _run_trial(run_dir: Path, method: str, interval: float, spec, schedule_s: list[float],
               consumer: Callable, *, receive_timeout_s: float, settle_s: float,
               server_cpu: Callable[[], float]):
    """One method: consumer and producer ready, the gate, the schedule, wait, stop; its rows."""
    from edalab.experiments._polling_analysis import trial_rows

    sc = Scenario(run_dir.name, run_dir=run_dir)
    sc.add("consumer", consumer, kwargs={"spec": spec, "receive_timeout_s": receive_timeout_s})
    sc.add("producer", produce, kwargs={"spec": spec, "schedule_s": schedule_s})
    server_before = server_cpu()
    with sc.run(expect_events=len(schedule_s), progress=False) as run:
        # Done when every event arrived (a producer that fails ends the run with its log);
        # the producer may still be closing then: leaving the block stops both.
        run.until_delivered(len(schedule_s), roles=["consumer"], timeout_s=schedule_s[-1] + settle_s)
        duration_s = run.elapsed_s()
        server_s = server_cpu() - server_before
    cpu = {"consumer": sc["consumer"].cpu_seconds(), "producer": sc["producer"].cpu_seconds(),
           "server": server_s}
    return trial_rows(method, interval, sc.recorder.summary(groups=["consumer"]), sc.recorder.samples(),
                      cpu, duration_s)
