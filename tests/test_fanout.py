"""Notebook 03's experiments (fan-out, competing consumers, rebalancing, REST vs broker)
and its exercise checks, on real servers, kept short."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import edalab
from edalab._checks import EdalabWarning
from edalab._errors import ConfigError
from edalab.exercises import Feedback, n03
from edalab.experiments.fanout import kitchen_orders
from edalab.experiments.rebalancing import longest_gap, pauses
from edalab.experiments.rest_calls import CallEveryServiceSpec
from edalab.plots import fanout as fanout_plots

experiments = edalab.experiments


@pytest.fixture(scope="module")
def competing(lab, tmp_path_factory):
    return experiments.competing_consumers(lab, members=2, partitions=3, events=20, rate_per_s=40,
                                           keys=6, run_dir=tmp_path_factory.mktemp("competing"))


def test_fan_out_every_group_gets_every_event(lab, tmp_path):
    result = experiments.fan_out(lab, services=["waiter", "billing"], events=12, rate_per_s=40,
                                 run_dir=tmp_path, progress=False)
    s = result.summary
    assert list(s["method"]) == ["kafka", "kafka", "redis-pubsub", "redis-pubsub"]
    assert list(s["service"]) == ["waiter", "billing"] * 2
    assert (s["produced"] == 12).all() and (s["delivered"] == 12).all(), s
    assert (s["lost"] == 0).all() and (s["duplicated"] == 0).all(), s
    assert result.every_service_got_everything("kafka") and result.every_service_got_everything("redis-pubsub")
    assert set(result.samples["service"]) == {"waiter", "billing"}
    assert len(result.orders) == 12 and {"dish", "quantity"} <= set(result.orders.columns)
    fanout_plots.fan_out_deliveries(result, plt.subplots()[1])
    plt.close("all")


def test_competing_consumers_split_without_duplicates(competing):
    group = competing.group
    assert group["produced"] == 20 and group["delivered"] == 20, competing.summary
    assert group["lost"] == 0 and group["duplicated"] == 0, competing.summary
    members = competing.members
    assert list(members["member"]) == ["worker-1", "worker-2"]
    assert members["delivered"].sum() == 20  # a split, not a copy
    assert (members["out_of_order"] == 0).all(), members
    km = competing.key_map  # each key stored in one partition and read by one member
    assert len(km) == 6 and km["partition"].map(lambda p: isinstance(p, int)).all(), km
    assert (~km["members"].str.contains(",")).all(), km
    owned = [p for ps in members["partitions"] for p in ps]
    assert len(owned) == len(set(owned))  # every partition has one owner
    assert competing.idle_members() == []
    fanout_plots.events_per_member(competing, plt.subplots()[1])
    fanout_plots.key_routing(competing, plt.subplots()[1])
    plt.close("all")


def test_rebalance_leave_loses_nothing(lab, tmp_path):
    result = experiments.rebalance(lab, members=2, partitions=2, rate_per_s=30, duration_s=3.5,
                                   changes=["leave"], leave_at_s=1.2, run_dir=tmp_path)
    assert result.group["lost"] == 0, result.summary
    assert list(result.changes["change"]) == ["leave"]
    change = result.changes.iloc[0]
    assert change["member"] == "worker-1" and change["done_s"] >= change["at_s"]
    assert change["pause_s"] > 0 and change["partition_pause_s"] >= change["pause_s"]
    assert change["slowest_partition"] in (0, 1)
    assert {"t_s", "produced_t_s", "partition"} <= set(result.samples.columns)
    fanout_plots.rebalance_timeline(result, plt.subplots()[1])
    fanout_plots.rebalance_latency(result, plt.subplots()[1])
    plt.close("all")


def test_rest_vs_broker_counts_delivery(lab, tmp_path):
    result = experiments.rest_vs_broker(lab, services_counts=[1, 2], methods=["rest-sequential", "kafka"],
                                        events=8, rate_per_s=50, run_dir=tmp_path)
    s = result.summary.set_index(["method", "services"])
    assert set(s.index) == {("rest-sequential", 1), ("rest-sequential", 2), ("kafka", 1), ("kafka", 2)}
    assert (s["events"] == 8).all() and (s["delivered_min"] == 8).all(), s
    assert list(s.loc["rest-sequential", "producer_urls"]) == [1, 2]
    assert list(s.loc["kafka", "producer_urls"]) == [1, 1]
    assert (s["publish_p50_ms"] > 0).all()
    assert np.isfinite(result.cost_ratio("kafka"))
    fanout_plots.publish_time_vs_services(result, plt.subplots()[1])
    plt.close("all")


@pytest.mark.parametrize("call, message", [
    (lambda lab: experiments.fan_out(lab, events=0), "events"),
    (lambda lab: experiments.fan_out(lab, transports="kafka"), "list of names"),
    (lambda lab: experiments.fan_out(lab, services="waiter"), "list of names"),
    (lambda lab: experiments.fan_out(lab, transports=["sse"]), "unknown"),
    (lambda lab: experiments.competing_consumers(lab, members=0), "members"),
    (lambda lab: experiments.competing_consumers(lab, rate_per_s=0), "rate_per_s"),
    (lambda lab: experiments.rebalance(lab, changes="join"), "list of names"),
    (lambda lab: experiments.rebalance(lab, duration_s=4, join_at_s=9), "join_at_s"),
    (lambda lab: experiments.rest_vs_broker(lab, services_counts="13"), "services_counts"),
    (lambda lab: experiments.rest_vs_broker(lab, services_counts=[0, 2]), "services_counts"),
    (lambda lab: experiments.rest_vs_broker(lab, events=0), "events"),
    (lambda lab: CallEveryServiceSpec(()), "urls"),
    (lambda lab: CallEveryServiceSpec("http://127.0.0.1:1"), "urls"),
    (lambda lab: CallEveryServiceSpec(("http://127.0.0.1:1",)).subscriber(), "only sends"),
])
def test_bad_arguments_are_refused_before_anything_runs(lab, call, message):
    with pytest.raises(ConfigError, match=message):
        call(lab)


def test_far_out_values_warn_with_their_unit(lab):
    with pytest.warns(EdalabWarning, match="events per second"), pytest.raises(ConfigError):
        experiments.competing_consumers(lab, rate_per_s=5000, keys=0)


def test_longest_gap_and_pauses_are_pure():
    times = np.array([0.0, 0.1, 0.2, 1.5, 1.6, 3.0])
    assert longest_gap(times, 0.15, 2.0) == pytest.approx((1.3, 0.2, 1.5))
    assert np.isnan(longest_gap(times, 5.0, 6.0)[0])
    samples = pd.DataFrame({"t_s": [0.0, 0.1, 0.2, 0.3, 1.4, 1.6], "produced_t_s": [0, 0.1, 0.2, 0.3, 0.4, 0.5],
                            "latency_ms": [1, 1, 1, 1, 1000, 1000], "partition": [0, 1, 0, 1, 0, 1],
                            "role": ["w1", "w1", "w1", "w1", "w1", "w2"]})
    table, gap_ms, p50_ms = pauses(samples, [("join", "w2", 0.35, 0.9)], duration_s=1.0)
    assert gap_ms == pytest.approx(100) and p50_ms == 1
    row = table.iloc[0]
    assert row["pause_s"] == pytest.approx(1.1) and row["moved"] == (1,)
    assert row["slowest_partition"] == 1 and row["max_latency_ms"] == 1000


def test_kitchen_orders_repeat_the_trace():
    orders = kitchen_orders(130)
    assert len(orders) == 130 and orders[120] == orders[0]
    assert all(o["quantity"] >= 1 and o["dish"] for o in orders)


@pytest.mark.parametrize("answer", [None, "2", "two", -2, 2.5, True, float("nan")])
def test_idle_members_check_explains_bad_answers(answer):
    feedback = n03.check_idle_members(answer, partitions=6, members=8)
    assert isinstance(feedback, Feedback) and not feedback and feedback.message


def test_idle_members_check():
    assert n03.check_idle_members(2, partitions=6, members=8)
    assert n03.check_idle_members(2.0, partitions=6, members=8)
    assert not n03.check_idle_members(0, partitions=6, members=8)
    assert n03.check_idle_members(0, partitions=6, members=3)
    assert n03.check_idle_members(lambda p, m: max(0, m - p))
    assert not n03.check_idle_members(lambda p, m: m - p)  # negative for m < p
    assert not n03.check_idle_members(lambda p, m: m // p)
    assert not n03.check_idle_members(2, partitions=0, members=8)
    assert "max(0" in n03.solution() and n03.hint()


@pytest.mark.parametrize("body, says", [(None, "write your stock service"), ("stock", "the function itself"),
                                        (lambda ctx: None, "two arguments")])
def test_new_subscriber_check_explains_bad_input(lab, body, says):
    feedback = n03.check_new_subscriber(lab, body)
    assert not feedback and says in feedback.message


def test_new_subscriber_check_accepts_a_right_body_and_refuses_a_competing_one(lab):
    right = n03.check_new_subscriber(lab, n03.reference_stock)
    assert right, right.message
    wrong = n03.check_new_subscriber(lab, n03.stock_in_billing_group)
    assert not wrong and "competed" in wrong.message, wrong.message


def _counts_orders(ctx, spec):  # a body from "a notebook cell": sent by value, counts orders not portions
    subscriber = spec.subscriber("stock")
    trace = ctx.recorder.consumer_trace(ctx.name, "stock")
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    portions = {}
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            trace.record(delivery)
            dish = delivery.event.payload["dish"]
            portions[dish] = portions.get(dish, 0) + 1
    ctx.note("portions", counts=portions)
    subscriber.close()
    trace.close()


def test_new_subscriber_check_refuses_wrong_counts(lab):
    feedback = n03.check_new_subscriber(lab, _counts_orders)
    assert not feedback and "counts are off" in feedback.message, feedback.message
