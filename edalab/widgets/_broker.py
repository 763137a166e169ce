"""Notebook 08's widget: rerun the broker outage with other storages, faults, times and rates."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.broker_outage import FAULTS, STORAGES, broker_goes_down
from edalab.plots.broker_outage import broker_outage_counts
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["broker_outage_widget"]


def broker_outage_widget(lab) -> w.VBox:
    """Pick storages, faults, outage length and rate; press Run to measure and chart (notebook 08)."""
    controls = {
        "storages": w.SelectMultiple(options=STORAGES, value=STORAGES, description="storage", rows=2),
        "faults": w.SelectMultiple(options=FAULTS, value=FAULTS, description="fault", rows=2),
        "down_s": w.FloatSlider(value=5.0, min=0.5, max=30.0, step=0.5, description="down (s)"),
        "rate_per_s": w.FloatLogSlider(value=40, base=10, min=0, max=2.3, description="orders/s"),
    }

    def run(storages, faults, down_s, rate_per_s):
        return broker_goes_down(lab, storages=list(storages), faults=list(faults), down_s=down_s,
                                rate_per_s=rate_per_s, quick=False, progress=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        broker_outage_counts(result, ax)
        show_figure(out, fig)
        out.append_display_data(result.table())

    return experiment_widget(controls, run, show, describe=lambda storages, faults, down_s, **_: (
        f"Running {len(storages) * len(faults)} trial(s), the broker down for {down_s:g} s..."))
