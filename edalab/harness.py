"""The experiment harness: declare roles, open one start gate, play a timeline, wait.

Every experiment of the course has the same shape (notebooks 01-12)::

    sc = Scenario("downtime")                                  # one run folder, one recorder
    sc.add("billing", billing, kwargs={"spec": orders})        # a body from a notebook cell
    sc.add("orders", produce, kwargs={"spec": orders, "schedule_s": steady(50, 10)})
    with sc.run(expect_events=500) as run:                     # all ready, then the gate
        run.at(3.0).kill("billing")                            # the timeline, from the gate
        run.at(9.0).start("billing")
        run.until_delivered(500, group="billing", timeout_s=30)
    result = analyse(sc.recorder)                              # pure analysis of the traces

* **One start gate.** :meth:`Scenario.run` starts every role at once, waits until
  each said ready (connected, subscribed, group joined), then opens the gate
  (``ctx.gate()`` returns in every role at the same moment): no process start or
  group join ever counts as delivery delay.
* **A timeline.** ``run.at(t)`` schedules an action ``t`` seconds after the gate:
  kill, stop, start, restart, pause, resume a role, or call any function (stop a
  server the lab owns, notebook 08). Actions run while the run waits
  (:meth:`Run.until`, :meth:`Run.until_delivered`, :meth:`Run.sleep`); the ones still
  due when the ``with`` block ends run then, at their times. A role started on the
  timeline does not hold up the next action: its readiness is logged when it comes. The owner records each
  action in ``lifecycle.jsonl`` (:meth:`edalab.Recorder.lifecycle`).
* **Waiting on what happened.** :meth:`Run.until_delivered` follows the traces with a
  :class:`~edalab.DeliveryWatcher` (only new bytes are read); every wait of the run
  (for a producer to finish, a condition, a delivery count) advances one progress bar.
* **Clean ends.** Leaving the ``with`` block stops every role that still runs (a clean
  stop: consumers commit) and raises :class:`~edalab.RoleError`, with the log tail,
  for any role whose body crashed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edalab._config import new_run_dir
from edalab._errors import ConfigError, RoleError
from edalab._recorder import Recorder
from edalab.roles import GATE_FILE, Role

__all__ = ["Scenario", "Run"]

_ACTIONS = ("kill", "stop", "start", "restart", "pause", "resume")


class Scenario:
    """The roles of one run, their recorder and run folder (notebooks 01-12).

    Args:
        name: names the run folder (``<runs dir>/<name>-<time>-...``) when ``run_dir``
            is not given; automatic folders are pruned to the newest 20.
        run_dir: keep the traces in this folder instead (never pruned).
    """

    def __init__(self, name: str = "run", *, run_dir: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir(name)
        self.recorder = Recorder(self.run_dir)
        self.roles: dict[str, Role] = {}
        self._start_with_run: list[str] = []

    def add(self, name: str, body: Callable, *, kwargs: Mapping[str, Any] | None = None,
            start: bool = True, ready_timeout_s: float = 30.0, stop_timeout_s: float = 10.0) -> Role:
        """Declare a role: ``body(ctx, **kwargs)`` in its own process.

        With ``start=False`` the role is only declared; start it on the timeline
        (``run.at(t).start(name)``) or by hand. The body's ``ctx.gate()`` waits for
        the run's start gate. Returns the :class:`~edalab.Role`.
        """
        if name in self.roles:
            raise ConfigError(f"A role named {name!r} is already in this scenario; names must be unique.")
        role = Role(name, body, self.recorder, kwargs=kwargs, ready_timeout_s=ready_timeout_s,
                    stop_timeout_s=stop_timeout_s, gated=True)
        self.roles[name] = role
        if start:
            self._start_with_run.append(name)
        return role

    def __getitem__(self, name: str) -> Role:
        try:
            return self.roles[name]
        except KeyError:
            raise ConfigError(f"No role {name!r} in this scenario; it has {sorted(self.roles)}.") from None

    def run(self, *, expect_events: int | None = None, progress: str | bool = True) -> "Run":
        """Start the declared roles, wait until all are ready, open the gate: a :class:`Run`.

        With ``expect_events``, a progress bar (events delivered so far, of that many)
        is drawn while the run waits, whatever it waits for; without it,
        :meth:`Run.until_delivered` draws one for its own target, and a string label
        draws one from the start (events so far and the time spent). ``progress`` is the
        bar's label (False: no bar).
        """
        return Run(self, expect_events=expect_events, progress=progress)


class _At:
    """``run.at(t)``: the actions that can be scheduled at one moment of the timeline."""

    def __init__(self, run: "Run", at_s: float) -> None:
        self._run, self._at_s = run, at_s

    def call(self, function: Callable[[], Any], label: str | None = None) -> "Run":
        """Call ``function()`` in this process at that moment (e.g. ``lab_server.stop``)."""
        self._run._schedule(self._at_s, label or getattr(function, "__name__", "call"), function, None)
        return self._run

    def __getattr__(self, action: str) -> Callable[[str], "Run"]:
        if action not in _ACTIONS:
            raise AttributeError(f"run.at(t) has no action {action!r}; use one of {_ACTIONS} or call(fn).")

        def schedule(role: str) -> "Run":
            self._run.scenario[role]  # fail now on an unknown name, not mid-run
            self._run._schedule(self._at_s, action, None, role)
            return self._run

        return schedule


class Run:
    """A scenario while it runs; made by :meth:`Scenario.run`, used as a context manager.

    Times on the timeline are seconds after the gate opened (:attr:`gate_ns`).
    """

    def __init__(self, scenario: Scenario, *, expect_events: int | None, progress: str | bool) -> None:
        self.scenario = scenario
        self.recorder = scenario.recorder
        self.watcher = self.recorder.watch()
        self.gate_ns: int | None = None
        self._gate_monotonic = 0.0
        self._pending: list[tuple[float, int, str, Callable | None, str | None]] = []
        self._starting: dict[str, float] = {}  # roles started on the timeline, not yet ready
        self._expect = expect_events
        self._progress_label = progress
        self._bar = None
        self._bar_checked = 0.0  # monotonic time of the bar's last update

    # -- starting ------------------------------------------------------------------
    def __enter__(self) -> "Run":
        roles = [self.scenario[n] for n in self.scenario._start_with_run]
        try:
            for role in roles:  # all at once: the start-up costs overlap
                role.start(wait=False)
                self.recorder.log_lifecycle(role.name, "started", pid=role.pid)
            for role in roles:
                role.wait_ready()
                self.recorder.log_lifecycle(role.name, "ready")
        except BaseException:
            self._stop_all(check=False)
            raise
        self._open_gate()
        self._start_bar(self._expect)
        return self

    def _open_gate(self) -> None:
        self.gate_ns = time.time_ns()
        self._gate_monotonic = time.monotonic()
        path = self.recorder.run_dir / GATE_FILE
        tmp = path.with_name(".gate.tmp")
        tmp.write_text(f"{self.gate_ns}\n")
        tmp.replace(path)  # atomically: a role never reads half a number
        self.recorder.log_lifecycle("gate", "opened")

    def elapsed_s(self) -> float:
        """Seconds since the gate opened."""
        return time.monotonic() - self._gate_monotonic

    # -- the timeline ----------------------------------------------------------------
    def at(self, at_s: float) -> _At:
        """Schedule what happens ``at_s`` seconds after the gate: ``run.at(3).kill("billing")``."""
        if not isinstance(at_s, (int, float)) or at_s < 0:
            raise ConfigError(f"run.at() takes seconds after the gate (a number >= 0), not {at_s!r}.")
        return _At(self, float(at_s))

    def _schedule(self, at_s: float, action: str, function: Callable | None, role: str | None) -> None:
        self._pending.append((at_s, len(self._pending), action, function, role))
        self._pending.sort()

    def _run_due(self) -> None:
        while self._pending and self._pending[0][0] <= self.elapsed_s():
            at_s, _, action, function, role_name = self._pending.pop(0)
            if function is not None:
                function()
                self.recorder.log_lifecycle("owner", action, planned_s=at_s)
                continue
            role = self.scenario[role_name]
            if action in ("start", "restart"):
                # Not waiting here: a role joining a Kafka group takes a while, and other
                # actions due meanwhile (another role's start) must not wait for it.
                if action == "restart":
                    role.stop(check=False)
                role.start(wait=False)
                self._starting[role_name] = time.monotonic() + role.ready_timeout_s
            elif action == "stop":
                role.stop(check=False)
            else:
                getattr(role, action)()
            # A kill is stamped when its signal went, not once the process was reaped (on a
            # loaded machine 0.3 s later: orders the dead receiver refused counted as "up").
            when = {"at_ns": role.killed_at_ns} if action == "kill" and role.killed_at_ns else {}
            self.recorder.log_lifecycle(role_name, {"kill": "killed", "stop": "stopped", "start": "started",
                                                    "restart": "restarted", "pause": "paused",
                                                    "resume": "resumed"}[action],
                                        planned_s=at_s, pid=role.pid, **when)

    # -- waiting ---------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, running the timeline's actions as they fall due."""
        self.until(lambda: False, timeout_s=seconds)

    def until(self, condition: Callable[[], bool], timeout_s: float, *, step_s: float = 0.01) -> bool:
        """Wait until ``condition()`` is true or ``timeout_s`` passed; True if it became true.

        Runs due timeline actions meanwhile and checks that no role crashed.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self._run_due()
            self._check_starting()
            self._check_crashes()
            self._update_bar()
            if condition():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            next_action = (self._pending[0][0] - self.elapsed_s()) if self._pending else left
            time.sleep(max(0.0, min(step_s, left, next_action)))

    def until_delivered(self, events: int, *, group: str | None = None, roles: list[str] | None = None,
                        each: bool = False, timeout_s: float = 60.0) -> bool:
        """Wait until ``events`` distinct events were delivered; True if they were in time.

        Counts distinct event ids in the consumers' traces (redeliveries count once):
        among ``roles`` or the members of ``group`` (default: every consumer), or with
        ``each`` by each of ``roles`` on its own (fan-out: "everyone got N").
        """
        if not isinstance(events, int) or events < 0:
            raise ConfigError(f"events must be a whole number >= 0, not {events!r}.")
        if each and not roles:
            raise ConfigError("each=True needs the roles that must each receive the events.")
        self._start_bar(events)

        def delivered() -> int:
            self.watcher.update()
            return self.watcher.delivered_each(roles) if each else self.watcher.delivered(group=group, roles=roles)

        return self.until(lambda: delivered() >= events, timeout_s, step_s=0.02)

    def wait_finished(self, name: str, timeout_s: float) -> None:
        """Wait for role ``name`` to end by itself (a producer at the end of its schedule);
        RoleError with its log if it failed or did not end in time."""
        role = self.scenario[name]
        if not self.until(lambda: not role.alive, timeout_s):
            role.kill()
            raise RoleError(f"Role {name!r} did not finish within {timeout_s:g} s (killed). "
                            f"Its log ends:\n{role.log_tail()}")
        role.finish(0)

    def _start_bar(self, total: int | None) -> None:
        """One progress bar per run: events delivered (by anyone) out of ``total``.

        A run labelled with a string but with no count known (a timed run: an outage, a
        chain) still gets one: events delivered so far and the time spent, so the learner
        sees what runs and that it moves; a later ``until_delivered`` gives it its total.
        """
        if self._bar is not None:
            if self._bar.total is None and total and total > 0:
                self._bar.total = total
                self._bar.refresh()
            return
        if not self._progress_label or (total is not None and total <= 0):
            return
        if not total and not isinstance(self._progress_label, str):
            return
        from tqdm.auto import tqdm

        label = self._progress_label if isinstance(self._progress_label, str) else self.scenario.run_dir.name
        self._bar = tqdm(total=total or None, desc=label, unit="event", leave=False)

    def _update_bar(self) -> None:
        if self._bar is None or time.monotonic() - self._bar_checked < 0.2:
            return
        self._bar_checked = time.monotonic()
        delivered = self.watcher.update().delivered()
        n = delivered if self._bar.total is None else min(delivered, self._bar.total)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)  # tqdm redraws at most every mininterval
        elif self._bar.total is None:
            self._bar.refresh()  # nothing delivered yet: the time spent still moves

    def _check_starting(self) -> None:
        """Log roles started on the timeline as ready once they are; fail if one died or hung."""
        for name, deadline in list(self._starting.items()):
            role = self.scenario[name]
            if role.is_ready():
                del self._starting[name]
                self.recorder.log_lifecycle(name, "ready")
            elif not role.alive or time.monotonic() > deadline:
                del self._starting[name]
                role.wait_ready(timeout_s=0.001)  # raises RoleError with the log tail

    def _check_crashes(self) -> None:
        for role in self.scenario.roles.values():
            if role.crashed:
                raise RoleError(f"Role {role.name!r} crashed (exit code {role.exitcode}). "
                                f"Its log ends:\n{role.log_tail()}")

    # -- ending ---------------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._pending:
                self.until(lambda: not self._pending, timeout_s=self._pending[-1][0] - self.elapsed_s() + 5)
        finally:
            if self._bar is not None:
                self._close_bar(finished=exc_type is None)
        self._stop_all(check=exc_type is None)

    def _close_bar(self, finished: bool) -> None:
        """Last count, then close. A run that ended normally closes its bar quietly even
        short of its total (events lost on purpose, or counted after the last refresh):
        tqdm's notebook bar would otherwise stay on the page, red; the result says what
        was lost."""
        if finished:  # after a failure, nothing more is read: the error is what matters
            self._bar_checked = 0.0
            self._update_bar()
            if self._bar.total is not None and self._bar.n < self._bar.total:
                self._bar.total = self._bar.n
        self._bar.close()

    def _stop_all(self, check: bool) -> None:
        failures = []
        for role in self.scenario.roles.values():
            if role.process is None:
                continue
            was_alive = role.alive
            try:
                role.stop(check=check)
            except RoleError as error:
                failures.append(str(error))
            if was_alive:
                self.recorder.log_lifecycle(role.name, "stopped", exitcode=role.exitcode)
        if failures:
            raise RoleError("\n\n".join(failures))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each role's work so far (from ready on, over restarts)."""
        return {name: role.cpu_seconds() for name, role in self.scenario.roles.items()}
