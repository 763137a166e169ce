"""Charts of notebook 11: the scale model's crossover, staleness of polled state, model vs measurement."""

from __future__ import annotations

import numpy as np

from edalab.plots._style import legend_outside, method_color, poll_interval_colors

__all__ = ["scale_crossover", "staleness_chart", "agreement_chart", "partitions_chart", "run_crossover"]


def _label(method: str, interval_s: float) -> str:
    return f"rest-poll every {interval_s:g} s" if method == "rest-poll" else method


def scale_crossover(calibration, result=None, *, clients=None, poll_intervals_s=(0.1, 1.0, 10.0),
                    update_rate_per_s: float | None = None, limits=None):
    """Server CPU, servers needed and mean delay vs clients (log scales), per method (notebook 11).

    Lines are :func:`edalab.scale.predict`; dots are the measured steps of ``result``
    (one server), drawn on the CPU panel, so the reader sees where model and run overlap.
    """
    import matplotlib.pyplot as plt

    from edalab import scale

    limits = scale.ServerLimits() if limits is None else limits
    n = np.logspace(1, 6.5, 36) if clients is None else np.asarray(clients, dtype=float)
    fig, (cpu_ax, servers_ax, delay_ax) = plt.subplots(1, 3, figsize=(15, 4.3))
    shades = poll_interval_colors(poll_intervals_s)
    curves = [("rest-poll", t) for t in poll_intervals_s] + [(m, np.nan) for m in ("long-poll", "sse")]
    for method, interval in curves:
        if method not in calibration.cpu_curves:
            continue
        p = scale.predict(calibration, method, n, poll_interval_s=1.0 if np.isnan(interval) else interval,
                          update_rate_per_s=update_rate_per_s, limits=limits)
        colour = shades[interval] if method == "rest-poll" else method_color(method)
        style = {"color": colour, "label": _label(method, interval)}
        cpu_ax.loglog(n, p["server_cpu_per_s"], **style)
        servers_ax.loglog(n, p["servers"], **style)
        delay_ax.loglog(n, p["latency_mean_ms"], **style)
    if result is not None:
        for _, row in result.measured().iterrows():
            cpu_ax.scatter(row["clients"], row["server_cpu_per_s"], s=22, zorder=3, edgecolor="black",
                           color=method_color(row["method"]))
    rate = calibration.update_rate_per_s if update_rate_per_s is None else update_rate_per_s
    cpu_ax.set(xlabel="clients", ylabel="server CPU (s per s, all servers)",
               title="CPU (dots: this run, one server)")
    servers_ax.set(xlabel="clients", ylabel=f"servers ({limits.cores} cores at {limits.cpu_target:.0%})",
                   title="servers needed")
    delay_ax.set(xlabel="clients", ylabel="mean delay until a client knows (ms)",
                 title=f"delay, state changing {rate:g} times/s")
    legend_outside(delay_ax)
    from matplotlib.ticker import NullLocator

    for ax in (cpu_ax, servers_ax, delay_ax):        # minor ticks of log axes: seconds to lay out, little to read
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_locator(NullLocator())
    # fixed spacing: tight_layout measures every minor tick of three log axes (a second or more)
    fig.subplots_adjust(left=0.06, right=0.85, wspace=0.32, bottom=0.14)
    return fig


def staleness_chart(result, calibration=None, ax=None):
    """Share of time a polled copy was stale, and of updates never seen, vs updates per poll (λT).

    Dots: this run's polling steps; line: the model ``1 - (1 - exp(-λT)) / (λT)``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    polls = result.measured()
    polls = polls[polls["method"] == "rest-poll"]
    lam_t = polls["updates_per_s"] * polls["poll_interval_s"]
    x = np.logspace(-2, 2, 100)
    ax.semilogx(x, 1 - (1 - np.exp(-x)) / x, color=method_color("rest-poll"), label="model")
    ax.scatter(lam_t, polls["stale_fraction"], color=method_color("rest-poll"), edgecolor="black",
               label="stale time (this run)", zorder=3)
    ax.scatter(lam_t, polls["missed_fraction"], marker="x", color="black", label="updates never seen (this run)",
               zorder=3)
    ax.set(xlabel="updates per poll interval (λ x T)", ylabel="share", ylim=(0, 1.05),
           title="polled state: stale time and missed updates")
    legend_outside(ax)
    return ax


def agreement_chart(table, ax=None):
    """Predicted / measured for server CPU, requests/s and mean delay per step (1 = exact; band ±15 %)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    short = {"rest-poll": "poll", "long-poll": "long", "sse": "sse"}
    labels = [f"{short.get(m, m)}{f' {t:g}s' if m == 'rest-poll' else ''}\n{n:g}"
              for m, t, n in zip(table["method"], table["poll_interval_s"], table["clients"])]
    x = np.arange(len(table))
    for k, (col, marker) in enumerate([("server_cpu_per_s", "o"), ("requests_per_s", "s"),
                                       ("latency_mean_ms", "^")]):
        ratio = 1 + table[f"rel_error_{col}"]
        ax.scatter(x + (k - 1) * 0.15, ratio, marker=marker, label=col, zorder=3,
                   color=[method_color(m) for m in table["method"]], edgecolor="black")
    ax.axhspan(0.85, 1.15, color="0.9", zorder=0)
    ax.axhline(1.0, color="0.4", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(ylabel="predicted / measured", xlabel="step (method, interval; clients)",
           title="the model against this run (grey: within 15 %)")
    legend_outside(ax)
    return ax


def partitions_chart(result, ax=None):
    """The group's drain rate per trial against min(partitions, consumers), with the ideal line (notebook 11)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    s = result.summary
    one = float(s["one_member_per_s"].iloc[0])
    top = max(int(s["active"].max()), 1)
    ax.plot([0, top], [0, top * one], color="0.6", ls="--", label="each member adds one member's rate")
    ax.scatter(s["active"], s["events_per_s"], color=method_color("kafka"), edgecolor="black", zorder=3,
               label="measured")
    for _, row in s.iterrows():
        ax.annotate(f"P={row['partitions']} C={row['consumers']}", (row["active"], row["events_per_s"]),
                    textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set(xlabel="members that hold a partition: min(partitions, consumers)", ylabel="events handled per second",
           title=f"one group draining a backlog on {result.params.get('kafka_mode')} Kafka")
    legend_outside(ax)
    return ax


def run_crossover(result):
    """:func:`scale_crossover` of the model calibrated on ``result`` itself (``edalab run many-clients``)."""
    from edalab import scale

    return scale_crossover(scale.calibrate(result), result)
