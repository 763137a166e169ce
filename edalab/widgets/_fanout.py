"""Notebook 03's widgets: fan-out to more services, and a competing group with other sizes."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.competing import competing_consumers
from edalab.experiments.fanout import FANOUT_TRANSPORTS, SERVICE_NAMES, fan_out
from edalab.plots.fanout import events_per_member, fan_out_deliveries, key_routing
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["fan_out_widget", "competing_consumers_widget"]


def fan_out_widget(lab) -> w.VBox:
    """Pick services, transports, events and rate; Run publishes once and counts who got what (notebook 03)."""
    controls = {
        "services": w.SelectMultiple(options=SERVICE_NAMES, value=SERVICE_NAMES[:2], description="services",
                                     rows=len(SERVICE_NAMES)),
        "transports": w.SelectMultiple(options=FANOUT_TRANSPORTS, value=FANOUT_TRANSPORTS,
                                       description="transports", rows=len(FANOUT_TRANSPORTS)),
        "events": w.IntSlider(value=60, min=1, max=500, step=1, description="events"),
        "rate_per_s": w.FloatSlider(value=30, min=1, max=200, step=1, description="events/s"),
    }

    def run(services, transports, events, rate_per_s):
        return fan_out(
            lab, services=list(services), transports=list(transports), events=events, rate_per_s=rate_per_s,
            quick=False, progress=True)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.6))
        fan_out_deliveries(result, ax)
        show_figure(out, fig)
        out.append_display_data(result.summary[["method", "service", "produced", "delivered", "lost",
                                                "duplicated", "latency_p50_ms", "latency_p99_ms"]].round(1))

    box = experiment_widget(controls, run, show, describe=lambda services, transports, events, **_: (
        f"Publishing {events} events once per transport ({', '.join(transports)}) "
        f"to {len(services)} service(s)..."))
    return box


def competing_consumers_widget(lab) -> w.VBox:
    """Pick members, partitions, keys and events; Run shows who got which share (notebook 03).

    More members than partitions leaves some idle; few keys spread unevenly.
    """
    controls = {
        "members": w.IntSlider(value=3, min=1, max=8, description="members"),
        "partitions": w.IntSlider(value=3, min=1, max=12, description="partitions"),
        "keys": w.IntSlider(value=12, min=1, max=100, description="keys"),
        "events": w.IntSlider(value=60, min=1, max=500, step=1, description="events"),
    }

    def run(members, partitions, keys, events):
        return competing_consumers(
            lab, members=members, partitions=partitions, keys=keys, events=events, quick=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.3]})
        events_per_member(result, left)
        key_routing(result, right)
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.members)

    box = experiment_widget(controls, run, show, describe=lambda members, partitions, events, **_: (
        f"{members} member(s) share {partitions} partition(s); {events} events..."))
    return box
