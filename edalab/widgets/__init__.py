"""Widgets that rerun an experiment with other settings (notebooks 02 onwards).

One module per experiment, all built by :func:`experiment_widget` (``_base.py``):
settings, a Run button disabled while running, errors shown in the output area.
A widget only calls an experiment function and a chart function; it measures
nothing itself. Import needs ipywidgets (installed with the course).
"""

from edalab.widgets._base import experiment_widget
from edalab.widgets._polling import polling_vs_push_widget
from edalab.widgets._webhooks import webhook_outage_widget  # notebook 05
from edalab.widgets._broker import broker_outage_widget  # noqa: F401 notebook 08
from edalab.widgets._topology import service_chain_widget  # notebook 07

from edalab.widgets._rest import paging_widget  # noqa: F401 notebook 06
__all__ = ["experiment_widget", "polling_vs_push_widget"]
__all__ += ["webhook_outage_widget"]  # notebook 05
__all__ += ["service_chain_widget"]  # notebook 07
