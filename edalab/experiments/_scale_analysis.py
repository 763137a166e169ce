"""Pure analysis of the many-clients run (notebook 11): the recorder's tables in, one row per step out.

Nothing here starts a process. For every (client, update) pair of a measured window
the *delay* is the time from the update until the client's copy included it (the
first answer or pushed event with that update's sequence number or a newer one): a
poller that skipped an update learns it was overwritten at the same moment. A
poller's copy is *stale* from an update until that moment; an update it never saw
itself (overwritten before its next poll) is *missed*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ManyClientsResult", "analyse", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ["method", "poll_interval_s", "clients", "server_cpu_per_s", "clients_cpu_per_s",
                   "server_wait_per_s", "clients_wait_per_s", "requests_per_s", "open_connections",
                   "server_rss_mb", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms",
                   "wasted_fraction", "stale_fraction", "missed_fraction", "updates_per_s", "errors", "window_s"]
_CLIENT_ROUTES = ("orders_lookups", "long_polls", "polls", "sse_connections")


def _client_requests(requests: dict) -> int:
    return sum(requests.get(route, 0) for route in _CLIENT_ROUTES)


def _client_view(obs: pd.DataFrame, seq: np.ndarray, produced_ns: np.ndarray, w0_ns: int, w1_ns: int):
    """Per client: delays (ns) of the window's updates, stale time (ns) in the window, missed updates.

    ``seq``/``produced_ns`` are the updates from one second before the window on
    (an update just before it may keep a copy stale into it); delays and missed
    updates count those produced inside the window.
    """
    delays, stale_ns, missed, counted = [], 0, 0, 0
    inside = produced_ns >= w0_ns
    for _, rows in obs.groupby("client", sort=False):
        rows = rows.sort_values("recv_ns")
        seen = np.maximum.accumulate(rows["seq"].to_numpy())       # the copy never goes back
        at = np.searchsorted(seen, seq, side="left")
        known = at < len(rows)
        learn_ns = np.where(known, rows["recv_ns"].to_numpy()[np.minimum(at, len(rows) - 1)], w1_ns)
        learn_ns = np.maximum(learn_ns, produced_ns)
        delays.append((learn_ns - produced_ns)[known & inside])
        # stale: the union of [update, learned) clipped to the window (learned times only grow)
        earlier = np.concatenate([[0], learn_ns[:-1]])
        start = np.maximum(np.maximum(produced_ns, earlier), w0_ns)
        stale_ns += np.clip(np.minimum(learn_ns, w1_ns) - start, 0, None).sum()
        missed += int(np.sum(known & inside & ~np.isin(seq, rows["seq"].to_numpy())))
        counted += int((known & inside).sum())
    return (np.concatenate(delays) if delays else np.array([])), stale_ns, missed, counted


def _step_row(step: dict, number: int, sample: dict, obs: pd.DataFrame, counts: pd.DataFrame,
              produced: pd.DataFrame) -> dict:
    before, middle, after = sample["before"], sample["middle"], sample["after"]
    window_s = (after["t_ns"] - before["t_ns"]) / 1e9
    w0_ns, w1_ns = before["t_ns"], after["t_ns"]
    in_window = produced[(produced["produced_at_ns"] >= w0_ns) & (produced["produced_at_ns"] < w1_ns)]
    row = {"method": step["method"], "poll_interval_s": step["poll_interval_s"], "clients": step["clients"],
           "server_cpu_per_s": (after["cpu_s"] - before["cpu_s"]) / window_s,
           "clients_cpu_per_s": (after["clients_cpu_s"] - before["clients_cpu_s"]) / window_s,
           "server_wait_per_s": (after["wait_s"] - before["wait_s"]) / window_s,
           "clients_wait_per_s": (after["clients_wait_s"] - before["clients_wait_s"]) / window_s,
           "requests_per_s": (_client_requests(after["requests"]) - _client_requests(before["requests"]))
           / ((after["stats_ns"] - before["stats_ns"]) / 1e9),
           "open_connections": middle.get("connections", np.nan), "server_rss_mb": middle["rss_bytes"] / 2**20,
           "updates_per_s": len(in_window) / window_s, "window_s": window_s}
    mine = counts[counts["step"] == number]
    requests = mine["requests"].sum()
    row["wasted_fraction"] = float(mine["empty"].sum() / requests) if requests else np.nan
    row["errors"] = int(mine["errors"].sum())
    obs = obs[obs["step"] == number]
    if step["clients"] and len(in_window) and len(obs):
        around = produced[(produced["produced_at_ns"] >= w0_ns - 1_000_000_000) & (produced["produced_at_ns"] < w1_ns)]
        delays, stale_ns, missed, counted = _client_view(obs, around["seq"].to_numpy(),
                                                         around["produced_at_ns"].to_numpy(), w0_ns, w1_ns)
        ms = delays / 1e6
        clients_seen = obs["client"].nunique()
        if step["method"] != "rest-poll" and len(ms):
            # Push work happens when an update is delivered, a delay after it was made: the
            # rate the server worked at in the window is that of the updates shifted by it.
            shift_ns = int(ms.mean() * 1e6)
            at = produced["produced_at_ns"] + shift_ns
            row["updates_per_s"] = int(((at >= w0_ns) & (at < w1_ns)).sum()) / window_s
        row.update(latency_mean_ms=ms.mean() if len(ms) else np.nan,
                   latency_p50_ms=np.percentile(ms, 50) if len(ms) else np.nan,
                   latency_p99_ms=np.percentile(ms, 99) if len(ms) else np.nan,
                   stale_fraction=stale_ns / (clients_seen * (w1_ns - w0_ns)),
                   missed_fraction=missed / counted if counted else np.nan)
    return row


def analyse(recorder, steps: list[dict], samples: list[dict], gate_ns: int, params: dict) -> "ManyClientsResult":
    """The result of a whole sweep from the recorder's tables and the owner's server samples."""
    obs = recorder.table("observations")
    counts = recorder.table("client_steps")
    produced = recorder.produced().sort_values("seq")
    rows = [_step_row(step, sample["step"], sample, obs, counts, produced)
            for step, sample in zip(steps, samples)]
    summary = pd.DataFrame(rows)
    summary = summary[[c for c in SUMMARY_COLUMNS if c in summary]]
    return ManyClientsResult(summary.reset_index(drop=True), obs, params)


@dataclass
class ManyClientsResult:
    """What :func:`edalab.experiments.many_clients_sweep` measured (notebook 11).

    Attributes:
        summary: one row per step (``method`` ``idle`` first: server and producer
            alone), columns :data:`SUMMARY_COLUMNS`: the server's CPU seconds per
            second (and the client processes' together), the seconds per second each
            was ready to run but waited for a core (``*_wait_per_s``: on 2 shared cores,
            how much of the machine the server got), client requests per second (counted by the server), open TCP
            connections and resident memory (MiB) of the server process, the delay
            until a client knew an update (``latency_*_ms``), unchanged answers per
            request (``wasted_fraction``), the share of time a client's copy was
            stale, the share of updates a client never saw (``missed_fraction``).
        observations: the clients' raw rows (one per poll answer or received event).
        params: the settings of the run, with its ``steps``.
    """

    summary: pd.DataFrame
    observations: pd.DataFrame
    params: dict = field(default_factory=dict)

    def measured(self) -> pd.DataFrame:
        """The summary without the idle step."""
        return self.summary[self.summary["method"] != "idle"].reset_index(drop=True)

    def idle_cpu_per_s(self) -> float:
        """Server CPU seconds per second with no client (the producer's updates only)."""
        return float(self.summary.loc[self.summary["method"] == "idle", "server_cpu_per_s"].iloc[0])

    def table(self) -> pd.DataFrame:
        """The columns the lesson reads, rounded for display."""
        columns = ["method", "poll_interval_s", "clients", "server_cpu_per_s", "requests_per_s",
                   "open_connections", "server_rss_mb", "latency_mean_ms", "latency_p99_ms",
                   "wasted_fraction", "stale_fraction", "missed_fraction"]
        return self.summary[columns].round(3)
