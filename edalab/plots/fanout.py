"""Charts of the fan-out and competing-consumers experiments (notebook 03).

Each function draws one result of :mod:`edalab.experiments.fanout`, ``competing``,
``rebalancing`` or ``rest_calls`` on an optional matplotlib ``Axes`` and returns the
``Axes``.
"""

from __future__ import annotations

import math

from edalab.plots._style import METHOD_COLORS as _METHOD_COLORS, method_color
from edalab.plots._style import axes as _axes

__all__ = [
    "events_per_member",
    "fan_out_deliveries",
    "key_routing",
    "publish_time_vs_services",
    "rebalance_latency",
    "rebalance_timeline",
]

#: colours of the REST producers in :func:`publish_time_vs_services` until the course-wide
#: METHOD_COLORS has them (red belongs to REST polling, so these are greys)
PRODUCER_COLORS = {"rest-sequential": "0.15", "rest-parallel": "0.55", **_METHOD_COLORS}
_PRODUCER_STYLES = {"rest-sequential": "s-", "rest-parallel": "^--"}
_PRODUCER_LABELS = {"rest-sequential": "REST: call each service in turn",
                    "rest-parallel": "REST: call all services at once",
                    "kafka": "Kafka: publish once (wait for the broker's ack)"}


def _partition_color(partition) -> str:
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    import pandas as pd

    return "0.5" if pd.isna(partition) else palette(int(partition) % 10)


def fan_out_deliveries(result, ax=None):
    """Events each service received, per method (transport), against events produced (notebook 03)."""
    import numpy as np

    ax = _axes(ax)
    s = result.summary
    services = list(dict.fromkeys(s["service"]))
    transports = list(dict.fromkeys(s["method"]))
    width = 0.8 / max(len(transports), 1)
    x = np.arange(len(services))
    for i, transport in enumerate(transports):
        rows = s[s["method"] == transport].set_index("service").reindex(services)
        bars = ax.bar(x + (i - (len(transports) - 1) / 2) * width, rows["delivered"], width,
                      label=transport, color=method_color(transport))
        ax.bar_label(bars, fontsize=8)
    produced = int(s["produced"].max())
    ax.axhline(produced, color="0.3", ls="--", lw=1, label=f"produced: {produced}")
    ax.set_xticks(x, services)
    ax.set_ylabel("distinct events received")
    ax.set_ylim(0, produced * 1.2)
    ax.set_title("Fan-out: each service gets every event")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def events_per_member(result, ax=None):
    """Events each member of one competing group received, with its partitions (notebook 03)."""
    ax = _axes(ax)
    m = result.members
    colors = [_partition_color(p[0]) if len(p) == 1 else "0.5" for p in m["partitions"]]
    bars = ax.bar(m["member"], m["delivered"], color=colors)
    labels = [f"{d}\npartition {', '.join(map(str, p))}" if p else "0\nidle: no partition"
              for d, p in zip(m["delivered"], m["partitions"])]
    ax.bar_label(bars, labels, fontsize=8)
    produced = int(result.group["produced"])
    ax.axhline(produced / len(m), color="0.3", ls=":", lw=1,
               label=f"even split: {produced}/{len(m)} = {produced / len(m):.1f}")
    ax.set_ylim(0, max(m["delivered"].max(), 1) * 1.35)
    ax.set_ylabel("distinct events received")
    ax.set_title(f"Competing consumers: {produced} events split over {len(m)} members, "
                 f"{int(result.group['duplicated'])} twice", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return ax


def key_routing(result, ax=None):
    """Which key went to which partition, and which member read it: three columns of boxes
    joined by lines (notebook 03)."""
    ax = _axes(ax)
    km = result.key_map
    members = result.members["member"].tolist()
    partitions = sorted({p for p in km["partition"] if isinstance(p, int)}
                        | {p for ps in result.members["partitions"] for p in ps})
    columns = {"key": 0.0, "partition": 1.0, "member": 2.0}

    def ys(n):
        return [1 - (i + 0.5) / n for i in range(n)]

    key_y = dict(zip(km["key"], ys(len(km))))
    part_y = dict(zip(partitions, ys(max(len(partitions), 1))))
    member_y = dict(zip(members, ys(len(members))))
    for _, row in km.iterrows():
        p = row["partition"]
        if p in part_y:
            ax.plot([columns["key"], columns["partition"]], [key_y[row["key"]], part_y[p]],
                    color=_partition_color(p), lw=1.2, alpha=0.8)
    owner = {}
    for _, row in result.members.iterrows():
        for p in row["partitions"]:
            owner.setdefault(p, []).append(row["member"])
    for p, who in owner.items():
        for member in who:
            if p in part_y:
                ax.plot([columns["partition"], columns["member"]], [part_y[p], member_y[member]],
                        color=_partition_color(p), lw=2.5, alpha=0.8)
    box = {"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6"}
    for key, y in key_y.items():
        ax.text(columns["key"], y, key, ha="center", va="center", fontsize=7, bbox=box)
    for p, y in part_y.items():
        ax.text(columns["partition"], y, f"partition {p}", ha="center", va="center", fontsize=8,
                bbox=dict(box, ec=_partition_color(p), lw=1.5))
    for member, y in member_y.items():
        label = member if any(member in w for w in owner.values()) else f"{member}\n(idle)"
        ax.text(columns["member"], y, label, ha="center", va="center", fontsize=8, bbox=box)
    for name, x in columns.items():
        ax.text(x, 1.04, name, ha="center", va="bottom", fontsize=9, weight="bold")
    ax.set_xlim(-0.4, 2.4)
    ax.set_ylim(-0.02, 1.1)
    ax.axis("off")
    ax.set_title("key → partition (the producer's hash) → member (the group's assignment)",
                 fontsize=10)
    return ax


def rebalance_timeline(result, ax=None):
    """Every delivery as a tick, one row per member, coloured by partition; each membership
    change as a dashed line (asked for) and a dotted one (done: the newcomer owned
    partitions, the leaver had exited); the group's longest silence after it shaded
    (notebook 03)."""
    ax = _axes(ax)
    s = result.samples
    members = sorted(s["role"].unique(), key=lambda r: int(r.rsplit("-", 1)[-1]) if r[-1].isdigit() else 0)
    members += [m for m in result.changes["member"] if m not in members]
    row_of = {m: i for i, m in enumerate(members)}
    for p, part in s.groupby("partition"):
        ax.scatter(part["t_s"], part["role"].map(row_of), s=14, marker="|", linewidths=1.5,
                   color=_partition_color(p), label=f"partition {p}")
    for _, change in result.changes.iterrows():
        color = "tab:green" if change["change"] == "join" else "tab:red"
        ax.axvline(change["at_s"], color=color, ls="--", lw=1)
        ax.axvline(change["done_s"], color=color, ls=":", lw=1)
        ax.text(change["at_s"], len(members) - 0.4, f" {change['member']} {change['change']}s",
                color=color, fontsize=8, va="bottom")
        if not math.isnan(change["pause_s"]):
            ax.axvspan(change["pause_start_s"], change["pause_end_s"], color=color, alpha=0.1)
            ax.text((change["pause_start_s"] + change["pause_end_s"]) / 2, -0.75,
                    f"nobody receives\n{change['pause_s']:.2f} s", ha="center", va="top", fontsize=7,
                    color=color)
    ax.set_yticks(range(len(members)), members)
    ax.set_ylim(-1.6, len(members) + 0.2)
    ax.set_xlabel("seconds since the first event")
    ax.set_title("Deliveries per member around a join and a leave\n"
                 "(dashed: change asked for; dotted: change done)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left", markerscale=1.5, ncol=3)
    return ax


def rebalance_latency(result, ax=None):
    """Delivery delay of each event against when it was produced (notebook 03): events
    produced during a rebalance wait until their partition has an owner again."""
    ax = _axes(ax)
    s = result.samples[~result.samples["duplicate"]]
    for p, part in s.groupby("partition"):
        ax.plot(part["produced_t_s"], part["latency_ms"], ".", ms=4, color=_partition_color(p),
                label=f"partition {p}")
    for _, change in result.changes.iterrows():
        ax.axvline(change["at_s"], color="tab:green" if change["change"] == "join" else "tab:red",
                   ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("produced at (seconds since the first event)")
    ax.set_ylabel("delivery delay (ms)")
    ax.set_title("How long events waited")
    ax.legend(fontsize=7)
    return ax


def publish_time_vs_services(result, ax=None):
    """The producer's time per event against the number of services that need it,
    REST (calling each) vs Kafka (publishing once); median with a bar up to p90 (notebook 03)."""
    ax = _axes(ax)
    s = result.summary
    for method, rows in s.groupby("method", sort=False):
        rows = rows.sort_values("services")
        color = PRODUCER_COLORS.get(method)
        ax.plot(rows["services"], rows["publish_p50_ms"], _PRODUCER_STYLES.get(method, "o-"), color=color,
                label=_PRODUCER_LABELS.get(method, method))
        ax.errorbar(rows["services"], rows["publish_p50_ms"],
                    yerr=[0 * rows["publish_p50_ms"], rows["publish_p90_ms"] - rows["publish_p50_ms"]],
                    fmt="none", ecolor=color, alpha=0.4, capsize=3)
    ax.set_xticks(sorted(s["services"].unique()))
    ax.set_xlabel("services that need the event")
    ax.set_ylabel("producer time per event (ms, median; bar to p90)")
    ax.set_ylim(bottom=0)
    ax.set_title("Who pays for one more subscriber?")
    ax.legend(fontsize=8, loc="upper left")
    return ax
