"""Notebook 11's widget: rerun the many-clients sweep with other N, methods and intervals, and redraw the model."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.many_clients import SCALE_METHODS, many_clients_sweep
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["many_clients_widget"]


def many_clients_widget(lab=None) -> w.VBox:
    """Pick client counts, methods, poll intervals and the update rate; Run measures, calibrates and charts."""
    controls = {
        "clients": w.SelectMultiple(options=[20, 40, 80, 160, 300, 500], value=(40, 160),
                                    description="clients", rows=6),
        "methods": w.SelectMultiple(options=SCALE_METHODS, value=SCALE_METHODS, description="methods", rows=3),
        "poll_intervals_s": w.SelectMultiple(options=[0.1, 0.25, 0.5, 1.0, 2.0], value=(0.1, 0.5),
                                             description="intervals (s)", rows=5),
        "update_rate_per_s": w.FloatLogSlider(value=10, base=10, min=-0.5, max=1.5, description="updates/s"),
    }

    def run(clients, methods, poll_intervals_s, update_rate_per_s):
        return many_clients_sweep(lab, clients=sorted(clients), methods=list(methods),
                                  poll_intervals_s=sorted(poll_intervals_s), update_rate_per_s=update_rate_per_s,
                                  quick=True, progress=False)

    def show(result, out):
        from edalab import plots, scale

        show_figure(out, plots.scale_crossover(scale.calibrate(result), result))
        out.append_display_data(result.table())

    return experiment_widget(controls, run, show, describe=lambda clients, methods, **_: (
        f"Running {len(methods)} method(s) at {len(clients)} client count(s)..."))
