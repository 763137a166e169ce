"""Kill consumers between processing and commit, restart them, wait (notebook 09).

The measuring part that :func:`edalab.experiments.delivery_guarantees` and exercise
n09 share: each consumer role notes ``"committed"`` (``ctx.note``) after each commit;
the owner reads those notes and the consumer's trace while the run goes on and
SIGKILLs every consumer once it has handled a given number of events since its latest
commit, so the kill lands in the middle of a batch, then starts a new process in the
same group.
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


def kill_after_commit(run: Run, sc: Scenario, consumers: Sequence[str], *, handled: int,
                      restart_after_s: float, since_s: float = 0.3, wait_s: float = 20.0) -> dict[str, float]:
    """Schedule, per consumer, a SIGKILL once it has handled ``handled`` events since its
    latest commit (counting from ``since_s`` after the gate), and a new process
    ``restart_after_s`` later.

    The owner follows each consumer's ``"committed"`` notes and its trace as they are
    written, so the kill lands in the middle of a batch however slow the machine is (a
    kill timed in seconds after a commit may find the consumer waiting for its next
    fetch). A consumer that has not got there within ``wait_s`` is killed at once (a body
    written without ``ctx.note("committed")``); on a loaded machine (a parallel test suite)
    a commit and ``handled`` events can take several seconds, and a kill at a random
    moment may land just after a commit and show no redelivery at all. Returns each
    kill's time (seconds after the gate).
    """
    run.until(lambda: run.elapsed_s() >= since_s, timeout_s=since_s + 1)
    since_ns, kill_at_s = time.time_ns(), {}
    run_dir = Path(sc.recorder.run_dir)
    commits = {name: _Tail(run_dir / f"notes-{name}.jsonl") for name in consumers}
    traces = {name: _Tail(run_dir / f"received-{name}.csv") for name in consumers}
    latest = {name: None for name in consumers}   # latest commit (ns) past since_ns
    times = {name: [] for name in consumers}      # handled at (ns), since since_ns

    def schedule() -> bool:
        for name in consumers:
            if name in kill_at_s:
                continue
            for line in commits[name].lines():
                note = _json(line)
                if note.get("what") == "committed" and int(note["at_ns"]) >= since_ns:
                    latest[name] = int(note["at_ns"])
            times[name] += [t for t in (_last_int(line) for line in traces[name].lines()) if t >= since_ns]
            if latest[name] is not None and sum(t > latest[name] for t in times[name]) >= handled:
                _plan(run, sc, name, run.elapsed_s(), restart_after_s, kill_at_s)
        return len(kill_at_s) == len(consumers)

    if not run.until(schedule, timeout_s=wait_s, step_s=0.005):
        for name in consumers:
            if name not in kill_at_s:
                _plan(run, sc, name, run.elapsed_s(), restart_after_s, kill_at_s)
    return kill_at_s


class _Tail:
    """The complete lines appended to a file since the last look (a role's notes or
    trace, written as it goes): cheap enough to ask every few ms on a busy machine,
    where re-reading everything with pandas would delay the timeline."""

    def __init__(self, path: Path) -> None:
        self._path, self._offset = path, 0

    def lines(self) -> list[bytes]:
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]   # a line still being written waits
        self._offset += len(complete)
        return complete.splitlines()


def _json(line: bytes) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}


def _last_int(line: bytes) -> int:
    """The last CSV field as an integer (a trace row's ``received_at_ns``); 0 for the header."""
    try:
        return int(line.rsplit(b",", 1)[-1])
    except ValueError:
        return 0


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
