"""Charts for the course: each function draws one result object (notebooks 00-12).

Chart functions take a result and an optional matplotlib ``Axes``, draw, and return
the ``Axes`` (or a Figure for dashboards); they never run experiments. One module
per experiment; everything public is re-exported here.
"""

from edalab.plots._style import (METHOD_COLORS, METHOD_LINESTYLES, METHOD_MARKERS, axes, legend_outside,
                                 poll_interval_colors, use_course_style)
from edalab.plots.polling import (
    cpu_per_role,
    latency_cdf,
    latency_vs_interval,
    polling_vs_push_dashboard,
    requests_per_event,
)
from edalab.plots.waiter import calls_per_order, delay_per_order, order_timeline
from edalab.plots.downtime import lag_panels, outcome_bars, replay_bars, timeline_panels
from edalab.plots.fanout import (events_per_member, fan_out_deliveries, key_routing,
                                  publish_time_vs_services, rebalance_latency, rebalance_timeline)

__all__ = ["calls_per_order", "delay_per_order", "order_timeline","use_course_style", "axes", "METHOD_COLORS", "latency_vs_interval", "requests_per_event",
           "cpu_per_role", "latency_cdf", "polling_vs_push_dashboard"]
__all__ += ["lag_panels", "outcome_bars", "replay_bars", "timeline_panels"]  # notebook 04
__all__ += ["events_per_member", "fan_out_deliveries", "key_routing", "publish_time_vs_services",
            "rebalance_latency", "rebalance_timeline"]  # notebook 03
__all__ += ["METHOD_LINESTYLES", "METHOD_MARKERS", "poll_interval_colors", "legend_outside"]  # course-wide style
from edalab.plots.topology import chain_outcomes, chain_timeline, scaling_lag, service_graph_chart  # noqa: E402,F401 notebook 07
__all__ += ["chain_outcomes", "chain_timeline", "scaling_lag", "service_graph_chart"]  # notebook 07
from edalab.plots.webhooks import fan_out_cost, outage_outcomes, outage_timeline, slow_subscriber, webhook_delay  # noqa: E402,F401 notebook 05
__all__ += ["fan_out_cost", "outage_outcomes", "outage_timeline", "slow_subscriber", "webhook_delay"]  # notebook 05
from edalab.plots.rest_is_right import call_latency_bars, call_timeline, emit_latency_bars, log_loss_bars, paging_bars  # noqa: E402,F401 notebook 06
__all__ += ["call_latency_bars", "call_timeline", "emit_latency_bars", "log_loss_bars", "paging_bars"]  # notebook 06
from edalab.plots.broker_outage import availability_chart, broker_outage_counts, broker_outage_timeline, survival_bars  # noqa: E402,F401 notebook 08
