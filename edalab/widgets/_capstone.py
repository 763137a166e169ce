"""Notebook 12's widget: run the restaurant both ways with another evening or kitchen outage."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.restaurant import restaurant_both_ways
from edalab.plots.capstone import restaurant_costs, restaurant_timeline
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["restaurant_widget"]


def restaurant_widget(lab) -> w.VBox:
    """Pick how many orders, how fast, when the kitchens die and for how long; press Run (notebook 12).

    The last run's :class:`~edalab.experiments.RestaurantResult` stays in ``box.result``
    (None before the first run), for a closer look in the next cell.
    """
    controls = {
        "orders": w.IntSlider(value=60, min=10, max=120, step=10, description="orders"),
        "speed": w.FloatSlider(value=2.0, min=0.5, max=6.0, step=0.5, description="speed (x)"),
        "kill_at_s": w.FloatSlider(value=4.0, min=0.0, max=30.0, step=0.5, description="kill at (s)"),
        "down_s": w.FloatSlider(value=3.0, min=0.5, max=20.0, step=0.5, description="down for (s)"),
    }

    def run(orders, speed, kill_at_s, down_s):
        return restaurant_both_ways(lab, orders=orders, speed=speed, kill_at_s=kill_at_s, down_s=down_s,
                                    quick=False)

    def show(result, out):
        import matplotlib.pyplot as plt

        box.result = result
        fig = plt.figure(figsize=(12, 7))
        top = fig.add_subplot(2, 1, 1)
        restaurant_timeline(result, top)
        restaurant_costs(result, (fig.add_subplot(2, 2, 3), fig.add_subplot(2, 2, 4)))
        fig.tight_layout()
        show_figure(out, fig)
        out.append_display_data(result.summary)

    box = experiment_widget(controls, run, show, describe=lambda orders, speed, kill_at_s, down_s: (
        f"Running {orders} orders {speed:g}x faster through both restaurants; the kitchens die at "
        f"{kill_at_s:g} s for {down_s:g} s..."))
    box.result = None
    return box
