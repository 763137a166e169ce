#!/usr/bin/env python3
"""Re-check the broker differences listed in docs/brokers.md.

Usage:
    python docs/tansu_checks.py BOOTSTRAP        e.g. 127.0.0.1:9092

The script starts nothing. Point it at a broker that is already running (the
embedded Tansu broker, a Docker Compose Kafka, anything that speaks the Kafka
protocol). It creates topics and groups whose names start with ``chk-``, tries
to delete the topics at the end, and prints one line per item:

    PASS     the broker behaved as Apache Kafka does
    DIFFERS  the broker showed the difference described in docs/brokers.md
    ERROR    the check itself could not run (the reason is printed)
    SKIP     the item needs a broker to be started or restarted; how to check
             it by hand is printed instead

It needs kafka-python (written against 3.0.x, where the admin call is
``describe_groups``; 2.x calls it ``describe_consumer_groups``). A full run
takes under a minute (about 35 s against Tansu).
"""

from __future__ import annotations

import random
import statistics
import struct
import sys
import threading
import time
import traceback
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.structs import OffsetAndMetadata

RESULTS: list[tuple[str, str, str]] = []
CREATED_TOPICS: list[str] = []


def report(name: str, verdict: str, detail: str) -> None:
    RESULTS.append((name, verdict, detail))
    print(f"{verdict:8s} {name}: {detail}", flush=True)


def new_name(prefix: str) -> str:
    return f"chk-{prefix}-{uuid.uuid4().hex[:8]}"


def admin(bs: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)


def make_topic(bs: str, prefix: str, partitions: int = 1) -> str:
    topic = new_name(prefix)
    a = admin(bs)
    try:
        a.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        a.close()
    CREATED_TOPICS.append(topic)
    return topic


def read_all(consumer: KafkaConsumer, seconds: float) -> list:
    got = []
    end = time.time() + seconds
    while time.time() < end:
        for records in consumer.poll(200).values():
            got.extend(records)
    return got


# --- 1. ListOffsets "latest" ------------------------------------------------

def check_end_offsets(bs: str) -> None:
    name = "end_offsets (ListOffsets latest) after a multi-record batch"
    topic = make_topic(bs, "eo")
    tp = TopicPartition(topic, 0)
    p = KafkaProducer(bootstrap_servers=bs, linger_ms=100)
    p.send(topic, b"one").get(10)          # a batch of 1 record: offset 0
    for i in range(5):                      # one batch of 5 records: offsets 1..5
        p.send(topic, b"batch-%d" % i)
    p.flush(10)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    end = c.end_offsets([tp])[tp]
    c.assign([tp])
    c.seek_to_beginning(tp)
    n = len(read_all(c, 2))
    hw = c.highwater(tp)
    c.close()
    detail = f"6 records written (last batch holds 5); end_offsets={end}, consumer highwater()={hw}, records read={n}"
    report(name, "PASS" if end == 6 else "DIFFERS", detail)


# --- 2. aborted transactions --------------------------------------------------

def check_read_committed(bs: str) -> None:
    name = "read_committed hides records of an aborted transaction"
    topic = make_topic(bs, "tx")
    tp = TopicPartition(topic, 0)
    try:
        p = KafkaProducer(bootstrap_servers=bs, transactional_id=new_name("txid"), max_block_ms=15000)
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"aborted-1")
        p.send(topic, b"aborted-2")
        p.flush(10)
        p.abort_transaction()
        p.begin_transaction()
        p.send(topic, b"committed")
        p.flush(10)
        p.commit_transaction()
        p.close()
    except Exception as e:  # noqa: BLE001
        report(name, "ERROR", f"transactional producer failed: {type(e).__name__}: {e}")
        return
    c = KafkaConsumer(bootstrap_servers=bs, isolation_level="read_committed", enable_auto_commit=False)
    c.assign([tp])
    c.seek_to_beginning(tp)
    values = [r.value for r in read_all(c, 3)]
    c.close()
    detail = f"read_committed consumer got {values}"
    if values == [b"committed"]:
        report(name, "PASS", detail)
    elif b"aborted-1" in values:
        report(name, "DIFFERS", detail)
    else:
        report(name, "ERROR", detail + " (expected [b'committed'])")


# --- 3. CreatePartitions, DeleteRecords, OffsetDelete ------------------------

def check_create_partitions(bs: str) -> None:
    name = "CreatePartitions (admin.create_partitions)"
    topic = make_topic(bs, "cp")
    a = admin(bs)
    try:
        a.create_partitions({topic: NewPartitions(2)})
    except Exception as e:  # noqa: BLE001
        report(name, "DIFFERS", f"{type(e).__name__}: {e}")
        return
    finally:
        a.close()
    a = admin(bs)
    try:
        parts = len(a.describe_topics([topic])[0]["partitions"])
    finally:
        a.close()
    report(name, "PASS" if parts == 2 else "DIFFERS", f"partitions after growing 1 -> 2: {parts}")


def check_delete_records(bs: str) -> None:
    name = "DeleteRecords (admin.delete_records)"
    topic = make_topic(bs, "dr")
    tp = TopicPartition(topic, 0)
    p = KafkaProducer(bootstrap_servers=bs)
    for _ in range(5):
        p.send(topic, b"x").get(10)
    p.close()
    a = admin(bs)
    try:
        a.delete_records({tp: 2})
        err = None
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {e}"
    finally:
        a.close()
    c = KafkaConsumer(bootstrap_servers=bs)
    start = c.beginning_offsets([tp])[tp]
    c.close()
    if err is None and start == 2:
        report(name, "PASS", "log start offset moved to 2")
    else:
        report(name, "DIFFERS", f"error={err}; log start offset afterwards={start} (want 2)")


def check_offset_delete(bs: str) -> None:
    name = "OffsetDelete (admin.delete_group_offsets)"
    topic = make_topic(bs, "od")
    tp = TopicPartition(topic, 0)
    group = new_name("od-group")
    c = KafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
    c.assign([tp])
    c.commit({tp: OffsetAndMetadata(3, "", -1)})
    c.close()
    a = admin(bs)
    try:
        a.delete_group_offsets(group, [tp])
        err = None
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {e}"
    try:
        left = a.list_group_offsets(group)
    finally:
        a.close()
    left = left.get(group, left) if isinstance(left, dict) else left
    still = tp in left if hasattr(left, "__contains__") else True
    if err is None and not still:
        report(name, "PASS", "committed offset removed")
    else:
        report(name, "DIFFERS", f"error={err}; offset still committed={still}")


# --- 4. DescribeGroups ------------------------------------------------------------

def check_describe_groups(bs: str) -> None:
    name = "describe_groups on a Stable group (kafka-python admin)"
    topic = make_topic(bs, "dg")
    group = new_name("dg-group")
    c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    end = time.time() + 60
    while not c.assignment() and time.time() < end:
        c.poll(100)
    a = admin(bs)
    try:
        fn = getattr(a, "describe_groups", None) or getattr(a, "describe_consumer_groups")
        try:
            out = fn([group])
        except Exception as e:  # noqa: BLE001
            report(name, "DIFFERS", f"{fn.__name__} raised {type(e).__name__}: {e}")
            return
        desc = out.get(group, out) if isinstance(out, dict) else out
        members = desc.get("members", []) if isinstance(desc, dict) else []
        assigned = [m.get("member_assignment") for m in members]
        if members and all(assigned):
            report(name, "PASS", f"state={desc.get('group_state')}, {len(members)} member(s) with assignments")
        else:
            report(name, "DIFFERS", f"call returned but members/assignments are empty: {desc}")
    finally:
        a.close()
        c.close()


# --- 5. fetch wake-up / delivery delay ------------------------------------------

def measure_delay(bs: str, fetch_max_wait_ms: int, samples: int) -> list[float]:
    topic = make_topic(bs, f"lat{fetch_max_wait_ms}")
    tp = TopicPartition(topic, 0)
    p = KafkaProducer(bootstrap_servers=bs, linger_ms=0)
    p.send(topic, b"warm-up").get(10)
    c = KafkaConsumer(bootstrap_servers=bs, fetch_max_wait_ms=fetch_max_wait_ms, enable_auto_commit=False)
    c.assign([tp])
    c.seek_to_end(tp)
    c.position(tp)
    delays: list[float] = []
    done = threading.Event()

    def produce() -> None:
        rng = random.Random(fetch_max_wait_ms)
        for _ in range(samples):
            time.sleep(rng.uniform(0.05, 0.6))
            p.send(topic, struct.pack(">d", time.time())).get(10)
        time.sleep(1.5)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    while not done.is_set():
        for records in c.poll(1000).values():
            now = time.time()
            for r in records:
                if len(r.value) == 8:
                    delays.append((now - struct.unpack(">d", r.value)[0]) * 1000)
    t.join()
    c.close()
    p.close()
    return delays


def check_fetch_wakeup(bs: str) -> None:
    name = "a waiting fetch is answered when new data arrives"
    parts = []
    worst = 0.0
    for wait in (500, 100):
        d = measure_delay(bs, wait, 25)
        if not d:
            report(name, "ERROR", f"no records received with fetch_max_wait_ms={wait}")
            return
        mean = statistics.mean(d)
        parts.append(f"fetch_max_wait_ms={wait}: n={len(d)} mean={mean:.0f} ms median={statistics.median(d):.0f} ms max={max(d):.0f} ms")
        if wait == 500:
            worst = mean
    # Apache Kafka answers a parked fetch as soon as a record is appended, so the
    # mean delay does not depend on fetch_max_wait_ms and stays at a few ms.
    report(name, "PASS" if worst < 40 else "DIFFERS", "; ".join(parts))


# --- 6. group join time ---------------------------------------------------------------

def join_time(bs: str, session_ms: int, heartbeat_ms: int) -> float:
    topic = make_topic(bs, "join")
    c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=new_name("join-group"),
                      session_timeout_ms=session_ms, heartbeat_interval_ms=heartbeat_ms)
    t0 = time.time()
    try:
        while not c.assignment():
            if time.time() - t0 > 120:
                raise TimeoutError("no assignment after 120 s")
            c.poll(20)
        return time.time() - t0
    finally:
        c.close()


def check_join_time(bs: str) -> None:
    name = "consumer group join time does not depend on the session timeout"
    try:
        short = [join_time(bs, 2000, 500) for _ in range(2)]
        longer = join_time(bs, 4000, 1000)
    except Exception as e:  # noqa: BLE001
        report(name, "ERROR", f"{type(e).__name__}: {e} (a Kafka broker rejects session_timeout_ms=2000 "
               "unless group.min.session.timeout.ms <= 2000)")
        return
    detail = (f"first join with session 2000/heartbeat 500 ms: {', '.join(f'{s:.2f}' for s in short)} s; "
              f"with session 4000/heartbeat 1000 ms: {longer:.2f} s")
    grows = longer - statistics.mean(short) > 0.7
    report(name, "DIFFERS" if grows else "PASS", detail)


# --- 7. replication ------------------------------------------------------------------------

def check_replication(bs: str) -> None:
    name = "replication factor larger than the broker count is refused"
    a = admin(bs)
    try:
        brokers = a.describe_cluster()["brokers"]
        n = len(brokers)
        topic = new_name("rf")
        try:
            result = a.create_topics([NewTopic(topic, 1, n + 1)])
        except Exception as e:  # noqa: BLE001
            report(name, "PASS", f"{n} broker(s); replication_factor={n + 1} refused: {type(e).__name__}")
            return
        codes = [t.get("error_code", 0) for t in result.get("topics", [])] if isinstance(result, dict) else []
        if any(codes):
            report(name, "PASS", f"{n} broker(s); replication_factor={n + 1} refused with error code(s) {codes}")
            return
        CREATED_TOPICS.append(topic)
        part = a.describe_topics([topic])[0]["partitions"][0]
        report(name, "DIFFERS", f"{n} broker(s) ({[b['broker_id'] for b in brokers]}); replication_factor={n + 1} "
               f"accepted, replicas={part['replica_nodes']} isr={part['isr_nodes']}")
    finally:
        a.close()


def manual_items() -> None:
    report("data survives a broker restart", "SKIP",
           "needs a restart: create a topic, stop and start the broker on the same storage, list topics "
           "(Tansu with memory:// storage: the topic is gone)")
    report("exit status when the port is taken", "SKIP",
           "needs a second broker started on a busy port: start it, then `echo $?` "
           "(Tansu 0.6.0: panics with AddrInUse and exits 0)")


def cleanup(bs: str) -> None:
    if not CREATED_TOPICS:
        return
    try:
        a = admin(bs)
        a.delete_topics(CREATED_TOPICS)
        a.close()
    except Exception:  # noqa: BLE001
        pass


CHECKS = [
    check_end_offsets,
    check_read_committed,
    check_create_partitions,
    check_delete_records,
    check_offset_delete,
    check_describe_groups,
    check_fetch_wakeup,
    check_join_time,
    check_replication,
]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    bs = argv[1]
    print(f"checking {bs}", flush=True)
    for check in CHECKS:
        try:
            check(bs)
        except Exception as e:  # noqa: BLE001
            report(check.__name__, "ERROR", f"{type(e).__name__}: {e}")
            traceback.print_exc()
    manual_items()
    cleanup(bs)
    counts = {v: sum(1 for _, verdict, _ in RESULTS if verdict == v) for v in ("PASS", "DIFFERS", "ERROR", "SKIP")}
    print("summary: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
