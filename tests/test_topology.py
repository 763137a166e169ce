"""Notebook 07: the service graph arithmetic, the real chain/event run, scaling, exercise and widget."""

from __future__ import annotations

import math
import shutil
import warnings

import networkx as nx
import pytest

from edalab import ConfigError, topology
from edalab._checks import EdalabWarning
from edalab.exercises import n07
from edalab.experiments.service_chain import chain_vs_events, scale_consumers
from edalab.workloads import data_dir
from conftest import press_run


# -- the arithmetic (no servers) ---------------------------------------------------------------

def test_availability_is_the_product_over_the_accept_path():
    services = topology.load_services().set_index("service")["availability"]
    sync, events = topology.service_graph("sync"), topology.service_graph("events")
    assert topology.accept_path(sync) == set(sync)  # every service is called and waited for
    assert math.isclose(topology.availability(sync), math.prod(services[n] for n in sync))
    assert topology.accept_path(events) == {"guest", "orders", "auth", "broker"}
    assert math.isclose(topology.availability(events), math.prod(services[n] for n in ("orders", "auth", "broker")))
    assert topology.availability(events) > topology.availability(sync)


def test_latency_is_the_critical_path():
    lat = topology.load_services().set_index("service")["latency_ms"]
    sync, events = topology.service_graph("sync"), topology.service_graph("events")
    longest_branch = max(lat["auth"], lat["stock"], lat["kitchen"] + lat["notifications"], lat["billing"])
    assert topology.latency_ms(sync) == pytest.approx(lat["orders"] + longest_branch)
    assert topology.latency_ms(events) == pytest.approx(lat["orders"] + max(lat["auth"], lat["broker"]))
    consumers = max(lat[n] for n in ("stock", "kitchen", "billing", "notifications"))
    assert topology.done_latency_ms(events) == pytest.approx(lat["orders"] + lat["broker"] + consumers)


def test_the_broker_dominates_every_consumer():
    graph = topology.service_graph("events")
    spof = topology.single_points_of_failure(graph).set_index("node")
    assert set(spof.loc["broker", "dominates"]) == {"stock", "kitchen", "billing", "notifications"}
    assert spof.loc["broker", "articulation"] and spof.loc["broker", "on_accept_path"]
    assert not spof.loc["billing", "on_accept_path"] and spof.loc["billing", "dominates"] == []
    sync = topology.single_points_of_failure(topology.service_graph("sync")).set_index("node")
    assert sync.loc["kitchen", "dominates"] == ["notifications"]


def test_chain_puts_only_the_first_service_and_broker_on_the_event_accept_path():
    down = {"billing": 0.5, "kitchen": 0.8}
    sync = topology.chain(["orders", "kitchen", "billing"], "sync", availability=down)
    events = topology.chain(["orders", "kitchen", "billing"], "events", availability=down)
    assert topology.availability(sync) == pytest.approx(0.4)
    assert topology.availability(events) == pytest.approx(1.0)
    assert "broker" in events and events.nodes["broker"]["kind"] == "broker"


def test_graph_mistakes_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="design"):
        topology.service_graph("async")
    with pytest.raises(ConfigError, match="list of names"):
        topology.chain("orders")
    graph = topology.chain(["orders", "billing"])
    graph.add_node("payments")
    graph.add_edge("billing", "payments", sync=True)
    with pytest.raises(ConfigError, match="availability"):
        topology.availability(graph)
    graph.nodes["payments"]["availability"] = 0.99
    graph.add_edge("payments", "orders", sync=True)
    with pytest.raises(ConfigError, match="cycle"):
        topology.latency_ms(graph)
    with pytest.raises(ConfigError, match="DiGraph"):
        topology.availability(nx.Graph())
    folder = tmp_path / "data"
    shutil.copytree(data_dir(), folder)
    text = (folder / "services.csv").read_text().replace("billing,service,0.998", "billing,service,99.8")
    (folder / "services.csv").write_text(text)
    with pytest.raises(ConfigError, match="billing"):
        topology.service_graph("sync", folder=folder)


# -- parameters are checked before anything starts -------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"duration_s": 0}, "duration_s"), ({"method": "http"}, "method"), ({"method": ["kafka"]}, "method"),
    ({"kill_at_s": 20, "duration_s": 5}, "kill_at_s"), ({"down_s": -1}, "down_s"), ({"rate_per_s": "20"}, "rate_per_s"),
    ({"consumer": "billing"}, "consumer"), ({"delayed_after_s": 0}, "delayed_after_s"),
])
def test_chain_vs_events_refuses_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        chain_vs_events(None, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"instances": "2"}, "instances"), ({"instances": [5], "partitions": 4}, "instances"), ({"instances": []}, "instances"),
    ({"work_ms": 0}, "work_ms"), ({"partitions": 0}, "partitions"), ({"method": "redis-pubsub"}, "method"),
    ({"chain": "yes"}, "chain"), ({"guest_concurrency": 0}, "guest_concurrency"),
])
def test_scale_consumers_refuses_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        scale_consumers(None, **kwargs)


def test_unit_mix_ups_warn_before_the_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdalabWarning)
        with pytest.raises(EdalabWarning, match="milliseconds"):
            chain_vs_events(None, work_ms=5000)
        with pytest.raises(EdalabWarning, match="seconds"):
            scale_consumers(None, duration_s=600)


# -- the real run ---------------------------------------------------------------------------------

def test_killing_billing_refuses_orders_in_the_chain_and_delays_them_with_events(lab, tmp_path):
    result = chain_vs_events(lab, duration_s=5, kill_at_s=1.0, down_s=2.0, rate_per_s=20, run_dir=tmp_path)
    rest, events = result.row("rest-chain"), result.row("kafka")
    assert rest["orders"] > 50 and events["orders"] > 50
    assert rest["failed"] > 0 and events["failed"] == 0 and events["lost"] == 0
    assert events["delayed"] > 0
    for row in (rest, events):
        assert abs(row["accepted_fraction"] - row["predicted_fraction"]) < 0.2, row
    assert set(result.samples["method"]) == {"rest-chain", "kafka"}
    killed, back = result.down_s["rest-chain"]
    assert 0.8 < killed < back


def test_a_second_consumer_in_the_group_raises_throughput_and_the_chain_backlog_waits_in_the_guest(lab, tmp_path):
    result = scale_consumers(lab, instances=[1, 2], rate_per_s=60, work_ms=25, duration_s=3, run_dir=tmp_path)
    rows = result.summary.set_index(["method", "instances"])
    chain, one, two = rows.loc[("rest-chain", 1)], rows.loc[("kafka", 1)], rows.loc[("kafka", 2)]
    for row in (chain, one, two):
        assert row["processed"] == row["produced"] and row["failed"] == 0, row
    assert two["throughput_per_s"] > 1.2 * one["throughput_per_s"]
    assert two["lag_max"] < one["lag_max"]
    # one billing behind HTTP: the same shortfall, so the guest holds a backlog and waits for it
    assert chain["lag_max"] > 2 * two["lag_max"] and chain["latency_p50_ms"] > 3 * two["latency_p50_ms"]
    assert set(result.samples["method"]) == {"rest-chain", "kafka"}


# -- the exercise ----------------------------------------------------------------------------------

def _right() -> float:
    return topology.availability(topology.service_graph("sync")) * n07.PAYMENTS_AVAILABILITY


def test_the_check_runs_the_learners_graph_code():
    assert n07.check_new_service(n07.reference_add_payments, _right())
    assert n07.check_new_service(n07.reference_add_payments, round(_right(), 4))

    def wrong_way(graph):
        graph.add_node("payments", availability=0.99, latency_ms=60)
        graph.add_edge("payments", "billing", sync=True)

    def no_edge(graph):
        graph.add_node("payments", availability=0.99, latency_ms=60)

    def raises(graph):
        graph.add_edge("billing")

    def later(graph):  # consumed later: not on the accept path of the sync design's task
        graph.add_node("payments", availability=0.99, latency_ms=60)
        graph.add_edge("billing", "payments", sync=False)

    assert "caller" in n07.check_new_service(wrong_way, _right()).message
    assert not n07.check_new_service(no_edge, _right())
    assert "raised TypeError" in n07.check_new_service(raises, _right()).message
    assert not n07.check_new_service(later, _right())
    assert "before payments" in n07.check_new_service(n07.reference_add_payments,
                                                      topology.availability(topology.service_graph("sync"))).message


@pytest.mark.parametrize("answer, words", [(None, "still None"), ("0.95", "without quotes"), (-0.5, "below 0"),
                                           (95, "percentage"), (float("nan"), "finite")])
def test_the_check_explains_bad_predictions(answer, words):
    feedback = n07.check_new_service(n07.reference_add_payments, answer)
    assert not feedback and words in feedback.message


def test_the_check_explains_a_missing_function():
    assert "no brackets" in n07.check_new_service(None, 0.9).message
    assert "no node 'payments'" in n07.check_new_service(lambda graph: None, 0.9).message


@pytest.mark.parametrize("answer, ok", [("broker", True), (" Broker ", True), ("kitchen", False),
                                        ("nowhere", False), (None, False), (3, False)])
def test_single_point_check(answer, ok):
    assert bool(n07.check_single_point(answer)) is ok
    assert n07.hint() and "add_payments" in n07.solution()


# -- the widget ------------------------------------------------------------------------------------

def test_widget_runs_the_chain_once_and_shows_charts_and_errors(lab):
    from edalab.widgets import service_chain_widget

    box = service_chain_widget(lab)
    c = box.controls
    c["rate_per_s"].value, c["duration_s"].value, c["kill_at_s"].value, c["down_s"].value = 10, 4, 1, 1
    shown, errors = press_run(box)
    assert "Figure" in shown and "rest-chain" in shown and "kafka" in shown, shown
    assert not errors, errors
    c["kill_at_s"].value = 10  # after the end of a 4 s run: refused, shown, button usable again
    _, errors = press_run(box)
    assert "ConfigError" in errors and "kill_at_s" in errors, errors
