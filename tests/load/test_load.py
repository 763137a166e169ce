"""Short load check in CI (issue #12): the recorder keeps every receipt the client saw,
at the notebooks' heaviest rate, on every durable transport; the owner's memory stays
small while it follows the run. benchmarks/load.py runs longer and at ten times the rate."""

from __future__ import annotations

import pytest

from load_scenarios import HEAVIEST_RATE_PER_S, load_run


@pytest.mark.parametrize("transport", ["kafka", "redis-stream", "nats-queue"])
def test_the_recorder_keeps_every_receipt_at_the_heaviest_notebook_rate(lab, transport):
    row = load_run(lab, transport, HEAVIEST_RATE_PER_S, duration_s=2.0)
    assert row["sent"] == int(HEAVIEST_RATE_PER_S * 2.0), row
    # edalab's own bookkeeping: the trace holds exactly what the client handed over ...
    assert row["recorded"] == row["client_received"], row
    # ... and the durable transport delivered every event (redeliveries may add rows).
    assert row["delivered"] == row["sent"], row
    # The watcher holds ids (produced + received), nothing per re-read: well under 50 MB here.
    assert row["watcher_ids"] <= 2 * row["sent"] + 10 and row["owner_rss_growth_mb"] < 50, row
