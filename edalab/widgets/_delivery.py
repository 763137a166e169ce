"""Notebook 09's widget: rerun the SIGKILL-mid-batch experiment with other policies, transports and timings."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.delivery import DELIVERY_METHODS, POLICIES, delivery_guarantees
from edalab.plots.delivery import delivery_outcomes
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["delivery_widget"]


def delivery_widget(lab) -> w.VBox:
    """Pick transports, commit policies, orders, work per order and how many orders billing
    handled since its latest commit when the kill lands; press Run."""
    controls = {
        "methods": w.SelectMultiple(options=DELIVERY_METHODS, value=DELIVERY_METHODS, description="transport",
                                    rows=2),
        "policies": w.SelectMultiple(options=POLICIES, value=POLICIES, description="policy", rows=3),
        "events": w.IntSlider(value=400, min=100, max=2000, step=50, description="orders"),
        "work_ms": w.FloatSlider(value=10.0, min=2.0, max=50.0, step=1.0, description="work (ms)"),
        "kill_after": w.IntSlider(value=10, min=1, max=80, description="kill after"),
    }

    def run(methods, policies, events, work_ms, kill_after):
        return delivery_guarantees(lab, methods=list(methods), policies=list(policies), events=events,
                                   work_ms=work_ms, kill_after=kill_after, quick=False,
                                   progress=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        delivery_outcomes(result, ax)
        show_figure(out, fig)
        out.append_display_data(result.table())

    return experiment_widget(controls, run, show, describe=lambda methods, policies, events, **_: (
        f"Billing {events} orders under {len(policies)} polic(ies) on {len(methods)} transport(s), "
        f"with a SIGKILL mid-batch..."))
