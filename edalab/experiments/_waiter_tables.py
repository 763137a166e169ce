"""Pure analysis of one waiter-analogy trial's recorded tables (notebook 01).

Reads only what the roles recorded (:mod:`edalab.experiments.waiter_roles`): the
kitchen's note ``opened`` (the gate time every role counted from), its ``kitchen``
table, the listener's receipts and counters, and the customers' ``asks`` table. The
same run folder always gives the same tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edalab._errors import ExperimentError
from edalab._recorder import Recorder
from edalab.experiments.waiter_roles import ORDER_READY

__all__ = ["DECIMALS", "trial_tables"]

#: How many decimals each kind of number keeps. Rounded once, in the result, so every
#: view (table, printed sentence, chart legend) shows the same digits.
DECIMALS = {"calls": 2, "ms": 1, "s": 3, "rate": 1}


def _decimals(column: str) -> int | None:
    if column in ("calls", "calls_per_order", "model_calls_per_order"):
        return DECIMALS["calls"]
    if column.endswith("_ms"):
        return DECIMALS["ms"]
    if column.endswith("_per_s"):
        return DECIMALS["rate"]
    if column.endswith("_s") and column != "poll_interval_s":
        return DECIMALS["s"]
    return None


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    for column in table.columns:
        places = _decimals(column)
        if places is not None:
            table[column] = pd.to_numeric(table[column], errors="coerce").round(places)
    return table


def _gate_ns(recorder: Recorder) -> int:
    notes = recorder.notes("kitchen")
    opened = notes[notes["what"] == "opened"] if len(notes) else notes
    if not len(opened):
        raise ExperimentError(f"The kitchen of {recorder.run_dir} never noted the opening (the gate): "
                              f"it failed before the run started. Its log: {recorder.run_dir}/role-kitchen.log")
    return int(opened["t0_ns"].iloc[-1])


def _listener_counters(recorder: Recorder, listener: str) -> dict[str, float]:
    """The listener's requests and empty answers: all, before the gate (setup), after it."""
    counters = recorder.counters()
    mine = counters[counters["role"] == listener]
    row = mine.iloc[0] if len(mine) else pd.Series(dtype=float)

    def value(name: str, missing: float) -> float:
        v = row.get(name, np.nan)
        return missing if v is None or pd.isna(v) else float(v)

    requests = value("requests", np.nan)
    empty = value("empty_responses", np.nan)
    # A body that did not report its setup counts everything as after the gate.
    setup = value("setup_requests", 0.0) if not np.isnan(requests) else np.nan
    setup_empty = value("setup_empty", 0.0) if not np.isnan(empty) else np.nan
    return dict(requests_total=requests, setup_requests=setup, requests_open=requests - setup,
                empty_responses=empty - setup_empty)


def trial_tables(recorder: Recorder, listener: str, orders: list[dict], method: str,
                 poll_interval_s: float, label: str) -> tuple[pd.DataFrame, ...]:
    """(samples, summary, asks, kitchen) of one trial; see ``WaiterResult`` for the columns."""
    t0_ns = _gate_ns(recorder)
    received = recorder.received()
    received = received[received["role"] == listener]
    known = (received.sort_values("received_at_ns").drop_duplicates("key").set_index("key")["received_at_ns"]
             if len(received) else pd.Series(dtype="int64"))
    kitchen_log = recorder.table("kitchen")
    kitchen_log = (kitchen_log.set_index("key") if len(kitchen_log)
                   else pd.DataFrame(columns=["order", "placed_at_ns", "ready_at_ns", "stored_at_ns"]))
    asks = recorder.table("asks")
    calls_by_key = asks.groupby("key").size() if len(asks) else pd.Series(dtype="int64")
    counts = _listener_counters(recorder, listener)
    n = len(orders)
    polling = method == "rest-poll"

    rows = []
    for o in orders:
        key = o["key"]
        ready_ns = kitchen_log["ready_at_ns"].get(key, np.nan)
        known_ns = known.get(key, np.nan)
        calls = float(calls_by_key.get(key, 0)) if polling else counts["requests_total"] / n
        rows.append(dict(method=method, poll_interval_s=poll_interval_s, label=label, order=o["order"],
                         key=key, cook_s=o["cook_s"], placed_at_s=o["placed_at_s"],
                         ready_at_s=(ready_ns - t0_ns) / 1e9, known_at_s=(known_ns - t0_ns) / 1e9,
                         calls=calls, latency_ms=(known_ns - ready_ns) / 1e6))
    samples = pd.DataFrame(rows)

    latency = samples["latency_ms"].dropna().to_numpy()
    pct = (lambda q: float(np.percentile(latency, q))) if len(latency) else (lambda q: float("nan"))
    heard = int(samples["known_at_s"].notna().sum())
    open_s = float(np.nanmax(samples["known_at_s"])) if heard else np.nan
    model = float(np.mean(np.ceil(samples["cook_s"] / poll_interval_s))) if polling else float("nan")
    summary = pd.DataFrame([dict(
        method=method, poll_interval_s=poll_interval_s, label=label, orders=n, heard=heard, lost=n - heard,
        calls_per_order=float(samples["calls"].mean()), model_calls_per_order=model,
        latency_mean_ms=float(latency.mean()) if len(latency) else np.nan,
        latency_p50_ms=pct(50), latency_p90_ms=pct(90),
        latency_max_ms=float(latency.max()) if len(latency) else np.nan,
        **counts, open_s=open_s, requests_open_per_s=counts["requests_open"] / open_s if open_s > 0 else np.nan)])

    asks_table = pd.DataFrame(dict(label=label, order=asks.get("order", pd.Series(dtype=int)).astype(int),
                                   asked_at_s=(asks.get("asked_at_ns", np.nan) - t0_ns) / 1e9,
                                   answered_at_s=(asks.get("answered_at_ns", np.nan) - t0_ns) / 1e9,
                                   status=asks.get("status", pd.Series(dtype=object)),
                                   ready=asks.get("status", pd.Series(dtype=object)) == ORDER_READY))
    kitchen_table = pd.DataFrame(dict(label=label, order=kitchen_log["order"].astype(int),
                                      placed_at_s=(kitchen_log["placed_at_ns"] - t0_ns) / 1e9,
                                      ready_at_s=(kitchen_log["ready_at_ns"] - t0_ns) / 1e9,
                                      stored_at_s=(kitchen_log["stored_at_ns"] - t0_ns) / 1e9)).reset_index(drop=True)
    # asks and kitchen are drawn, not printed: they keep full precision.
    return _rounded(samples), _rounded(summary), asks_table, kitchen_table
