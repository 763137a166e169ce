"""Notebook 09's widget: rerun the SIGKILL-mid-batch experiment with other policies, transports and timings."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.delivery import DELIVERY_METHODS, POLICIES, delivery_guarantees
from edalab.plots.delivery import delivery_outcomes
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["delivery_widget"]


def delivery_widget(lab) -> w.VBox:
    """Pick transports, commit policies, orders, work per order and when the kill lands; press Run."""
    controls = {
        "methods": w.SelectMultiple(options=DELIVERY_METHODS, value=DELIVERY_METHODS, description="transport",
                                    rows=2),
        "policies": w.SelectMultiple(options=POLICIES, value=POLICIES, description="policy", rows=3),
        "events": w.IntSlider(value=400, min=100, max=2000, step=50, description="orders"),
        "work_ms": w.FloatSlider(value=10.0, min=2.0, max=50.0, step=1.0, description="work (ms)"),
        "kill_after_commit_s": w.FloatSlider(value=0.1, min=0.02, max=0.4, step=0.02,
                                             description="kill after (s)"),
    }

    def run(methods, policies, events, work_ms, kill_after_commit_s):
        return delivery_guarantees(lab, methods=list(methods), policies=list(policies), events=events,
                                   work_ms=work_ms, kill_after_commit_s=kill_after_commit_s, quick=False,
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
