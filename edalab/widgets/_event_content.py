"""Notebook 10's widget: rerun event notification vs event-carried state with other subscriber counts and rates."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.event_content import notification_vs_state
from edalab.plots.event_content import source_load, stale_window
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["event_content_widget"]

_COUNTS = {"1": [1], "1, 2": [1, 2], "1, 2, 4": [1, 2, 4], "1, 3, 6": [1, 3, 6]}


def event_content_widget(lab) -> w.VBox:
    """Pick the subscriber counts, the update rate and the step length; Run measures and charts (notebook 10)."""
    controls = {
        "counts": w.Dropdown(options=list(_COUNTS), value="1, 2, 4", description="subscribers"),
        "rate_per_s": w.FloatSlider(value=20.0, min=2.0, max=60.0, step=2.0, description="updates/s"),
        "step_s": w.FloatSlider(value=3.0, min=1.0, max=10.0, step=0.5, description="step (s)"),
    }

    def run(counts, rate_per_s, step_s):
        return notification_vs_state(lab, subscriber_counts=_COUNTS[counts], rate_per_s=rate_per_s, step_s=step_s,
                                     quick=False, progress=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
        source_load(result, left)
        stale_window(result, right)
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.summary[["method", "subscribers", "phase", "updates", "callbacks", "failed",
                                                "bytes_per_update", "latency_p50_ms"]])

    return experiment_widget(controls, run, show, describe=lambda counts, rate_per_s, step_s: (
        f"Subscribers {counts}, {rate_per_s:g} order updates/s, {step_s:g} s per step, then the API down..."))
