"""Charts of notebook 09: delivery guarantees, poison orders, queue vs log."""

from __future__ import annotations

import numpy as np

from edalab.plots._style import axes, legend_outside, method_color

__all__ = ["delivery_outcomes", "charges_per_order", "retry_delays", "queue_vs_log_bars"]


def delivery_outcomes(result, ax=None):
    """Lost orders and double charges per transport and commit policy (bars; counts)."""
    ax = axes(ax)
    s = result.summary
    labels = [f"{m}\n{p}" for m, p in zip(s["method"], s["policy"])]
    x = np.arange(len(s))
    colors = [method_color(p) for p in s["policy"]]
    ax.bar(x - 0.2, s["lost"], 0.38, color=colors, edgecolor="black")
    ax.bar(x + 0.2, s["duplicate_effects"], 0.38, color=colors, edgecolor="black", hatch="//")
    # Legend: the bar's meaning by its hatch (colours are the policies, named under the bars).
    ax.bar([0], [0], color="white", edgecolor="black", label="lost (never charged)")
    ax.bar([0], [0], color="white", edgecolor="black", hatch="//", label="charged twice")
    for i, (lost, dup) in enumerate(zip(s["lost"], s["duplicate_effects"])):
        ax.text(i - 0.2, lost, str(int(lost)), ha="center", va="bottom", fontsize=8)
        ax.text(i + 0.2, dup, str(int(dup)), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("orders")
    ax.set_title("After a SIGKILL mid-batch: lost and double-charged orders")
    legend_outside(ax)
    return ax


def charges_per_order(result, method: str = "kafka"):
    """One panel per policy: how many times each order was charged (0, 1, 2), by order number."""
    import matplotlib.pyplot as plt

    s = result.samples[result.samples["method"] == method]
    policies = [p for p in result.params.get("policies", ()) if p in set(s["policy"])] or list(dict.fromkeys(s["policy"]))
    fig, panels = plt.subplots(len(policies), 1, figsize=(9, 1.6 * len(policies) + 0.6), sharex=True,
                               squeeze=False)
    for ax, policy in zip(panels[:, 0], policies):
        mine = s[s["policy"] == policy]
        ax.scatter(mine["seq"], mine["charged"], s=8, color=method_color(policy))
        off = mine[mine["charged"] != 1]
        ax.scatter(off["seq"], off["charged"], s=30, facecolors="none", edgecolors="black", linewidths=0.6)
        ax.set_yticks([0, 1, 2])
        ax.set_ylim(-0.4, max(2, int(mine["charged"].max())) + 0.4)
        ax.set_ylabel("charged", fontsize=8)
        ax.set_title(policy, fontsize=9, loc="left")
    panels[-1, 0].set_xlabel(f"order number ({method}); circled: charged 0 or 2+ times")
    fig.tight_layout()
    return fig


def retry_delays(result, ax=None):
    """Delay of each good order (sent -> cooked) per strategy, with the poison orders marked
    (dotted) and the orders whose first attempts failed (triangles, retried)."""
    ax = axes(ax)
    s = result.samples
    for method in dict.fromkeys(s["method"]):
        mine = s[(s["method"] == method) & (s["kind"] == "good")]
        cooked = mine.dropna(subset=["latency_ms"])
        ax.plot(cooked["sent_s"], cooked["latency_ms"], marker="o", ms=3, lw=1, color=method_color(method),
                label=method)
        flaky = s[(s["method"] == method) & (s["kind"] == "flaky")].dropna(subset=["latency_ms"])
        ax.scatter(flaky["sent_s"], flaky["latency_ms"], marker="^", s=40, facecolors="none",
                   edgecolors=method_color(method), label=f"{method}: transient failure, retried")
        blocked = mine[mine["latency_ms"].isna()]
        if len(blocked):
            top = max(float(s["latency_ms"].max()), 1.0) * 1.15
            ax.scatter(blocked["sent_s"], [top] * len(blocked), marker="x", color=method_color(method),
                       label=f"{method}: never cooked")
    poison = s.loc[s["kind"] == "poison", "sent_s"].drop_duplicates()
    for i, t in enumerate(poison):
        ax.axvline(t, color="black", lw=0.8, ls=":", label="poison order sent" if i == 0 else None)
    ax.set_xlabel("sent at (s after the start)")
    ax.set_ylabel("delay until cooked (ms)")
    ax.set_title("Good orders behind poison ones: head-of-line blocking")
    legend_outside(ax)
    return ax


def queue_vs_log_bars(result, ax=None):
    """Per method: events the first group got, what a new group could still read, what is left."""
    ax = axes(ax)
    s = result.summary
    columns = [c for c in ("delivered", "read_by_new_group", "left_in_broker", "redelivered", "dead_lettered")
               if c in s.columns]
    x = np.arange(len(columns))
    width = 0.8 / max(1, len(s))
    for i, (_, row) in enumerate(s.iterrows()):
        ax.bar(x + (i - (len(s) - 1) / 2) * width, [row[c] for c in columns], width,
               color=method_color(row["method"]), edgecolor="black", label=row["method"])
    ax.set_xticks(x, [c.replace("_", " ") for c in columns], fontsize=8)
    ax.set_ylabel("events")
    ax.set_title("A queue forgets what was acknowledged; a log keeps it")
    legend_outside(ax)
    return ax
