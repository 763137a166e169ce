"""Notebook 06's widget: rerun paging under inserts with other sizes, rates and page pauses."""

from __future__ import annotations

import ipywidgets as w

from edalab.experiments.paging import paging_under_inserts
from edalab.plots.rest_is_right import paging_bars
from edalab.widgets._base import experiment_widget, show_figure

__all__ = ["paging_widget"]


def paging_widget(lab) -> w.VBox:
    """Pick records, page size, insert rate and the client's pause per page; Run measures and charts."""
    controls = {
        "records": w.IntSlider(value=500, min=50, max=5000, step=50, description="records"),
        "limit": w.IntSlider(value=20, min=1, max=200, description="page size"),
        "insert_rate_per_s": w.FloatSlider(value=40, min=0, max=200, step=5, description="inserts/s"),
        "page_pause_s": w.FloatSlider(value=0.05, min=0, max=0.5, step=0.01, description="pause/page (s)"),
    }

    def run(records, limit, insert_rate_per_s, page_pause_s):
        return paging_under_inserts(lab, records=records, limit=limit, insert_rate_per_s=insert_rate_per_s,
                                    page_pause_s=page_pause_s, quick=False)

    def show(result, out):
        show_figure(out, paging_bars(result))
        out.append_display_data(result.summary)

    return experiment_widget(controls, run, show, describe=lambda records, limit, insert_rate_per_s, **_: (
        f"Reading {records} records in pages of {limit} while {insert_rate_per_s:g} records/s are added..."))
