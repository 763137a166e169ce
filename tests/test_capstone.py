"""Notebook 12: the restaurant both ways on real servers, its parameter checks, the loyalty
exercise on a right and a wrong body (and the judge on missed orders), the verdict chart and the widget."""

from __future__ import annotations

import warnings

import matplotlib
import pytest

from conftest import press_run
from edalab import ConfigError, course, plots, widgets
from edalab._checks import EdalabWarning
from edalab.exercises import n12
from edalab.experiments.restaurant import evening, restaurant_both_ways

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def restaurant(lab):
    """One short evening through the widget's Run button (the widget and the experiment at once)."""
    box = widgets.restaurant_widget(lab)
    for name, value in dict(orders=14, speed=3.0, kill_at_s=0.8, down_s=0.8).items():
        box.controls[name].value = value
    shown, errors = press_run(box)
    return box.result, shown, errors


def test_the_widget_runs_both_restaurants_and_shows_the_summary(restaurant):
    result, shown, errors = restaurant
    assert errors == "" and result is not None
    assert "calls_per_order" in shown and "kafka" in shown


def test_the_kitchen_outage_fails_rest_orders_and_delays_event_orders(restaurant):
    result = restaurant[0]
    rest, kafka = result.row("rest"), result.row("kafka")
    assert rest["orders"] == kafka["orders"] == 14
    assert rest["failed"] > 0                               # no kitchen, no order
    assert kafka["failed"] == 0 and kafka["lost"] == 0      # every order accepted, and served
    assert kafka["waited"] > 0                              # ... some after the kitchen came back
    assert kafka["served"] + kafka["waited"] == 14
    for method in ("rest", "kafka"):
        killed, back = result.kitchen_away_s[method]
        assert 0.7 < killed < back                          # killed on the timeline, ready again later
    failed = result.samples[(result.samples["method"] == "rest") & (result.samples["outcome"] == "failed")]
    assert (failed["placed_s"] > result.kitchen_away_s["rest"][0] - 3.0).all()  # not before the outage
    assert rest["fetches_per_order"] == 0 and kafka["fetches_per_order"] > 0
    assert rest["calls_per_order"] > 1 and kafka["calls_per_order"] >= 2   # the guest's call and more
    assert set(result.cpu["service"]) == {"orders", "stock", "kitchen", "billing"}
    served = result.samples[result.samples["served_s"].notna()]
    assert (served["latency_ms"] >= served["cook_ms"] - 5).all()  # nobody is served before it is cooked
    ax = plots.restaurant_timeline(result)
    plots.restaurant_costs(result)
    assert ax.get_title()


def test_parameters_are_checked_before_anything_starts(lab):
    with pytest.raises(ConfigError, match="orders"):
        restaurant_both_ways(lab, orders=0)
    with pytest.raises(ConfigError, match="orders"):
        restaurant_both_ways(lab, orders="many")
    with pytest.raises(ConfigError, match="orders"):
        restaurant_both_ways(lab, orders=500)
    with pytest.raises(ConfigError, match="speed"):
        restaurant_both_ways(lab, speed=-1)
    with pytest.raises(ConfigError, match="kill_at_s"):
        restaurant_both_ways(lab, orders=10, kill_at_s=600)
    with pytest.warns(EdalabWarning, match="speed"), pytest.raises(ConfigError, match="down_s"):
        restaurant_both_ways(lab, speed=100, down_s=0)
    rows = evening(3, 2.0)
    assert [r["order_id"] for r in rows] == [1, 2, 3] and rows[0]["amount_eur"] == 37.0  # 2 x salmon


def test_the_loyalty_check_accepts_the_reference_and_refuses_double_credits(lab):
    check = n12.check_loyalty(lab, n12.credits_every_delivery, orders=14, progress=False)
    assert check.reference, check.tables["reference"]
    assert not check and "twice" in check.yours.message
    assert not check.others["in-memory dedupe"]
    assert (check.tables["reference"]["times"] == 1).all()
    assert (check.tables["yours"]["times"] >= 2).any()   # Kafka redelivered after the kill


def test_loyalty_answers_are_explained_without_a_run(lab):
    for answer in (None, "loyalty", 42):
        feedback = n12.check_loyalty(lab, answer)
        assert not feedback and feedback.message
    expected = {1: 37, 2: 12}
    assert n12.judge_ledger({b"1": b"37", b"2": b"12"}, expected)[0]
    assert "twice" in n12.judge_ledger({b"1": b"74", b"2": b"12"}, expected)[0].message
    assert "never credited" in n12.judge_ledger({b"1": b"37"}, expected)[0].message  # a body that misses one
    assert "euro" in n12.judge_ledger({b"1": b"38", b"2": b"12"}, expected)[0].message
    assert "def loyalty" in n12.solution() and "HSETNX" in n12.hint()


def test_the_verdict_table_and_chart_say_not_run_yet(tmp_path, monkeypatch):
    monkeypatch.setenv("EDALAB_STATE_DIR", str(tmp_path))
    course.record_verdict("12", "holds, with limits", "a test run")
    table = course.verdicts()
    assert (table["verdict"] == "not run yet").sum() == len(table) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every verdict has its colour
        ax = plots.verdict_chart(table)
    assert len(ax.patches) == len(table)
