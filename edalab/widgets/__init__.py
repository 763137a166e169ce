"""Widgets that rerun an experiment with other settings (notebooks 01 onwards).

One module per experiment, all built by :func:`experiment_widget` (``_base.py``):
settings, a Run button disabled while running, errors shown in the output area.
A widget only calls an experiment function and a chart function; it measures
nothing itself. Import needs ipywidgets (installed with the course).
"""

from edalab.widgets._base import experiment_widget
from edalab.widgets._waiter import waiter_widget  # 01
from edalab.widgets._polling import polling_vs_push_widget  # 02
from edalab.widgets._fanout import competing_consumers_widget, fan_out_widget  # 03
from edalab.widgets._downtime import listener_down_widget  # 04
from edalab.widgets._webhooks import webhook_outage_widget  # 05
from edalab.widgets._rest import paging_widget  # 06
from edalab.widgets._topology import service_chain_widget  # 07
from edalab.widgets._broker import broker_outage_widget  # 08
from edalab.widgets._delivery import delivery_widget  # 09
from edalab.widgets._event_content import event_content_widget  # 10
from edalab.widgets._scale import many_clients_widget  # 11
from edalab.widgets._capstone import restaurant_widget  # 12

__all__ = ["experiment_widget", "waiter_widget", "polling_vs_push_widget", "fan_out_widget",
           "competing_consumers_widget", "listener_down_widget", "webhook_outage_widget", "paging_widget",
           "service_chain_widget", "broker_outage_widget", "delivery_widget", "event_content_widget", "many_clients_widget", "restaurant_widget"]
