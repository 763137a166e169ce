"""Charts of the polling-vs-push experiment (notebook 02)."""

from __future__ import annotations

from edalab.plots._style import METHOD_COLORS as _METHOD_COLORS, axes as _axes

__all__ = ["latency_vs_interval", "requests_per_event", "cpu_per_role", "latency_cdf",
           "polling_vs_push_dashboard"]


def latency_vs_interval(result, ax=None):
    """Polling delay against poll interval, the model over it, push methods as lines (notebook 02).

    Log-log axes: intervals span 20 ms to 1 s and push delays are around a millisecond.
    """
    import numpy as np

    ax = _axes(ax)
    poll = result.polling()
    if len(poll):
        x_ms = poll["poll_interval_s"].to_numpy() * 1000
        ax.plot(x_ms, poll["latency_mean_ms"], "o", color=_METHOD_COLORS["rest-poll"],
                label="REST polling: measured mean")
        ax.errorbar(x_ms, poll["latency_p50_ms"],
                    yerr=[poll["latency_p50_ms"] * 0, poll["latency_p90_ms"] - poll["latency_p50_ms"]],
                    fmt="none", ecolor=_METHOD_COLORS["rest-poll"], alpha=0.4, capsize=3,
                    label="REST polling: median to p90")
        grid = np.geomspace(x_ms.min() * 0.8, x_ms.max() * 1.2, 50)
        ax.plot(grid, result.model_mean_ms(grid / 1000), "--", color="0.3",
                label=f"model: interval/2 + RTT ({result.rtt_ms:.2f} ms)")
    for _, row in result.push().iterrows():
        ax.axhline(row["latency_mean_ms"], color=_METHOD_COLORS.get(row["method"], "0.5"), lw=1.2,
                   label=f"{row['method']}: mean {row['latency_mean_ms']:.1f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("poll interval (ms)")
    ax.set_ylabel("delivery delay (ms)")
    ax.set_title("How late does the consumer hear about an event?")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def _per_method_axes(result, ax):
    """Axes with one x position per summary row (method, or poll interval), labelled."""
    import numpy as np

    ax = _axes(ax)
    s = result.summary
    x = np.arange(len(s))
    ax.set_xticks(x, [_label(r) for _, r in s.iterrows()], rotation=35, ha="right")
    return ax, s, x


def _label(row) -> str:
    import math

    if isinstance(row["poll_interval_s"], float) and not math.isnan(row["poll_interval_s"]):
        return f"poll {row['poll_interval_s'] * 1000:g} ms"
    return row["method"]


def requests_per_event(result, ax=None):
    """Requests and empty responses per delivered event, per method (notebook 02)."""

    ax, s, x = _per_method_axes(result, ax)
    ax.bar(x - 0.2, s["requests_per_event"], 0.4, label="requests per event", color="tab:gray")
    ax.bar(x + 0.2, s["empty_per_event"], 0.4, label="empty responses per event", color="tab:red")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("per delivered event")
    ax.set_title("What does it cost to learn about one event?")
    ax.legend(fontsize=8)
    return ax


def cpu_per_role(result, ax=None):
    """CPU seconds of consumer, producer and HTTP service per method (notebook 02)."""
    import numpy as np

    ax, s, x = _per_method_axes(result, ax)
    bottom = np.zeros(len(s))
    for column, color in (("consumer_cpu_s", "tab:blue"), ("service_cpu_s", "tab:orange"),
                          ("producer_cpu_s", "tab:green")):
        values = s[column].fillna(0).to_numpy()
        ax.bar(x, values, 0.6, bottom=bottom, label=column.replace("_cpu_s", ""), color=color)
        bottom += values
    ax.set_ylabel("CPU seconds for the whole run")
    ax.set_title("Who burns CPU?")
    ax.legend(fontsize=8)
    return ax


def latency_cdf(result, ax=None):
    """Cumulative distribution of delivery delay, one line per method/interval (notebook 02)."""
    import numpy as np

    ax = _axes(ax)
    samples = result.samples[~result.samples["duplicate"]]
    for (method, interval), group in samples.groupby(["method", "poll_interval_s"], dropna=False):
        values = np.sort(group["latency_ms"].to_numpy())
        label = method if interval != interval else f"poll {interval * 1000:g} ms"
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label,
                color=_METHOD_COLORS.get(method) if method != "rest-poll" else None)
    ax.set_xscale("log")
    ax.set_xlabel("delivery delay (ms)")
    ax.set_ylabel("fraction of events delivered")
    ax.legend(fontsize=7)
    return ax


def polling_vs_push_dashboard(result):
    """The four polling-vs-push charts in one figure (widgets and the CLI use it)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    latency_vs_interval(result, axes[0, 0])
    latency_cdf(result, axes[0, 1])
    requests_per_event(result, axes[1, 0])
    cpu_per_role(result, axes[1, 1])
    fig.tight_layout()
    return fig
