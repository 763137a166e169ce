"""Polling vs push: how late does a consumer learn about an event, and what does it cost?

The headline experiment of the course (notebook 02; ``edalab run polling-vs-push``).
One stream of "order ready" events, produced at random moments, is delivered by:

* REST polling at a sweep of intervals ("is it ready?", the waiter who keeps asking);
* long polling (the server holds the question until there is news);
* Server-Sent Events and webhooks (HTTP push);
* Redis pub/sub (push), a Redis Streams blocking read, a Kafka consumer (a long-poller).

For each, the delivery delay of every event, the requests and empty responses per
delivered event, lost and duplicated events, and CPU seconds per role, all measured
on real servers with each role in its own process.

The model drawn over polling: with events arriving at random moments, an event waits
on average half a poll interval for the next poll, plus about one HTTP round trip
(publishing it and fetching it), so mean delay ≈ interval / 2 + RTT.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab.experiments._trial import run_trial
from edalab.roles import Role, poisson_schedule_s

__all__ = ["PollingVsPushResult", "polling_vs_push", "PUSH_METHODS", "POLL_METHOD"]

POLL_METHOD = "rest-poll"
PUSH_METHODS = ("long-poll", "sse", "webhook", "redis-pubsub", "redis-stream", "kafka")
FULL_INTERVALS_S = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
QUICK_INTERVALS_S = (0.02, 0.1, 0.5)


@dataclass
class PollingVsPushResult:
    """What :func:`polling_vs_push` measured.

    Attributes:
        samples: one row per receipt: method, poll_interval_s (NaN for push),
            event_id, key, latency_ms, duplicate, ...
        summary: one row per method (and interval): produced, delivered, lost,
            duplicated, latency_mean/p50/p90/p99_ms, requests_per_event,
            empty_per_event, consumer/producer/service CPU seconds, model_mean_ms.
        rtt_ms: median HTTP round trip to the event service, with requests spaced
            like the events (the model's RTT).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    rtt_ms: float
    params: dict = field(default_factory=dict)

    def polling(self) -> pd.DataFrame:
        """The REST-polling rows of the summary, by interval."""
        return self.summary[self.summary["method"] == POLL_METHOD].sort_values("poll_interval_s")

    def push(self) -> pd.DataFrame:
        """The summary rows of every method that is not fixed-interval polling."""
        return self.summary[self.summary["method"] != POLL_METHOD]

    def model_mean_ms(self, poll_interval_s) -> np.ndarray:
        """The polling model: interval / 2 + one round trip, in ms."""
        return np.asarray(poll_interval_s, dtype=float) * 1000 / 2 + self.rtt_ms

    def model_max_rel_error(self) -> float:
        """Largest |measured mean - model| / model over the polling intervals."""
        rows = self.polling()
        model = self.model_mean_ms(rows["poll_interval_s"])
        return float(np.max(np.abs(rows["latency_mean_ms"].to_numpy() - model) / model))


def _http_rtt_ms(base_url: str, rate_per_s: float, rounds: int = 40) -> float:
    """Median round trip of ``GET /health``, spaced like the experiment's events.

    Spaced, not back to back: on a virtual machine an idle process answers 100-200 us
    slower than a busy one, and the events of the experiment arrive with idle gaps,
    so this is the round trip the model's "+ RTT" should use.
    """
    import httpx

    from edalab.roles import poisson_schedule_s

    gaps = np.diff([0.0, *poisson_schedule_s(rounds, rate_per_s, seed=11)])
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.get("/health")
        times = []
        for gap in gaps:
            time.sleep(min(gap, 0.2))
            t = time.perf_counter()
            client.get("/health")
            times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def polling_vs_push(lab, *, poll_intervals_s: Sequence[float] | None = None,
                    methods: Sequence[str] | None = None, events: int | None = None,
                    rate_per_s: float | None = None, quick: bool | None = None, seed: int = 1,
                    run_dir: str | Path | None = None, progress: bool = True) -> PollingVsPushResult:
    """Run the polling-vs-push comparison on ``lab``'s servers.

    Args:
        lab: from :func:`edalab.start`.
        poll_intervals_s: REST poll intervals to sweep (seconds).
        methods: which of ``"rest-poll"`` and :data:`PUSH_METHODS` to run (default: all).
        events: events per method (default 200, quick 30).
        rate_per_s: mean event rate; arrival times are random (Poisson). Default 20,
            quick 30 (one second of events per method).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the random arrival times are reproducible with the same seed.
        run_dir: where role traces go (a temporary folder by default).
        progress: show a progress bar.
    """
    from edalab.transports.http import EventServiceSpec, serve_event_service

    quick = quick_mode(quick)
    intervals = tuple(poll_intervals_s or (QUICK_INTERVALS_S if quick else FULL_INTERVALS_S))
    methods = tuple(methods or (POLL_METHOD, *PUSH_METHODS))
    events = events or (30 if quick else 200)
    if rate_per_s is None:
        rate_per_s = 30.0 if quick else 20.0
    unknown = set(methods) - {POLL_METHOD, *PUSH_METHODS}
    if unknown:
        raise ConfigError(f"Unknown methods {sorted(unknown)}; choose from {[POLL_METHOD, *PUSH_METHODS]}.")
    if any(i <= 0 for i in intervals) or events < 1 or not rate_per_s > 0:
        raise ConfigError("poll intervals, events and rate_per_s must be positive.")
    root = Path(run_dir or tempfile.mkdtemp(prefix="edalab-pvp-"))
    schedule = poisson_schedule_s(events, rate_per_s, seed)
    tag = uuid.uuid4().hex[:8]

    trials = [(method, interval) for method in methods
              for interval in (intervals if method == POLL_METHOD else (float("nan"),))]

    from tqdm.auto import tqdm

    from edalab._recorder import Recorder

    from edalab._servers import free_port

    base_url = f"http://127.0.0.1:{free_port()}"
    service = Role("event-service", serve_event_service, Recorder(root / "service"), base_url=base_url)
    http_needed = any(m in (POLL_METHOD, "long-poll", "sse", "webhook") for m in methods)
    summaries, samples = [], []
    rtt_ms = float("nan")
    try:
        if http_needed:
            service.start()
            rtt_ms = _http_rtt_ms(base_url, rate_per_s)
        bar = tqdm(trials, desc="polling vs push", disable=not progress, leave=False)
        for method, interval in bar:
            bar.set_postfix_str(method if np.isnan(interval) else f"{method} {interval * 1000:g} ms")
            name = method if np.isnan(interval) else f"{method}-{interval * 1000:g}ms"
            if method == POLL_METHOD:
                spec = EventServiceSpec(base_url, mode="poll", poll_interval_s=interval)
            elif method in ("long-poll", "sse", "webhook"):
                spec = EventServiceSpec(base_url, mode=method)
            elif method == "redis-pubsub":
                from edalab.transports.redis import RedisPubSubSpec

                spec = RedisPubSubSpec(lab.redis_url, f"pvp-{tag}-{name}")
            elif method == "redis-stream":
                from edalab.transports.redis import RedisStreamSpec

                spec = RedisStreamSpec(lab.redis_url, f"pvp-{tag}-{name}")
            else:
                from edalab.transports.kafka import KafkaSpec

                spec = KafkaSpec.for_lab(lab, lab.create_topic(f"pvp-{tag}-{name}"))
            service_cpu_before = service.cpu_seconds() if service.alive else 0.0
            # Push methods may hold a receive for a while when idle (a long poll's point),
            # but not so long that stopping the consumer waits for it; fixed-interval
            # polling must not hold at all, or its schedule would slip.
            trial_samples, summary, cpu = run_trial(
                root / name, spec, schedule, receive_timeout_s=0.1 if method == POLL_METHOD else 0.25,
                settle_timeout_s=max(5.0, 3 * interval if method == POLL_METHOD else 0.0))
            row = summary.iloc[0].to_dict()
            row.update(method=method, poll_interval_s=interval, consumer_cpu_s=cpu["consumer-0"],
                       producer_cpu_s=cpu["producer"],
                       service_cpu_s=(service.cpu_seconds() - service_cpu_before)
                       if method in (POLL_METHOD, "long-poll", "sse", "webhook") else 0.0)
            summaries.append(row)
            trial_samples = trial_samples.assign(method=method, poll_interval_s=interval)
            samples.append(trial_samples)
        bar.close()
    finally:
        service.stop()
    summary = pd.DataFrame(summaries)
    if len(summary):
        summary["model_mean_ms"] = np.where(summary["method"] == POLL_METHOD,
                                            summary["poll_interval_s"] * 1000 / 2 + rtt_ms, np.nan)
    front = ["method", "poll_interval_s", "produced", "delivered", "lost", "duplicated",
             "latency_mean_ms", "model_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
             "requests_per_event", "empty_per_event", "consumer_cpu_s", "producer_cpu_s", "service_cpu_s"]
    summary = summary[[c for c in front if c in summary] + [c for c in summary if c not in front]]
    params = dict(poll_intervals_s=intervals, methods=methods, events=events, rate_per_s=rate_per_s,
                  quick=quick, seed=seed, run_dir=str(root))
    return PollingVsPushResult(pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(),
                               summary.reset_index(drop=True), rtt_ms, params)
