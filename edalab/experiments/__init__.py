"""Experiments: functions that run real roles on real servers and return result objects.

Each returns a result with raw ``samples`` and a ``summary`` table; charts live in
:mod:`edalab.plots`, widgets in :mod:`edalab.widgets`.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

# Experiments load on first use: a role whose body lives in one experiment module
# (billing, the kitchen) should not import every other experiment, pandas and
# matplotlib when its process starts.
_WHERE = {
    # 01
    "waiter_analogy": "waiter", "WaiterResult": "waiter",
    # 02 (polling_vs_push itself is bound below)
    "PollingVsPushResult": "_polling_analysis",
    # 03
    "fan_out": "fanout", "competing_consumers": "competing", "rebalance": "rebalancing",
    "rest_vs_broker": "rest_calls",
    # 04
    "listener_down": "downtime", "DowntimeResult": "downtime", "replay": "downtime",
    # 05
    "webhook_outage": "webhooks", "adding_subscribers": "webhooks", "webhook_sender": "webhooks",
    # 06
    "authorization_check": "request_reply", "RequestReplyResult": "request_reply",
    "log_per_request": "fire_and_forget", "FireAndForgetResult": "fire_and_forget",
    "paging_under_inserts": "paging", "PagingResult": "paging",
    # 07
    "chain_vs_events": "service_chain", "ChainResult": "service_chain",
    "scale_consumers": "service_chain", "ScaleResult": "service_chain",
    # 08
    "broker_goes_down": "broker_outage", "OutageResult": "broker_outage",
    "what_survives": "_survival", "SurvivalResult": "_survival",
    "replication_availability": "_availability", "chain_availability": "_availability",
    "replicated_cluster": "_availability",
    "delivery_guarantees": "delivery", "DeliveryResult": "delivery", "retry_strategies": "dead_letters", "RetryResult": "dead_letters", "queue_vs_log": "_delivery_queue", "QueueLogResult": "_delivery_queue",  # 09
    # 10
    "notification_vs_state": "event_content", "EventContentResult": "event_content", "rebuild_by_replay": "_event_sourcing", "RebuildResult": "_event_sourcing", "check_compatibility": "_event_fold", "ITEM_ADDED_SCHEMAS": "_event_fold", "apply_order_event": "_event_fold", "read_item_added_v1": "_event_fold",
    "many_clients_sweep": "many_clients", "ManyClientsResult": "_scale_analysis", "SCALE_METHODS": "many_clients",  # 11
    "partitions_x_consumers": "partitions_scaling", "PartitionsResult": "partitions_scaling",
    "poll_client": "_scale_clients", "sse_client": "_scale_clients", "long_poll_client": "_scale_clients",
    # 12
    "restaurant_both_ways": "restaurant", "RestaurantResult": "restaurant", "add_event_restaurant": "restaurant",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"edalab.experiments.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'edalab.experiments' has no attribute {name!r}")


# Bound now, not lazily: the function shares its module's name, and once the submodule
# is imported (by a role, a benchmark) the package attribute would be the module and
# `edalab.experiments.polling_vs_push(lab)` would fail. The module is light to import.
from edalab.experiments.polling_vs_push import polling_vs_push  # noqa: E402


__all__ = ["polling_vs_push", *_WHERE, "run_cli_experiment", "CLI_EXPERIMENTS"]

from edalab.experiments._catalog import names as _catalog_names  # noqa: E402

#: the names ``edalab run`` knows, one per entry of :data:`edalab.experiments._catalog.CATALOG`
CLI_EXPERIMENTS = tuple(_catalog_names())


def run_cli_experiment(name: str, out: Path, quick: bool = False, settings: list[str] | None = None,
                       json_to: str | None = None) -> int:
    """``edalab run NAME --out DIR``: run one experiment of the catalog, write its CSVs and PNG
    charts into ``out`` (see :mod:`edalab.experiments._catalog`, where experiments are added).

    ``settings``: ``["key=value", ...]`` from ``--set``; ``json_to``: ``"-"`` or a file."""
    from edalab.experiments._catalog import find, parse_settings, run_experiment

    entry = find(name)  # an unknown name fails before settings are read
    run_experiment(entry.name, out, quick=quick, settings=parse_settings(entry, settings), json_to=json_to)
    return 0
