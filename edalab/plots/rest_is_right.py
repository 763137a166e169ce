"""Charts of notebook 06 (when REST is right): request/reply, fire-and-forget logging, paging.

Each function draws one result of :mod:`edalab.experiments.request_reply`,
:mod:`edalab.experiments.fire_and_forget` or :mod:`edalab.experiments.paging` and
returns its Axes (or Figure); none runs anything.
"""

from __future__ import annotations

import numpy as np

from edalab.plots._style import method_color, axes, legend_outside

__all__ = ["call_timeline", "call_latency_bars", "emit_latency_bars", "log_loss_bars", "paging_bars"]

_OUTCOME_MARKERS = {"ok": ".", "error": "x", "timeout": "v"}


def call_timeline(result, ax=None):
    """Every call of :func:`~edalab.experiments.authorization_check`: when it was asked (s after
    the first call) against how long the caller waited (ms, log scale); the grey band is
    when the responders were down. Marker: answered, error, timeout."""
    ax = axes(ax)
    samples = result.samples
    t0 = samples["t_ns"].min()
    for (method, outcome), rows in samples.groupby(["method", "outcome"]):
        ax.scatter((rows["t_ns"] - t0) / 1e9, rows["latency_ms"], s=14, color=method_color(method),
                   marker=_OUTCOME_MARKERS.get(outcome, "o"), label=f"{method}: {outcome}")
    down = samples[samples["phase"] == "down"]
    if len(down):
        ax.axvspan((down["t_ns"].min() - t0) / 1e9, (down["t_ns"].max() - t0) / 1e9, color="0.85", zorder=0,
                   label="responder down")
    ax.axhline(result.params["timeout_s"] * 1000, color="0.3", ls=":", lw=1, label="caller's timeout")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the first call")
    ax.set_ylabel("caller waited (ms, log)")
    ax.set_title("What the caller sees: answers, then errors (REST) or timeouts (broker)")
    legend_outside(ax)
    return ax


def call_latency_bars(result, ax=None):
    """p50 and p99 of the answered calls while both responders were up, per method (ms)."""
    ax = axes(ax)
    summary = result.summary
    x = np.arange(len(summary))
    colors = [method_color(m) for m in summary["method"]]
    ax.bar(x - 0.2, summary["latency_p50_ms"], 0.4, color=colors, label="p50")
    ax.bar(x + 0.2, summary["latency_p99_ms"], 0.4, color=colors, alpha=0.45, hatch="//", label="p99")
    ax.set_xticks(x, [f"{m}\n({n} lines of client code)" for m, n in zip(summary["method"], summary["code_lines"])])
    ax.set_ylabel("ms per answered call")
    ax.set_title("Asking while the responder is up")
    legend_outside(ax)
    return ax


def emit_latency_bars(result, ax=None):
    """What one log record adds to a request (ms, log scale): p50 bar, p99 tick, per method."""
    ax = axes(ax)
    summary = result.summary
    x = np.arange(len(summary))
    ax.bar(x, summary["latency_p50_ms"], color=[method_color(m) for m in summary["method"]], label="p50")
    ax.scatter(x, summary["latency_p99_ms"], marker="_", s=400, color="0.2", label="p99", zorder=3)
    ax.set_xticks(x, summary["method"], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms the request waits per log record (log)")
    ax.set_title("Caller latency added by logging (receiver up)")
    legend_outside(ax)
    return ax


def log_loss_bars(result, ax=None):
    """Per method, the log records emitted: delivered, lost with an error the app saw, lost silently."""
    ax = axes(ax)
    summary = result.summary
    x = np.arange(len(summary))
    parts = [("delivered", "delivered", "0.75"), ("app_errors", "lost, the app saw an error", "tab:gray"),
             ("lost_silently", "lost silently", "black")]
    bottom = np.zeros(len(summary))
    for column, label, color in parts:
        values = summary[column].to_numpy(dtype=float)
        ax.bar(x, values, bottom=bottom, color=color, label=label, edgecolor=[method_color(m) for m in summary["method"]],
               linewidth=2)
        bottom += values
    ax.set_xticks(x, summary["method"], rotation=30, ha="right")
    ax.set_ylabel("log records")
    ax.set_title("Receiver killed mid-run: where did the records go?")
    legend_outside(ax)
    return ax


def paging_bars(result):
    """Two panels per reader of :func:`~edalab.experiments.paging_under_inserts`: requests
    made, and items of the first snapshot missed or seen twice."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    summary = result.summary
    x = np.arange(len(summary))
    colors = [method_color(m) for m in summary["method"]]
    left.bar(x, summary["requests"], color=colors)
    left.set_xticks(x, summary["method"])
    left.set_ylabel("requests to read them all")
    left.set_title(f"Reading {result.params['records']} records")
    right.bar(x - 0.2, summary["missed"], 0.4, color=colors, label="missed")
    right.bar(x + 0.2, summary["repeated"], 0.4, color=colors, alpha=0.45, hatch="//", label="seen twice")
    right.set_xticks(x, summary["method"])
    right.set_ylabel("items of the first snapshot")
    right.set_title(f"While {result.params['insert_rate_per_s']:g} records/s were added")
    legend_outside(right)
    fig.tight_layout()
    return fig
