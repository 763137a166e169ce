"""Notebook 08: the broker goes down (real brokers of the experiment's own, killed and frozen)."""

from __future__ import annotations

import pytest

from edalab import ConfigError, KafkaServer, Lab, RedisServer
from edalab._checks import EdalabWarning
from edalab._servers import MotoServer
from edalab.exercises import n08
from edalab.experiments import (broker_goes_down, chain_availability, replicated_cluster,
                                replication_availability, what_survives)
from edalab.experiments._availability import at_least_up
from edalab.experiments.broker_outage import FIRE_AND_FORGET, PATIENT
from conftest import press_run


@pytest.fixture(scope="module")
def outage(lab, tmp_path_factory):
    return broker_goes_down(lab, quick=True, progress=False, run_dir=tmp_path_factory.mktemp("outage"))


def test_every_order_is_accounted_for(outage):
    s = outage.summary
    assert list(s.index) == [("tansu-memory", "kill"), ("tansu-memory", "pause"),
                             ("tansu-s3", "kill"), ("tansu-s3", "pause")]
    assert (s["sent"] > 0).all()
    assert (s["acknowledged"] + s["failed"] + s["unresolved"] == s["sent"]).all(), s
    assert (s["kept"] <= s["sent"]).all() and (s["delivered"] <= s["sent"]).all()
    assert set(outage.samples["outcome"]) <= {"acked", "failed", "refused", "unresolved"}
    assert len(outage.timeline) == 2 * len(s)  # a fault and a recovery per trial, from the lifecycle


def test_durable_storage_and_a_patient_producer_lose_nothing(outage):
    s3_kill = outage.row("tansu-s3", "kill")
    assert s3_kill["lost"] == 0 and s3_kill["failed"] == 0, s3_kill
    assert s3_kill["kept"] == s3_kill["acknowledged"] == s3_kill["sent"], s3_kill
    down_s = outage.params["down_s"]
    assert s3_kill["ack_max_ms"] > 500 * down_s and s3_kill["stall_s"] > 0.5 * down_s, s3_kill
    assert s3_kill["recovery_s"] < 20, s3_kill


def test_a_frozen_broker_delays_but_keeps_everything(outage):
    for method in ("tansu-memory", "tansu-s3"):
        paused = outage.row(method, "pause")
        assert paused["lost"] == 0 and paused["failed"] == 0 and paused["kept"] == paused["sent"], paused
        assert paused["ack_max_ms"] > 500 * outage.params["down_s"], paused


def test_a_restart_in_memory_forgets_what_was_stored(outage):
    memory_kill = outage.row("tansu-memory", "kill")
    assert memory_kill["kept"] < memory_kill["acknowledged"], memory_kill


def test_what_survives_kill_9(lab):
    s = what_survives(lab, events=30, quick=True).summary
    assert s.loc["tansu-memory", "kept"] == 0 and s.loc["valkey", "kept"] == 0, s
    assert (s.loc[["tansu-s3", "valkey-aof"], "kept"] == 30).all(), s
    assert s.loc["tansu-s3", "acked_per_s"] < s.loc["tansu-memory", "acked_per_s"], s


@pytest.mark.parametrize("bad", [dict(storages="s3"), dict(faults=[]), dict(faults=["crash"]),
                                 dict(rate_per_s=0), dict(down_s=-1), dict(settings=None),
                                 dict(settings={"bootstrap_servers": "x:1"}), dict(producer=None),
                                 dict(storages=["s3", "s3"]), dict(drain_timeout_s=0)])
def test_broker_goes_down_refuses_bad_parameters_before_starting(lab, bad):
    with pytest.raises(ConfigError):
        broker_goes_down(lab, **bad)


def test_broker_goes_down_warns_about_units_before_starting(lab):
    with pytest.warns(EdalabWarning, match="down_s"), pytest.raises(ConfigError, match="producer"):
        broker_goes_down(lab, down_s=5000, producer="not a body")


@pytest.mark.parametrize("bad", [dict(events=0), dict(events="10"), dict(methods="valkey"),
                                 dict(methods=["kafka"]), dict(read_timeout_s=0)])
def test_what_survives_refuses_bad_parameters(lab, bad):
    with pytest.raises(ConfigError):
        what_survives(lab, **bad)


def test_availability_arithmetic():
    assert at_least_up(0.99, 3, 2) == pytest.approx(0.99**3 + 3 * 0.99**2 * 0.01)
    table = replication_availability(0.99).set_index("brokers")
    assert table.loc[3, "writes_available"] > table.loc[1, "writes_available"]
    assert table.loc[3, "reads_available"] > table.loc[3, "writes_available"]
    chain = chain_availability(0.999, 0.999, services=[1, 5, 10])
    sync = chain[chain["method"] == "synchronous chain"].set_index("services")["availability"]
    events = chain[chain["method"] == "events, 3 brokers"].set_index("services")["availability"]
    assert sync[1] > sync[5] > sync[10] and events[10] == events[1] > sync[10]
    for bad in (1.5, -0.1, "0.99", None):
        with pytest.raises(ConfigError):
            replication_availability(bad)
    with pytest.raises(ConfigError):
        chain_availability(services=[0])


def test_the_live_cluster_part_says_what_to_start_without_a_cluster(lab):
    report = replicated_cluster(lab)
    assert not report.configured and "docker compose --profile cluster" in report.message
    assert "EDALAB_KAFKA_BOOTSTRAP" in report.message


def test_s3_storage_keeps_a_topic_across_kill_and_restart_on_the_same_port():
    with MotoServer() as moto:
        bucket = moto.create_bucket("edalab-test")
        assert moto.create_bucket("edalab-test") == bucket  # kept if it exists
        broker = KafkaServer(storage_engine=f"s3://{bucket}/", env=moto.s3_env()).start()
        own = Lab.on_servers(broker, redis_url="redis://127.0.0.1:1/0")
        try:
            assert own.server("kafka") is broker and own.servers == (broker,)
            topic = own.create_topic(partitions=1)
            port = broker.port
            own.restart_server("kafka")
            assert broker.port == port and broker.running()
            admin = own.kafka_admin()
            assert topic in admin.list_topics()
        finally:
            own.stop()
        assert not broker.running()


def test_lab_on_servers_refuses_what_it_cannot_use(lab):
    with pytest.raises(ConfigError, match="needs a started"):
        Lab.on_servers()
    with pytest.raises(ConfigError, match="not running"):
        Lab.on_servers(KafkaServer(), redis_url=lab.redis_url)
    redis = RedisServer(appendonly=True).start()
    try:
        with pytest.raises(ConfigError, match="kafka_bootstrap"):
            Lab.on_servers(redis=redis)
        own = Lab.on_servers(redis=redis, kafka_bootstrap=lab.kafka_bootstrap)
        with pytest.raises(ConfigError, match="owns no kafka server"):
            own.server("kafka")
    finally:
        redis.stop()
    with pytest.raises(ConfigError):
        RedisServer(appendonly="yes")
    with pytest.raises(ConfigError):
        KafkaServer(storage_engine="memory")
    with pytest.raises(ConfigError):
        KafkaServer(env={"AWS_ALLOW_HTTP": True})


def test_the_send_policy_check_accepts_the_reference_and_refuses_fire_and_forget(lab):
    assert n08.SOLUTION_SETTINGS["acks"] == PATIENT["acks"] == "all"
    accepted = n08.check_send_policy(n08.SOLUTION_SETTINGS, lab)
    assert accepted, accepted
    refused = n08.check_send_policy(FIRE_AND_FORGET, lab)
    assert not refused and "failed" in refused.message, refused


@pytest.mark.parametrize("answer, says", [(None, "still None"), ("fast", "not str"),
                                          ([1], "not list"), ({"ackz": 1}, "failed")])
def test_the_send_policy_check_explains_bad_input(lab, answer, says):
    feedback = n08.check_send_policy(answer, lab)
    assert not feedback and says in feedback.message, feedback


@pytest.mark.parametrize("answer, ok", [(0.999702, True), (99.9702, True), (0.99**3, False), (0.99, False),
                                        (None, False), ("0.9997", False), (-1, False), (0, False),
                                        (150, False)])
def test_the_write_availability_check(answer, ok):
    feedback = n08.check_write_availability(answer)
    assert bool(feedback) is ok and feedback.message, feedback
    assert n08.hint() and "0.999702" in n08.solution()


def test_widget_runs_the_experiment_once_and_shows_charts_and_errors(lab):
    from edalab.widgets import broker_outage_widget

    box = broker_outage_widget(lab)
    box.controls["storages"].value, box.controls["faults"].value = ("memory",), ("pause",)
    box.controls["down_s"].value, box.controls["rate_per_s"].value = 1.0, 10
    shown, errors = press_run(box)
    assert "Figure" in shown and "tansu-memory" in shown, shown
    assert not errors, errors
    box.controls["faults"].value = ()
    _, errors = press_run(box)
    assert "ConfigError" in errors and "faults" in errors, errors
