"""Notebook 05's analysis: pure functions of the recorder's tables (no roles, no servers).

:func:`outage_rows` counts, per method, what the receiver got of what the sender
created (lost, duplicated, late) around the receiver's outage, from the traces and
the owner's lifecycle log; :func:`fan_out_table` summarises the senders' cost per
step of the fan-out experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["WebhookOutageResult", "FanOutResult", "outage_rows", "fan_out_table"]


@dataclass
class WebhookOutageResult:
    """What :func:`~edalab.experiments.webhook_outage` measured (notebook 05).

    ``summary``: one row per ``method`` (lost, duplicated, latency_*_ms ...);
    ``samples``: one row per receipt (``method``, ``phase``, ``while_up``, ``latency_ms``, ``duplicate``);
    ``events``: one row per created event (``method``, ``seq``, ``phase``, ``delivered``);
    ``attempts``: every POST of the webhook senders; ``params``: the settings used.
    """

    summary: pd.DataFrame
    samples: pd.DataFrame
    events: pd.DataFrame
    attempts: pd.DataFrame
    params: dict = field(default_factory=dict)

    def row(self, method: str) -> pd.Series:
        """One method's summary row; counts stay whole numbers (an object Series)."""
        return self.summary.astype(object).loc[method]

    def table(self) -> pd.DataFrame:
        return self.summary.reset_index()


@dataclass
class FanOutResult:
    """What :func:`~edalab.experiments.adding_subscribers` measured (notebook 05).

    ``summary``: one row per step (``method``, ``mode``, ``subscribers``, ``slow``,
    ``send_p50_ms``, ``send_mean_ms``, ``cpu_p50_ms``, ``cpu_mean_ms``, ``latency_p50_ms``);
    ``sends``: one row per event per sender; ``config``: what each new subscriber
    changed on each side; ``params``: the settings used.
    """

    summary: pd.DataFrame
    sends: pd.DataFrame
    config: list
    params: dict = field(default_factory=dict)

    def step(self, method: str, mode: str, subscribers: int, slow: bool = False) -> pd.Series:
        s = self.summary
        hit = s[(s["method"] == method) & (s["mode"] == mode) & (s["subscribers"] == subscribers)
                & (s["slow"] == bool(slow))]
        return hit.iloc[0]


def _window(lifecycle: pd.DataFrame, got: pd.DataFrame, receiver: str) -> tuple[int, int]:
    """(killed_at_ns, back_at_ns) of ``receiver``: the owner's kill, and the first sign of
    the new process: ready in the lifecycle log, or its first receipt if that came
    sooner (a server answers before the owner hears it is ready)."""
    mine = lifecycle[lifecycle["role"] == receiver]
    killed = mine.loc[mine["what"] == "killed", "at_ns"]
    if killed.empty:
        return 0, 0
    down_ns = int(killed.iloc[0])
    ready = mine.loc[(mine["what"] == "ready") & (mine["at_ns"] > down_ns), "at_ns"]
    after = got.loc[got["received_at_ns"] > down_ns, "received_at_ns"]
    signs = [int(ready.iloc[0])] if len(ready) else []
    signs += [int(after.min())] if len(after) else []
    return down_ns, min(signs) if signs else int(lifecycle["at_ns"].max())


def outage_rows(recorder, pairs: dict[str, tuple[str, str]]) -> tuple[pd.DataFrame, ...]:
    """Per method (``pairs``: method -> (sender role, receiver role)): summary, samples, events."""
    produced, samples, lifecycle = recorder.produced(), recorder.samples(), recorder.lifecycle()
    attempts = recorder.table("attempts")
    rows, all_samples, all_events = [], [], []
    for method, (sender, receiver) in pairs.items():
        sent = produced[produced["role"] == sender]
        got = samples[samples["role"] == receiver].copy()
        down_ns, back_ns = _window(lifecycle, got, receiver)
        t = sent["produced_at_ns"]
        phase = np.where(t < down_ns, "before", np.where(t < back_ns, "down", "after"))
        events = pd.DataFrame({"method": method, "seq": sent["seq"].to_numpy(), "phase": phase,
                               "produced_at_ns": t.to_numpy(),
                               "delivered": sent["event_id"].isin(set(got["event_id"])).to_numpy()})
        got["method"] = method
        got["phase"] = got["event_id"].map(dict(zip(sent["event_id"], phase)))
        # "Receiver up" delay: sent and received before the kill (an order caught by the
        # kill, retried or redelivered after the restart, is a late one, not a live one).
        got["while_up"] = (got["phase"] == "before") & (got["received_at_ns"] < down_ns) if down_ns else True
        live = got[got["while_up"] & ~got["duplicate"]]["latency_ms"]
        late = got[(got["phase"] == "down") & ~got["duplicate"]]["latency_ms"]
        mine = attempts[attempts["role"] == sender] if len(attempts) else attempts
        rows.append({
            "method": method, "produced": len(sent), "delivered": int(events["delivered"].sum()),
            "lost": int((~events["delivered"]).sum()), "duplicated": int(got["duplicate"].sum()),
            "sent_while_down": int((events["phase"] == "down").sum()),
            "delivered_late": int(((events["phase"] == "down") & events["delivered"]).sum()),
            "lost_while_down": int(((events["phase"] == "down") & ~events["delivered"]).sum()),
            "away_s": (back_ns - down_ns) / 1e9,
            "latency_p50_ms": live.median(), "latency_mean_ms": live.mean(),
            "latency_p99_ms": live.quantile(0.99) if len(live) else np.nan,
            "latency_late_mean_ms": late.mean(),
            "attempts": len(mine) if len(mine) else np.nan,
            "failed_attempts": int((mine["ok"] == 0).sum()) if len(mine) else np.nan,
        })
        all_samples.append(got)
        all_events.append(events)
    return (pd.DataFrame(rows).set_index("method"), pd.concat(all_samples, ignore_index=True),
            pd.concat(all_events, ignore_index=True), attempts)


def fan_out_table(recorder, receivers_of_step) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (method, step): the sender's wall and CPU time per event, and the
    delivery delay to the subscribers that are not slow."""
    sends = recorder.table("sends")
    samples, produced = recorder.samples(), recorder.produced()
    sends["method"] = np.where(sends["mode"] == "broker", "broker", "webhook")
    sends["slow"] = sends["slow"].astype(bool)
    rows = []
    for (method, step), part in sends.groupby(["method", "step"], sort=False):
        first = part.iloc[0]
        mine = produced[(produced["role"] == first["role"]) & produced["seq"].isin(part["seq"])]
        ids = set(mine["event_id"])
        fast = samples[samples["event_id"].isin(ids) & samples["role"].isin(receivers_of_step(method))]
        rows.append({"method": method, "step": step, "mode": first["mode"],
                     "subscribers": int(first["subscribers"]), "slow": bool(first["slow"]),
                     "events": len(part), "send_p50_ms": part["send_ms"].median(),
                     "send_mean_ms": part["send_ms"].mean(), "cpu_p50_ms": part["cpu_ms"].median(),
                     "cpu_mean_ms": part["cpu_ms"].mean(),
                     "latency_p50_ms": fast["latency_ms"].median() if len(fast) else np.nan})
    return pd.DataFrame(rows), sends
