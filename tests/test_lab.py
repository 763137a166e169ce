"""edalab.start(): embedded servers, servers elsewhere, ``edalab up`` reuse, clear errors."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

import edalab
from edalab import ConfigError, KafkaServer, KafkaUnavailable, RedisServer, RedisUnavailable
from edalab._servers import free_port

from conftest import run_edalab


def roundtrip_kafka(lab: edalab.Lab) -> bytes:
    topic = lab.create_topic()
    producer = lab.kafka_producer()
    producer.send(topic, b"order-42 ready").get(timeout=10)
    consumer = lab.kafka_consumer(topic, group_id=f"g-{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            return records[0].value
    raise AssertionError("no record consumed within 20 s")


def test_lab_roundtrips_kafka_and_redis(lab):
    assert lab.kafka_mode == "embedded" and lab.kafka_embedded
    assert lab.kafka_bootstrap.startswith("127.0.0.1:")
    assert lab.redis_url.startswith("redis://127.0.0.1:")
    assert roundtrip_kafka(lab) == b"order-42 ready"
    r = lab.redis()
    r.set("k", "v")
    assert r.get("k") == b"v"


def test_embedded_broker_gets_short_sessions_and_elsewhere_gets_safe_ones():
    from edalab._lab import KafkaClientDefaults

    assert KafkaClientDefaults.for_mode("embedded").session_timeout_ms <= 2000
    assert KafkaClientDefaults.for_mode("elsewhere").session_timeout_ms >= 6000


def test_servers_elsewhere_are_used_and_left_running():
    with KafkaServer() as kafka, RedisServer() as redis:
        lab = edalab.start(kafka_bootstrap=kafka.bootstrap, redis_url=redis.url)
        assert (lab.kafka_mode, lab.redis_mode) == ("elsewhere", "elsewhere")
        assert lab.kafka_bootstrap == kafka.bootstrap
        assert roundtrip_kafka(lab) == b"order-42 ready"
        lab.stop()
        assert kafka.running() and redis.running()


def test_environment_variables_select_servers_elsewhere(monkeypatch):
    with KafkaServer() as kafka, RedisServer() as redis:
        monkeypatch.setenv("EDALAB_KAFKA_BOOTSTRAP", kafka.bootstrap)
        monkeypatch.setenv("EDALAB_REDIS_URL", redis.url)
        with edalab.start() as lab:
            assert lab.kafka_bootstrap == kafka.bootstrap and lab.redis_url == redis.url
            assert lab.describe()[0]["started_by"] == "elsewhere"


def test_nothing_listening_on_the_bootstrap_address_fails_fast():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=f"No Kafka broker answers at '127.0.0.1:{port}'"):
        edalab.start(kafka_bootstrap=f"127.0.0.1:{port}")
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_server():
    """A socket that accepts connections and never answers (a firewall-ish black hole)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


def test_a_bootstrap_address_that_never_answers_fails_within_5_s(silent_server):
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable):
        edalab.start(kafka_bootstrap=f"127.0.0.1:{silent_server}")
    assert time.monotonic() - started < 5


def test_a_redis_url_that_points_at_kafka_is_refused_within_5_s():
    with KafkaServer() as kafka:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="Nothing answers like Redis"):
            edalab.start(kafka_bootstrap=kafka.bootstrap, redis_url=f"redis://{kafka.bootstrap}/0")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "localhost:6379", "redis://"])
def test_a_malformed_redis_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="redis://host:port/0"):
        edalab.start(redis_url=url, kafka_bootstrap="127.0.0.1:1")


def test_a_bad_timeout_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("EDALAB_START_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="EDALAB_START_TIMEOUT_S"):
        edalab.start()


def test_start_reuses_edalab_up_and_stop_leaves_it_running():
    up = run_edalab("up", "--json")
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    try:
        with edalab.start() as lab:
            assert lab.kafka_mode == "edalab up" and lab.kafka_bootstrap == state["kafka_bootstrap"]
            assert lab.redis_url == state["redis_url"]
            assert roundtrip_kafka(lab) == b"order-42 ready"
        again = json.loads(run_edalab("up", "--json").stdout)
        assert again["kafka_bootstrap"] == state["kafka_bootstrap"] and not again["started_now"]
    finally:
        assert run_edalab("down").returncode == 0
