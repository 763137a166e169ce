"""Chaos figures of edalab (issue 12): faults x transports, from one run; writes
docs/reliability.md (not a test: tests/chaos/ is the short version CI runs).

    python benchmarks/chaos.py [--quick] [--out docs/reliability.md] [--autocreate-trials 10]

For each fault and transport it runs real roles on real servers (tests/chaos/scenarios.py)
and reports events sent, acknowledged, delivered, duplicated and lost, and how many
role or server processes were left behind. It also repeats the concurrent
auto-creation race of docs/brokers.md item 11 (tests/test_autocreate.py's producers)
on fresh topics, on memory and on S3 storage, and counts what was lost.
About 3 minutes (the quick version about 1.5).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "chaos"), str(ROOT / "tests")]

import edalab  # noqa: E402
import scenarios  # noqa: E402
from edalab._servers import KafkaServer, MotoServer  # noqa: E402

TRANSPORTS = ["kafka", "redis-stream", "nats-queue", "redis-pubsub"]
COLUMNS = ["fault", "transport", "promise", "sent", "acked", "delivered", "duplicated", "lost",
           "to_nobody", "left_behind", "verdict"]


def promise(transport: str) -> str:
    return "0 lost" if transport in scenarios.DURABLE else "lost = dropped (counted)"


def verdict(row: dict, kills: int) -> str:
    if row["left_behind"]:
        return "FAIL: processes left"
    if row["transport"] in scenarios.DURABLE:
        return "ok" if row["lost"] == 0 else "FAIL: lost"
    extra = row["lost"] - row["to_nobody"]
    return (f"ok (+{extra} in flight at a kill)" if 0 < extra <= kills else
            "ok" if extra == 0 else "FAIL: uncounted loss")


def autocreate_trials(trials: int) -> list[dict]:
    """docs/brokers.md item 11: concurrent producers on a fresh, auto-created topic."""
    from test_autocreate import read_back, send_concurrently

    rows = []
    with MotoServer() as moto:
        bucket = moto.create_bucket(f"edalab-{uuid.uuid4().hex[:8]}")
        for engine, server in (("memory://", KafkaServer()),
                               ("s3://", KafkaServer(storage_engine=f"s3://{bucket}/", env=moto.s3_env()))):
            counts = collections.Counter()
            with server:
                for _ in range(trials):
                    topic = f"auto-{uuid.uuid4().hex[:10]}"
                    acked, errors = send_concurrently(server.bootstrap, topic)
                    seen, partitions = read_back(server.bootstrap, topic, len(acked))
                    places = collections.Counter(o for ps in acked.values() for o in ps)
                    lost = sum(1 for v in acked if seen[v] == 0)
                    counts["trials"] += 1
                    counts["acked"] += len(acked)
                    counts["failed sends"] += len(errors)
                    counts["offsets given twice"] += sum(1 for n in places.values() if n > 1)
                    counts["lost"] += lost
                    counts["trials with a loss"] += lost > 0
                    counts["partitions"] = partitions
            rows.append({"storage": engine, **counts})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer kills, shorter pauses")
    parser.add_argument("--out", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--autocreate-trials", type=int, default=10)
    args = parser.parse_args()
    kills = 2 if args.quick else 5
    pause_s = 4.0 if args.quick else 6.0
    run_dir = Path(tempfile.mkdtemp(prefix="edalab-chaos-"))
    rows = []
    started = time.monotonic()
    with edalab.start(use_up=False) as lab:
        for transport in TRANSPORTS:
            row = scenarios.consumer_killed_in_a_loop(lab, transport, run_dir, kills=kills)
            rows.append({**row, "verdict": verdict(row, kills)})
            print(rows[-1], flush=True)
        for transport in ("kafka", "redis-stream", "nats-queue"):
            row = scenarios.consumer_paused_past_its_session(lab, transport, run_dir, pause_s=pause_s)
            rows.append({**row, "verdict": verdict(row, 0)})
            print(rows[-1], flush=True)
    for transport in ("redis-stream", "nats-queue", "redis-pubsub"):
        row = scenarios.broker_killed_and_restarted(transport, run_dir, down_s=1.0)
        rows.append({**row, "verdict": verdict(row, 0)})
        print(rows[-1], flush=True)
    auto = autocreate_trials(args.autocreate_trials)
    for row in auto:
        print(row, flush=True)
    took_s = time.monotonic() - started
    command = "python benchmarks/chaos.py" + (" --quick" if args.quick else "") + \
        (f" --autocreate-trials {args.autocreate_trials}" if args.autocreate_trials != 10 else "")
    write(Path(args.out), rows, auto, command, took_s)
    print(f"Wrote {args.out} ({took_s:.0f} s)")
    return 0 if all(r["verdict"].startswith("ok") for r in rows) else 1


def write(path: Path, rows: list[dict], auto: list[dict], command: str, took_s: float) -> None:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        "# Reliability: faults x transports",
        "",
        "The course's promise: nothing lost where the transport promises it, and every loss",
        "counted where it does not. These figures come from **one run** of",
        "",
        f"    {command}",
        "",
        f"on {when}, {os.cpu_count()} cores, load average {load:.1f} at the end, "
        f"Python {platform.python_version()}, {took_s:.0f} s in all. Run it again to",
        "reproduce them; `tests/chaos/` runs a shorter version of the same scenarios in CI and",
        "asserts the promise (`scripts/test tests/chaos`).",
        "",
        "What each scenario does (code: `tests/chaos/scenarios.py`): a producer role publishes",
        "40 events a second; a consumer role of group `billing` records what it receives and",
        "commits after each batch. Faults: the consumer SIGKILLed again and again (restarted",
        "0.3 s later each time; on Redis Streams the restarted member takes over its",
        "predecessor's pending entries); one of two members paused (SIGSTOP) past its",
        "session, then resumed; the broker (Redis with its append-only file, or NATS on its",
        "JetStream file store) SIGKILLed and started again on the same port a second later,",
        "producer and consumer reconnecting. The Kafka broker's kill and restart is notebook",
        "08's experiment (Tansu on a local S3 store; in memory it forgets everything).",
        "",
        "Columns: **sent** events the producer tried to publish; **acked** those the",
        "transport accepted; **delivered** distinct acked events a consumer recorded;",
        "**duplicated** receipts beyond the first (redeliveries after a kill or a rebalance:",
        "at-least-once); **lost** acked events never delivered; **to_nobody** (pub/sub) events",
        "whose PUBLISH reached no subscriber, Redis's own count of what it dropped;",
        "**left_behind** role or server processes alive after the run (read from the OS).",
        "The consumer commits right after recording each batch (each receipt is flushed to",
        "its trace first), so a kill seldom lands between the two: few duplicates.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        row = {**row, "promise": promise(row["transport"])}
        lines.append("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    lines += [
        "",
        "Pub/sub keeps nothing: an event published while the subscriber is away (or the",
        "broker restarting) is gone, and PUBLISH says so by answering 0. A SIGKILL can also",
        "take an event already in the dying subscriber's socket: \"+n in flight\" in the",
        "verdict. Kafka's and Redis Streams' duplicates are the price of at-least-once.",
        "A restarted consumer is a new process that needs about a second to import and",
        "subscribe, so with a kill every second pub/sub's subscriber is away most of the time.",
        "",
        "## Topics created on first use (docs/brokers.md item 11)",
        "",
        "Two kafka-python and two librdkafka producers start at the same moment on a topic",
        "that does not exist yet, so the broker (Tansu 0.6.0) auto-creates it; every",
        "acknowledged record is then read back from every partition. One row per storage",
        "engine, summed over the trials of this run:",
        "",
    ]
    keys = ["storage", "trials", "acked", "failed sends", "offsets given twice", "lost",
            "trials with a loss", "partitions"]
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * len(keys))
    for row in auto:
        lines.append("| " + " | ".join(str(row.get(k, 0)) for k in keys) + " |")
    lines += [
        "",
        "A failed send is not acknowledged (the producer is told: Tansu's \"Unknown broker",
        "error\" when two batches got one offset), so it is not counted as lost.",
        "",
        "The course creates topics before producing on S3 (`lab.transport(\"kafka\",",
        "partitions=N)`); `tests/test_autocreate.py` checks that this loses nothing, and that",
        "auto-creation on memory loses nothing. Why S3 auto-creation can go wrong is in",
        "docs/brokers.md item 11.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
