"""The embedded message queue: NATS JetStream and the ``nats-queue`` transport (notebook 09).

One work-queue run (module fixture) is checked for every verdict a queue consumer can
give: ack removes the message, nak redelivers (now or after a delay), an unacked message
comes back after ack_wait, max_deliver makes it a dead letter, term never redelivers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid

import psutil
import pytest

import edalab
from edalab import ConfigError, ExperimentError, NatsUnavailable, Scenario, new_event, roles
from edalab._nats_server import find_nats_binary
from edalab._servers import free_port
from edalab.transports.nats import NatsQueueSpec

ACK_WAIT_S = 0.5
MAX_DELIVER = 3
NAK_DELAY_S = 0.3


def _topic(prefix: str = "queue") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _nats_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edalab-nats")]


def _connections_to(url: str) -> list:
    port = int(url.rsplit(":", 1)[1])
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


@pytest.fixture(scope="module")
def verdicts(lab):
    """Five messages a..e, each given one verdict, then received until both dead letters are in."""
    spec = lab.transport("nats-queue", topic=_topic(), ack_wait_s=ACK_WAIT_S, max_deliver=MAX_DELIVER)
    result = {"spec": spec, "pending": [spec.pending()]}
    with spec.publisher() as publisher, spec.subscriber("billing") as subscriber:
        for key in "abcde":
            publisher.publish(new_event("order.placed", key, {"what": key}))
        result["pending"].append(spec.pending())
        first = subscriber.receive(2.0)
        t0 = time.monotonic()
        result["first"] = [(d.event.key, subscriber.delivery_count(d)) for d in first]
        by_key = {d.event.key: d for d in first}
        subscriber.ack(by_key["a"])
        result["pending"].append(spec.pending())  # right after the ack: a is gone
        subscriber.nak(by_key["b"])
        subscriber.term(by_key["c"])
        subscriber.nak(by_key["e"], delay_s=NAK_DELAY_S)
        # d gets no verdict: it must come back after ack_wait, until max_deliver.
        later = []  # (key, delivery count, seconds after the first receive)
        deadline = t0 + 10.0
        while time.monotonic() < deadline:
            for d in subscriber.receive(0.1):
                later.append((d.event.key, subscriber.delivery_count(d), time.monotonic() - t0))
                if d.event.key != "d":
                    subscriber.ack(d)
            if len([k for k, *_ in later if k == "d"]) >= MAX_DELIVER - 1 and len(spec.dead_letters()) >= 2:
                break
        result["later"] = later
        result["unsettled"] = subscriber.unsettled
        result["counters"] = subscriber.counters
        # Nothing more comes: c was terminated, d hit max_deliver.
        result["after_dead"] = subscriber.receive(ACK_WAIT_S * 2)
    result["dead"] = [e.key for e in spec.dead_letters()]
    result["pending"].append(spec.pending())
    return result


def test_every_message_is_delivered_once_at_first_with_a_count_of_one(verdicts):
    assert sorted(verdicts["first"]) == [(k, 1) for k in "abcde"]
    assert verdicts["pending"][:2] == [0, 5]


def test_ack_removes_the_message_from_the_queue_at_once(verdicts):
    assert verdicts["pending"][2] == 4
    assert "a" not in [k for k, *_ in verdicts["later"]]


def test_nak_redelivers_now_and_nak_with_a_delay_waits(verdicts):
    [(_, count_b, at_b)] = [x for x in verdicts["later"] if x[0] == "b"]
    [(_, count_e, at_e)] = [x for x in verdicts["later"] if x[0] == "e"]
    assert count_b == 2 and at_b < ACK_WAIT_S  # before any ack_wait could have passed
    assert count_e == 2 and at_e >= NAK_DELAY_S * 0.9


def test_unacked_message_comes_back_after_ack_wait_until_max_deliver(verdicts):
    d = [x for x in verdicts["later"] if x[0] == "d"]
    assert [count for _, count, _ in d] == list(range(2, MAX_DELIVER + 1))
    # each redelivery waits ack_wait after the previous delivery (0.9: timer granularity)
    assert d[0][2] >= ACK_WAIT_S * 0.9
    assert d[1][2] - d[0][2] >= ACK_WAIT_S * 0.9
    assert verdicts["after_dead"] == []


def test_term_never_redelivers_and_dead_letters_hold_term_and_max_deliver(verdicts):
    assert "c" not in [k for k, *_ in verdicts["later"]]
    assert sorted(verdicts["dead"]) == ["c", "d"]
    # JetStream keeps a message that hit max_deliver in the stream (d); acked and
    # terminated ones are gone.
    assert verdicts["pending"][-1] == 1


def test_counters_count_pull_requests(verdicts):
    counters = verdicts["counters"]
    assert counters.requests > counters.empty_responses > 0
    assert counters.bytes_received > 0


def test_members_of_one_group_compete_and_a_second_group_is_refused(lab):
    # fetch_batch 5: one receive takes at most 5, so the second member gets a share too
    spec = lab.transport("nats-queue", ack_on_receive=True, fetch_batch=5)
    with spec.publisher() as publisher, spec.subscriber() as first, spec.subscriber() as second:
        ids = set()
        for i in range(60):
            event = new_event("order.placed", f"k{i % 3}", {"i": i})
            publisher.publish(event)
            ids.add(event.id)
        got = [[], []]
        deadline = time.monotonic() + 10
        while sum(map(len, got)) < len(ids) and time.monotonic() < deadline:
            got[0] += [d.event.id for d in first.receive(0.05)]
            got[1] += [d.event.id for d in second.receive(0.05)]
        first.commit()
        second.commit()
        assert got[0] and got[1] and not set(got[0]) & set(got[1])
        assert set(got[0]) | set(got[1]) == ids
        with pytest.raises(ConfigError, match="ONE group"):
            spec.subscriber("another-group")
    assert spec.pending() == 0


def test_max_ack_pending_holds_messages_back_like_a_prefetch_without_spinning(lab):
    spec = lab.transport("nats-queue", max_ack_pending=2, fetch_batch=10)
    with spec.publisher() as publisher, spec.subscriber() as subscriber:
        for i in range(5):
            publisher.publish(new_event("t", f"k{i}"))
        assert len(subscriber.receive(2.0)) == 2  # two unacked: JetStream sends no more
        started = time.monotonic()
        assert subscriber.receive(0.3) == []
        assert time.monotonic() - started >= 0.25  # waited, did not return at once
        subscriber.commit()
        rest = []
        deadline = time.monotonic() + 5
        while len(rest) < 3 and time.monotonic() < deadline:
            got = subscriber.receive(0.2)
            rest += got
            subscriber.commit()
        assert sorted(d.event.key for d in rest) == ["k2", "k3", "k4"]
    assert spec.pending() == 0


def test_a_role_process_uses_the_spec(lab):
    """The spec crosses into role processes: a producer and two competing consumers."""
    spec = lab.transport("nats-queue", ack_on_receive=True)
    scenario = Scenario("nats-queue-roles")
    scenario.add("orders", roles.produce, kwargs={"spec": spec, "schedule_s": edalab.workloads.steady(100, 0.4)})
    for name in ("worker-1", "worker-2"):
        scenario.add(name, roles.consume, kwargs={"spec": spec, "group": "kitchen"})
    with scenario.run(expect_events=40) as run:
        run.wait_finished("orders", timeout_s=30)
        assert run.until_delivered(40, group="kitchen", timeout_s=20)
    received = scenario.recorder.received()
    assert len(received) == received["event_id"].nunique() == 40  # each once: acked on the next receive
    assert spec.pending() == 0


def test_close_leaves_no_thread_loop_or_connection(lab):
    spec = lab.transport("nats-queue")
    assert _nats_threads() == []  # from_lab's admin connection is closed too
    publisher, subscriber = spec.publisher(), spec.subscriber()
    publisher.publish(new_event("t", "k"))
    [delivery] = subscriber.receive(2.0)
    subscriber.ack(delivery)
    assert len(_nats_threads()) == 2 and len(_connections_to(lab.nats_url)) == 2
    publisher.close()
    subscriber.close()
    subscriber.close()  # twice is fine
    assert _nats_threads() == []
    deadline = time.monotonic() + 2
    while _connections_to(lab.nats_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connections_to(lab.nats_url) == []
    spec.pending(), spec.dead_letters()
    assert _nats_threads() == []


def test_a_delivery_gets_one_verdict_and_must_be_ours(lab):
    spec = lab.transport("nats-queue")
    with spec.publisher() as publisher, spec.subscriber() as subscriber:
        publisher.publish(new_event("t", "k"))
        [delivery] = subscriber.receive(2.0)
        subscriber.ack(delivery)
        assert subscriber.delivery_count(delivery) == 1  # still known after the verdict
        with pytest.raises(ExperimentError, match="already acked"):
            subscriber.nak(delivery)
        with pytest.raises(ExperimentError, match="did not come from"):
            subscriber.ack(delivery._replace(received_at_ns=0))
        with pytest.raises(ConfigError, match="delay_s"):
            subscriber.nak(delivery, delay_s=-1)


@pytest.mark.parametrize("options, match", [
    (dict(topic="orders.*"), "wildcards"), (dict(topic="has space"), "subject"),
    (dict(topic="orders", ack_wait_s=0), "ack_wait_s"), (dict(topic="orders", max_deliver=0), "max_deliver"),
    (dict(topic="orders", fetch_batch=1.5), "fetch_batch"), (dict(topic="orders", ack_on_receive="yes"), "ack_on"),
])
def test_spec_settings_are_checked(options, match):
    with pytest.raises(ConfigError, match=match):
        NatsQueueSpec(url="nats://127.0.0.1:4222", **options)


def test_spec_is_picklable_and_a_changed_group_setting_is_refused(lab):
    import pickle

    spec = lab.transport("nats-queue", ack_wait_s=2.0)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.capabilities.durable and spec.capabilities.groups and not spec.capabilities.replay
    with spec.subscriber("g"):
        pass
    changed = lab.transport("nats-queue", topic=spec.topic, ack_wait_s=5.0)  # same stream, kept
    with pytest.raises(ConfigError, match="ack_wait_s=2.0.*fresh topic"):
        changed.subscriber("g")
    with pytest.raises(ExperimentError, match="cannot replay"):
        spec.replayer()


def test_the_lab_owns_its_nats_and_describes_it(lab):
    [row] = [r for r in lab.describe() if r["service"] == "nats"]
    assert row["address"] == lab.nats_url and row["started_by"] == "embedded"
    assert 0 < row["ready_in_s"] < 5 and row["pid"] == lab.server("nats").pid
    assert isinstance(lab.server("nats"), edalab.NatsServer) and "nats=" in repr(lab)


def test_start_uses_a_nats_elsewhere_and_leaves_it_running(monkeypatch, lab):
    monkeypatch.setenv("EDALAB_NATS_URL", lab.nats_url)
    with edalab.start(use_up=False) as other:
        assert other.nats_url == lab.nats_url and other.nats_mode == "elsewhere"
        assert [s.kind for s in other.servers] == ["kafka", "redis"]
        with pytest.raises(ConfigError, match="owns no nats server"):
            other.server("nats")
    assert lab.server("nats").answers()  # not stopped by the other lab


def test_on_servers_takes_a_nats(lab):
    with edalab.NatsServer() as nats:
        own = edalab.Lab.on_servers(nats=nats, kafka_bootstrap=lab.kafka_bootstrap, redis_url=lab.redis_url)
        assert own.nats_url == nats.url and own.server("nats") is nats
        spec = own.transport("nats-queue")
        with spec.publisher() as publisher:
            publisher.publish(new_event("t", "k"))
        assert spec.pending() == 1
        own.stop()
        assert not nats.running()


def test_lab_without_nats_says_how_to_get_one(lab):
    other = edalab.Lab(lab.kafka_bootstrap, lab.redis_url, "elsewhere", "elsewhere", [])
    with pytest.raises(ConfigError, match="no NATS server"):
        other.transport("nats-queue")


# -- a NATS elsewhere that is not there, or not NATS ------------------------------------------


def _start_fails_fast(monkeypatch, url: str, match: str) -> None:
    monkeypatch.setenv("EDALAB_NATS_URL", url)
    started = time.monotonic()
    with pytest.raises(NatsUnavailable, match=match):
        edalab.start(use_up=False)
    assert time.monotonic() - started < 10  # the probe itself waits at most 2 s


def test_nats_url_where_nothing_listens_is_a_clear_error_within_seconds(monkeypatch):
    _start_fails_fast(monkeypatch, f"nats://127.0.0.1:{free_port()}", "Nothing answers like NATS.*EDALAB_NATS_URL")


def test_nats_url_at_another_program_says_it_is_not_nats(monkeypatch, lab):
    redis_port = lab.redis_url.rsplit(":", 1)[1].split("/")[0]
    _start_fails_fast(monkeypatch, f"nats://127.0.0.1:{redis_port}", "is not a NATS server.*4222")
    with socket.socket() as talker:  # greets with something else at once
        talker.bind(("127.0.0.1", 0))
        talker.listen()

        def greet() -> None:
            conn, _ = talker.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                time.sleep(1)

        threading.Thread(target=greet, daemon=True).start()
        _start_fails_fast(monkeypatch, f"nats://127.0.0.1:{talker.getsockname()[1]}", "SSH-2.0")


def test_nats_without_jetstream_is_named(monkeypatch, tmp_path):
    port = free_port()
    plain = subprocess.Popen([find_nats_binary(), "-a", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        _start_fails_fast(monkeypatch, f"nats://127.0.0.1:{port}", "without JetStream.*-js")
    finally:
        plain.kill()
        plain.wait(5)


def test_a_url_that_is_not_nats_is_a_config_error(monkeypatch):
    monkeypatch.setenv("EDALAB_NATS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="not a NATS URL"):
        edalab.start(use_up=False)


def test_transport_on_a_nats_that_is_gone_is_a_clear_error(lab):
    spec = NatsQueueSpec(url=f"nats://127.0.0.1:{free_port()}", topic="orders")
    started = time.monotonic()
    with pytest.raises(NatsUnavailable, match="Nothing answers"):
        spec.publisher()
    assert time.monotonic() - started < 10
    assert _nats_threads() == []
    assert os.environ.get("EDALAB_NATS_URL") is None
