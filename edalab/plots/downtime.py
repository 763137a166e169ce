"""Charts of the listener-down experiment (notebook 04).

Each function draws a :class:`~edalab.experiments.downtime.DowntimeResult` (or a
``ReplayResult``) and returns the ``Axes`` (``*_panels`` return a Figure with one
panel per method). Times on the x axis are seconds from the trial's first order.
"""

from __future__ import annotations

from edalab.plots._style import method_color, axes as _axes

__all__ = ["lag_over_time", "lag_panels", "outcome_bars", "timeline", "timeline_panels",
           "replay_bars"]

_AWAY_COLOR = "0.85"
_RESTART_COLOR = "0.93"
_LABELS = {"kafka": "Kafka", "redis-stream": "Redis Streams", "redis-pubsub": "Redis pub/sub"}
_STOP_LABELS = {"clean": "clean stop", "kill": "SIGKILL"}


def _shade_outage(ax, result, method: str, stop_mode: str, legend: bool = True) -> None:
    """Grey: billing not listening; lighter: its new process starting (part of the grey)."""
    o = result.outage(method, stop_mode)
    t0 = o["first_event_ns"]
    down, restart, up = ((o[k] - t0) / 1e9 for k in ("down_at_ns", "restart_requested_ns", "up_at_ns"))
    ax.axvspan(down, up, color=_AWAY_COLOR, zorder=0,
               label=f"billing away ({_STOP_LABELS[stop_mode]})"
               if legend else None)
    ax.axvspan(restart, up, facecolor=_RESTART_COLOR, zorder=0, hatch="//", edgecolor="0.75", lw=0,
               label="new process starting" if legend else None)


def lag_over_time(result, method: str, stop_mode: str = "clean", ax=None):
    """Lag (orders produced so far minus orders billed so far) over time (notebook 04).

    The outage is shaded; the lag comes from the traces, the same way for every method.
    """
    ax = _axes(ax)
    lag = result.trial_lag(method, stop_mode)
    color = method_color(method)
    _shade_outage(ax, result, method, stop_mode)
    ax.step(lag["t_s"], lag["lag"], where="post", color=color, lw=1.6,
            label="lag from the traces (produced − billed)")
    row = result.row(method, stop_mode)
    if row["lost"]:
        ax.annotate(f"never drains: {int(row['lost'])} orders lost", xy=(lag["t_s"].iloc[-1], row["lost"]),
                    xytext=(0, -14), textcoords="offset points", ha="right", fontsize=8)
    ax.set_ylim(bottom=-1, top=max(5, lag["lag"].max()) * 1.6)  # room for the legend
    ax.set_title(f"{_LABELS.get(method, method)} ({_STOP_LABELS[stop_mode]})", fontsize=10)
    ax.set_xlabel("seconds since the first order")
    ax.set_ylabel("orders waiting (lag)")
    ax.legend(fontsize=7, loc="upper left")
    return ax


def lag_panels(result, stop_mode: str = "clean"):
    """:func:`lag_over_time` for every method of ``result``, side by side (notebook 04)."""
    import matplotlib.pyplot as plt

    methods = result.params["methods"]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.6), sharey=True,
                             squeeze=False)
    for method, ax in zip(methods, axes[0]):
        lag_over_time(result, method, stop_mode, ax)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
    fig.suptitle("Lag while billing is away, and after it comes back", fontsize=11)
    fig.tight_layout()
    return fig


def outcome_bars(result, ax=None):
    """Lost, duplicated and delivered-late orders per method and stop mode (notebook 04)."""
    import numpy as np

    ax = _axes(ax)
    s = result.summary
    labels = [f"{_LABELS.get(t, t)}\n{_STOP_LABELS[mode]}" for t, mode in s.index]
    x = np.arange(len(s))
    bars = (("lost", "tab:red", "lost"), ("duplicated", "tab:purple", "delivered twice"),
            ("delivered_late", "tab:orange", "sent while away, delivered after restart"))
    for i, (column, color, label) in enumerate(bars):
        values = s[column].to_numpy()
        drawn = ax.bar(x + (i - 1) * 0.27, values, 0.27, color=color, label=label)
        ax.bar_label(drawn, fmt="%d", fontsize=7, padding=1)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("orders")
    ax.set_title("What happened to the orders sent while billing was away?")
    ax.legend(fontsize=8)
    return ax


def timeline(result, method: str, stop_mode: str = "clean", ax=None, margin_s: float = 1.0,
             legend: bool = True, max_orders: int = 150):
    """A sequence picture: each order from "sent" (top) to "billed" (bottom) (notebook 04).

    Shown: orders sent from ``margin_s`` before billing went away until ``margin_s``
    after it listened again (every n-th order when there are more than
    ``max_orders``). Orange: sent while billing was away; grey: sent while it
    listened; red cross: never billed (lost); purple dashes: billed a second time.
    """
    ax = _axes(ax)
    o = result.outage(method, stop_mode)
    t0 = o["first_event_ns"]
    down_s, up_s = (o["down_at_ns"] - t0) / 1e9, (o["up_at_ns"] - t0) / 1e9
    ev = result.events
    ev = ev[(ev["method"] == method) & (ev["stop_mode"] == stop_mode)
            & ev["sent_s"].between(down_s - margin_s, up_s + margin_s)]
    every = max(1, -(-len(ev) // max_orders))  # ceiling division
    ev = ev.iloc[::every]
    _shade_outage(ax, result, method, stop_mode, legend=False)
    for row in ev.itertuples():
        if not row.delivered:
            ax.plot([row.sent_s, row.sent_s], [1, 0.55], color="tab:red", lw=0.8, alpha=0.8)
            ax.plot(row.sent_s, 0.55, "x", color="tab:red", ms=4)
            continue
        color = "tab:orange" if row.sent_while_down else "0.55"
        ax.plot([row.sent_s, row.first_received_s], [1, 0], color=color, lw=0.8, alpha=0.8)
    samples = result.samples
    again = samples[(samples["method"] == method) & (samples["stop_mode"] == stop_mode)
                    & samples["duplicate"] & samples["event_id"].isin(ev["event_id"])]
    for row in again.itertuples():
        ax.plot([row.sent_s, row.received_s], [1, 0], color="tab:purple", lw=0.8, ls="--", alpha=0.8)
    for color, ls, label in (("0.55", "-", "sent while billing listened"),
                             ("tab:orange", "-", "sent while billing was away"),
                             ("tab:red", "-", "lost (never billed)"),
                             ("tab:purple", "--", "billed again (duplicate)")):
        ax.plot([], [], color=color, ls=ls, label=label)  # legend entries only
    ax.plot([], [], color=_AWAY_COLOR, lw=6, label="billing away (hatched: restarting)")
    ax.set_yticks([0, 1], ["billing\n(billed)", "orders\n(sent)"])
    ax.set_ylim(-0.15, 1.15)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("seconds since the first order")
    ax.set_title(f"{_LABELS.get(method, method)} ({_STOP_LABELS[stop_mode]}): each line is "
                 f"{'one order' if every == 1 else f'one order in {every}'}", fontsize=10)
    if legend:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax


def timeline_panels(result, stop_mode: str = "clean", margin_s: float = 1.0):
    """:func:`timeline` for every method of ``result``, one above the other (notebook 04)."""
    import matplotlib.pyplot as plt

    methods = result.params["methods"]
    fig, axes = plt.subplots(len(methods), 1, figsize=(10, 2.3 * len(methods)), sharex=True,
                             squeeze=False)
    for method, ax in zip(methods, axes[:, 0]):
        timeline(result, method, stop_mode, ax, margin_s, legend=ax is axes[0, 0])
        if ax is not axes[-1, 0]:
            ax.set_xlabel("")
    fig.tight_layout()
    return fig


def replay_bars(replays, ax=None):
    """Orders ever sent against orders a brand-new reader could still read (notebook 04).

    ``replays``: one ``ReplayResult`` or a list of them (e.g. from the beginning and
    from an offset), drawn side by side per method.
    """
    import numpy as np

    ax = _axes(ax)
    replays = replays if isinstance(replays, (list, tuple)) else [replays]
    methods = list(replays[0].summary.index)
    x = np.arange(len(methods))
    width = 0.8 / (1 + len(replays))
    produced = ax.bar(x - 0.4 + width / 2, replays[0].summary["produced"], width, color="0.7",
                      label="orders ever sent")
    ax.bar_label(produced, fmt="%d", fontsize=7)
    for i, rp in enumerate(replays, start=1):
        start = rp.params["start"]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), rp.summary.loc[methods, "replayed"], width,
                      color=[method_color(t) for t in methods],
                      alpha=1.0 if i == 1 else 0.55, edgecolor="0.2", lw=0.5,
                      label=f"read again {'from the beginning' if start == 'beginning' else f'from offset {start}'}")
        ax.bar_label(bars, fmt="%d", fontsize=7)
    ax.set_xticks(x, [_LABELS.get(t, t) for t in methods])
    ax.set_ylabel("orders")
    ax.set_title("A new reader, later: what can it still read?")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    return ax
