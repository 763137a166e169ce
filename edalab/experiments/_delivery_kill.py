"""Kill consumers between processing and commit, restart them, wait (notebook 09).

The measuring part that :func:`edalab.experiments.delivery_guarantees` and exercise
n09 share: each consumer role notes ``"committed"`` (``ctx.note``) after each commit;
the owner reads those notes while the run goes on and SIGKILLs every consumer
``after_commit_s`` after its first commit past the start, so the kill lands in the
middle of a batch (with ``work_ms`` per event, about ``after_commit_s / work_ms``
events handled since the commit), then starts a new process in the same group.
Where the effects are counted (a Redis list, counters) is the caller's business.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from edalab.harness import Run, Scenario

__all__ = ["kill_after_commit", "wait_quiet", "ledger_counts"]


def kill_after_commit(run: Run, sc: Scenario, consumers: Sequence[str], *, after_commit_s: float,
                      restart_after_s: float, since_s: float = 0.3) -> dict[str, float]:
    """Schedule, per consumer, a SIGKILL ``after_commit_s`` after its first commit that
    comes ``since_s`` or more after the gate, and a new process ``restart_after_s`` later.

    A consumer that notes no commit within 5 s is killed at once (a body written
    without ``ctx.note("committed")``). Returns each kill's time (seconds after the gate).
    """
    run.until(lambda: run.elapsed_s() >= since_s, timeout_s=since_s + 1)
    since_ns, kill_at_s = time.time_ns(), {}

    def schedule() -> bool:
        for name in consumers:
            if name in kill_at_s:
                continue
            notes = sc.recorder.notes(name)  # one small file per role: cheap to read often
            if not len(notes):
                continue
            mine = notes.loc[(notes["what"] == "committed") & (notes["at_ns"] >= since_ns), "at_ns"]
            if len(mine):
                _plan(run, sc, name, max((int(mine.min()) - run.gate_ns) / 1e9 + after_commit_s,
                                         run.elapsed_s()), restart_after_s, kill_at_s)
        return len(kill_at_s) == len(consumers)

    if not run.until(schedule, timeout_s=5.0, step_s=0.005):
        for name in consumers:
            if name not in kill_at_s:
                _plan(run, sc, name, run.elapsed_s(), restart_after_s, kill_at_s)
    return kill_at_s


def _plan(run: Run, sc: Scenario, name: str, at_s: float, restart_after_s: float, kill_at_s: dict) -> None:
    kill_at_s[name] = at_s
    run.at(at_s).kill(name)
    # Not run.at().start(): a new Kafka member waits for its group join, and the other
    # restarts due meanwhile must not wait for it.
    run.at(at_s + restart_after_s).call(functools.partial(sc[name].start, wait=False),
                                        label=f"restart {name}")


def wait_quiet(run: Run, sc: Scenario, done: Callable[[], bool], *, quiet_s: float, timeout_s: float) -> bool:
    """Wait until ``done()`` and no consumer recorded anything for ``quiet_s``; True if so in time."""
    def settled() -> bool:
        if not done():
            return False
        received = sc.recorder.received()
        last_ns = int(received["received_at_ns"].max()) if len(received) else 0
        return time.time_ns() - last_ns > quiet_s * 1e9

    return run.until(settled, timeout_s=timeout_s, step_s=0.1)


def ledger_counts(entries: Sequence[str], produced_ids: set[str]) -> dict[str, int]:
    """Effects in a ledger (one entry per effect, the event id) against what was produced:
    ``effects``, ``lost`` (produced, no effect), ``duplicate_effects`` (effects beyond one
    per event)."""
    mine = [e for e in entries if e in produced_ids]
    distinct = set(mine)
    return {"effects": len(mine), "lost": len(produced_ids - distinct),
            "duplicate_effects": len(mine) - len(distinct)}
