"""Notebook 01's widget: rerun the restaurant with other orders, cook times and poll intervals."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.waiter import METHODS, waiter_analogy
from edalab.plots.waiter import calls_per_order, delay_per_order
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["waiter_widget"]

#: the summary columns the widget shows under its chart
COLUMNS = ["label", "orders", "heard", "calls_per_order", "model_calls_per_order", "latency_mean_ms",
           "latency_p90_ms", "requests_total", "empty_responses"]


def waiter_widget(lab, waiter=None) -> w.VBox:
    """Pick methods, orders, cook time, poll interval and order rate; Run measures and charts (notebook 01).

    ``waiter`` is the event methods' listener body (notebook 01's cell); None runs the course's.
    """
    controls = {
        "methods": w.SelectMultiple(options=METHODS, value=METHODS, description="methods", rows=3),
        "orders": w.IntSlider(value=20, min=1, max=100, description="orders"),
        "cook_time_mean_s": w.FloatSlider(value=2.0, min=0.2, max=10.0, step=0.1, description="cook (s)"),
        "poll_interval_s": w.FloatLogSlider(value=0.2, base=10, min=-2, max=0.5, description="poll every (s)"),
        "order_rate_per_s": w.FloatSlider(value=4.0, min=0.5, max=20.0, step=0.5, description="orders/s"),
    }

    def run(methods, orders, cook_time_mean_s, poll_interval_s, order_rate_per_s):
        return waiter_analogy(
            lab, methods=list(methods), orders=orders, cook_time_mean_s=cook_time_mean_s,
            poll_intervals_s=[poll_interval_s], order_rate_per_s=order_rate_per_s, waiter=waiter, quick=False,
            progress=True)

    def show(result, out):
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        calls_per_order(result, left)
        delay_per_order(result, right)
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.summary[COLUMNS])

    box = experiment_widget(controls, run, show, describe=lambda methods, orders, cook_time_mean_s, **_: (
        f"Running {len(methods)} method(s), {orders} orders each, cooking {cook_time_mean_s:g} s on average..."))
    return box
