"""Waiting for receipts the old way (fanout only, until it moves to ``Run.until_delivered``).

Polling vs push now runs on :class:`edalab.Scenario`; delete this module once
``wait_for_receipts`` has no user left."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edalab._recorder import Recorder

__all__ = ["wait_for_receipts"]


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
