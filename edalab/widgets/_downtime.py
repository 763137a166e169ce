"""Notebook 04's widget: take billing down for longer, crash it, or bill slower."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.downtime import METHODS, STOP_MODES, listener_down
from edalab.plots.downtime import lag_over_time, outcome_bars
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["listener_down_widget", "COLUMNS"]

#: the summary columns the widget shows under its chart
COLUMNS = ["produced", "sent_while_down", "lost", "delivered_late", "duplicated", "away_s",
           "latency_late_mean_ms", "catch_up_s"]


def listener_down_widget(lab, billing=None) -> w.VBox:
    """Pick methods, stop modes, downtime, rate and billing's work per order; Run measures (notebook 04).

    ``billing`` is the billing role body (notebook 04's cell); None runs the course's.
    The phases around the outage (normal work before, orders after) are the
    experiment's defaults, shorter in quick mode (``EDALAB_QUICK=1``).
    """
    controls = {
        "methods": w.SelectMultiple(options=METHODS, value=METHODS, description="methods", rows=3),
        "stop_modes": w.SelectMultiple(options=STOP_MODES, value=("clean",), description="stop", rows=2),
        "down_s": w.FloatSlider(value=4.0, min=0.5, max=20.0, step=0.5, description="down (s)"),
        "rate_per_s": w.FloatSlider(value=20.0, min=1.0, max=45.0, step=1.0, description="orders/s"),
        "work_ms": w.FloatSlider(value=20.0, min=0.0, max=100.0, step=5.0, description="work (ms)"),
    }

    def run(methods, stop_modes, down_s, rate_per_s, work_ms):
        kwargs = {} if billing is None else {"billing": billing}
        return listener_down(
            lab, methods=list(methods), stop_modes=list(stop_modes), down_s=down_s, rate_per_s=rate_per_s,
            work_ms=work_ms, quick=None, progress=True, **kwargs)

    def show(result, out):
        import matplotlib.pyplot as plt

        methods, mode = result.params["methods"], result.params["stop_modes"][0]
        fig, axes = plt.subplots(1, 1 + len(methods), figsize=(4.4 * (1 + len(methods)), 3.8))
        outcome_bars(result, axes[0])
        for method, ax in zip(methods, axes[1:]):
            lag_over_time(result, method, mode, ax)
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.summary[COLUMNS].round(2))

    box = experiment_widget(controls, run, show, describe=lambda methods, stop_modes, down_s, rate_per_s, **_: (
        f"Billing goes away for {down_s:g} s ({', '.join(stop_modes)}) at {rate_per_s:g} orders/s on "
        f"{len(methods)} method(s)..."))
    return box
