"""Notebook 02's widget: rerun polling vs push with other intervals, methods and rates."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.polling_vs_push import METHODS, POLL_METHOD, polling_vs_push
from edalab.plots.polling import polling_vs_push_dashboard
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["polling_vs_push_widget"]


def polling_vs_push_widget(lab) -> w.VBox:
    """Pick poll intervals, methods, event count and rate; press Run to measure and chart (notebook 02)."""
    controls = {
        "poll_intervals_s": w.SelectMultiple(options=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                                             value=(0.05, 0.2, 1.0), description="intervals (s)", rows=5),
        "methods": w.SelectMultiple(options=METHODS, value=(POLL_METHOD, "long-poll", "redis-pubsub", "kafka"),
                                    description="methods", rows=7),
        "events": w.IntSlider(value=60, min=10, max=500, step=10, description="events"),
        "rate_per_s": w.FloatLogSlider(value=20, base=10, min=0, max=2.5, description="events/s"),
    }

    def run(poll_intervals_s, methods, events, rate_per_s):
        return polling_vs_push(lab, poll_intervals_s=sorted(poll_intervals_s), methods=list(methods),
                               events=events, rate_per_s=rate_per_s, quick=False, progress=False)

    def show(result, out):
        show_figure(out, polling_vs_push_dashboard(result))
        out.append_display_data(result.table())

    return experiment_widget(controls, run, show, describe=lambda methods, events, rate_per_s, **_: (
        f"Running {len(methods)} method(s), {events} events each at {rate_per_s:.3g} events/s..."))
