"""Tests of edalab._recorder on real trace files whose right answer is known."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edalab._errors import ConfigError
from edalab._events import Event
from edalab._recorder import (
    PRODUCED_COLUMNS,
    RECEIVED_COLUMNS,
    SUMMARY_COLUMNS,
    Recorder,
    TraceWriter,
    summarize,
)
from edalab.transports._base import Counters, Delivery

T0_NS = 1_700_000_000_000_000_000
MS = 1_000_000


def _event(seq: int, producer: str = "p") -> Event:
    """Event ``e<seq>``: keys alternate k0 (even seq) / k1 (odd seq), produced at T0 + seq ms."""
    return Event(
        id=f"e{seq}",
        type="order.ready",
        key=f"k{seq % 2}",
        payload={"n": seq},
        produced_at_ns=T0_NS + seq * MS,
        producer=producer,
        seq=seq,
    )


def _deliver(event: Event, latency_ms: float) -> Delivery:
    return Delivery(event, event.produced_at_ns + int(latency_ms * MS))


@pytest.fixture
def known_run(tmp_path: Path) -> Recorder:
    """A run with a known answer (see the comments for each group)."""
    rec = Recorder(tmp_path / "run")
    events = [_event(i) for i in range(10)]
    with rec.producer_trace("p") as trace:
        for event in events:
            trace.record(event)
    rec.write_role_stats("p", cpu_s=1.0)  # a producer: must not land in any group

    # Group A: every event once, in order; latency of e<i> is i+1 ms.
    # Plus one event from "an earlier run" that was never produced here.
    with rec.consumer_trace("a") as trace:
        for i, event in enumerate(events):
            trace.record(_deliver(event, i + 1))
        stale = Event(id="old-1", type="order.ready", key="k0", produced_at_ns=T0_NS - 10**12,
                      producer="p", seq=99)
        trace.record(Delivery(stale, T0_NS + 50 * MS))
        trace.write_counters(Counters(requests=20, empty_responses=10, bytes_received=1000), cpu_s=0.5)

    # Group B: misses e1, e3, e5; gets e4 before e2 (one reordering on k0);
    # gets e7 twice (one duplicate).
    with rec.consumer_trace("b") as trace:
        for seq in (0, 4, 2, 6, 7, 7, 8, 9):
            trace.record(_deliver(events[seq], 20))
        trace.write_counters(Counters(requests=30, empty_responses=5, bytes_received=700))
    rec.write_role_stats("b", cpu_s=0.25)

    # Group C: competing consumers c1 (k0) and c2 (k1); c2 also gets e4, late,
    # after c1 already had e6 and e8. That is a duplicate for the group, but not a
    # reordering: c2 itself never saw a higher seq on k0 before e4.
    with rec.consumer_trace("c1", group="C") as trace:
        for seq in (0, 2, 4, 6, 8):
            trace.record(_deliver(events[seq], 3))
        trace.write_counters(Counters(requests=6, empty_responses=1, bytes_received=500), cpu_s=0.1)
    with rec.consumer_trace("c2", group="C") as trace:
        for seq in (1, 3, 5, 7, 9):
            trace.record(_deliver(events[seq], 3))
        trace.record(_deliver(events[4], 500))
        trace.write_counters(Counters(requests=4, empty_responses=2, bytes_received=600))
    return rec


def test_summary_counts_every_group_exactly(known_run: Recorder) -> None:
    with pytest.warns(UserWarning, match=r"1 received event.*never recorded as produced.*producer_trace"):
        summary = known_run.summary(groups=["D"])

    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert summary.index.name == "group"
    assert set(summary.index) == {"a", "b", "C", "D"}
    assert summary.index[0] == "D"  # listed groups come first, in the order given

    counts = summary[["members", "produced", "delivered", "lost", "unexpected", "duplicated",
                      "out_of_order"]]
    assert all(dtype == np.int64 for dtype in counts.dtypes)
    assert counts.loc["a"].to_dict() == dict(members=1, produced=10, delivered=10, lost=0,
                                             unexpected=1, duplicated=0, out_of_order=0)
    assert counts.loc["b"].to_dict() == dict(members=1, produced=10, delivered=7, lost=3,
                                             unexpected=0, duplicated=1, out_of_order=1)
    assert counts.loc["C"].to_dict() == dict(members=2, produced=10, delivered=10, lost=0,
                                             unexpected=0, duplicated=1, out_of_order=0)
    assert counts.loc["D"].to_dict() == dict(members=0, produced=10, delivered=0, lost=10,
                                             unexpected=0, duplicated=0, out_of_order=0)


def test_summary_counters_are_summed_and_divided_by_delivered(known_run: Recorder) -> None:
    summary = known_run.summary(groups=["D"])

    a = summary.loc["a"]
    assert (a.requests, a.empty_responses, a.bytes_received) == (20, 10, 1000)
    assert a.requests_per_event == pytest.approx(2.0)
    assert a.empty_per_event == pytest.approx(1.0)
    assert a.cpu_s == pytest.approx(0.5)

    b = summary.loc["b"]
    assert (b.requests, b.empty_responses, b.bytes_received) == (30, 5, 700)
    assert b.requests_per_event == pytest.approx(30 / 7)
    assert b.empty_per_event == pytest.approx(5 / 7)
    assert b.cpu_s == pytest.approx(0.25)  # from write_role_stats

    c = summary.loc["C"]
    assert (c.requests, c.empty_responses, c.bytes_received) == (10, 3, 1100)
    assert c.requests_per_event == pytest.approx(1.0)
    assert math.isnan(c.cpu_s)  # c2 reported no cpu_s: a partial sum would undercount

    d = summary.loc["D"]
    for column in ("requests", "empty_responses", "bytes_received", "requests_per_event",
                   "empty_per_event", "cpu_s", "latency_p50_ms", "latency_mean_ms"):
        assert math.isnan(d[column]), column


def test_summary_latency_uses_the_first_receipt_per_group(known_run: Recorder) -> None:
    summary = known_run.summary()

    # Group a: latencies 1..10 ms; numpy "linear" percentiles.
    a = summary.loc["a"]
    assert a.latency_p50_ms == pytest.approx(5.5)
    assert a.latency_p90_ms == pytest.approx(9.1)
    assert a.latency_p99_ms == pytest.approx(9.91)
    assert a.latency_mean_ms == pytest.approx(5.5)  # the stale event (huge latency) is excluded

    # Group C: c2's late e4 (500 ms) is a duplicate; the group learned of e4 after 3 ms.
    assert summary.loc["C"].latency_p99_ms == pytest.approx(3.0)
    assert summary.loc["b"].latency_mean_ms == pytest.approx(20.0)


def test_percentiles_on_1_to_100_ms_use_numpys_linear_method() -> None:
    """Latencies 1..100 ms: linear (type 7) gives p50 50.5, p90 90.1, p99 99.01."""
    produced = pd.DataFrame({"event_id": [f"e{i}" for i in range(100)]})
    received = pd.DataFrame(
        {
            "role": "r",
            "group": "g",
            "event_id": [f"e{i}" for i in range(100)],
            "key": "k",
            "seq": range(100),
            "producer": "p",
            "produced_at_ns": T0_NS,
            "received_at_ns": [T0_NS + (i + 1) * MS for i in range(100)],
        }
    )
    # A redelivery of e0 with a huge latency must not move any statistic.
    redelivery = received.iloc[[0]].assign(received_at_ns=T0_NS + 10_000 * MS)
    summary = summarize(produced, pd.concat([received, redelivery], ignore_index=True))

    g = summary.loc["g"]
    assert (g.latency_p50_ms, g.latency_p90_ms, g.latency_p99_ms) == pytest.approx(
        (50.5, 90.1, 99.01)
    )
    assert g.latency_mean_ms == pytest.approx(50.5)
    assert (g["delivered"], g["duplicated"], g["lost"]) == (100, 1, 0)
    np.testing.assert_allclose(
        np.percentile(np.arange(1, 101), [50, 90, 99]), [50.5, 90.1, 99.01]
    )


def test_out_of_order_is_per_member_key_and_producer() -> None:
    produced = pd.DataFrame({"event_id": ["x0", "x1", "x2", "y0", "y1"]})
    rows = [
        # role, event, key, seq, producer
        ("m", "x2", "k", 2, "p"),
        ("m", "x0", "k", 0, "p"),  # lower than 2 on (k, p): out of order
        ("m", "x1", "k", 1, "p"),  # lower than 2 on (k, p): out of order
        ("m", "y1", "k", 1, "q"),  # another producer: own sequence
        ("m", "y0", "j", 0, "q"),  # another key: own sequence
        ("m", "x2", "k", 2, "p"),  # redelivery: a duplicate, not a reordering
    ]
    received = pd.DataFrame(rows, columns=["role", "event_id", "key", "seq", "producer"]).assign(
        produced_at_ns=T0_NS, received_at_ns=T0_NS + MS
    )
    summary = summarize(produced, received)  # no group column: group = role
    assert summary.loc["m", "out_of_order"] == 2
    assert summary.loc["m", "duplicated"] == 1


def test_samples_have_latency_and_per_role_duplicates(known_run: Recorder) -> None:
    samples = known_run.samples()
    received = known_run.received()

    assert len(samples) == len(received) == 11 + 8 + 5 + 6
    assert list(received.columns) == list(RECEIVED_COLUMNS)
    assert samples["duplicate"].dtype == bool

    duplicates = samples[samples["duplicate"]]
    # Only b's second e7; c2's e4 duplicates c1's within the group, not within a role.
    assert duplicates[["role", "event_id"]].values.tolist() == [["b", "e7"]]
    assert samples.loc[samples["unexpected"], "event_id"].tolist() == ["old-1"]

    a = samples[(samples["role"] == "a") & ~samples["unexpected"]]
    assert a["latency_ms"].tolist() == pytest.approx([float(i + 1) for i in range(10)])
    late = samples[(samples["role"] == "c2") & (samples["event_id"] == "e4")]
    assert late["latency_ms"].tolist() == pytest.approx([500.0])
    assert late["group"].tolist() == ["C"]


def test_counters_have_one_row_per_role(known_run: Recorder) -> None:
    counters = known_run.counters()
    assert counters["role"].tolist() == ["a", "b", "c1", "c2", "p"]
    assert list(counters.columns[:5]) == ["role", "group", "requests", "empty_responses",
                                          "bytes_received"]
    by_role = counters.set_index("role")
    assert by_role.loc["c1", "group"] == "C"
    assert by_role.loc["a", "requests"] == 20
    assert by_role.loc["b", "cpu_s"] == pytest.approx(0.25)
    assert by_role.loc["p", "cpu_s"] == pytest.approx(1.0)
    assert math.isnan(by_role.loc["p", "requests"])


def test_write_counters_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with rec.consumer_trace("c") as trace:
        trace.write_counters(Counters(requests=1))
        trace.write_counters(Counters(requests=7, empty_responses=3, bytes_received=9), cpu_s=0.2)
    rec.write_role_stats("c", started=True)
    rec.write_role_stats("c", exit_code=0)  # merges with what was there

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counters-c.json", "received-c.csv", "stats-c.json"
    ]
    row = rec.counters().set_index("role").loc["c"]
    assert (row.requests, row.empty_responses, row.bytes_received, row.cpu_s) == (7, 3, 9, 0.2)
    assert (row.started, row.exit_code) == (True, 0)


def test_every_row_reaches_the_os_before_write_returns(tmp_path: Path) -> None:
    """A reader (another process, or the same one) sees each row while the trace is open."""
    rec = Recorder(tmp_path)
    trace = rec.consumer_trace("c")
    for seq in range(3):
        trace.record(_deliver(_event(seq), 1))
        assert rec.received()["seq"].tolist() == list(range(seq + 1))
    trace.close()


def test_truncated_last_line_is_skipped_and_cut_on_reopen(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with rec.producer_trace("p") as trace:
        for i in range(3):
            trace.record(_event(i))
    path = tmp_path / "produced-p.csv"
    with open(path, "ab") as f:  # what a SIGKILL in the middle of a write leaves
        f.write(b"p,e3,order.ready,k1,3,p,17000000")

    produced = rec.produced()
    assert list(produced.columns) == list(PRODUCED_COLUMNS)
    assert produced["event_id"].tolist() == ["e0", "e1", "e2"]
    assert produced["produced_at_ns"].dtype == np.int64

    # The restarted role appends after the last complete row, not onto the half row.
    with rec.producer_trace("p") as trace:
        trace.record(_event(4))
    assert rec.produced()["event_id"].tolist() == ["e0", "e1", "e2", "e4"]
    assert path.read_text().count("\n") == 5  # header + 4 rows, no leftovers


def test_truncated_header_and_missing_files_read_as_empty(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "new" / "run")
    assert rec.run_dir.is_dir()
    (rec.run_dir / "received-x.csv").write_text("role,gro")  # killed while writing the header
    assert rec.received().empty
    assert list(rec.received().columns) == list(RECEIVED_COLUMNS)
    assert rec.counters().empty

    summary = rec.summary(groups=["g"])
    assert summary.loc["g", ["produced", "delivered", "lost", "duplicated"]].tolist() == [0, 0, 0, 0]

    with rec.consumer_trace("x") as trace:  # reopening rewrites the header
        trace.record(_deliver(_event(0), 1))
    assert rec.received()["event_id"].tolist() == ["e0"]


def test_rows_damaged_in_the_middle_warn(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with rec.producer_trace("p") as trace:
        trace.record(_event(0))
    with open(tmp_path / "produced-p.csv", "a") as f:
        f.write("p,e1,order.ready,k1,1,p,not-a-number\n")
    with pytest.warns(UserWarning, match="skipped 1 unreadable row"):
        assert rec.produced()["event_id"].tolist() == ["e0"]


def test_trace_writer_rejects_wrong_rows_and_foreign_files(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "t.csv", ["a", "b"]) as writer:
        writer.write({"a": 1, "b": "x,y"})
        with pytest.raises(ConfigError):
            writer.write({"a": 1})
        with pytest.raises(ConfigError):
            writer.write({"a": 1, "b": 2, "c": 3})
    assert writer.closed
    assert (tmp_path / "t.csv").read_text() == 'a,b\n1,"x,y"\n'
    with pytest.raises(ConfigError, match="fresh run directory"):
        TraceWriter(tmp_path / "t.csv", ["a", "c"])
    with pytest.raises(ConfigError):
        Recorder(tmp_path).producer_trace("../evil")


# --------------------------------------------------------------------------- processes
# Children are started with "spawn" (fresh interpreters, as role processes are), so
# their targets live at module level.


def _role_process(run_dir: str, name: str, count: int) -> None:
    rec = Recorder(run_dir)
    with rec.producer_trace(f"prod-{name}") as produced, rec.consumer_trace(
        f"cons-{name}", group="shared"
    ) as received:
        for seq in range(count):
            event = _event(seq, producer=f"prod-{name}")
            event = Event(**{**event.to_dict(), "id": f"{name}-{seq}"})
            produced.record(event)
            received.record(Delivery(event, time.time_ns()))
        received.write_counters(Counters(requests=count), cpu_s=time.process_time())


def _endless_producer(run_dir: str) -> None:
    rec = Recorder(run_dir)
    trace = rec.producer_trace("victim")
    seq = 0
    while True:  # until the parent SIGKILLs us
        trace.record(Event(id=f"v{seq}", type="t", key="k", payload={}, produced_at_ns=seq,
                           producer="victim", seq=seq))
        seq += 1


def test_writers_in_separate_processes_are_all_read(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_role_process, args=(str(tmp_path), name, 50))
                for name in ("one", "two")]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0

    rec = Recorder(tmp_path)
    assert sorted(rec.produced()["role"].unique()) == ["prod-one", "prod-two"]
    assert len(rec.produced()) == 100
    summary = rec.summary()
    assert summary.index.tolist() == ["shared"]
    row = summary.loc["shared"]
    counts = ["members", "produced", "delivered", "lost", "duplicated", "out_of_order"]
    assert row[counts].tolist() == [2, 100, 100, 0, 0, 0]
    assert row.requests == 100
    assert row.cpu_s > 0


def test_a_sigkilled_writer_leaves_a_readable_prefix(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_endless_producer, args=(str(tmp_path),))
    child.start()
    path = tmp_path / "produced-victim.csv"
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and path.stat().st_size > 20_000):
            assert time.monotonic() < deadline, "the child process wrote nothing in 60 s"
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL

    seqs = Recorder(tmp_path).produced()["seq"].tolist()
    assert len(seqs) > 100
    assert seqs == list(range(len(seqs)))  # every complete row, in order, no gap


def test_summary_says_nothing_when_every_receipt_was_produced(tmp_path: Path) -> None:
    import warnings

    rec = Recorder(tmp_path)
    event = Event(id="e1", type="t", key="k", produced_at_ns=1, producer="p", seq=0)
    with rec.producer_trace("p") as produced, rec.consumer_trace("c") as received:
        produced.record(event)
        received.record(Delivery(event, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rec.summary().loc["c", "delivered"] == 1
