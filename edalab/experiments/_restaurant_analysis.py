"""Pure analysis of notebook 12's restaurant run: it reads the recorder's tables only.

Tables (written by :mod:`edalab.experiments._restaurant_roles` and the guest of
:mod:`edalab.experiments._chain_roles`): ``calls`` (the guest's answer per order),
``served``, ``requests``, ``handled``, ``fetches``; the owner's ``lifecycle`` says
when each kitchen was killed and ready again.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["analyse_restaurant", "served_orders", "kitchen_away_s"]

_NS = 1e9


def served_orders(recorder, method: str) -> set[int]:
    """Orders ``method``'s orders service knows are served (used to wait for the end of a run)."""
    served = recorder.table("served")
    return set(served.loc[served["method"] == method, "order"]) if len(served) else set()


def kitchen_away_s(recorder, gate_ns: int, role: str) -> tuple[float, float]:
    """(killed, ready again) for ``role``, seconds after the gate; NaN where it did not happen."""
    life = recorder.lifecycle()
    life = life[life["role"] == role]
    killed = life.loc[life["what"] == "killed", "at_ns"]
    if killed.empty:
        return math.nan, math.nan
    kill_ns = int(killed.iloc[0])
    back = life.loc[(life["what"] == "ready") & (life["at_ns"] > kill_ns), "at_ns"]
    back_s = (int(back.iloc[0]) - gate_ns) / _NS if not back.empty else math.nan
    return (kill_ns - gate_ns) / _NS, back_s


def _per_order(recorder, gate_ns: int, rows: list[dict], method: str, away: tuple[float, float]) -> pd.DataFrame:
    calls = recorder.table("calls")
    calls = calls[calls["method"] == method].drop_duplicates("order").set_index("order")
    served = recorder.table("served")
    served = served[served["method"] == method].groupby("order")["served_ns"].min() if len(served) else pd.Series()
    back_s = away[1] if not math.isnan(away[1]) else math.inf
    out = []
    for r in rows:
        n = r["order"]
        call = calls.loc[n] if n in calls.index else None
        accepted = bool(call is not None and int(call["accepted"]) == 1)
        placed_s = (int(call["due_ns"]) - gate_ns) / _NS if call is not None else r["placed_s"]
        served_s = (int(served[n]) - gate_ns) / _NS if n in served.index else math.nan
        latency_ms = (served_s - placed_s) * 1000
        if not accepted:
            outcome = "failed"
        elif math.isnan(served_s):
            outcome = "lost"
        elif placed_s < back_s <= served_s:
            outcome = "waited"
        else:
            outcome = "served"
        out.append(dict(method=method, order=n, order_id=r["order_id"], placed_s=placed_s, accepted=accepted,
                        status=str(call["status"]) if call is not None else "not placed", served_s=served_s,
                        latency_ms=latency_ms, cook_ms=r["cook_s"] * 1000, overhead_ms=latency_ms - r["cook_s"] * 1000,
                        outcome=outcome))
    return pd.DataFrame(out)


def _fetches(recorder, method: str) -> int:
    """Fetch requests of every consumer process of ``method`` (each process counts from zero)."""
    fetches = recorder.table("fetches")
    if fetches.empty:
        return 0
    fetches = fetches[fetches["method"] == method]
    return int(fetches.groupby(["role", "pid"])["requests"].max().sum())


def analyse_restaurant(recorder, gate_ns: int, rows: list[dict], cpu: dict[str, float]):
    """(samples, summary, cpu table, kitchen away per method) of one run (notebook 12)."""
    from edalab.experiments._restaurant_roles import SERVICES

    suffixes = {"rest": "-rest", "kafka": "-ev"}
    requests = recorder.table("requests")
    handled = recorder.table("handled")
    samples, summary, cpu_rows, away = [], [], [], {}
    for method, suffix in suffixes.items():
        away[method] = kitchen_away_s(recorder, gate_ns, f"kitchen{suffix}")
        per = _per_order(recorder, gate_ns, rows, method, away[method])
        samples.append(per)
        ok = per[per["outcome"].isin(["served", "waited"])]
        n = len(per)
        own_requests = int((requests["method"] == method).sum()) if len(requests) else 0
        cooked = handled[(handled["method"] == method) & (handled["service"] == "kitchen")] if len(handled) else handled
        services = ("orders", *SERVICES)
        service_cpu = {s: float(cpu.get(f"{s}{suffix}", 0.0)) for s in services}
        cpu_rows += [dict(method=method, service=s, cpu_s=v) for s, v in service_cpu.items()]
        summary.append(dict(
            method=method, orders=n, served=int((per["outcome"] == "served").sum()),
            waited=int((per["outcome"] == "waited").sum()), failed=int((per["outcome"] == "failed").sum()),
            lost=int((per["outcome"] == "lost").sum()),
            cooked_twice=int(len(cooked) - cooked["order"].nunique()) if len(cooked) else 0,
            latency_p50_ms=_pct(ok["latency_ms"], 50), latency_p99_ms=_pct(ok["latency_ms"], 99),
            # what the design adds to cooking, on the orders the outage did not touch
            overhead_p50_ms=_pct(per.loc[per["outcome"] == "served", "overhead_ms"], 50),
            # the guest's call plus every request a service made and waited for (HTTP or publish)
            calls_per_order=(n + own_requests) / n if n else math.nan,
            fetches_per_order=_fetches(recorder, method) / n if n else math.nan,
            cpu_s=sum(service_cpu.values())))
    return (pd.concat(samples, ignore_index=True), pd.DataFrame(summary), pd.DataFrame(cpu_rows), away)


def _pct(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(np.percentile(values, q)) if len(values) else math.nan
