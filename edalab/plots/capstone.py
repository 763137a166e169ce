"""Charts of notebook 12: the restaurant both ways, and the course's verdicts."""

from __future__ import annotations

import math

from edalab.plots._style import METHOD_MARKERS, axes, legend_outside, method_color

__all__ = ["restaurant_timeline", "restaurant_costs", "verdict_chart", "VERDICT_COLORS"]

#: one colour per verdict of :data:`edalab.course.VERDICTS`, and for lessons not run yet
VERDICT_COLORS = {"holds": "tab:green", "holds, with limits": "yellowgreen", "oversold": "tab:orange",
                  "does not hold": "dimgray", "not run yet": "whitesmoke"}


def restaurant_timeline(result, ax=None):
    """Each order at the time it was placed: how long until it was served (dots), or
    failed (crosses on the zero line); the shaded spans are each kitchen's time away."""
    ax = axes(ax)
    s = result.samples
    for k, method in enumerate(result.summary["method"]):
        mine = s[s["method"] == method]
        color = method_color(method)
        killed, back = result.kitchen_away_s[method]
        if not math.isnan(killed):
            ax.axvspan(killed, back if not math.isnan(back) else mine["placed_s"].max(), color=color, alpha=0.08,
                       zorder=0, label=f"{method}: kitchen away")
        ok = mine[mine["served_s"].notna()]
        # hollow: where both designs served an order equally fast, both markers stay visible
        ax.scatter(ok["placed_s"], ok["latency_ms"] / 1000, s=22, facecolors="none", edgecolors=color,
                   marker=METHOD_MARKERS.get(method, "o"), label=f"{method}: served")
        bad = mine[mine["outcome"].isin(["failed", "lost"])]
        if len(bad):
            ax.scatter(bad["placed_s"], [0] * len(bad), s=30, color=color, marker="x", linewidths=1.5,
                       label=f"{method}: failed or lost")
    ax.set_xlabel("order placed (s after opening)")
    ax.set_ylabel("placed -> served (s)")
    ax.set_title("Orders while the kitchen goes away and comes back")
    legend_outside(ax)
    return ax


def restaurant_costs(result, axs=None):
    """Two panels: requests per order (calls waited for, Kafka fetches) and CPU per service.

    Draws into the two Axes ``axs`` (default: a new figure); returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    if axs is None:
        _, axs = plt.subplots(1, 2, figsize=(12, 3.6))
    left, right = axs
    methods = list(result.summary["method"])
    width = 0.8 / len(methods)
    kinds = [("calls_per_order", "calls waited for"), ("fetches_per_order", "Kafka fetches")]
    for k, method in enumerate(methods):
        row = result.summary[result.summary["method"] == method].iloc[0]
        x = np.arange(len(kinds)) + (k - (len(methods) - 1) / 2) * width
        left.bar(x, [row[c] for c, _ in kinds], width, color=method_color(method), label=method)
        cpu = result.cpu[result.cpu["method"] == method]
        xs = np.arange(len(cpu)) + (k - (len(methods) - 1) / 2) * width
        right.bar(xs, cpu["cpu_s"], width, color=method_color(method), label=method)
    left.set_xticks(range(len(kinds)), [label for _, label in kinds])
    left.set_ylabel("per order")
    left.set_title("Requests per order")
    services = list(result.cpu[result.cpu["method"] == methods[0]]["service"])
    right.set_xticks(range(len(services)), services)
    right.set_ylabel("CPU seconds")
    right.set_title("CPU per service over the evening")
    left.legend(fontsize=8)
    return left.figure


def verdict_chart(table, ax=None):
    """The course's verdicts (:func:`edalab.course.verdicts`): one coloured row per claim."""
    import matplotlib.patches as mpatches

    ax = axes(ax)
    n = len(table)
    for k, row in enumerate(table.itertuples()):
        y = n - 1 - k
        ax.barh(y, 1, color=VERDICT_COLORS.get(row.verdict, "white"), edgecolor="0.6")
        ax.text(0.02, y, f"{row.notebook}  {row.title}", va="center", fontsize=9)
        ax.text(0.98, y, row.verdict, va="center", ha="right", fontsize=9, style="italic")
    ax.set_yticks([])
    ax.set_xticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, n - 0.4)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title("The course's claims, as this machine's runs judged them")
    legend_outside(ax, handles=[mpatches.Patch(color=c, label=v) for v, c in VERDICT_COLORS.items()])
    return ax
