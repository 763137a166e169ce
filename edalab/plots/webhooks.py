"""Charts of notebook 05 (webhooks next to a broker).

:func:`webhook_delay`, :func:`outage_outcomes` and :func:`outage_timeline` draw a
:class:`~edalab.experiments.webhooks.WebhookOutageResult`; :func:`fan_out_cost` and
:func:`slow_subscriber` a :class:`~edalab.experiments.webhooks.FanOutResult`. Each
returns its Axes (``outage_timeline`` and ``fan_out_cost`` a Figure).
"""

from __future__ import annotations

import numpy as np

from edalab.plots._style import method_color, METHOD_COLORS, METHOD_MARKERS, axes, legend_outside

__all__ = ["webhook_delay", "outage_outcomes", "outage_timeline", "fan_out_cost", "slow_subscriber"]

_OUTCOMES = (("on time", "delivered_on_time", "tab:green"), ("late (sent while down)", "delivered_late", "0.6"),
             ("lost", "lost", "black"), ("duplicates", "duplicated", "tab:orange"))


def webhook_delay(result, ax=None):
    """Delivery delay of the orders sent while every receiver was up, per method (CDF, ms)."""
    ax = axes(ax)
    live = result.samples[result.samples["while_up"] & ~result.samples["duplicate"]]
    for method in result.params["methods"]:
        ms = np.sort(live.loc[live["method"] == method, "latency_ms"].to_numpy())
        if len(ms):
            ax.step(ms, np.arange(1, len(ms) + 1) / len(ms), where="post", lw=1.8,
                    color=method_color(method), label=method)
    ax.set_xscale("log")
    ax.set_xlabel("delivery delay (ms, log scale)")
    ax.set_ylabel("share of orders delivered")
    ax.set_title("Receiver up: how long from the order to its subscriber")
    legend_outside(ax)
    return ax


def outage_outcomes(result, ax=None):
    """Per method: orders delivered on time, late, lost, and duplicates received."""
    ax = axes(ax)
    s = result.summary.copy()
    s["delivered_on_time"] = s["delivered"] - s["delivered_late"]
    x = np.arange(len(s))
    width = 0.2
    for k, (label, column, color) in enumerate(_OUTCOMES):
        bars = ax.bar(x + (k - 1.5) * width, s[column], width, color=color, label=label)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, s.index)
    ax.set_ylabel("orders")
    ax.set_title("Receiver down for a while: what became of the orders")
    legend_outside(ax)
    return ax


def outage_timeline(result):
    """One panel per method: each order's delay against when it was sent; lost orders as
    crosses on the bottom edge; the receiver's time away shaded."""
    import matplotlib.pyplot as plt

    methods = result.params["methods"]
    fig, panels = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), sharey=True)
    t0 = result.events["produced_at_ns"].min()
    for ax, method in zip(np.atleast_1d(panels), methods):
        ev = result.events[result.events["method"] == method]
        down = ev.loc[ev["phase"] == "down", "produced_at_ns"]
        if len(down):
            ax.axvspan((down.min() - t0) / 1e9, (down.max() - t0) / 1e9, color="0.88", zorder=0,
                       label="receiver away")
        got = result.samples[result.samples["method"] == method]
        ax.scatter((got["produced_at_ns"] - t0) / 1e9, got["latency_ms"].clip(lower=0.1), s=9,
                   color=method_color(method), marker=METHOD_MARKERS.get(method, "o"),
                   label="delivered")
        dup = got[got["duplicate"]]
        if len(dup):
            ax.scatter((dup["produced_at_ns"] - t0) / 1e9, dup["latency_ms"], s=40, facecolors="none",
                       edgecolors="tab:orange", label="duplicate")
        lost = ev[~ev["delivered"]]
        ax.scatter((lost["produced_at_ns"] - t0) / 1e9, np.full(len(lost), 0.3), marker="x", s=14,
                   color="black", label="lost")
        ax.set_yscale("log")
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("order sent at (s)")
        ax.legend(fontsize=7, loc="upper left")
    np.atleast_1d(panels)[0].set_ylabel("delivery delay (ms, log)")
    fig.tight_layout()
    return fig


def fan_out_cost(fan):
    """The sender's wall time and CPU time per event against the number of subscribers."""
    import matplotlib.pyplot as plt

    fig, (wall, cpu) = plt.subplots(1, 2, figsize=(10, 3.8))
    s = fan.summary[~fan.summary["slow"]]
    kind = fan.params["broker_kind"]
    lines = [("webhook", "sequential", "webhook, sequential POSTs", METHOD_COLORS["webhook"], "-"),
             ("webhook", "concurrent", "webhook, concurrent POSTs", METHOD_COLORS["webhook"], "--"),
             ("broker", "broker", f"{kind} producer", method_color(kind), "-")]
    for method, mode, label, color, style in lines:
        part = s[(s["method"] == method) & (s["mode"] == mode)].sort_values("subscribers")
        if len(part):
            wall.plot(part["subscribers"], part["send_mean_ms"], style, marker="o", color=color, label=label)
            cpu.plot(part["subscribers"], part["cpu_mean_ms"], style, marker="o", color=color, label=label)
    wall.set_ylabel("sender's time per event (ms)")
    wall.set_title("Waiting: until every subscriber has it")
    cpu.set_ylabel("sender's CPU per event (ms)")
    cpu.set_title("Working: the sender's CPU")
    for ax in (wall, cpu):
        ax.set_xlabel("subscribers")
        ax.set_xticks(sorted(s["subscribers"].unique()))
        ax.set_ylim(bottom=0)
    legend_outside(cpu)
    fig.tight_layout()
    return fig


def slow_subscriber(fan, ax=None):
    """With the most subscribers, without and with one slow one: the sender's time per
    event and the delay at the fast subscribers."""
    ax = axes(ax)
    s = fan.summary[(fan.summary["method"] == "webhook")
                    & (fan.summary["subscribers"] == max(fan.params["counts"]))]
    labels = [f"{r['mode']}\n{'+ slow' if r['slow'] else 'all fast'}" for _, r in s.iterrows()]
    x = np.arange(len(s))
    a = ax.bar(x - 0.2, s["send_mean_ms"], 0.4, color=METHOD_COLORS["webhook"], label="sender's time per event")
    b = ax.bar(x + 0.2, s["latency_p50_ms"], 0.4, color="0.6", label="delay at the fast subscribers (p50)")
    ax.bar_label(a, fmt="%.0f", fontsize=7)
    ax.bar_label(b, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms")
    ax.set_title("One slow subscriber")
    legend_outside(ax)
    return ax
