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
import json
import time
from collections.abc import Sequence
from pathlib import Path

from edalab.harness import Run, Scenario

__all__ = ["kill_after_commit", "wait_settled", "ledger_counts"]


def kill_after_commit(run: Run, sc: Scenario, consumers: Sequence[str], *, after_commit_s: float,
                      restart_after_s: float, since_s: float = 0.3) -> dict[str, float]:
    """Schedule, per consumer, a SIGKILL ``after_commit_s`` after its first commit that
    comes ``since_s`` or more after the gate, and a new process ``restart_after_s`` later.

    A consumer that notes no commit within 5 s is killed at once (a body written
    without ``ctx.note("committed")``). Returns each kill's time (seconds after the gate).
    """
    run.until(lambda: run.elapsed_s() >= since_s, timeout_s=since_s + 1)
    since_ns, kill_at_s = time.time_ns(), {}
    commits = _CommitTail(sc.recorder.run_dir)

    def schedule() -> bool:
        for name in consumers:
            if name in kill_at_s:
                continue
            mine = [at_ns for at_ns in commits.new(name) if at_ns >= since_ns]
            if mine:
                _plan(run, sc, name, max((min(mine) - run.gate_ns) / 1e9 + after_commit_s, run.elapsed_s()),
                      restart_after_s, kill_at_s)
        return len(kill_at_s) == len(consumers)

    if not run.until(schedule, timeout_s=5.0, step_s=0.005):
        for name in consumers:
            if name not in kill_at_s:
                _plan(run, sc, name, run.elapsed_s(), restart_after_s, kill_at_s)
    return kill_at_s


class _CommitTail:
    """The ``"committed"`` notes each role wrote since the last look (``notes-<role>.jsonl``,
    :meth:`edalab.Recorder.note`), read from where the last look stopped: cheap enough to
    ask every few ms on a busy machine, where re-reading every note with pandas lags."""

    def __init__(self, run_dir) -> None:
        self._run_dir = Path(run_dir)
        self._offsets: dict[str, int] = {}

    def new(self, role: str) -> list[int]:
        path = self._run_dir / f"notes-{role}.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(self._offsets.get(role, 0))
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]   # a line still being written waits
        self._offsets[role] = self._offsets.get(role, 0) + len(complete)
        found = []
        for line in complete.splitlines():
            try:
                note = json.loads(line)
            except ValueError:
                continue
            if note.get("what") == "committed":
                found.append(int(note["at_ns"]))
        return found


def _plan(run: Run, sc: Scenario, name: str, at_s: float, restart_after_s: float, kill_at_s: dict) -> None:
    kill_at_s[name] = at_s
    run.at(at_s).kill(name)
    # Not run.at().start(): a new Kafka member waits for its group join, and the other
    # restarts due meanwhile must not wait for it.
    run.at(at_s + restart_after_s).call(functools.partial(sc[name].start, wait=False),
                                        label=f"restart {name}")


def wait_settled(run: Run, sc: Scenario, needs: dict[str, int | None], killed: dict, *, quiet_s: float,
                 timeout_s: float) -> bool:
    """Wait until every consumer is done and none handled a new event for ``quiet_s``; True if in time.

    ``needs[name]`` is how many distinct events ``name`` must have handled, or None for a
    consumer that may have lost some (at-most-once): it only has to be back (its new
    process ready) after its kill. Counts come from the run's :class:`~edalab.DeliveryWatcher`,
    which reads only new trace bytes: re-reading every trace with pandas would delay the
    timeline on a busy machine.
    """
    last = {"total": -1, "changed": time.monotonic()}

    def settled() -> bool:
        run.watcher.update()
        counts = {name: run.watcher.delivered(roles=[name]) for name in needs}
        if sum(counts.values()) != last["total"]:
            last["total"], last["changed"] = sum(counts.values()), time.monotonic()
        for name, need in needs.items():
            if need is None and not (name in killed and sc[name].alive and sc[name].is_ready()):
                return False
            if need is not None and counts[name] < need:
                return False
        return time.monotonic() - last["changed"] >= quiet_s

    return run.until(settled, timeout_s=timeout_s, step_s=0.05)


def ledger_counts(entries: Sequence[str], produced_ids: set[str]) -> dict[str, int]:
    """Effects in a ledger (one entry per effect, the event id) against what was produced:
    ``effects``, ``lost`` (produced, no effect), ``duplicate_effects`` (effects beyond one
    per event)."""
    mine = [e for e in entries if e in produced_ids]
    distinct = set(mine)
    return {"effects": len(mine), "lost": len(produced_ids - distinct),
            "duplicate_effects": len(mine) - len(distinct)}
