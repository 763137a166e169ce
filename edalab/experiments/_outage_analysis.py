"""What a broker outage did, read from the recorder's tables (notebook 08; pure analysis).

:func:`analyse_outage` turns the ``sends`` table of each order service, billing's
consumer trace, the owner's timeline (``fault <trial>``, ``back <trial>`` in the
lifecycle) and what a fresh reader found in each topic afterwards into an
:class:`OutageResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["OutageResult", "analyse_outage", "COUNT_COLUMNS"]

#: the counts of the summary, in the order the charts show them
COUNT_COLUMNS = ["sent", "acknowledged", "failed", "delivered", "duplicated", "lost", "kept"]
_WHOLE = {*COUNT_COLUMNS, "unresolved"}


@dataclass
class OutageResult:
    """What :func:`~edalab.experiments.broker_goes_down` measured.

    Attributes:
        samples: one row per order: ``method`` (``tansu-memory``, ``tansu-s3``),
            ``fault``, ``event_id``, ``seq``, ``sent_ns``, ``outcome`` (``acked``,
            ``failed``: the callback got an error, ``refused``: ``send()`` raised,
            ``unresolved``), ``done_ns``, ``blocked_ms`` (time ``send()`` blocked), ``error`` (what the caller got),
            ``deliveries`` (how often billing got it), ``first_received_ns``, ``kept``.
        summary: one row per (``method``, ``fault``): :data:`COUNT_COLUMNS`, plus
            ``ack_max_ms`` (slowest acknowledgement), ``blocked_max_ms``, ``stall_s``
            (billing's longest gap between two deliveries), ``recovery_s`` (from the
            broker being back to billing's next delivery) and ``down_s``.
        timeline: the owner's actions: ``method``, ``fault``, ``what`` (fault/back), ``t_s``.
        params: the checked parameters, and ``gate_ns`` (when the orders started).
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    timeline: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The summary, rounded for reading (counts whole, times to 0.1 s / 1 ms)."""
        out = self.summary.copy()
        for column in ("stall_s", "recovery_s", "down_s"):
            out[column] = out[column].round(1)
        for column in ("ack_max_ms", "blocked_max_ms"):
            out[column] = out[column].round(0)
        return out

    def row(self, method: str, fault: str) -> pd.Series:
        """The summary row of one trial, e.g. ``result.row("tansu-s3", "kill")``: counts as
        whole numbers, times as floats."""
        row = self.summary.loc[(method, fault)]
        return pd.Series({k: int(v) if k in _WHOLE else float(v) for k, v in row.items()},
                         dtype=object, name=(method, fault))


def analyse_outage(recorder, trials, kept: dict, params: dict) -> OutageResult:
    """Build the :class:`OutageResult` of a run (``trials``: (storage, fault) pairs;
    ``kept``: the event ids read back from each trial's topic)."""
    sends, received = recorder.table("sends"), recorder.received()
    life = recorder.lifecycle()
    owner = life[life["role"] == "owner"] if len(life) else life
    gate = life.loc[(life["role"] == "gate") & (life["what"] == "opened"), "at_ns"]
    gate_ns = int(gate.iloc[0]) if len(gate) else 0
    rows, samples, timeline = [], [], []
    for storage, fault in trials:
        name, method = f"{storage}-{fault}", f"tansu-{storage}"
        times = {what: _owner_time(owner, f"{what} {name}") for what in ("fault", "back")}
        timeline += [{"method": method, "fault": fault, "what": what, "t_s": (t - gate_ns) / 1e9}
                     for what, t in times.items() if t is not None]
        mine = sends[sends["role"] == f"orders-{name}"] if len(sends) else pd.DataFrame(columns=["what"])
        got = received[received["role"] == f"billing-{name}"]
        sample = _per_order(mine, got, kept[storage, fault])
        sample.insert(0, "fault", fault)
        sample.insert(0, "method", method)
        samples.append(sample)
        rows.append({"method": method, "fault": fault, **_counts(sample, got, kept[storage, fault]),
                     **_consumer_times(got, times), "down_s": _seconds(times["back"], times["fault"])})
    summary = pd.DataFrame(rows).set_index(["method", "fault"])
    params = {**params, "gate_ns": gate_ns}
    return OutageResult(pd.concat(samples, ignore_index=True), summary, pd.DataFrame(timeline), params)


def _owner_time(owner: pd.DataFrame, what: str) -> int | None:
    at = owner.loc[owner["what"] == what, "at_ns"] if len(owner) else []
    return int(at.iloc[0]) if len(at) else None


def _seconds(later: int | None, earlier: int | None) -> float:
    return (later - earlier) / 1e9 if later is not None and earlier is not None else float("nan")


def _per_order(sends: pd.DataFrame, got: pd.DataFrame, kept: set[str]) -> pd.DataFrame:
    """One row per order the service tried to send, with its fate."""
    columns = ["event_id", "seq", "sent_ns", "outcome", "done_ns", "blocked_ms", "error", "deliveries",
               "first_received_ns", "kept"]
    tried = sends[sends["what"].isin(["buffered", "refused"])]
    if not len(tried):
        return pd.DataFrame(columns=columns)
    out = tried[["event_id", "seq", "at_ns", "blocked_ms"]].rename(columns={"at_ns": "sent_ns"})
    out = out.drop_duplicates("event_id").set_index("event_id")
    done = sends[sends["what"].isin(["acked", "failed", "refused"])].drop_duplicates("event_id", keep="last")
    out["outcome"] = done.set_index("event_id")["what"].reindex(out.index).fillna("unresolved")
    out["done_ns"] = done.set_index("event_id")["at_ns"].reindex(out.index)
    out["error"] = done.set_index("event_id")["error"].astype(object).reindex(out.index).fillna("")
    counts = got.groupby("event_id").size() if len(got) else pd.Series(dtype=int)
    out["deliveries"] = counts.reindex(out.index).fillna(0).astype(int)
    first = got.groupby("event_id")["received_at_ns"].min() if len(got) else pd.Series(dtype=float)
    out["first_received_ns"] = first.reindex(out.index)
    out["kept"] = out.index.isin(kept)
    return out.reset_index()[columns].sort_values("seq", ignore_index=True)


def _counts(sample: pd.DataFrame, got: pd.DataFrame, kept: set[str]) -> dict[str, Any]:
    acked = sample["outcome"] == "acked"
    delivered = sample["deliveries"] > 0
    ack_ms = (sample.loc[acked, "done_ns"] - sample.loc[acked, "sent_ns"]) / 1e6
    blocked = pd.to_numeric(sample["blocked_ms"], errors="coerce")
    return {"sent": len(sample), "acknowledged": int(acked.sum()),
            "failed": int(sample["outcome"].isin(["failed", "refused"]).sum()),
            "delivered": int(delivered.sum()),
            "duplicated": int((sample["deliveries"] - 1).clip(lower=0).sum()),
            "lost": int((acked & ~delivered & ~sample["kept"]).sum()),
            "kept": int(sample["kept"].sum()),
            "unresolved": int((sample["outcome"] == "unresolved").sum()),
            "ack_max_ms": float(ack_ms.max()) if len(ack_ms) else float("nan"),
            "blocked_max_ms": float(blocked.max()) if len(blocked) else float("nan")}


def _consumer_times(got: pd.DataFrame, times: dict) -> dict[str, float]:
    """Billing's longest gap between deliveries, and how long after the broker was back
    its next delivery came."""
    at = np.sort(got["received_at_ns"].to_numpy(dtype="int64")) if len(got) else np.array([], "int64")
    stall_s = float(np.diff(at).max() / 1e9) if len(at) > 1 else float("nan")
    back = times.get("back")
    after = at[at >= back] if back is not None else np.array([])
    recovery_s = float((after[0] - back) / 1e9) if len(after) else float("nan")
    return {"stall_s": stall_s, "recovery_s": recovery_s}
