"""Notebook 05's widget: rerun the receiver outage with another broker, outage and rate."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.webhooks import BROKERS, webhook_outage
from edalab.plots.webhooks import outage_outcomes
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["webhook_outage_widget"]


def webhook_outage_widget(lab) -> w.VBox:
    """Pick the broker, how long the receivers are down and the order rate; Run measures and charts (notebook 05)."""
    controls = {
        "broker": w.Dropdown(options=BROKERS, value="redis-stream", description="broker"),
        "down_s": w.FloatSlider(value=3.0, min=0.5, max=15.0, step=0.5, description="down (s)"),
        "rate_per_s": w.FloatSlider(value=20.0, min=1.0, max=30.0, step=1.0, description="orders/s"),
        "work_ms": w.FloatSlider(value=30.0, min=0.0, max=60.0, step=5.0, description="work (ms)"),
    }

    def run(broker, down_s, rate_per_s, work_ms):
        return webhook_outage(lab, broker=broker, down_s=down_s, rate_per_s=rate_per_s, work_ms=work_ms,
                              quick=False, progress=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.6))
        outage_outcomes(result, ax)
        show_figure(out, fig)
        out.append_display_data(result.table()[["method", "produced", "delivered", "lost", "duplicated",
                                                "sent_while_down", "latency_p50_ms", "latency_late_mean_ms"]])

    return experiment_widget(controls, run, show, describe=lambda broker, down_s, rate_per_s, **_: (
        f"Receivers down for {down_s:g} s at {rate_per_s:g} orders/s, webhook vs {broker}..."))
