"""The fan-out / competing-consumers experiments (notebook 03), on real servers, kept short."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from edalab._errors import ConfigError
from edalab.exercises import n03
from edalab.experiments import fanout
from edalab.plots import fanout as fanout_plots


@pytest.fixture(scope="module")
def competing(lab, tmp_path_factory):
    return fanout.competing_consumers(lab, members=2, partitions=3, events=20, rate_per_s=40,
                                      keys=6, run_dir=tmp_path_factory.mktemp("competing"))


def test_fan_out_every_group_gets_every_event(lab, tmp_path):
    result = fanout.fan_out(lab, services=("waiter", "billing"), transports=("kafka",), events=12,
                            rate_per_s=40, run_dir=tmp_path)
    s = result.summary
    assert list(s["service"]) == ["waiter", "billing"]
    assert (s["produced"] == 12).all() and (s["delivered"] == 12).all(), s
    assert (s["lost"] == 0).all() and (s["duplicated"] == 0).all(), s
    assert result.every_service_got_everything("kafka")
    assert set(result.samples["service"]) == {"waiter", "billing"}
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
    # Each key was stored in one partition and read by one member.
    km = competing.key_map
    assert len(km) == 6 and km["partition"].map(lambda p: isinstance(p, int)).all(), km
    assert (~km["members"].str.contains(",")).all(), km
    # Every partition belongs to exactly one member.
    owned = [p for ps in members["partitions"] for p in ps]
    assert len(owned) == len(set(owned))
    assert competing.idle_members() == []


def test_competing_charts_draw(competing):
    fanout_plots.events_per_member(competing, plt.subplots()[1])
    fanout_plots.key_routing(competing, plt.subplots()[1])
    plt.close("all")


def test_rebalance_leave_loses_nothing(lab, tmp_path):
    result = fanout.rebalance(lab, members=2, partitions=2, rate_per_s=30, duration_s=3.5,
                              changes=("leave",), leave_at_s=1.2, run_dir=tmp_path)
    assert result.group["lost"] == 0, result.summary
    assert list(result.changes["change"]) == ["leave"]
    change = result.changes.iloc[0]
    assert change["member"] == "worker-1"
    assert change["pause_s"] > 0 and change["partition_pause_s"] >= change["pause_s"]
    assert {"t_s", "produced_t_s", "partition"} <= set(result.samples.columns)
    fanout_plots.rebalance_timeline(result, plt.subplots()[1])
    fanout_plots.rebalance_latency(result, plt.subplots()[1])
    plt.close("all")


def test_rest_vs_broker_counts_delivery(lab, tmp_path):
    result = fanout.rest_vs_broker(lab, services_counts=(1, 2), methods=("rest-sequential", "kafka"),
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


def test_longest_gap():
    times = np.array([0.0, 0.1, 0.2, 1.5, 1.6, 3.0])
    assert fanout._longest_gap(times, 0.15, 2.0) == pytest.approx((1.3, 0.2, 1.5))
    assert np.isnan(fanout._longest_gap(times, 5.0, 6.0)[0])


def test_bad_arguments():
    with pytest.raises(ConfigError):
        fanout.CallEveryServiceSpec(())
    with pytest.raises(ConfigError):
        fanout.CallEveryServiceSpec(("http://127.0.0.1:1",)).subscriber()


def test_exercise_check():
    assert n03.check_idle_members(2, partitions=6, members=8)
    assert not n03.check_idle_members(0, partitions=6, members=8)
    assert n03.check_idle_members(0, partitions=6, members=3)
    assert n03.check_idle_members(lambda p, m: max(0, m - p))
    assert not n03.check_idle_members(lambda p, m: m - p)
    assert not n03.check_idle_members(lambda p, m: m // p)
    assert "max(0" in n03.solution() and n03.hint()
