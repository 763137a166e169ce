"""The one widget shape of the course: settings, a Run button, an output area.

Every experiment's widget (notebooks 02 onwards) is built by :func:`experiment_widget`,
so they all behave alike: while a run goes on the Run button is disabled; what went
wrong (a refused setting, a unit warning, a failed role) is written into the output
area, never swallowed; the widget measures nothing itself, it only calls an
experiment function and a chart function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from edalab._errors import EdalabError
from edalab.widgets._progress import in_output_area

__all__ = ["experiment_widget", "show_figure"]


def experiment_widget(controls: Mapping[str, w.ValueWidget], run: Callable[..., Any],
                      show: Callable[[Any, w.Output], None], *,
                      describe: Callable[..., str] | None = None) -> w.VBox:
    """A box of ``controls`` and a Run button that calls ``run(**values)`` then ``show(result, out)``.

    Args:
        controls: setting name -> ipywidget; the names are ``run``'s keyword arguments.
        run: runs the experiment with the chosen settings and returns its result.
        show: draws the result into the output area (``out.append_display_data(...)``).
        describe: one line saying what is about to run, from the same settings.

    The returned box has ``run_button``, ``output`` and ``controls`` attributes: tests
    set ``box.controls[name].value``, press ``box.run_button.click()`` and read
    ``box.output.outputs``.
    """
    button = w.Button(description="Run", button_style="primary", icon="play")
    out = w.Output()

    def on_run(_button=None) -> None:
        button.disabled = True
        out.clear_output()
        values = {name: control.value for name, control in controls.items()}
        if describe is not None:
            out.append_stdout(describe(**values) + "\n")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # the run's progress bar shows under the button, not in JupyterLab's log
                result = in_output_area(out, lambda: run(**values))
            for warning in caught:
                # What the learner can act on (a unit mix-up), not libraries' deprecation notes.
                if not issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
                    out.append_stderr(f"Warning: {warning.message}\n")
            show(result, out)
        except EdalabError as error:  # a setting refused, a role that failed: the message says what to do
            out.append_stderr(f"{type(error).__name__}: {error}\n")
        except Exception as error:  # noqa: BLE001 - anything else is shown too, not lost in a log
            out.append_stderr(f"Unexpected {type(error).__name__}: {error}\n")
        finally:
            button.disabled = False

    button.on_click(on_run)
    box = w.VBox([*controls.values(), button, out])
    box.run_button, box.output, box.controls = button, out, dict(controls)
    return box


def show_figure(out: w.Output, figure) -> None:
    """Put a matplotlib figure into ``out`` once (and not again below the cell)."""
    import matplotlib.pyplot as plt

    out.append_display_data(figure)
    plt.close(figure)
