"""Availability arithmetic and the live replicated cluster (notebook 08).

* :func:`replication_availability`: one broker vs three with replication factor 3
  and ``min.insync.replicas=2``, each broker up a fraction ``broker_availability``
  of the time, failing independently (the optimistic textbook assumption).
* :func:`chain_availability`: the counterpoint. A synchronous chain of ``n``
  services accepts an order only when all ``n`` answer; with events the front
  service needs only itself and the broker, the others catch up later.
* :func:`replicated_cluster`: on a real three-broker Kafka (the Compose ``cluster``
  profile, ``EDALAB_KAFKA_BOOTSTRAP``), write to a topic with replication factor 3
  and show where its replicas live; when no such cluster is configured it says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

from edalab import _checks
from edalab._errors import ConfigError
from edalab._lazy import lazy_module

pd = lazy_module("pandas")

__all__ = ["replication_availability", "chain_availability", "replicated_cluster", "ClusterReport",
           "at_least_up", "HOURS_PER_YEAR"]

HOURS_PER_YEAR = 24 * 365


def at_least_up(availability: float, servers: int, needed: int) -> float:
    """The chance that at least ``needed`` of ``servers`` independent servers are up."""
    p = availability
    return sum(comb(servers, k) * p**k * (1 - p) ** (servers - k) for k in range(needed, servers + 1))


def _availability(value, name: str) -> float:
    value = _checks.number(value, name, unit="fraction of the time (0.99 = 99 %)", minimum=0)
    if value > 1:
        raise ConfigError(f"{name} is a fraction of the time between 0 and 1 (0.99 for 99 %), "
                                  f"not {value!r}.")
    return value


def replication_availability(broker_availability: float = 0.99, *, min_insync: int = 2) -> pd.DataFrame:
    """Writes and reads available, one broker vs three (replication factor 3).

    With ``acks=all`` a write needs ``min_insync`` replicas up; a read needs one (a
    new leader is elected among the in-sync replicas). Columns ``method``,
    ``brokers``, ``writes_available``, ``reads_available``,
    ``write_downtime_h_per_year``.
    """
    p = _availability(broker_availability, "broker_availability")
    min_insync = _checks.count(min_insync, "min_insync", minimum=1, maximum=3)
    rows = [{"method": "1 broker", "brokers": 1, "writes_available": p, "reads_available": p},
            {"method": f"3 brokers, min ISR {min_insync}", "brokers": 3,
             "writes_available": at_least_up(p, 3, min_insync), "reads_available": at_least_up(p, 3, 1)}]
    out = pd.DataFrame(rows)
    out["write_downtime_h_per_year"] = (1 - out["writes_available"]) * HOURS_PER_YEAR
    return out


def chain_availability(service_availability: float = 0.999, broker_availability: float = 0.999, *,
                       services: Sequence[int] = tuple(range(1, 11)), min_insync: int = 2) -> pd.DataFrame:
    """Chance an order is accepted, synchronous chain vs events, per number of services.

    ``synchronous chain``: every service must answer (``a ** n``). ``events, 1 broker``:
    the front service and the broker (``a * b``); ``events, 3 brokers``: the front
    service and ``min_insync`` of three brokers. The other services' work is delayed
    while they are down, not refused. Columns ``services``, ``method``,
    ``availability``, ``downtime_h_per_year``.
    """
    a = _availability(service_availability, "service_availability")
    b = _availability(broker_availability, "broker_availability")
    services = [int(n) for n in _checks.numbers(services, "services", unit="services", minimum=1)]
    min_insync = _checks.count(min_insync, "min_insync", minimum=1, maximum=3)
    rows = []
    for n in services:
        rows += [{"services": n, "method": "synchronous chain", "availability": a**n},
                 {"services": n, "method": "events, 1 broker", "availability": a * b},
                 {"services": n, "method": "events, 3 brokers", "availability": a * at_least_up(b, 3, min_insync)}]
    out = pd.DataFrame(rows)
    out["downtime_h_per_year"] = (1 - out["availability"]) * HOURS_PER_YEAR
    return out


@dataclass
class ClusterReport:
    """What :func:`replicated_cluster` found: ``configured`` is False (and ``message``
    says how to start one) when the lab's Kafka is not a cluster of three or more."""

    configured: bool
    message: str
    brokers: list = field(default_factory=list)
    partitions: pd.DataFrame | None = None
    written: int = 0
    read_back: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def replicated_cluster(lab, *, events: int = 50, timeout_s: float = 30.0) -> ClusterReport:
    """On a configured cluster of 3+ brokers: a topic with replication factor 3, ``events``
    writes with ``acks=all`` and a read-back; otherwise a report that says what to start."""
    from edalab._lab import check_kafka

    events = _checks.count(events, "events", minimum=1, sensible_max=10000)
    timeout_s = _checks.number(timeout_s, "timeout_s", unit="seconds", positive=True, sensible=(5, 300))
    brokers = [] if lab.kafka_embedded else check_kafka(lab.kafka_bootstrap)
    if len(brokers) < 3:
        where = ("the embedded Tansu (one broker)" if lab.kafka_embedded
                 else f"{lab.kafka_bootstrap} ({len(brokers)} broker(s))")
        return ClusterReport(False, (
            f"No replicated cluster configured: this lab's Kafka is {where}. To run this part, start "
            f"the three brokers (`docker compose --profile cluster up -d kafka-1 kafka-2 kafka-3 redis`), "
            f"`export EDALAB_KAFKA_BOOTSTRAP=localhost:29092,localhost:39092,localhost:49092`, restart "
            f"the kernel and run the notebook again."), brokers)
    from kafka.admin import NewTopic

    topic = f"edalab-replicated-{uuid.uuid4().hex[:8]}"
    admin = lab._new_admin()
    try:
        admin.create_topics([NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})])
        time.sleep(1.0)  # the new partition's leader is elected in the background
        producer = lab.kafka_producer(acks="all", request_timeout_ms=int(timeout_s * 1000 / 2))
        for seq in range(events):
            producer.send(topic, value=str(seq).encode()).get(timeout=timeout_s)
        producer.close(timeout=5)
        consumer = lab.kafka_consumer(topic, group_id=None, consumer_timeout_ms=3000)
        read_back = sum(1 for _ in consumer)
        consumer.close()
        described = admin.describe_topics([topic])[0]["partitions"]
        partitions = pd.DataFrame([{"partition": d["partition"], "leader": d["leader"],
                                    "replicas": d["replicas"], "in_sync": d["isr"]} for d in described])
        admin.delete_topics([topic])
    finally:
        admin.close()
    return ClusterReport(True, (
        f"{len(brokers)} brokers; topic {topic} has 3 replicas. Stop one broker "
        f"(`docker compose stop kafka-2`) and run this cell again: writes with acks=all still succeed "
        f"while 2 of 3 replicas are in sync."), brokers, partitions, events, read_back,
        {"events": events})
