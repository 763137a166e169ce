"""The short chaos suite (issue 12; part of CI, about a minute): faults while events flow.

Figures per transport and fault come from :mod:`scenarios` (shared with
benchmarks/chaos.py, whose longer run writes docs/reliability.md). Checked here:

* durable transports (Kafka, Redis Streams, the NATS queue) lose no acknowledged
  event when their consumer is SIGKILLed again and again, or paused past its
  session (Kafka), or their broker is SIGKILLed and restarted (Redis with AOF);
* Redis pub/sub loses exactly what it says it dropped: every event whose PUBLISH
  reached no subscriber, plus at most one in flight per kill of the subscriber;
* no role or server process is left behind, and no listening port of a stopped
  server is still taken.
"""

from __future__ import annotations

import pytest

import scenarios
from edalab._servers import port_in_use

TRANSPORTS = ["kafka", "redis-stream", "nats-queue", "redis-pubsub"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chaos")


def check(row: dict, *, durable: bool, kills: int = 0) -> None:
    print(row)
    assert row["acked"] > 0 and row["left_behind"] == 0, row
    assert row["processes_checked"] >= 2 + kills, row  # every incarnation of every role
    if durable:
        assert row["lost"] == 0, row
    else:
        # Redis counts what it dropped (PUBLISH answered 0); a kill can also take the
        # events already in the dying subscriber's socket, at most one each at 40/s.
        assert row["to_nobody"] <= row["lost"] <= row["to_nobody"] + kills, row
        # The fault did hit: events were published to nobody, or publishes failed while Redis was
        # down and were retried (a subscriber back before the retries then misses nothing).
        assert row["to_nobody"] > 0 or row.get("publish_retries", 0) > 0, row


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_consumer_sigkilled_in_a_loop(lab, run_dir, transport):
    row = scenarios.consumer_killed_in_a_loop(lab, transport, run_dir, kills=2, every_s=1.0)
    check(row, durable=transport in scenarios.DURABLE, kills=2)


def test_kafka_member_paused_past_its_session_loses_nothing(lab, run_dir):
    row = scenarios.consumer_paused_past_its_session(lab, "kafka", run_dir, pause_s=4.0)  # twice the 2 s session
    check(row, durable=True)


@pytest.mark.parametrize("transport", ["redis-stream", "nats-queue", "redis-pubsub"])
def test_broker_sigkilled_and_restarted(run_dir, transport):
    row = scenarios.broker_killed_and_restarted(transport, run_dir, down_s=0.5, after_s=1.0)
    check(row, durable=transport in scenarios.DURABLE)
    assert row["publish_retries"] > 0, row  # the producer did see the broker gone


def test_no_server_port_is_left_listening(run_dir):
    # The broker scenarios wrote their Redis logs here; every port they used is free again.
    import re

    ports = {int(p) for log in run_dir.rglob("redis.log")
             for p in re.findall(r"Running mode=standalone, port=(\d+)", log.read_text())}
    assert ports, "no broker scenario ran before this test"
    assert not [p for p in ports if port_in_use("127.0.0.1", p)]
