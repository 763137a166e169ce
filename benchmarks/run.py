"""Speed targets of edalab, measured in one run on this machine (not a test).

    python benchmarks/run.py [--quick] [--json FILE]

Measures, all on loopback in one run so the ratios compare like with like:

* the floor: a TCP round trip between two processes (``loopback_rtt_p50_us``);
* how fast the embedded servers answer after spawn (``kafka_ready_s``, ``redis_ready_s``);
* each push path's delivery delay, p50 and p99 (``<method>_p50_us`` / ``_p99_us``);
* polling's mean delay against the model interval/2 + RTT for 20 ms .. 1 s
  (``polling_model_max_rel_error``);
* throughput through edalab's publisher/subscriber against the raw client doing the
  same work (``harness_throughput_ratio``, the worst of Kafka and Redis Streams);
* how long the quick sweep that CI runs takes (``quick_sweep_s``).

Targets (issue "measurement core"): redis pub/sub p50 <= 4x loopback RTT p50; model
error <= 15 %; harness ratio >= 0.9; quick sweep <= 30 s; servers ready <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import uuid

import numpy as np

import edalab
from edalab.experiments import polling_vs_push

ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (d := c.recv(64)):
    c.sendall(d)
"""


def loopback_rtt_us(rounds: int) -> float:
    """Median round trip of 32 bytes to an echo server in another process."""
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(rounds):
                t = time.perf_counter_ns()
                sock.sendall(b"x" * 32)
                got = 0
                while got < 32:
                    got += len(sock.recv(64))
                times.append((time.perf_counter_ns() - t) / 1000)
        return float(np.median(times))
    finally:
        server.kill()


def server_ready_s() -> dict[str, float]:
    out = {}
    for cls in (edalab.KafkaServer, edalab.RedisServer):
        t = time.perf_counter()
        with cls():
            out[f"{cls.kind}_ready_s"] = time.perf_counter() - t
    return out


def _drain(subscriber, count: int, timeout_s: float) -> int:
    got, deadline = 0, time.monotonic() + timeout_s
    while got < count and time.monotonic() < deadline:
        got += len(subscriber.receive(0.2))
    return got


def harness_ratio(lab, count: int) -> dict[str, float]:
    """Events per second through edalab vs the raw client, publish + receive, same payloads."""
    from kafka import KafkaConsumer, KafkaProducer

    from edalab.transports.kafka import KafkaSpec
    from edalab.transports.redis import RedisStreamSpec

    events = [edalab.new_event("order.ready", f"order-{i % 10}", {"order": i}, seq=i) for i in range(count)]
    out = {}

    # Kafka: edalab's publisher + subscriber
    spec = KafkaSpec.for_lab(lab, lab.create_topic())
    with spec.subscriber() as sub, spec.publisher() as pub:
        sub.wait_for_assignment(15)
        t = time.perf_counter()
        for e in events:
            pub.publish(e)
        pub.flush()
        assert _drain(sub, count, 60) == count
        edalab_s = time.perf_counter() - t
    # Kafka: the raw client with the same settings
    topic = lab.create_topic()
    d = lab.kafka_defaults
    producer = KafkaProducer(bootstrap_servers=lab.kafka_bootstrap)
    consumer = KafkaConsumer(topic, bootstrap_servers=lab.kafka_bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=d.session_timeout_ms, heartbeat_interval_ms=d.heartbeat_interval_ms,
                             fetch_max_wait_ms=d.fetch_max_wait_ms)
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    t = time.perf_counter()
    for e in events:
        producer.send(topic, key=e.key.encode(), value=e.to_bytes())
    producer.flush()
    got, deadline = 0, time.monotonic() + 60
    while got < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                edalab.Event.from_bytes(r.value)  # the same parsing work edalab does
                got += 1
        consumer.commit()
    raw_s = time.perf_counter() - t
    producer.close()
    consumer.close()
    out["kafka_throughput_ratio"] = raw_s / edalab_s

    # Redis Streams: edalab vs raw XADD / XREADGROUP
    spec = RedisStreamSpec(lab.redis_url, f"bench-{uuid.uuid4().hex[:6]}")
    with spec.subscriber() as sub, spec.publisher() as pub:
        t = time.perf_counter()
        for e in events:
            pub.publish(e)
        pub.flush()
        assert _drain(sub, count, 60) == count
        edalab_s = time.perf_counter() - t
    r = lab.redis()
    stream = f"bench-raw-{uuid.uuid4().hex[:6]}"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    t = time.perf_counter()
    for e in events:
        r.xadd(stream, {"event": e.to_bytes()})
    got = 0
    while got < count:
        for _, entries in r.xreadgroup("g", "c", {stream: ">"}, count=100, block=200) or []:
            for entry_id, fields in entries:
                edalab.Event.from_bytes(fields[b"event"])
                r.xack(stream, "g", entry_id)
                got += 1
    raw_s = time.perf_counter() - t
    out["redis_stream_throughput_ratio"] = raw_s / edalab_s
    out["harness_throughput_ratio"] = min(out["kafka_throughput_ratio"], out["redis_stream_throughput_ratio"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    results: dict[str, float | bool] = {}
    results["loopback_rtt_p50_us"] = loopback_rtt_us(2000 if args.quick else 10000)
    results.update(server_ready_s())
    with edalab.start(use_up=False) as lab:
        t = time.perf_counter()
        polling_vs_push(lab, quick=True, progress=False)
        results["quick_sweep_s"] = time.perf_counter() - t
        sweep = polling_vs_push(lab, poll_intervals_s=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                                events=100 if args.quick else 300, rate_per_s=25, quick=False,
                                progress=False)
        for _, row in sweep.push().iterrows():
            name = row["method"].replace("-", "_")
            results[f"{name}_p50_us"] = row["latency_p50_ms"] * 1000
            results[f"{name}_p99_us"] = row["latency_p99_ms"] * 1000
        results["http_rtt_us"] = sweep.rtt_ms * 1000
        results["polling_model_max_rel_error"] = sweep.model_max_rel_error()
        results.update(harness_ratio(lab, 2000 if args.quick else 10000))
    results["targets"] = {
        "redis_pubsub_p50_le_4x_loopback": results["redis_pubsub_p50_us"] <= 4 * results["loopback_rtt_p50_us"],
        "polling_model_within_15pct": results["polling_model_max_rel_error"] <= 0.15,
        "harness_ge_90pct_of_raw": results["harness_throughput_ratio"] >= 0.9,
        "quick_sweep_le_30s": results["quick_sweep_s"] <= 30,
        "servers_ready_le_2s": max(results["kafka_ready_s"], results["redis_ready_s"]) <= 2,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
