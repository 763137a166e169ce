"""Experiments: functions that run real roles on real servers and return result objects.

Each returns a result with raw ``samples`` and a ``summary`` table; charts live in
:mod:`edalab.plots`, widgets in :mod:`edalab.widgets`.
"""

from __future__ import annotations

from pathlib import Path

from importlib import import_module

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
    # 10
    "notification_vs_state": "event_content", "EventContentResult": "event_content", "rebuild_by_replay": "_event_sourcing", "RebuildResult": "_event_sourcing", "check_compatibility": "_event_fold", "ITEM_ADDED_SCHEMAS": "_event_fold", "apply_order_event": "_event_fold", "read_item_added_v1": "_event_fold",
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

CLI_EXPERIMENTS = ("polling-vs-push",)


def run_cli_experiment(name: str, out: Path, quick: bool = False) -> int:
    """``edalab run NAME --out DIR``: run, then write results.csv, summary.csv and PNG charts."""
    import matplotlib

    matplotlib.use("Agg")
    import edalab
    from edalab import plots
    from edalab._errors import ConfigError

    if name not in CLI_EXPERIMENTS:
        raise ConfigError(f"Unknown experiment {name!r}; choose from {', '.join(CLI_EXPERIMENTS)}.")
    out.mkdir(parents=True, exist_ok=True)
    plots.use_course_style()
    from edalab.experiments.polling_vs_push import polling_vs_push

    with edalab.start() as lab:
        result = polling_vs_push(lab, quick=quick or None, run_dir=out / "traces")
    result.samples.to_csv(out / "results.csv", index=False)
    result.summary.to_csv(out / "summary.csv", index=False)
    charts = {"latency_vs_interval": plots.latency_vs_interval, "latency_cdf": plots.latency_cdf,
              "requests_per_event": plots.requests_per_event, "cpu_per_role": plots.cpu_per_role}
    import matplotlib.pyplot as plt

    for chart, draw in charts.items():
        fig, ax = plt.subplots(figsize=(9, 4.5))
        draw(result, ax)
        fig.savefig(out / f"{chart}.png", dpi=110, bbox_inches="tight")  # the legend sits outside
        plt.close(fig)
    print(result.table().to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"HTTP round trip {result.rtt_ms:.2f} ms; polling model max relative error "
          f"{result.model_max_rel_error():.1%}")
    print(f"Wrote {out}/results.csv, summary.csv and {len(charts)} charts.")
    return 0
