"""Run an experiment with its progress bar inside a widget's output area (every widget)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

__all__ = ["in_output_area"]


def in_output_area(output: w.Output, call: Callable[[], Any]) -> Any:
    """``call()`` with what it displays (tqdm's notebook bar) shown in ``output``.

    Why: a Run button's callback has no cell of its own, so a bar displayed from it would
    land in JupyterLab's log, not under the button. The bar goes into an area of its own,
    emptied when the run ends: a closed bar left in the output would read "Loading widget...".
    Why not a plain ``with box.output:``: in a kernel that block swallows an exception and
    prints its traceback; here the error goes on to
    :func:`~edalab.widgets.experiment_widget`, which writes it as one line.
    """
    area = w.Output()
    output.append_display_data(area)
    failed: list[BaseException] = []
    try:
        with area:
            try:
                return call()
            except BaseException as error:  # noqa: BLE001 - raised again below, outside the block
                failed.append(error)
    finally:
        area.clear_output()
    raise failed[0]
