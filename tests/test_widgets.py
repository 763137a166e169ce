"""The widgets of notebooks 01, 03 and 04: press Run once with tiny settings, read the output.

Each test runs its experiment once (real servers, the session's lab) and checks on that one
output: a chart and a table were shown, the button was disabled while it ran
(conftest.press_run), and a refused setting is written into the output area, not lost.
"""

from __future__ import annotations

from conftest import press_run


def table_html(box) -> str:
    """The HTML of the tables the output area shows (text/plain cuts wide tables short)."""
    return " ".join(o.get("data", {}).get("text/html", "") for o in box.output.outputs)


def test_waiter_widget_shows_calls_and_delays_and_errors(lab):
    from edalab.widgets import waiter_widget

    box = waiter_widget(lab)
    c = box.controls
    c["methods"].value = ("rest-poll", "redis-pubsub")
    c["orders"].value, c["cook_time_mean_s"].value = 3, 0.3
    c["poll_interval_s"].value, c["order_rate_per_s"].value = 0.05, 10.0
    shown, errors = press_run(box)
    assert not errors, errors
    assert "Figure" in shown, shown  # the calls/delay chart
    table = table_html(box)
    assert "rest-poll 50 ms" in table and "redis-pubsub" in table and "calls_per_order" in table, table
    c["methods"].value = ()
    _, errors = press_run(box)
    assert "ConfigError" in errors and "methods" in errors, errors


def test_fan_out_widget_shows_each_service_and_errors(lab):
    from edalab.widgets import fan_out_widget

    box = fan_out_widget(lab)
    c = box.controls
    c["services"].value, c["transports"].value = ("waiter", "stock"), ("redis-pubsub",)
    c["events"].value, c["rate_per_s"].value = 5, 100
    shown, errors = press_run(box)
    assert not errors, errors
    table = table_html(box)
    assert "Figure" in shown and "waiter" in table and "stock" in table and "delivered" in table, shown
    c["services"].value = ()
    _, errors = press_run(box)
    assert "ConfigError" in errors and "services" in errors, errors


def test_competing_widget_shows_an_idle_member(lab):
    from edalab.widgets import competing_consumers_widget

    box = competing_consumers_widget(lab)
    c = box.controls
    c["members"].value, c["partitions"].value, c["keys"].value, c["events"].value = 2, 1, 3, 8
    shown, errors = press_run(box)
    assert not errors, errors
    table = table_html(box)
    assert "Figure" in shown and "worker-1" in table and "worker-2" in table, shown
    # one partition, two members: one of them got nothing (no partition in its row)
    assert "<td>()</td>" in table, table


def test_listener_down_widget_shows_outcomes_lag_and_errors(lab):
    from edalab.widgets import listener_down_widget

    box = listener_down_widget(lab)
    c = box.controls
    c["methods"].value, c["stop_modes"].value = ("redis-stream", "redis-pubsub"), ("clean",)
    c["down_s"].value, c["rate_per_s"].value, c["work_ms"].value = 0.5, 10.0, 0.0
    shown, errors = press_run(box)
    assert not errors, errors
    table = table_html(box)
    assert "Figure" in shown and "sent_while_down" in table and "redis-stream" in table, shown
    # billing slower than the orders would never catch up: refused before anything starts
    c["rate_per_s"].value, c["work_ms"].value = 20.0, 100.0
    _, errors = press_run(box)
    assert "ConfigError" in errors and "never catch up" in errors, errors
