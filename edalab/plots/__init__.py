"""Charts for the course: each function draws one result object (notebooks 00-12).

Chart functions take a result and an optional matplotlib ``Axes``, draw, and return
the ``Axes`` (or a Figure for dashboards); they never run experiments. One module
per experiment; everything public is re-exported here, so a notebook writes
``edalab.plots.lag_panels(result)``.
"""

from edalab.plots._style import (METHOD_COLORS, METHOD_LINESTYLES, METHOD_MARKERS, axes, legend_outside, method_color,
                                 poll_interval_colors, use_course_style)
from edalab.plots.waiter import calls_per_order, delay_per_order, order_timeline  # 01
from edalab.plots.polling import (cpu_per_role, latency_cdf, latency_vs_interval,  # 02
                                  polling_vs_push_dashboard, requests_per_event)
from edalab.plots.fanout import (events_per_member, fan_out_deliveries, key_routing,  # 03
                                 publish_time_vs_services, rebalance_latency, rebalance_timeline)
from edalab.plots.downtime import lag_panels, outcome_bars, replay_bars, timeline_panels  # 04
from edalab.plots.webhooks import (fan_out_cost, outage_outcomes, outage_timeline,  # 05
                                   slow_subscriber, webhook_delay)
from edalab.plots.rest_is_right import (call_latency_bars, call_timeline, emit_latency_bars,  # 06
                                        log_loss_bars, paging_bars)
from edalab.plots.topology import chain_outcomes, chain_timeline, scaling_lag, service_graph_chart  # 07
from edalab.plots.broker_outage import (availability_chart, broker_outage_counts,  # 08
                                        broker_outage_timeline, survival_bars)
from edalab.plots.delivery import charges_per_order, delivery_outcomes, queue_vs_log_bars, retry_delays  # 09
from edalab.plots.event_content import bytes_per_update, read_model_lag, rebuild_times, source_down_copies, source_load, stale_window  # 10
from edalab.plots.scale import agreement_chart, partitions_chart, run_crossover, scale_crossover, staleness_chart  # 11
from edalab.plots.capstone import VERDICT_COLORS, restaurant_costs, restaurant_timeline, verdict_chart  # 12

__all__ = [
    # course-wide style
    "use_course_style", "axes", "legend_outside", "poll_interval_colors", "method_color",
    "METHOD_COLORS", "METHOD_LINESTYLES", "METHOD_MARKERS",
    # 01
    "calls_per_order", "delay_per_order", "order_timeline",
    # 02
    "cpu_per_role", "latency_cdf", "latency_vs_interval", "polling_vs_push_dashboard", "requests_per_event",
    # 03
    "events_per_member", "fan_out_deliveries", "key_routing", "publish_time_vs_services",
    "rebalance_latency", "rebalance_timeline",
    # 04
    "lag_panels", "outcome_bars", "replay_bars", "timeline_panels",
    # 05
    "fan_out_cost", "outage_outcomes", "outage_timeline", "slow_subscriber", "webhook_delay",
    # 06
    "call_latency_bars", "call_timeline", "emit_latency_bars", "log_loss_bars", "paging_bars",
    # 07
    "chain_outcomes", "chain_timeline", "scaling_lag", "service_graph_chart",
    # 08
    "availability_chart", "broker_outage_counts", "broker_outage_timeline", "survival_bars",
    "charges_per_order", "delivery_outcomes", "queue_vs_log_bars", "retry_delays",  # 09
    "bytes_per_update", "read_model_lag", "rebuild_times", "source_down_copies", "source_load", "stale_window",  # 10
    "agreement_chart", "partitions_chart", "run_crossover", "scale_crossover", "staleness_chart",  # 11
    # 12
    "restaurant_costs", "restaurant_timeline", "verdict_chart", "VERDICT_COLORS",
]
