"""The waiter analogy (notebook 01): the polling arithmetic, parameter checks, a small real
run of every method, a learner-written waiter body, the charts and the exercise check."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from edalab import ConfigError, RoleError
from edalab._checks import EdalabWarning
from edalab.exercises import n01
from edalab.experiments import waiter_roles
from edalab.experiments.waiter import METHODS, expected_calls_per_order, waiter_analogy

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "01_request_response_vs_events.ipynb"


def test_expected_calls_matches_simulation():
    rng = np.random.default_rng(0)
    for interval_s, cook_mean_s in ((0.25, 3.0), (0.2, 1.0), (0.3, 1.0), (1.0, 2.0)):
        cook_s = rng.uniform(0.5 * cook_mean_s, 1.5 * cook_mean_s, 200_000)
        simulated = np.ceil(cook_s / interval_s).mean()
        assert expected_calls_per_order(interval_s, cook_mean_s) == pytest.approx(simulated, rel=0.01)
    assert expected_calls_per_order(0.25, 3.0) == pytest.approx(12.5)
    for bad in (0, -1, "0.25", None):
        with pytest.raises(ConfigError, match="poll_interval_s"):
            expected_calls_per_order(bad, 3.0)


# -- parameters: each wrong one is a clear ConfigError or a warning, before anything runs --

@pytest.mark.parametrize("kwargs, match", [
    (dict(orders=0), "orders must be at least 1"),
    (dict(orders=-3), "orders must be at least 1"),
    (dict(orders="10"), "orders must be a whole number"),
    (dict(orders=2.5), "orders must be a whole number"),
    (dict(poll_intervals_s="0.2"), "poll_intervals_s must be a list"),
    (dict(poll_intervals_s=0.2), "poll_intervals_s must be a list"),
    (dict(poll_intervals_s=[]), "at least one"),
    (dict(poll_intervals_s=[0.2, 0]), r"poll_intervals_s\[1\] must be more than 0 seconds"),
    (dict(cook_time_mean_s=0), "cook_time_mean_s must be more than 0 seconds"),
    (dict(cook_time_mean_s="2"), "cook_time_mean_s must be a number in seconds"),
    (dict(order_rate_per_s=-1), "order_rate_per_s must be more than 0"),
    (dict(methods="kafka"), "methods must be a list of names"),
    (dict(methods=["carrier-pigeon"]), "unknown"),
    (dict(methods=[]), "at least one"),
    (dict(seed=-1), "seed must be at least 0"),
    (dict(waiter="waiter"), "waiter must be a function"),
    (dict(waiter=lambda ctx: None), r"waiter must accept \(ctx, spec\)"),
])
def test_bad_parameters_are_refused_before_anything_starts(lab, tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        waiter_analogy(lab, run_dir=tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir()), "nothing may start before the parameters are checked"


@pytest.mark.parametrize("kwargs, unit", [
    (dict(poll_intervals_s=[200]), "seconds"),       # milliseconds typed as seconds
    (dict(cook_time_mean_s=2000), "seconds"),
    (dict(order_rate_per_s=0.01), "orders per second"),
    (dict(orders=5000), "orders=5000 is far more"),
])
def test_values_far_outside_the_usual_range_warn_with_the_unit(lab, tmp_path, kwargs, unit):
    """Allowed but suspicious values warn, naming the unit, before anything runs."""
    # methods=[] stops the run right after the checks: only the warning is under test.
    with pytest.warns(EdalabWarning, match=unit), pytest.raises(ConfigError, match="methods"):
        waiter_analogy(lab, methods=[], run_dir=tmp_path, progress=False, **kwargs)


# -- a small real run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(lab, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdalabWarning)  # the sensible settings must not warn
        return waiter_analogy(lab, orders=5, poll_intervals_s=[0.1], cook_time_mean_s=0.5,
                              order_rate_per_s=8.0, run_dir=tmp_path_factory.mktemp("waiter"),
                              progress=False)


def test_every_method_hears_every_order(small_run):
    s = small_run.summary.set_index("method")
    assert list(s.index) == list(METHODS)
    assert (s["heard"] == 5).all() and (s["lost"] == 0).all()
    assert len(small_run.samples) == 5 * len(METHODS)
    assert small_run.samples["latency_ms"].notna().all()
    assert (small_run.samples["latency_ms"] > 0).all()  # nobody knows before the food is ready


def test_polling_costs_what_the_model_says_and_push_costs_one_subscription(small_run):
    rest = small_run.row("rest-poll")
    assert abs(rest["calls_per_order"] - rest["model_calls_per_order"]) <= 1.0
    assert rest["requests_total"] == len(small_run.asks)
    assert small_run.asks.groupby("order")["ready"].sum().eq(1).all()  # exactly one "yes" per order
    assert rest["empty_responses"] == len(small_run.asks) - 5
    pubsub = small_run.row("redis-pubsub")
    assert pubsub["requests_total"] == 1 and pubsub["requests_open"] == 0
    assert rest["calls_per_order"] > 2 * pubsub["calls_per_order"]
    assert rest["latency_mean_ms"] > pubsub["latency_mean_ms"]
    kafka = small_run.row("kafka")
    assert kafka["requests_open"] > 0 and kafka["requests_open_per_s"] > 0  # a Kafka consumer fetches
    assert kafka["requests_total"] == kafka["setup_requests"] + kafka["requests_open"]


def test_numbers_are_rounded_once_in_the_result(small_run):
    s = small_run.summary
    for column, places in (("calls_per_order", 2), ("latency_mean_ms", 1), ("latency_p90_ms", 1)):
        assert (s[column] == s[column].round(places)).all(), column
    assert (small_run.samples["latency_ms"] == small_run.samples["latency_ms"].round(1)).all()


def test_kitchen_table_is_consistent(small_run):
    k = small_run.kitchen
    assert len(k) == 5 * len(METHODS)
    assert (k["ready_at_s"] > k["placed_at_s"]).all()
    assert (k["stored_at_s"] >= k["ready_at_s"]).all()


def test_the_run_folder_holds_only_recorder_files(small_run):
    trial = Path(small_run.params["run_dir"]) / "kafka"
    names = {p.name for p in trial.iterdir()}
    assert "table-kitchen-kitchen.csv" in names and "notes-kitchen.jsonl" in names
    assert not {"go.json", "kitchen-kitchen.csv", "asks-customers.csv"} & names


def test_charts_draw(small_run):
    import matplotlib.pyplot as plt

    from edalab.plots.waiter import calls_per_order, delay_per_order, order_timeline, pick_order

    ax = calls_per_order(small_run)
    assert len(ax.get_lines()) >= len(METHODS)
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert f"{small_run.row('rest-poll')['calls_per_order']:.2f} per order" in legend
    delay_per_order(small_run)
    fig = order_timeline(small_run)
    assert len(fig.axes) == len(METHODS)
    assert pick_order(small_run) in set(small_run.samples["order"])
    plt.close("all")


# -- the waiter body is the learner's to write -------------------------------------------

def test_a_learner_written_waiter_runs(lab, tmp_path):
    def slow_waiter(ctx, spec):
        """A waiter that takes 30 ms to walk to the table, and reports no counters."""
        import time

        subscriber = spec.subscriber("waiter")
        trace = ctx.recorder.consumer_trace(ctx.name)
        subscriber.wait_ready(timeout_s=30)
        if ctx.gate() is None:
            return
        while not ctx.stopping:
            for delivery in subscriber.receive(timeout_s=0.2):
                if delivery.event.type == "order.ready":
                    time.sleep(0.03)
                    trace.record(delivery._replace(received_at_ns=time.time_ns()))
        subscriber.close()

    result = waiter_analogy(lab, orders=4, cook_time_mean_s=0.3, order_rate_per_s=8.0,
                            methods=["redis-pubsub"], waiter=slow_waiter, run_dir=tmp_path, progress=False)
    row = result.row("redis-pubsub")
    assert row["heard"] == 4 and result.params["custom_waiter"]
    assert row["latency_p50_ms"] >= 30  # the learner's walk is in the measured delay
    assert np.isnan(row["calls_per_order"])  # no counters reported: not counted, not invented


def test_a_crashing_waiter_body_is_reported_with_its_traceback(lab, tmp_path):
    def broken_waiter(ctx, spec):
        ctx.gate()
        raise ValueError("the waiter dropped the tray")

    with pytest.raises(RoleError, match="dropped the tray"):
        waiter_analogy(lab, orders=2, cook_time_mean_s=0.3, methods=["redis-pubsub"],
                       waiter=broken_waiter, run_dir=tmp_path, progress=False)


def test_the_notebook_shows_the_modules_waiter():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    shown = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
             and "".join(c["source"]).lstrip().startswith("def waiter(")]
    assert len(shown) == 1, "notebook 01 has one cell that defines the waiter body"
    assert shown[0].strip() == inspect.getsource(waiter_roles.waiter).strip()


# -- the exercise ------------------------------------------------------------------------

def test_exercise_check_accepts_the_answer():
    expected = n01.expected_calls()
    assert n01.check_calls_per_order(expected)
    # forgetting the half call is close enough
    assert n01.check_calls_per_order(n01.COOK_TIME_MEAN_S / n01.POLL_INTERVAL_S)
    assert not n01.check_calls_per_order(1)
    assert not n01.check_calls_per_order(expected * 2)
    assert "check_calls_per_order" in n01.question()
    assert n01.hint() and f"{expected:.2f}" in n01.solution()


@pytest.mark.parametrize("answer, says", [
    (None, "still None"),
    ("12.5", "without quotes"),
    ("many", "not the text"),
    (-12.5, "more than zero"),
    (0, "more than zero"),
    (float("nan"), "finite"),
    ([12.5], "should be a number"),
])
def test_exercise_check_explains_wrong_kinds_of_answer(answer, says):
    feedback = n01.check_calls_per_order(answer)
    assert not feedback and says in feedback.message
    assert not str(feedback).startswith("Correct")


def test_exercise_check_refuses_bad_settings_with_feedback():
    for bad in (0, -0.25, "0.25", None):
        feedback = n01.check_calls_per_order(12.5, poll_interval_s=bad)
        assert not feedback and "poll_interval_s" in feedback.message
