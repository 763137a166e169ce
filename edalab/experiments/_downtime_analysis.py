"""The listener-down result and how it is computed from one round's traces (notebook 04).

Pure analysis: everything here reads a :class:`~edalab.Recorder` (traces, notes the
billing role wrote with ``ctx.note``, the lifecycle the Scenario logged) and never
starts a process, so it can be checked on any run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from edalab._errors import ConfigError, ExperimentError
from edalab._recorder import Recorder
from edalab._lazy import lazy_module

# Loaded on first use: billing's role process needs neither to start.
np = lazy_module("numpy")
pd = lazy_module("pandas")

__all__ = ["DowntimeResult", "analyse_trial", "LAG_STEP_S"]

#: seconds between points of the lag time series
LAG_STEP_S = 0.02


@dataclass
class DowntimeResult:
    """What :func:`~edalab.experiments.listener_down` measured (notebook 04).

    Times are seconds from the trial's first order unless the name says ``_ns``
    (wall clock, ns since the epoch). ``method`` is the transport compared.

    Attributes:
        samples: one row per receipt by billing (redeliveries included): method,
            stop_mode, event_id, seq, produced_at_ns, received_at_ns (when billing had
            handled it), latency_ms, duplicate, sent_while_down, sent_s, received_s,
            after_restart.
        events: one row per produced order: method, stop_mode, event_id, seq,
            produced_at_ns, sent_s, sent_while_down, receipts, delivered,
            first_received_s, latency_ms (to the first receipt).
        summary: one row per (method, stop_mode): produced, delivered, lost,
            duplicated, sent_while_down, lost_while_down, lost_other, delivered_late
            (sent while down, billed after the restart), latency_late_mean_ms,
            latency_late_min_ms, latency_late_max_ms, latency_live_p50_ms (orders sent
            before the stop), down_s (asked for), away_s (measured: billing stopped
            listening until it listened again), restart_s (starting the new process
            until it listens), lag_at_restart, catch_up_s (restart until at most one
            order waits; NaN if never), uncommitted_at_stop (orders billed after its
            last commit when it went away), claimed_on_restart (pending entries taken
            over from the dead member), commit_failures (commits the broker refused).
        outages: one row per trial with the moments (ns): first_event_ns,
            stop_requested_ns, down_at_ns, restart_requested_ns, up_at_ns, last_event_ns.
        lag: one row per (method, stop_mode, t_s) every :data:`LAG_STEP_S`: produced
            and billed so far (distinct orders) and lag = produced - billed.
        specs: the transport spec of each trial, keyed ``(method, stop_mode)``, so
            :func:`~edalab.experiments.replay` can read the same topics again.
        capabilities: what each method promises (``spec.capabilities`` as a dict).
        params: the settings of the run (``run_dirs``: one folder per stop mode).
    """

    samples: pd.DataFrame
    events: pd.DataFrame
    summary: pd.DataFrame
    outages: pd.DataFrame
    lag: pd.DataFrame
    specs: dict = field(default_factory=dict)
    capabilities: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def row(self, method: str, stop_mode: str = "clean") -> pd.Series:
        """The summary row of one trial (counts stay integers)."""
        key = (method, stop_mode)
        if key not in self.summary.index:
            raise ConfigError(f"No trial {method!r} / {stop_mode!r} in this result; it has "
                              f"{list(self.summary.index)}.")
        return pd.Series({c: self.summary.at[key, c] for c in self.summary.columns},
                         dtype=object, name=key)

    def outage(self, method: str, stop_mode: str = "clean") -> pd.Series:
        """The outage moments of one trial (see ``outages``)."""
        return self.outages.loc[(method, stop_mode)]

    def trial_lag(self, method: str, stop_mode: str = "clean") -> pd.DataFrame:
        """The lag time series of one trial."""
        lag = self.lag
        return lag[(lag["method"] == method) & (lag["stop_mode"] == stop_mode)]


def _moments(recorder: Recorder, billing: str, stop_mode: str) -> dict:
    """When billing was asked to go, went, was asked back and listened again (ns).

    From the Scenario's lifecycle (what the owner did) and billing's own notes
    (``listening``, ``committed``): a clean stop ends with billing's goodbye commit,
    a SIGKILL ends at the signal (the kernel closes its sockets at once).
    """
    life = recorder.lifecycle()
    notes = recorder.notes(billing)
    gate_ns = int(life.loc[(life["role"] == "gate") & (life["what"] == "opened"), "at_ns"].iloc[0])
    restart = life[(life["role"] == "owner") & (life["what"] == f"restart {billing}")]
    gone = life[(life["role"] == billing) & life["what"].isin(["stopped", "killed"])]
    if not len(restart) or not len(gone):
        raise ExperimentError(f"The run in {recorder.run_dir} has no outage of {billing!r} "
                              f"(lifecycle.jsonl lacks its stop or restart).")
    restart_ns = int(restart["at_ns"].iloc[0])
    gone_row = gone.iloc[0]
    if stop_mode == "kill":
        stop_requested_ns = down_at_ns = int(gone_row["at_ns"])
    else:
        stop_requested_ns = gate_ns + int(float(gone_row["planned_s"]) * 1e9)
        goodbye = notes.loc[(notes["what"] == "committed") & (notes["at_ns"] < restart_ns), "at_ns"]
        down_at_ns = int(goodbye.max()) if len(goodbye) else int(gone_row["at_ns"])
    listening = notes.loc[(notes["what"] == "listening") & (notes["at_ns"] >= restart_ns), "at_ns"]
    up_at_ns = int(listening.min()) if len(listening) else restart_ns
    return dict(gate_ns=gate_ns, stop_requested_ns=stop_requested_ns, down_at_ns=down_at_ns,
                restart_requested_ns=restart_ns, up_at_ns=up_at_ns, notes=notes)


def analyse_trial(recorder: Recorder, method: str, stop_mode: str, billing: str, orders: str,
                  down_s: float) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One trial (one method, one stop mode) from its roles' traces.

    Returns (summary row, outage row, samples, events, lag) for :class:`DowntimeResult`.
    """
    produced = recorder.produced()
    produced = produced[produced["role"] == orders].sort_values("produced_at_ns", ignore_index=True)
    if not len(produced):
        raise ExperimentError(f"The order producer {orders!r} sent nothing; see its log in "
                              f"{recorder.run_dir}.")
    m = _moments(recorder, billing, stop_mode)
    notes = m.pop("notes")
    t0 = int(produced["produced_at_ns"].iloc[0])
    m["first_event_ns"], m["last_event_ns"] = t0, int(produced["produced_at_ns"].iloc[-1])
    down_at, up_at, restart_at = m["down_at_ns"], m["up_at_ns"], m["restart_requested_ns"]

    samples = recorder.samples()
    samples = samples[(samples["role"] == billing)
                      & samples["event_id"].isin(produced["event_id"])].copy()
    samples["sent_while_down"] = samples["produced_at_ns"].between(down_at, up_at)
    samples["sent_s"] = (samples["produced_at_ns"] - t0) / 1e9
    samples["received_s"] = (samples["received_at_ns"] - t0) / 1e9
    samples["after_restart"] = samples["received_at_ns"] >= restart_at
    samples.insert(0, "stop_mode", stop_mode)
    samples.insert(0, "method", method)

    first = (samples.sort_values("received_at_ns", kind="stable")
             .drop_duplicates("event_id").set_index("event_id"))
    events = produced[["event_id", "seq", "produced_at_ns"]].copy()
    events["sent_s"] = (events["produced_at_ns"] - t0) / 1e9
    events["sent_while_down"] = events["produced_at_ns"].between(down_at, up_at)
    events["receipts"] = events["event_id"].map(samples["event_id"].value_counts()).fillna(0).astype(int)
    events["delivered"] = events["receipts"] > 0
    events["first_received_s"] = events["event_id"].map(first["received_s"])
    events["latency_ms"] = events["event_id"].map(first["latency_ms"])
    events.insert(0, "stop_mode", stop_mode)
    events.insert(0, "method", method)

    # Lag: produced so far minus billed so far (distinct orders), from the traces.
    sent_ns = produced["produced_at_ns"].to_numpy()
    billed_ns = np.sort(first["received_at_ns"].to_numpy())
    end_ns = max(m["last_event_ns"], int(billed_ns[-1]) if len(billed_ns) else 0)
    step_ns = int(LAG_STEP_S * 1e9)
    grid_ns = np.arange(t0, end_ns + step_ns, step_ns)
    produced_so_far = np.searchsorted(sent_ns, grid_ns, side="right")
    billed_so_far = np.searchsorted(billed_ns, grid_ns, side="right")
    lag = pd.DataFrame({"method": method, "stop_mode": stop_mode, "t_s": (grid_ns - t0) / 1e9,
                        "produced": produced_so_far, "billed": billed_so_far,
                        "lag": produced_so_far - billed_so_far})

    # Catching up: the first moment after the restart when at most one order that will
    # be billed is still waiting (lost orders on pub/sub never wait, they are gone).
    delivered = events[events["delivered"]]
    sent = delivered["produced_at_ns"].to_numpy()
    got = (delivered["first_received_s"].to_numpy() * 1e9 + t0).astype(np.int64)
    after_up = grid_ns[grid_ns >= up_at]
    waiting = np.array([int(((sent <= g) & (got > g)).sum()) for g in after_up])
    caught_up = after_up[waiting <= 1]
    lag_at_restart = int(np.searchsorted(sent_ns, up_at, side="right")
                         - np.searchsorted(billed_ns, up_at, side="right"))

    # Billed after the last commit before it went away: what a crash makes come again.
    commits = notes.loc[(notes["what"] == "committed") & (notes["at_ns"] <= down_at), "at_ns"]
    last_commit = int(commits.max()) if len(commits) else 0
    first_life = samples[samples["received_at_ns"] <= down_at]
    uncommitted = int((first_life["received_at_ns"] > last_commit).sum())
    listening = notes[(notes["what"] == "listening") & (notes["at_ns"] >= restart_at)]
    claimed = int(pd.to_numeric(listening.get("claimed", pd.Series(dtype=float)),
                                errors="coerce").fillna(0).sum())

    down = events[events["sent_while_down"]]
    late = down[down["delivered"]]
    live = events[(events["produced_at_ns"] < m["stop_requested_ns"]) & events["delivered"]]
    n_delivered = int(events["delivered"].sum())
    lost_while_down = int((~down["delivered"]).sum())

    def stat(values: pd.Series, how: str) -> float:
        return float(getattr(values, how)()) if len(values) else float("nan")

    summary = {
        "method": method, "stop_mode": stop_mode,
        "produced": len(events), "delivered": n_delivered, "lost": len(events) - n_delivered,
        "duplicated": int(len(samples) - n_delivered),
        "sent_while_down": len(down), "lost_while_down": lost_while_down,
        "lost_other": len(events) - n_delivered - lost_while_down,
        "delivered_late": len(late),
        "latency_late_mean_ms": stat(late["latency_ms"], "mean"),
        "latency_late_min_ms": stat(late["latency_ms"], "min"),
        "latency_late_max_ms": stat(late["latency_ms"], "max"),
        "latency_live_p50_ms": stat(live["latency_ms"], "median"),
        "down_s": down_s, "away_s": (up_at - down_at) / 1e9, "restart_s": (up_at - restart_at) / 1e9,
        "lag_at_restart": lag_at_restart,
        "catch_up_s": (caught_up[0] - up_at) / 1e9 if len(caught_up) else float("nan"),
        "uncommitted_at_stop": uncommitted, "claimed_on_restart": claimed,
        "commit_failures": int((notes["what"] == "commit_failed").sum()),
    }
    outage = {"method": method, "stop_mode": stop_mode,
              **{k: m[k] for k in ("first_event_ns", "stop_requested_ns", "down_at_ns",
                                   "restart_requested_ns", "up_at_ns", "last_event_ns")}}
    return summary, outage, samples, events, lag
