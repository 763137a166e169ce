"""Replay: a brand-new reader reads a topic again, from the beginning or an offset (notebook 04).

Each method's spec says whether it can (``spec.capabilities.replay``); those that can
hand out a reader with ``spec.replayer(start)`` (Kafka: a consumer outside any group,
seeked; Redis Streams: a temporary group created at the right entry). Pub/sub keeps
nothing, so its row says "nothing to replay" without starting a reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence


from edalab import _checks
from edalab._errors import ConfigError
from edalab.harness import Scenario
from edalab.transports._base import check_replay_start
from edalab._lazy import lazy_module

# Loaded on first use: billing's role process needs neither to start.
np = lazy_module("numpy")
pd = lazy_module("pandas")

__all__ = ["ReplayResult", "replay", "replay_reader"]


@dataclass
class ReplayResult:
    """What :func:`replay` read (notebook 04).

    Attributes:
        samples: one row per replayed receipt: method, event_id, seq, ...
        summary: one row per method: can_replay (``capabilities.replay``), start,
            produced (orders in the topic), expected (produced minus the skipped
            offset; 0 where nothing can be replayed), replayed (distinct orders read),
            first_seq, last_seq, in_order (seq strictly increasing), note.
        params: the settings (``run_dir``: where the readers' traces are).
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)


def replay_reader(ctx, spec, start="beginning", idle_s=0.5, max_wait_s=10.0):
    """A reader that replays a topic from ``start`` and exits by itself (notebook 04).

    It stops ``idle_s`` seconds after the last event, or after ``max_wait_s`` when none
    came. Events are recorded as received; the reader commits nothing.
    """
    reader = spec.replayer(start)
    trace = ctx.recorder.consumer_trace(ctx.name)
    try:
        reader.wait_ready(timeout_s=30)
        if ctx.gate() is None:
            return
        deadline = time.monotonic() + max_wait_s
        while not ctx.stopping and time.monotonic() < deadline:
            deliveries = reader.receive(0.1)
            for delivery in deliveries:
                trace.record(delivery)
            if deliveries:
                deadline = time.monotonic() + idle_s
    finally:
        reader.close()
        trace.close()


def replay(lab, result, *, start: int | Literal["beginning"] = "beginning", stop_mode: str = "clean",
           methods: Sequence[str] | None = None, idle_s: float = 0.5, max_wait_s: float = 10.0,
           run_dir: str | Path | None = None) -> ReplayResult:
    """Read the topics of ``result`` again with a brand-new reader each (notebook 04).

    Args:
        lab: from :func:`edalab.start` (the specs in ``result`` carry the addresses).
        result: from :func:`~edalab.experiments.listener_down`.
        start: ``"beginning"`` or the number of orders to skip (an offset >= 0).
        stop_mode: which round's topics to read.
        methods: a list of the result's methods (default: all of them).
        idle_s: a reader stops this long (seconds) after its last order.
        max_wait_s: a reader that gets nothing stops after this long (seconds).
        run_dir: keep the readers' traces here instead of the runs folder.
    """
    del lab
    check_replay_start(start)
    if stop_mode not in result.params["stop_modes"]:
        raise ConfigError(f"stop_mode must be one of the result's rounds {list(result.params['stop_modes'])}, "
                          f"not {stop_mode!r}.")
    known = result.params["methods"]
    methods = tuple(_checks.choices(known if methods is None else methods, "methods", known))
    idle_s = _checks.number(idle_s, "idle_s", unit="seconds", positive=True, sensible=(0.1, 10))
    max_wait_s = _checks.number(max_wait_s, "max_wait_s", unit="seconds", positive=True,
                                sensible=(1, 120))
    sc = Scenario("replay", run_dir=run_dir)
    readers = {}
    for method in methods:
        spec = result.specs[(method, stop_mode)]
        if spec.capabilities.replay:  # the others raise ExperimentError in spec.replayer()
            readers[method] = f"audit-{method}"
            sc.add(readers[method], replay_reader,
                   kwargs=dict(spec=spec, start=start, idle_s=idle_s, max_wait_s=max_wait_s))
    if readers:
        with sc.run(progress=False) as run:
            for name in readers.values():
                run.wait_finished(name, timeout_s=max_wait_s + 30)
    received = sc.recorder.received()
    skip = 0 if start == "beginning" else start
    tables, rows = [], []
    for method in methods:
        produced = int(result.summary.loc[(method, stop_mode), "produced"])
        got = received[received["role"] == readers.get(method, "")].copy()
        got.insert(0, "method", method)
        tables.append(got)
        seqs = got.drop_duplicates("event_id")["seq"].to_numpy()
        can = method in readers
        rows.append({"method": method, "can_replay": can, "start": start, "produced": produced,
                     "expected": max(0, produced - skip) if can else 0,
                     "replayed": int(got["event_id"].nunique()),
                     "first_seq": int(seqs[0]) if len(seqs) else -1,
                     "last_seq": int(seqs[-1]) if len(seqs) else -1,
                     "in_order": bool(np.all(np.diff(seqs) > 0)),
                     "note": "" if can else "nothing to replay: capabilities.replay is False"})
    return ReplayResult(pd.concat(tables, ignore_index=True), pd.DataFrame(rows).set_index("method"),
                        dict(start=start, stop_mode=stop_mode, methods=methods, idle_s=idle_s,
                             max_wait_s=max_wait_s, run_dir=str(sc.run_dir)))
