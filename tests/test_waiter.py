"""The waiter analogy (notebook 01): the order schedule, the polling arithmetic, a small
real run of every design, its charts and the exercise check."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from edalab import ConfigError
from edalab.exercises import n01
from edalab.experiments.waiter import DESIGNS, expected_calls_per_order, restaurant_orders, waiter_analogy


def test_expected_calls_matches_simulation():
    rng = np.random.default_rng(0)
    for interval_s, cook_mean_s in ((0.25, 3.0), (0.2, 1.0), (0.3, 1.0), (1.0, 2.0)):
        cook_s = rng.uniform(0.5 * cook_mean_s, 1.5 * cook_mean_s, 200_000)
        simulated = np.ceil(cook_s / interval_s).mean()
        assert expected_calls_per_order(interval_s, cook_mean_s) == pytest.approx(simulated, rel=0.01)
    assert expected_calls_per_order(0.25, 3.0) == pytest.approx(12.5)


def test_restaurant_orders_are_reproducible_and_in_range():
    orders = restaurant_orders(20, 5.0, 2.0, seed=3, prefix="x")
    assert orders == restaurant_orders(20, 5.0, 2.0, seed=3, prefix="x")
    assert [o["key"] for o in orders][:2] == ["x-000", "x-001"]
    assert all(1.0 <= o["cook_s"] <= 3.0 for o in orders)
    assert all(o["ready_at_s"] == pytest.approx(o["placed_at_s"] + o["cook_s"]) for o in orders)
    with pytest.raises(ConfigError):
        restaurant_orders(0, 5.0, 2.0)


def test_unknown_design_is_refused(lab):
    with pytest.raises(ConfigError, match="Unknown designs"):
        waiter_analogy(lab, designs=["carrier-pigeon"], progress=False)


@pytest.fixture(scope="module")
def small_run(lab, tmp_path_factory):
    return waiter_analogy(lab, orders=5, poll_intervals_s=[0.1], cook_time_mean_s=0.5,
                          order_rate_per_s=8.0, run_dir=tmp_path_factory.mktemp("waiter"), progress=False)


def test_every_design_hears_every_order(small_run):
    s = small_run.summary.set_index("design")
    assert list(s.index) == list(DESIGNS)
    assert (s["heard"] == 5).all() and (s["lost"] == 0).all()
    assert len(small_run.samples) == 5 * len(DESIGNS)
    assert small_run.samples["delay_ms"].notna().all()
    assert (small_run.samples["delay_ms"] > 0).all()  # nobody knows before the food is ready


def test_polling_costs_what_the_model_says_and_push_costs_one_subscription(small_run):
    rest = small_run.row("rest-poll")
    assert abs(rest["calls_per_order"] - rest["model_calls_per_order"]) <= 1.0
    assert rest["requests_total"] == len(small_run.asks)
    assert small_run.asks.groupby("order")["ready"].sum().eq(1).all()  # exactly one "yes" per order
    pubsub = small_run.row("redis-pubsub")
    assert pubsub["requests_total"] == 1 and pubsub["requests_open"] == 0
    assert rest["calls_per_order"] > 2 * pubsub["calls_per_order"]
    assert rest["delay_mean_ms"] > pubsub["delay_mean_ms"]
    kafka = small_run.row("kafka")
    assert kafka["requests_open"] > 0  # a Kafka consumer fetches: it polls the broker


def test_kitchen_log_is_consistent(small_run):
    k = small_run.kitchen
    assert len(k) == 5 * len(DESIGNS)
    assert (k["ready_at_s"] > k["placed_at_s"]).all()
    assert (k["stored_at_s"] >= k["ready_at_s"]).all()


def test_charts_draw(small_run):
    import matplotlib.pyplot as plt

    from edalab.plots.waiter import calls_per_order, delay_per_order, order_timeline, pick_order

    ax = calls_per_order(small_run)
    assert len(ax.get_lines()) >= len(DESIGNS)
    delay_per_order(small_run)
    fig = order_timeline(small_run)
    assert len(fig.axes) == len(DESIGNS)
    assert pick_order(small_run) in set(small_run.samples["order"])
    plt.close("all")


def test_exercise_check():
    expected = n01.expected_calls()
    assert n01.check_calls_per_order(expected)
    # forgetting the half call is close enough
    assert n01.check_calls_per_order(n01.COOK_TIME_MEAN_S / n01.POLL_INTERVAL_S)
    assert not n01.check_calls_per_order(1)
    assert not n01.check_calls_per_order(expected * 2)
    assert not n01.check_calls_per_order("many")
    assert "check_calls_per_order" in n01.question()
    assert n01.hint() and f"{expected:.2f}" in n01.solution()
