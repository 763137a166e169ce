"""Charts of the waiter analogy (notebook 01): calls and delay per order, one order's timeline."""

from __future__ import annotations

from edalab.plots._style import method_color, METHOD_COLORS as _METHOD_COLORS, axes as _axes

__all__ = ["calls_per_order", "delay_per_order", "order_timeline", "pick_order"]

# REST polling at several intervals: the shortest gets the course's REST colour.
_EXTRA_POLL_COLORS = ("tab:purple", "tab:pink", "tab:gray")
_METHOD_NAMES = {"rest-poll": "REST polling", "redis-pubsub": "events: Redis pub/sub",
                 "kafka": "events: Kafka"}


def _colors(result) -> dict[str, str]:
    colors, extra = {}, iter(_EXTRA_POLL_COLORS)
    for _, row in result.summary.sort_values("poll_interval_s").iterrows():
        if row["method"] == "rest-poll":
            first = _METHOD_COLORS["rest-poll"] not in colors.values()
            colors[row["label"]] = _METHOD_COLORS["rest-poll"] if first else next(extra, "0.4")
        else:
            colors[row["label"]] = method_color(row["method"])
    return colors


def _pretty(row) -> str:
    if row["method"] == "rest-poll":
        return f"REST polling every {row['poll_interval_s'] * 1000:g} ms"
    return _METHOD_NAMES.get(row["method"], row["method"])


def calls_per_order(result, ax=None):
    """Calls made per order against its cook time, one colour per method (notebook 01).

    REST polling: each order's own "is it ready?" requests, with the model
    ceil(cook / interval) as a dashed staircase. Events: the waiter's requests
    (subscribing included) shared equally over the orders.
    """
    import numpy as np

    ax = _axes(ax)
    colors = _colors(result)
    samples = result.samples
    grid = np.linspace(samples["cook_s"].min(), samples["cook_s"].max(), 400)
    for _, row in result.summary.iterrows():
        mine = samples[samples["label"] == row["label"]]
        color = colors[row["label"]]
        ax.plot(mine["cook_s"], mine["calls"], "o", color=color, alpha=0.8, ms=5,
                label=f"{_pretty(row)}: {row['calls_per_order']:.2f} per order")
        if row["method"] == "rest-poll":
            ax.plot(grid, np.ceil(grid / row["poll_interval_s"]), "--", color=color, lw=1, alpha=0.6)
    ax.plot([], [], "--", color="0.4", lw=1, label="model: ceil(cook time / interval)")
    ax.set_xlabel("cook time of the order (s)")
    ax.set_ylabel("calls per order")
    ax.set_ylim(bottom=0)
    ax.set_title("How many calls until the customer knows?")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def delay_per_order(result, ax=None):
    """Delay from "food ready" to "customer knows" per order, against cook time (notebook 01).

    Log y axis: polling delays are tens to hundreds of ms, push delays far shorter.
    For polling the points follow a saw: the delay is the wait for the next ask.
    """
    ax = _axes(ax)
    colors = _colors(result)
    samples = result.samples
    for _, row in result.summary.iterrows():
        mine = samples[(samples["label"] == row["label"]) & samples["latency_ms"].notna()]
        color = colors[row["label"]]
        ax.plot(mine["cook_s"], mine["latency_ms"].clip(lower=0.05), "o", color=color, alpha=0.8, ms=5,
                label=f"{_pretty(row)}: mean {row['latency_mean_ms']:.1f} ms")
        ax.axhline(row["latency_mean_ms"], color=color, lw=1, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("cook time of the order (s)")
    ax.set_ylabel("delay after ready (ms)")
    ax.set_title("How long after the food is ready does the customer know?")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def pick_order(result) -> int:
    """An order known in every method whose REST call count is the median (a typical one)."""
    samples = result.samples
    everywhere = samples.groupby("order")["known_at_s"].apply(lambda s: s.notna().all())
    candidates = samples[samples["order"].isin(everywhere[everywhere].index)]
    if not len(candidates):
        raise ValueError("No order was known in every method; pass order= explicitly.")
    polls = candidates[candidates["method"] == "rest-poll"]
    pool = polls if len(polls) else candidates
    pool = pool[pool["label"] == pool["label"].iloc[0]]
    median = pool["cook_s"].median()
    return int(pool.iloc[(pool["cook_s"] - median).abs().argmin()]["order"])


def _requests(count: float) -> str:
    if count != count:  # NaN: the listener's body wrote no counters
        return "requests not reported"
    return f"{count:.0f} request" + ("" if round(count) == 1 else "s")


def _lifelines(ax, names: list[str], top_s: float, bottom_s: float) -> None:
    for x, name in enumerate(names):
        ax.plot([x, x], [top_s, bottom_s], color="0.6", lw=1, zorder=0)
        # Names in axes coordinates: always at the top, whatever the time span.
        ax.text(x, 0.99, name, ha="center", va="top", fontsize=9, fontweight="bold",
                transform=ax.get_xaxis_transform(), bbox=dict(boxstyle="round", fc="white", ec="0.5"))


def _arrow(ax, x0, y0, x1, y1, color, text=None, text_x=None, style="-|>", fontsize=8) -> None:
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle=style, color=color, lw=1.2, shrinkA=0, shrinkB=0))
    if text:
        ax.text((x0 + x1) / 2 if text_x is None else text_x, (y0 + y1) / 2, text, ha="center",
                va="bottom", fontsize=fontsize, color=color)


def order_timeline(result, order: int | None = None, labels=None):
    """One order as a sequence diagram per method, from the measured timestamps (notebook 01).

    Time runs down, in seconds since the order was placed. REST polling: every
    "is it ready?" the customer asked and the answer ("no" / "yes"). Events: the
    kitchen publishes ``order.ready`` to the broker, which hands it to the waiter.
    The broker's own clock is not measured, so its arrows are drawn from the moment
    the kitchen published; the waiter's arrow ends when the waiter had the event.
    A Kafka waiter's background fetches are not per order and are not drawn; the
    panel title gives their measured rate.

    Args:
        result: a :class:`~edalab.experiments.waiter.WaiterResult`.
        order: the order number (default: :func:`pick_order`).
        labels: which trials to draw (default: all, in the order they ran).

    Returns:
        the matplotlib Figure.
    """
    import math

    import matplotlib.pyplot as plt

    order = pick_order(result) if order is None else order
    labels = list(labels or result.labels)
    summary = result.summary.set_index("label")
    samples = result.samples[result.samples["order"] == order].set_index("label")
    kitchen = result.kitchen[result.kitchen["order"] == order].set_index("label")
    asks = result.asks[result.asks["order"] == order]
    if not len(samples):
        raise ValueError(f"Order {order} is not in this result (orders 0..{result.samples['order'].max()}).")

    def rel(label, column_value):
        return column_value - kitchen.loc[label, "placed_at_s"]

    ends = [rel(lbl, samples.loc[lbl, "known_at_s"]) for lbl in labels if lbl in kitchen.index]
    last_s = max([e for e in ends if not math.isnan(e)] + [rel(lbl, kitchen.loc[lbl, "ready_at_s"])
                                                            for lbl in labels if lbl in kitchen.index])
    bottom_s = last_s * 1.08 + 0.05
    top_s = -0.16 * bottom_s  # room for the lifeline names above t = 0
    fig, axs = plt.subplots(1, len(labels), figsize=(3.7 * len(labels), 6.0), sharey=True, squeeze=False)
    for ax, label in zip(axs[0], labels):
        row = summary.loc[label]
        ready_s = rel(label, kitchen.loc[label, "ready_at_s"])
        known_s = rel(label, samples.loc[label, "known_at_s"])
        polling = row["method"] == "rest-poll"
        ax.set_xlim((-0.9, 1.7) if polling else (-0.7, 2.7))
        if polling:
            _lifelines(ax, ["customer", "kitchen\n(REST API)"], top_s, bottom_s)
            _arrow(ax, 0, 0, 1, 0, "0.2", "order")
            mine = asks[asks["label"] == label].sort_values("asked_at_s")
            for _, ask in mine.iterrows():
                asked_s = rel(label, ask["asked_at_s"])
                color = "tab:green" if ask["ready"] else _METHOD_COLORS["rest-poll"]
                _arrow(ax, 0, asked_s, 1, rel(label, ask["answered_at_s"]), color,
                       "ready? yes!" if ask["ready"] else "ready? no", style="<|-|>")
            title = f"{_pretty(row)}\n{len(mine)} calls for this order"
            knower = 0
        else:
            broker = "Redis\n(pub/sub)" if row["method"] == "redis-pubsub" else "Kafka\nbroker"
            _lifelines(ax, ["kitchen", broker, "waiter"], top_s, bottom_s)
            ax.plot(0, 0, "o", color="0.2")
            ax.text(0.08, 0, "order in", fontsize=8, va="center")
            color = method_color(row["method"])
            _arrow(ax, 0, ready_s, 1, ready_s, color, "order.ready")
            if not math.isnan(known_s):
                _arrow(ax, 1, ready_s, 2, known_s, color, "order.ready")
            title = f"{_pretty(row)}\n{_requests(row['requests_total'])} for all {row['orders']:.0f} orders"
            if row["requests_open_per_s"] > 0:  # measured: the waiter's client kept asking
                title += f"\n(requests: {row['requests_open_per_s']:.1f}/s in the background)"
                waiting = "its client keeps\nfetching from\nthe broker"
            elif row["requests_open_per_s"] == 0:
                waiting = "waits on an\nopen connection,\nno calls"
            else:
                waiting = "(requests not\nreported)"
            ax.text(2.08, ready_s / 2, waiting, fontsize=7.5, va="center", color="0.35")
            knower = 2
        kitchen_x = 1 if polling else 0
        ax.plot(kitchen_x, ready_s, "*", ms=14, color="tab:orange", zorder=5)
        ax.text(kitchen_x + (0.1 if polling else -0.1), ready_s, "food\nready", fontsize=8, va="center",
                ha="left" if polling else "right", color="tab:orange")
        if not math.isnan(known_s):
            latency_ms = samples.loc[label, "latency_ms"]
            side = -1 if polling else 1  # the bracket goes on the outer side of the one who knows
            ax.annotate("", xy=(knower + 0.15 * side, known_s), xytext=(knower + 0.15 * side, ready_s),
                        arrowprops=dict(arrowstyle="|-|", color="tab:green", lw=1.5, shrinkA=0, shrinkB=0))
            ax.text(knower + 0.2 * side, max(known_s, ready_s) + 0.02, f"knows after\n{latency_ms:.1f} ms",
                    ha="right" if polling else "left", va="top", fontsize=8, color="tab:green")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.grid(False)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    axs[0, 0].set_ylim(bottom_s, top_s)
    axs[0, 0].set_yticks([t for t in axs[0, 0].get_yticks() if 0 <= t <= bottom_s])
    axs[0, 0].set_ylabel("seconds since the order was placed")
    fig.suptitle(f"Order #{order}: asking again and again vs being told", fontsize=11)
    fig.tight_layout()
    return fig
