"""Widgets that rerun an experiment with other settings (notebooks 02 onwards).

A widget only calls an experiment function and a chart function; it measures
nothing itself. While it runs, its Run button is disabled; what went wrong (a
refused setting, a warning about units, a failed role) is written into its output
area, never swallowed. Import needs ipywidgets (installed with the course).
"""

from __future__ import annotations

import warnings

import ipywidgets as w

from edalab._errors import EdalabError
from edalab.experiments.polling_vs_push import METHODS, POLL_METHOD, polling_vs_push
from edalab.plots.polling import polling_vs_push_dashboard

__all__ = ["polling_vs_push_widget"]


def polling_vs_push_widget(lab) -> w.VBox:
    """Pick poll intervals, methods, event count and rate; press Run to measure and chart (notebook 02).

    The returned box has ``run_button`` and ``output`` attributes (tests press the
    button with ``box.run_button.click()`` and read ``box.output.outputs``).
    """
    intervals = w.SelectMultiple(options=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                                 value=(0.05, 0.2, 1.0), description="intervals (s)", rows=5)
    methods = w.SelectMultiple(options=METHODS, value=(POLL_METHOD, "long-poll", "redis-pubsub", "kafka"),
                               description="methods", rows=7)
    events = w.IntSlider(value=60, min=10, max=500, step=10, description="events")
    rate = w.FloatLogSlider(value=20, base=10, min=0, max=2.5, description="events/s")
    run = w.Button(description="Run", button_style="primary", icon="play")
    out = w.Output()

    def on_run(_button=None) -> None:
        import matplotlib.pyplot as plt

        run.disabled = True
        out.clear_output()
        out.append_stdout(f"Running {len(methods.value)} method(s), {events.value} events each at "
                          f"{rate.value:.3g} events/s...\n")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = polling_vs_push(lab, poll_intervals_s=sorted(intervals.value),
                                         methods=list(methods.value), events=events.value,
                                         rate_per_s=rate.value, quick=False, progress=False)
            for warning in caught:
                out.append_stderr(f"Warning: {warning.message}\n")
            figure = polling_vs_push_dashboard(result)
            out.append_display_data(figure)
            plt.close(figure)  # shown once, in the output area
            out.append_display_data(result.table())
        except EdalabError as error:  # a setting refused, a role that failed: the message says what to do
            out.append_stderr(f"{type(error).__name__}: {error}\n")
        except Exception as error:  # noqa: BLE001 - anything else is shown too, not lost in a log
            out.append_stderr(f"Unexpected {type(error).__name__}: {error}\n")
        finally:
            run.disabled = False

    run.on_click(on_run)
    box = w.VBox([w.HBox([intervals, methods]), events, rate, run, out])
    box.run_button, box.output = run, out
    return box
