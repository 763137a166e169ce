"""Notebook 07's widget: kill billing in the HTTP chain and in the event version with other settings."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.service_chain import EVENT_METHODS, chain_vs_events
from edalab.plots.topology import chain_outcomes, chain_timeline
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["service_chain_widget"]


def service_chain_widget(lab) -> w.VBox:
    """Pick the broker, rate, duration, when billing dies and for how long; press Run (notebook 07)."""
    controls = {
        "method": w.Dropdown(options=EVENT_METHODS, value="kafka", description="broker"),
        "rate_per_s": w.FloatSlider(value=20, min=2, max=60, step=2, description="orders/s"),
        "duration_s": w.FloatSlider(value=12, min=4, max=40, step=1, description="duration (s)"),
        "kill_at_s": w.FloatSlider(value=3, min=0, max=20, step=0.5, description="kill at (s)"),
        "down_s": w.FloatSlider(value=4, min=0.5, max=20, step=0.5, description="down for (s)"),
    }

    def run(method, rate_per_s, duration_s, kill_at_s, down_s):
        return chain_vs_events(lab, method=method, rate_per_s=rate_per_s, duration_s=duration_s,
                               kill_at_s=kill_at_s, down_s=down_s, quick=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
        chain_outcomes(result, left)
        chain_timeline(result, right)
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.summary)

    return experiment_widget(controls, run, show, describe=lambda method, rate_per_s, duration_s, kill_at_s,
                             down_s: (f"Running the HTTP chain and {method} side by side for {duration_s:g} s at "
                                      f"{rate_per_s:g} orders/s; billing dies at {kill_at_s:g} s for {down_s:g} s..."))
