"""Notebook 07's analysis: orders around billing's outage, backlog over time (pure: reads the Recorder).

Used by :mod:`edalab.experiments.service_chain`; nothing here starts a process.
"""

from __future__ import annotations

from edalab import topology
from edalab._errors import ExperimentError

__all__ = ["analyse_chain", "scale_row", "backlog_row"]

#: the services of the real chain, in call order
CHAIN = ("orders", "kitchen", "billing")


def _down_window(lifecycle, role: str, gate_ns: int) -> tuple[float, float]:
    """(killed, ready again) of ``role`` in seconds after the gate, from the owner's log."""
    mine = lifecycle[lifecycle["role"] == role]
    killed = mine.loc[mine["what"] == "killed", "at_ns"]
    if killed.empty:
        raise ExperimentError(f"The lifecycle log has no kill of {role}; the timeline did not run.")
    back = mine.loc[(mine["what"] == "ready") & (mine["at_ns"] > killed.iloc[0]), "at_ns"]
    end = back.iloc[0] if not back.empty else lifecycle["at_ns"].max()
    return (killed.iloc[0] - gate_ns) / 1e9, (end - gate_ns) / 1e9


def analyse_chain(recorder, gate_ns: int, method: str, delayed_after_s: float, params: dict):
    """(samples, summary, down_s) of :class:`~edalab.experiments.service_chain.ChainResult` from the
    guests' ``calls``, the services' ``handled`` tables and the owner's lifecycle log."""
    import numpy as np
    import pandas as pd

    calls, handled, lifecycle = recorder.table("calls"), recorder.table("handled"), recorder.lifecycle()
    if calls.empty:
        raise ExperimentError(f"No guest wrote any call; see the role logs in {params['run_dir']}.")
    billed = (handled[handled["service"] == "billing"].groupby(["method", "order"])["done_ns"].min()
              .rename("billed_ns").reset_index())
    s = calls.merge(billed, on=["method", "order"], how="left")
    s["sent_s"] = (s["sent_ns"] - gate_ns) / 1e9
    s["accepted"] = s["accepted"].astype(bool)
    s["latency_ms"] = (s["answered_ns"] - s["sent_ns"]) / 1e6
    s["billed_s"] = (s["billed_ns"] - gate_ns) / 1e9
    s["done_ms"] = (s["billed_ns"] - s["sent_ns"]) / 1e6
    samples = s[["method", "order", "sent_s", "accepted", "status", "latency_ms", "billed_s", "done_ms"]]
    rows, down = [], {}
    for m, role, design in (("rest-chain", "billing-rest", "sync"), (method, "billing-ev", "events")):
        mine = samples[samples["method"] == m]
        ok = mine[mine["accepted"]]
        down[m] = _down_window(lifecycle, role, gate_ns)
        window_s = mine["sent_s"].max() - mine["sent_s"].min()
        overlap_s = max(0.0, min(down[m][1], mine["sent_s"].max()) - max(down[m][0], mine["sent_s"].min()))
        billing_up = 1.0 - overlap_s / window_s if window_s > 0 else 1.0
        graph = topology.chain(CHAIN, design, availability={"billing": max(billing_up, 1e-9)})
        late = ok["done_ms"].isna() | (ok["done_ms"] > delayed_after_s * 1000)
        lat = ok["latency_ms"].to_numpy(dtype=float)
        rows.append({"method": m, "orders": len(mine), "accepted": len(ok), "failed": len(mine) - len(ok),
                     "delayed": int(late.sum()), "lost": int(ok["done_ms"].isna().sum()),
                     "accepted_fraction": len(ok) / len(mine) if len(mine) else float("nan"),
                     "predicted_fraction": topology.availability(graph), "billing_availability": billing_up,
                     "latency_p50_ms": float(np.median(lat)) if len(lat) else float("nan"),
                     "latency_mean_ms": float(lat.mean()) if len(lat) else float("nan"),
                     "latency_p90_ms": float(np.percentile(lat, 90)) if len(lat) else float("nan"),
                     "done_p50_ms": float(ok["done_ms"].median())})
    return samples.reset_index(drop=True), pd.DataFrame(rows), down



def scale_row(recorder, gate_ns: int, method: str, n: int, duration_s: float):
    """The summary row and lag of one event stage: due = published, done = billed (first time)."""
    produced = recorder.produced()
    handled = recorder.table("handled").sort_values("done_ns").drop_duplicates("order")
    if handled.empty:
        raise ExperimentError(f"Billing processed nothing with {n} instance(s); see the role logs in "
                              f"{recorder.run_dir}.")
    done = handled.set_index("order")["done_ns"]
    sent = produced.set_index("seq")["produced_at_ns"]
    delay_ms = (done - sent.reindex(done.index)).dropna() / 1e6  # published -> billed
    return backlog_row(method, n, gate_ns, duration_s, due_ns=produced["produced_at_ns"], done_ns=done,
                        delay_ms=delay_ms, failed=0)


def backlog_row(method: str, n: int, gate_ns: int, duration_s: float, *, due_ns, done_ns, delay_ms,
                 failed: int):
    """Summary row and lag over time (orders due but not yet done) from times in ns."""
    import numpy as np
    import pandas as pd

    due_s = np.sort((due_ns.to_numpy(dtype=np.int64) - gate_ns) / 1e9)
    done_s = np.sort((done_ns.to_numpy(dtype=np.int64) - gate_ns) / 1e9)
    delay_ms = np.asarray(delay_ms, dtype=float)
    end_s = float(done_s.max()) if len(done_s) else 0.0
    grid = np.arange(0.0, end_s + 0.25, 0.25)
    p = np.searchsorted(due_s, grid, side="right")
    d = np.searchsorted(done_s, grid, side="right")
    lag = pd.DataFrame({"method": method, "instances": n, "t_s": grid, "produced": p, "processed": d, "lag": p - d})
    row = {"method": method, "instances": n, "produced": len(due_s), "processed": len(done_s), "failed": failed,
           "throughput_per_s": int(np.searchsorted(done_s, duration_s, side="right")) / duration_s,
           "lag_max": int(lag["lag"].max()), "drain_s": end_s,
           "latency_p50_ms": float(np.median(delay_ms)) if len(delay_ms) else float("nan"),
           "latency_p90_ms": float(np.percentile(delay_ms, 90)) if len(delay_ms) else float("nan")}
    return row, lag
