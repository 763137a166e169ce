"""Pure analysis of the polling-vs-push runs (notebook 02): trial traces in, tables out.

Nothing here starts a process or touches a server: :func:`trial_rows` turns one
trial's recorder tables into a summary row and samples, :func:`combine` builds the
result, and :class:`PollingVsPushResult` answers the lesson's questions from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edalab.experiments.polling_vs_push import POLL_METHOD

__all__ = ["PollingVsPushResult", "trial_rows", "combine", "SUMMARY_COLUMNS"]

#: the summary's columns, in the order the notebook shows them
SUMMARY_COLUMNS = ["method", "poll_interval_s", "produced", "delivered", "lost", "duplicated",
                   "latency_mean_ms", "model_mean_ms", "latency_p50_ms", "latency_p90_ms",
                   "latency_p99_ms", "requests_per_event", "empty_per_event", "events_per_poll",
                   "consumer_cpu_s", "server_cpu_s", "producer_cpu_s", "duration_s"]


def trial_rows(method: str, poll_interval_s: float, summary: pd.DataFrame, samples: pd.DataFrame,
               cpu_s: dict[str, float], duration_s: float) -> tuple[dict, pd.DataFrame]:
    """One trial's summary row and samples, labelled with ``method`` and ``poll_interval_s``.

    ``summary`` is the recorder's one-row summary of the consumer, ``cpu_s`` the CPU
    seconds of ``consumer``, ``producer`` and ``server`` (the event service or broker
    in the middle; NaN when not measured), ``duration_s`` the trial's gate-to-end time.
    """
    row = summary.iloc[0].to_dict() if len(summary) else {"produced": 0, "delivered": 0}
    row.update(method=method, poll_interval_s=poll_interval_s, duration_s=duration_s,
               consumer_cpu_s=cpu_s.get("consumer", math.nan), producer_cpu_s=cpu_s.get("producer", math.nan),
               server_cpu_s=cpu_s.get("server", math.nan))
    return row, samples.assign(method=method, poll_interval_s=poll_interval_s)


def combine(rows: list[dict], samples: list[pd.DataFrame], rtt_ms: float, rate_per_s: float,
            params: dict) -> "PollingVsPushResult":
    """The result of a whole sweep: summary with the model columns, all samples."""
    summary = pd.DataFrame(rows)
    if len(summary):
        polling = summary["method"] == POLL_METHOD
        interval = summary["poll_interval_s"].astype(float)
        summary["model_mean_ms"] = np.where(polling, interval * 1000 / 2 + rtt_ms, np.nan)
        # events that arrive, on average, between two polls: one poll answers that many
        summary["events_per_poll"] = np.where(polling, rate_per_s * interval, np.nan)
    summary = summary[[c for c in SUMMARY_COLUMNS if c in summary]
                      + [c for c in summary if c not in SUMMARY_COLUMNS]]
    all_samples = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame()
    return PollingVsPushResult(all_samples, summary.reset_index(drop=True), rtt_ms, params)


@dataclass
class PollingVsPushResult:
    """What :func:`edalab.experiments.polling_vs_push` measured (notebook 02).

    Attributes:
        samples: one row per receipt: ``method``, ``poll_interval_s`` (NaN for the
            others), ``event_id``, ``key``, ``latency_ms``, ``duplicate``, ...
        summary: one row per method (and poll interval), columns
            :data:`SUMMARY_COLUMNS`: delivered/lost/duplicated events,
            ``latency_*_ms``, requests and empty responses per delivered event,
            ``events_per_poll`` (rate x interval), CPU seconds of the consumer, the
            server in the middle (event service, Valkey or Tansu; NaN where the lab
            did not start it) and the producer, and the model's mean delay.
        rtt_ms: median HTTP round trip to the event service, spaced like the events
            (the model's RTT; NaN when no HTTP method ran).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    rtt_ms: float
    params: dict = field(default_factory=dict)

    def polling(self) -> pd.DataFrame:
        """The REST-polling rows of the summary, shortest interval first."""
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
        if not len(rows):
            return math.nan
        model = self.model_mean_ms(rows["poll_interval_s"])
        return float(np.max(np.abs(rows["latency_mean_ms"].to_numpy() - model) / model))

    def table(self) -> pd.DataFrame:
        """The summary's columns the lesson reads, rounded for display."""
        columns = ["method", "poll_interval_s", "delivered", "lost", "latency_mean_ms", "model_mean_ms",
                   "latency_p90_ms", "requests_per_event", "empty_per_event", "consumer_cpu_s",
                   "server_cpu_s"]
        return self.summary[[c for c in columns if c in self.summary]].round(3)
