"""Widgets that rerun an experiment with other settings (notebooks 02 onwards).

A widget only calls an experiment function and a chart function; it measures
nothing itself. Import needs ipywidgets (installed with the course).
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import display

from edalab.experiments.polling_vs_push import POLL_METHOD, PUSH_METHODS, polling_vs_push
from edalab.plots.polling import polling_vs_push_dashboard

__all__ = ["polling_vs_push_widget"]


def polling_vs_push_widget(lab) -> w.VBox:
    """Pick poll intervals, methods, event count and rate; press Run to measure and chart."""
    intervals = w.SelectMultiple(options=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                                 value=(0.05, 0.2, 1.0), description="intervals (s)", rows=5)
    methods = w.SelectMultiple(options=(POLL_METHOD, *PUSH_METHODS),
                               value=(POLL_METHOD, "long-poll", "redis-pubsub", "kafka"),
                               description="methods", rows=7)
    events = w.IntSlider(value=60, min=10, max=500, step=10, description="events")
    rate = w.FloatLogSlider(value=20, base=10, min=0, max=2.5, description="events/s")
    run = w.Button(description="Run", button_style="primary", icon="play")
    out = w.Output()

    def on_run(_):
        run.disabled = True
        out.clear_output()
        with out:
            try:
                result = polling_vs_push(lab, poll_intervals_s=sorted(intervals.value),
                                         methods=list(methods.value), events=events.value,
                                         rate_per_s=rate.value, quick=False)
                import matplotlib.pyplot as plt

                polling_vs_push_dashboard(result)
                plt.show()
                display(result.summary[["method", "poll_interval_s", "delivered", "lost",
                                        "latency_mean_ms", "model_mean_ms", "requests_per_event",
                                        "empty_per_event", "consumer_cpu_s"]].round(3))
            finally:
                run.disabled = False

    run.on_click(on_run)
    box = w.VBox([w.HBox([intervals, methods]), events, rate, run, out])
    return box
