"""Charts of the broker-outage lesson (notebook 08).

:func:`broker_outage_timeline` and :func:`broker_outage_counts` draw an
:class:`~edalab.experiments.OutageResult`; :func:`survival_bars` a
:class:`~edalab.experiments.SurvivalResult`; :func:`availability_chart` the table of
:func:`~edalab.experiments.chain_availability`. Times on the x axis are seconds
after the first order could be sent (the run's start gate).
"""

from __future__ import annotations

import numpy as np

from edalab.plots._style import method_color, axes as _axes, legend_outside

__all__ = ["broker_outage_timeline", "broker_outage_counts", "survival_bars", "availability_chart"]

_FAULT_LABELS = {"kill": "SIGKILL + restart", "pause": "SIGSTOP + SIGCONT"}
#: one colour per count, the same in every chart of this lesson
COUNT_COLORS = {"sent": "0.55", "acknowledged": "tab:blue", "failed": "tab:red", "delivered": "tab:green",
                "duplicated": "tab:orange", "lost": "black", "kept": "tab:purple"}
#: the availability arithmetic's designs (not delivery methods, so not in METHOD_COLORS)
_FALLBACK = {"synchronous chain": "tab:gray", "events, 1 broker": "tab:blue", "events, 3 brokers": "navy"}


def _color(method: str) -> str:
    return _FALLBACK.get(method) or method_color(method)


def broker_outage_timeline(result):
    """One panel per trial: orders sent, acknowledged and delivered so far, over time;
    the broker's outage shaded, failed sends marked (notebook 08). Returns the Figure."""
    import matplotlib.pyplot as plt

    trials = list(result.summary.index)
    ncols = min(2, len(trials))
    nrows = int(np.ceil(len(trials) / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    gate_ns = result.params.get("gate_ns", 0)
    for ax, (method, fault) in zip(grid.flat, trials):
        s = result.samples[(result.samples["method"] == method) & (result.samples["fault"] == fault)]
        t = result.timeline[(result.timeline["method"] == method) & (result.timeline["fault"] == fault)]
        times = dict(zip(t["what"], t["t_s"]))
        if "fault" in times and "back" in times:
            ax.axvspan(times["fault"], times["back"], color="0.88", zorder=0, label="broker down")
        for what, column, mask in (("sent", "sent_ns", s["outcome"].notna()),
                                   ("acknowledged", "done_ns", s["outcome"] == "acked"),
                                   ("delivered", "first_received_ns", s["deliveries"] > 0)):
            at = np.sort((s.loc[mask, column].dropna().to_numpy(dtype=float) - gate_ns) / 1e9)
            ax.step(np.r_[0, at], np.arange(len(at) + 1), where="post", color=COUNT_COLORS[what],
                    lw=1.5, label=what)
        failed = s[s["outcome"].isin(["failed", "refused"])]
        if len(failed):
            ax.plot((failed["done_ns"].to_numpy(dtype=float) - gate_ns) / 1e9,
                    np.zeros(len(failed)), "|", color=COUNT_COLORS["failed"], ms=12,
                    label=f"failed ({len(failed)})")
        ax.set_title(f"{method}, {_FAULT_LABELS.get(fault, fault)}", fontsize=10)
        ax.set_xlabel("seconds after the first order")
        ax.set_ylabel("orders so far")
    for ax in list(grid.flat)[len(trials):]:
        ax.set_visible(False)
    legend_outside(grid.flat[ncols - 1])
    fig.tight_layout()
    return fig


def broker_outage_counts(result, ax=None):
    """Bars per trial: sent, acknowledged, failed, delivered, duplicated, lost, kept (notebook 08)."""
    from edalab.experiments._outage_analysis import COUNT_COLUMNS

    ax = _axes(ax)
    trials = list(result.summary.index)
    width = 0.8 / len(COUNT_COLUMNS)
    x = np.arange(len(trials))
    for k, column in enumerate(COUNT_COLUMNS):
        values = result.summary[column].to_numpy()
        bars = ax.bar(x + (k - len(COUNT_COLUMNS) / 2 + 0.5) * width, values, width,
                      color=COUNT_COLORS[column], label=column)
        for bar, value in zip(bars, values):
            if value and column in ("failed", "duplicated", "lost"):
                ax.annotate(f"{int(value)}", (bar.get_x() + width / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks(x, [f"{m}\n{_FAULT_LABELS.get(f, f)}" for m, f in trials], fontsize=8)
    ax.set_ylabel("orders")
    ax.set_title("What became of the orders")
    legend_outside(ax)
    return ax


def survival_bars(result, ax=None):
    """Written before the SIGKILL vs read back after the restart, per storage (notebook 08)."""
    ax = _axes(ax)
    table = result.summary
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["written"], 0.4, color="0.7", label="written (acknowledged)")
    ax.bar(x + 0.2, table["kept"], 0.4, color=[_color(m) for m in table.index], label="read back after restart")
    for xi, (_, row) in zip(x, table.iterrows()):
        ax.annotate(f"{row['acked_per_s']:.0f}/s", (xi, row["written"]), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(x, [f"{m}\n({s})" for m, s in zip(table.index, table["storage"])], fontsize=8)
    ax.set_ylabel("events")
    ax.set_title("What survives kill -9 (labels: acknowledged writes per second)")
    legend_outside(ax)
    return ax


def availability_chart(table, ax=None):
    """Hours a year an order cannot be accepted, per number of services (notebook 08)."""
    ax = _axes(ax)
    for method, rows in table.groupby("method", sort=False):
        ax.plot(rows["services"], rows["downtime_h_per_year"], marker="o", color=_color(method), label=method)
    ax.set_yscale("log")
    ax.set_xlabel("services an order passes through")
    ax.set_ylabel("hours a year orders are refused")
    ax.set_title("A synchronous chain vs events through a broker")
    legend_outside(ax)
    return ax
