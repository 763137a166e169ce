"""Charts of notebook 10 (what goes in an event).

:func:`source_load`, :func:`bytes_per_update`, :func:`stale_window` and
:func:`source_down_copies` draw an :class:`~edalab.experiments.event_content.EventContentResult`;
:func:`rebuild_times` and :func:`read_model_lag` a
:class:`~edalab.experiments._event_sourcing.RebuildResult`. Each returns its Axes.
"""

from __future__ import annotations

import numpy as np

from edalab.plots._style import axes, legend_outside, method_color

__all__ = ["source_load", "bytes_per_update", "stale_window", "source_down_copies", "rebuild_times",
           "read_model_lag"]

_NOTIFY = "event-notification"


def source_load(result, ax=None):
    """The source's REST API per step: requests served per second and CPU milliseconds per second."""
    ax = axes(ax)
    up = result.source[result.source["phase"] == "up"]
    ax.plot(up["subscribers"], up["requests_per_s"], marker="o", lw=2, color=method_color(_NOTIFY),
            label="requests per s (callbacks)")
    ax.plot(up["subscribers"], up["cpu_ms_per_s"], marker="s", lw=2, ls="--", color="0.3",
            label="CPU ms per s")
    ax.set_xticks(sorted(up["subscribers"].unique()))
    ax.set_xlabel("subscribers of each design")
    ax.set_ylabel("per second, at the source's API")
    ax.set_ylim(bottom=0)
    ax.set_title("Event notification: every subscriber calls the source back")
    legend_outside(ax)
    return ax


def bytes_per_update(result, ax=None):
    """Bytes one subscriber receives per order update: the event, plus the callback's answer."""
    ax = axes(ax)
    s = result.summary[result.summary["phase"] == "up"].groupby("method", sort=False)
    event, answer = s["event_bytes"].mean(), s["callback_bytes"].mean()
    x = np.arange(len(event))
    colors = [method_color(m) for m in event.index]
    ax.bar(x, event.to_numpy(), color=colors, label="the event")
    ax.bar(x, answer.to_numpy(), bottom=event.to_numpy(), color=colors, alpha=0.4, hatch="//",
           label="the callback's answer")
    ax.set_xticks(x, event.index)
    ax.set_ylabel("bytes per update, per subscriber")
    ax.set_title("What one update costs a subscriber to receive")
    legend_outside(ax)
    return ax


def stale_window(result, ax=None):
    """How long after the source changed an order each subscriber's copy caught up (CDF, ms)."""
    ax = axes(ax)
    ok = result.samples[result.samples["ok"] == 1]
    for method in result.summary["method"].unique():
        ms = np.sort(ok.loc[ok["method"] == method, "latency_ms"].to_numpy())
        if len(ms):
            ax.step(ms, np.arange(1, len(ms) + 1) / len(ms), where="post", lw=1.8, color=method_color(method),
                    label=method)
    ax.set_xlabel("stale-data window: source updated -> copy caught up (ms)")
    ax.set_ylabel("share of copies")
    ax.set_title("How long a subscriber's copy lags the source")
    legend_outside(ax)
    return ax


def source_down_copies(result, ax=None):
    """With the source's API down: copies made and callbacks that failed, per design."""
    ax = axes(ax)
    down = result.summary[result.summary["phase"] == "source down"]
    x = np.arange(len(down))
    made = (down["copies"] - down["failed"]).to_numpy()
    ax.bar(x, made, color=[method_color(m) for m in down["method"]])
    ax.bar(x, down["failed"].to_numpy(), bottom=made, color="black", label="callback failed: no copy")
    for i, (n, failed) in enumerate(zip(made, down["failed"])):
        ax.annotate(f"{n} up to date, {failed} failed", (i, n + failed), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, down["method"])
    ax.set_ylim(top=1.15 * max(1, float(down["copies"].max())))
    ax.set_ylabel("events handled by all subscribers")
    ax.set_title("The source's API is down")
    legend_outside(ax)
    return ax


def rebuild_times(result, ax=None):
    """Time to rebuild the order against the events in its history, full replay vs snapshot."""
    ax = axes(ax)
    for method in result.summary["method"].unique():
        rows = result.summary[result.summary["method"] == method]
        ax.plot(rows["events"], rows["rebuild_p50_ms"], marker="o", lw=2, color=method_color(method),
                label=method)
    ax.set_xscale("log")
    sizes = sorted(result.summary["events"].unique())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("events in the order's history (log scale)")
    ax.set_ylabel("rebuild time, median (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("Rebuilding an order from its events")
    legend_outside(ax)
    return ax


def read_model_lag(result, ax=None):
    """The read model's lag for each live event (produced -> in Redis), coloured by schema version."""
    ax = axes(ax)
    model = result.read_model.sort_values("produced_ns")
    t0 = model["produced_ns"].min()
    for version, color in zip(sorted(model["schema_version"].unique()), ("tab:blue", "tab:green", "black")):
        rows = model[model["schema_version"] == version]
        ax.scatter((rows["produced_ns"] - t0) / 1e9, rows["latency_ms"], s=10, color=color,
                   label=f"schema v{version}")
    ax.set_xlabel("event produced (s after the first)")
    ax.set_ylabel("read model lag (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("CQRS read model in Redis: how far behind the log")
    legend_outside(ax)
    return ax
