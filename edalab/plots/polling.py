"""Charts of the polling-vs-push experiment (notebook 02, ``edalab run polling-vs-push``).

Colours come from :data:`~edalab.plots.METHOD_COLORS` (one per method, course-wide);
poll intervals are shades of polling's red. Lines that overlap (the Redis methods)
differ in line style and marker too, and legends sit outside the data.
"""

from __future__ import annotations

import math

from edalab.plots._style import (
    METHOD_COLORS as _COLORS,
    METHOD_LINESTYLES as _LINESTYLES,
    METHOD_MARKERS as _MARKERS,
    axes as _axes,
    legend_outside as _legend_outside,
    poll_interval_colors as _poll_colors,
)

__all__ = ["latency_vs_interval", "requests_per_event", "cpu_per_role", "latency_cdf",
           "polling_vs_push_dashboard"]


def _label(method: str, interval_s: float) -> str:
    return method if interval_s != interval_s else f"poll {interval_s * 1000:g} ms"


def _row_colors(summary) -> list:
    """A colour per summary row: the method's, or the interval's shade of red."""
    shades = _poll_colors(summary["poll_interval_s"].dropna()) if summary["poll_interval_s"].notna().any() else {}
    return [shades[float(r.poll_interval_s)] if r.poll_interval_s == r.poll_interval_s
            else _COLORS.get(r.method, "0.5") for r in summary.itertuples()]


def latency_vs_interval(result, ax=None):
    """Polling delay against poll interval, the model over it, push methods as lines (notebook 02).

    Log-log axes: intervals span 20 ms to 1 s and push delays are around a millisecond.
    """
    import numpy as np

    ax = _axes(ax)
    poll = result.polling()
    if len(poll):
        x_ms = poll["poll_interval_s"].to_numpy() * 1000
        color = _COLORS["rest-poll"]
        ax.errorbar(x_ms, poll["latency_p50_ms"],
                    yerr=[poll["latency_p50_ms"] * 0, poll["latency_p90_ms"] - poll["latency_p50_ms"]],
                    fmt="none", ecolor=color, alpha=0.4, capsize=3, label="REST polling: median to p90")
        ax.plot(x_ms, poll["latency_mean_ms"], "o", color=color, label="REST polling: measured mean", zorder=3)
        grid = np.geomspace(x_ms.min() * 0.8, x_ms.max() * 1.2, 50)
        ax.plot(grid, result.model_mean_ms(grid / 1000), "--", color="0.3",
                label=f"model: interval/2 + RTT ({result.rtt_ms:.2f} ms)")
    for _, row in result.push().iterrows():
        method = row["method"]
        ax.axhline(row["latency_mean_ms"], color=_COLORS.get(method, "0.5"), lw=1.4,
                   ls=_LINESTYLES.get(method, "-"), label=f"{method}: mean {row['latency_mean_ms']:.2f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("poll interval (ms)")
    ax.set_ylabel("mean delivery delay (ms)")
    ax.set_title("How late does the consumer hear about an event?")
    _legend_outside(ax)
    return ax


def _per_method_axes(result, ax):
    """Axes with one x position per summary row (method, or poll interval), labelled."""
    import numpy as np

    ax = _axes(ax)
    s = result.summary
    x = np.arange(len(s))
    ax.set_xticks(x, [_label(r.method, r.poll_interval_s) for r in s.itertuples()], rotation=35, ha="right")
    return ax, s, x


def requests_per_event(result, ax=None):
    """Requests (full bar) and empty responses (hatched part) per delivered event (notebook 02).

    Each bar has its method's colour. Log scale from 0.01: slow polling costs a few
    hundredths of a request per event, fast polling several.
    """
    ax, s, x = _per_method_axes(result, ax)
    colors = _row_colors(s)
    from matplotlib.patches import Patch

    ax.bar(x, s["requests_per_event"], 0.7, color=colors)
    ax.bar(x, s["empty_per_event"], 0.7, color="none", edgecolor="black", hatch="///", lw=0.0)
    line = ax.axhline(1.0, color="0.3", lw=0.8, ls=":", label="one request per event")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.01)
    ax.set_ylabel("per delivered event")
    ax.set_title("What does it cost to learn about one event?")
    # Neutral legend patches: the bars' colours are the methods' (the x labels say which).
    _legend_outside(ax, handles=[Patch(facecolor="0.75", label="requests per event (bar)"),
                                 Patch(facecolor="none", edgecolor="black", hatch="///",
                                       label="of them empty"), line])
    return ax


def cpu_per_role(result, ax=None):
    """CPU seconds of consumer, server in the middle and producer, per method (notebook 02).

    Grey tones for the roles (colours are the methods'); the server is the event
    service for HTTP methods, Valkey or Tansu for the others (missing when the lab
    did not start it, e.g. ``edalab up``'s servers).
    """
    import numpy as np

    ax, s, x = _per_method_axes(result, ax)
    bottom = np.zeros(len(s))
    for column, color, hatch in (("consumer_cpu_s", "0.25", None), ("server_cpu_s", "0.55", "..."),
                                 ("producer_cpu_s", "0.82", None)):
        values = s[column].fillna(0).to_numpy()
        ax.bar(x, values, 0.6, bottom=bottom, label=column.replace("_cpu_s", ""), color=color, hatch=hatch,
               edgecolor="white")
        bottom += values
    for tick, color in zip(ax.get_xticklabels(), _row_colors(s)):
        tick.set_color(color)
    ax.set_ylabel("CPU seconds for the whole trial")
    ax.set_title("Who burns CPU?")
    _legend_outside(ax)
    return ax


def latency_cdf(result, ax=None):
    """Cumulative distribution of delivery delay, one line per method/interval (notebook 02)."""
    import numpy as np

    ax = _axes(ax)
    samples = result.samples[~result.samples["duplicate"]] if len(result.samples) else result.samples
    shades = _poll_colors(samples["poll_interval_s"].dropna()) if len(samples) and \
        samples["poll_interval_s"].notna().any() else {}
    for row in result.summary.itertuples():  # legend in the summary's order: polling first
        method, interval = row.method, row.poll_interval_s
        polling = not math.isnan(interval)
        group = samples[(samples["method"] == method) & ((samples["poll_interval_s"] == interval) if polling
                                                         else samples["poll_interval_s"].isna())]
        if not len(group):
            continue
        values = np.sort(group["latency_ms"].to_numpy())
        fraction = np.arange(1, len(values) + 1) / len(values)
        # A marker at each push method's median tells apart lines that lie on top of each other.
        ax.plot(values, fraction, drawstyle="steps-post", label=_label(method, interval),
                color=shades[float(interval)] if polling else _COLORS.get(method),
                ls="-" if polling else _LINESTYLES.get(method, "-"), lw=1.6,
                marker=None if polling else _MARKERS.get(method, "o"), markevery=[len(values) // 2],
                ms=6, zorder=2 if polling else 3)
    ax.set_xscale("log")
    ax.set_xlabel("delivery delay (ms)")
    ax.set_ylabel("fraction of events delivered")
    ax.set_title("The whole distribution (markers: each push method's median)")
    _legend_outside(ax)
    return ax


def polling_vs_push_dashboard(result):
    """The four polling-vs-push charts in one figure (the widget and the CLI use it)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    latency_vs_interval(result, axes[0, 0])
    latency_cdf(result, axes[0, 1])
    requests_per_event(result, axes[1, 0])
    cpu_per_role(result, axes[1, 1])
    fig.tight_layout()
    return fig
