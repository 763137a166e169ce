"""One producer, one or more consumers, one transport: the unit every experiment repeats."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from edalab._recorder import Recorder
from edalab.roles import Role, consume, produce

__all__ = ["run_trial", "wait_for_receipts"]


def received_count(recorder: Recorder, role: str) -> int:
    """How many deliveries a consumer role reported so far (from its counters file)."""
    try:
        return int(json.loads((Path(recorder.run_dir) / f"counters-{role}.json").read_text())["received"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for_receipts(recorder: Recorder, roles: list[str], expected: int, timeout_s: float,
                      shared: bool = False) -> bool:
    """Wait until every consumer role reported ``expected`` receipts (with ``shared``:
    ``expected`` distinct events among them all, as competing consumers split the
    events), or the timeout. Returns whether that happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = [received_count(recorder, r) for r in roles]
        if not shared and all(c >= expected for c in counts) and all(
                _distinct_received(recorder, [r]) >= expected for r in roles):
            return True
        # Counters include duplicates (a rebalance redelivers), so a shared total only
        # says "maybe"; the traces say which distinct events arrived.
        if shared and sum(counts) >= expected and _distinct_received(recorder, roles) >= expected:
            return True
        time.sleep(0.05)
    return False


def _distinct_received(recorder: Recorder, roles: list[str]) -> int:
    received = recorder.received()
    return int(received.loc[received["role"].isin(roles), "event_id"].nunique()) if len(received) else 0


def run_trial(run_dir: Path, spec, schedule_s: list[float], *, consumers: int = 1,
              settle_timeout_s: float = 10.0, group: str | None = None,
              receive_timeout_s: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Start consumers, then a producer following ``schedule_s``; wait; stop; summarise.

    Consumers are ready (subscribed, group joined) before the first event is sent,
    so start-up costs never count as delivery delay. ``receive_timeout_s`` is how long
    one receive call may wait when nothing arrives (a long poll's hold time). Returns
    (samples, summary, cpu_s per role).
    """
    recorder = Recorder(run_dir)
    names = [f"consumer-{i}" for i in range(consumers)]
    consumer_roles = [Role(n, consume, recorder, spec=spec, group=group,
                           receive_timeout_s=receive_timeout_s) for n in names]
    gate = Path(run_dir) / "go"
    producer = Role("producer", produce, recorder, spec=spec, schedule_s=schedule_s,
                    gate_path=str(gate))
    try:
        # All processes start together; the producer's schedule starts only when the
        # gate opens, after every consumer is ready.
        for role in [*consumer_roles, producer]:
            role.start(wait=False)
        for role in [*consumer_roles, producer]:
            role.wait_ready()
        gate.touch()
        producer.finish(timeout_s=(schedule_s[-1] if schedule_s else 0.0) + 30.0)
        wait_for_receipts(recorder, names, len(schedule_s), settle_timeout_s, shared=group is not None)
    finally:
        if producer.alive:
            producer.kill()
        for role in consumer_roles:
            role.stop()
    cpu = {r.name: r.cpu_seconds() for r in consumer_roles + [producer]}
    return recorder.samples(), recorder.summary(groups=None if group else names), cpu
