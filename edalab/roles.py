"""Roles: producers, consumers and services as separate OS processes (notebooks 01-12).

A listener that is "down" must really be down, a crash must be a real SIGKILL, and
CPU must be measured per process, so every role runs in its own process: a fresh
interpreter (the same in Jupyter and in scripts; it never re-runs the owner's
``__main__``). The role's *body* is any function ``body(ctx, **kwargs)``: one from a
module, or one the learner wrote in a notebook cell or a script. It travels to the
process **by value** (cloudpickle), together with its ``kwargs``; a body that holds
something that cannot travel (a socket, a client, a lab, a lock) is refused at once
with an error naming the object (:class:`~edalab.UnsendableRole`).

Process handling (own process group, parent-death signal, log tail in errors, stop
then kill, cleanup at exit) is shared with the servers: :mod:`edalab._process`.

    def billing(ctx, spec, work_ms=20):          # written in a notebook cell
        sub = spec.subscriber("billing")
        ctx.ready()                              # connected: the owner may go on
        while not ctx.stopping:
            for delivery in sub.receive(0.1):
                ...
    with Role("billing", billing, recorder, kwargs={"spec": orders}) as role:
        role.pause(); role.resume(); role.kill(); role.restart()

Most experiments declare roles through :class:`edalab.Scenario`, which adds one
start gate, a timeline and progress on top.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import cloudpickle
import psutil

from edalab._errors import ConfigError, RoleError, UnsendableRole
from edalab._events import new_event
from edalab._process import ChildProcess
from edalab._recorder import Recorder, _check_role

__all__ = ["Role", "RoleContext", "produce", "consume", "GATE_FILE"]

#: the file in a run directory whose appearance opens the start gate (holds t0 in ns)
GATE_FILE = "gate"


class RoleContext:
    """What a role's body gets: its name, the recorder, readiness, the gate, when to stop."""

    def __init__(self, name: str, recorder: Recorder, ready_fd: int, stop_event: threading.Event,
                 gated: bool = False):
        self.name = name
        self.recorder = recorder
        self._ready_fd = ready_fd
        self._stop = stop_event
        self._gated = gated
        self.cpu_at_ready_s = 0.0

    def ready(self) -> None:
        """Tell the owner that this role is set up (connected, subscribed) and working."""
        if self._ready_fd >= 0:
            t = os.times()
            self.cpu_at_ready_s = t.user + t.system  # start-up (imports) is not the role's work
            os.write(self._ready_fd, b"r")
            os.close(self._ready_fd)
            self._ready_fd = -1

    def gate(self) -> int | None:
        """Wait for the start gate; return its time (wall clock, ns) or None if asked to stop.

        Calls :meth:`ready` first. Every role of a :class:`~edalab.Scenario` is started
        and made ready before the gate opens, so a process start never counts as
        delivery delay. A role restarted after the gate opened passes straight
        through. Outside a scenario there is no gate: it returns the current time.
        """
        self.ready()
        if not self._gated:
            return time.time_ns()
        path = Path(self.recorder.run_dir) / GATE_FILE
        while True:
            try:
                text = path.read_text()
                if text.endswith("\n"):
                    return int(text)
            except FileNotFoundError:
                pass
            if self.sleep(0.001):
                return None

    def on_schedule(self, schedule_s: Sequence[float]) -> Iterator[int]:
        """Wait for the gate, then yield ``0, 1, 2...`` each at its time in ``schedule_s``
        (seconds from the gate); stop early when the owner asks the role to stop.

        The loop of every producer body: ``for seq in ctx.on_schedule(schedule_s): publish...``.
        """
        if self.gate() is None:
            return
        start = time.monotonic()
        for seq, at_s in enumerate(schedule_s):
            if self.sleep(start + at_s - time.monotonic()):
                return
            yield seq

    def note(self, what: str, **values: Any) -> None:
        """Record that something happened in this role (a commit, a retry...): the run's
        ``notes`` table (:meth:`edalab.Recorder.notes`)."""
        self.recorder.note(self.name, what, **values)

    @property
    def stopping(self) -> bool:
        """True once the owner asked this role to finish (``Role.stop`` sends SIGTERM)."""
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when asked to stop; returns True if asked to stop."""
        return self._stop.wait(max(0.0, seconds))


def _hint(obj: Any) -> str:
    kind = type(obj).__name__
    if kind == "Lab":
        return ("a lab owns servers and cannot move to another process: pass what the role "
                "needs to connect, e.g. a spec from lab.transport('kafka'), lab.kafka_bootstrap "
                "or lab.redis_url")
    if kind in ("Role", "Scenario", "Run") or isinstance(obj, ChildProcess):
        return "a process handle stays with its owner: pass the data the role needs instead"
    return ("open connections, files and threads inside the body; pass what is needed to open "
            "them (a transport spec, a URL, numbers, lists) in kwargs=")


def _find_unsendable(obj: Any, where: str, depth: int = 0) -> tuple[str, Any, Exception] | None:
    """The first part of ``obj`` that cloudpickle cannot serialise, as (where, object, error)."""
    try:
        cloudpickle.dumps(obj)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure to pickle is what we look for
        error = exc
    if depth < 4:
        parts: list[tuple[str, Any]] = []
        if isinstance(obj, types.FunctionType):
            code = obj.__code__
            names = set(code.co_names)
            for const in code.co_consts:  # names used by nested functions and comprehensions
                if isinstance(const, types.CodeType):
                    names |= set(const.co_names)
            parts += [(f"global {n!r} used by {obj.__name__}", obj.__globals__[n])
                      for n in sorted(names) if n in obj.__globals__]
            parts += [(f"variable {n!r} captured by {obj.__name__}", c.cell_contents)
                      for n, c in zip(code.co_freevars, obj.__closure__ or ()) if _has_contents(c)]
            parts += [(f"a default argument of {obj.__name__}", d) for d in obj.__defaults__ or ()]
        elif isinstance(obj, Mapping):
            parts += [(f"{where}[{k!r}]", v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple, set)):
            parts += [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
        # Any other object is named as a whole (a Lab, a client): its insides mean
        # nothing to the person who passed it.
        for part_where, part in parts:
            found = _find_unsendable(part, part_where, depth + 1)
            if found:
                return found
    return where, obj, error


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _pack(name: str, body: Callable, kwargs: dict[str, Any]) -> bytes:
    """Serialise ``(body, kwargs)`` for the role process, or say exactly what cannot go."""
    try:
        return cloudpickle.dumps((body, kwargs))
    except Exception:  # noqa: BLE001
        pass
    found = _find_unsendable(kwargs, "kwargs") or _find_unsendable(body, "the body")
    where, obj, error = found or ("the body", body, RuntimeError("unknown"))
    raise UnsendableRole(
        f"Role {name!r} cannot be sent to its own process: {where} is a {type(obj).__name__} "
        f"({error.__class__.__name__}: {error}). A role runs in a separate process, so "
        f"{_hint(obj)}.") from None


class Role(ChildProcess):
    """One role as an OS process: start, stop, kill, pause, resume, restart, CPU seconds.

    Args:
        name: unique within the run directory (it names the trace files).
        body: ``body(ctx: RoleContext, **kwargs)``: a function from a module, a notebook
            cell or a script. It is serialised now (by value where it is not importable),
            so an unsendable body fails here, not in the child.
        recorder: where the role writes its traces (its ``run_dir``).
        kwargs: the body's arguments (specs, numbers, lists: anything picklable).
        ready_timeout_s: how long :meth:`start` waits for ``ctx.ready()``.
        stop_timeout_s: how long :meth:`stop` lets the body finish before SIGKILL.
        gated: whether ``ctx.gate()`` waits for the run's start gate (set by a Scenario).
    """

    kind = "role"

    def __init__(self, name: str, body: Callable, recorder: Recorder, *,
                 kwargs: Mapping[str, Any] | None = None, ready_timeout_s: float = 30.0,
                 stop_timeout_s: float = 10.0, gated: bool = False):
        _check_role(name)
        if not callable(body):
            raise ConfigError(f"Role {name!r}: body must be a function body(ctx, **kwargs), "
                              f"not {type(body).__name__}.")
        if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
            raise ConfigError(f"Role {name!r}: kwargs must be a dict of argument names to values, "
                              f"not {type(kwargs).__name__}.")
        for label, value in (("ready_timeout_s", ready_timeout_s), ("stop_timeout_s", stop_timeout_s)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"Role {name!r}: {label} must be a positive number of seconds, not {value!r}.")
        super().__init__(name, Path(recorder.run_dir) / f"role-{name}.log")
        self.body = body
        self.recorder = recorder
        self.kwargs = dict(kwargs or {})
        self.ready_timeout_s = float(ready_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self.gated = gated
        self._payload = _pack(name, body, self.kwargs)
        self._ready_r = -1
        self._cpu_done_s = 0.0  # CPU of earlier incarnations (before restart)
        self._cpu_last_s = 0.0
        self._cpu_at_ready_s = 0.0

    # -- life cycle ---------------------------------------------------------------
    def start(self, wait: bool = True) -> "Role":
        """Start the process; with ``wait`` block until the role said it is ready."""
        if self.alive:
            return self
        ready_r, ready_w = os.pipe()
        self._spawn([sys.executable, "-c", "from edalab._role_child import main; main()"],
                    stdin=subprocess.PIPE, pass_fds=(ready_w,))
        os.close(ready_w)
        self._ready_r = ready_r
        header = {"name": self.name, "run_dir": str(self.recorder.run_dir), "ready_fd": ready_w,
                  "sys_path": list(sys.path), "gated": self.gated}
        try:
            self.process.stdin.write(pickle.dumps((header, self._payload)))
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; wait_ready reports it with its log
        self._cpu_last_s = 0.0
        self._cpu_at_ready_s = 0.0
        if wait:
            self.wait_ready()
        return self

    def is_ready(self) -> bool:
        if self._ready_r < 0:
            return True
        readable, _, _ = select.select([self._ready_r], [], [], 0)
        if readable and os.read(self._ready_r, 1) == b"r":
            self._close_ready_pipe()
            self._cpu_at_ready_s = self._cpu_total()
            return True
        return False

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the role is ready; raise RoleError (with its log) if it died or hung."""
        if self._ready_r >= 0:
            self._wait_ready(timeout_s or self.ready_timeout_s, poll_s=0.002)

    def _exited_error(self, code: int) -> Exception:
        self._close_ready_pipe()
        return RoleError(f"Role {self.name!r} exited with code {code} before it was ready. "
                         f"Its log ends:\n{self.log_tail()}")

    def _timeout_error(self, limit_s: float) -> Exception:
        return RoleError(f"Role {self.name!r} was not ready within {limit_s:g} s (killed): its body "
                         f"never called ctx.ready() or ctx.gate(). Its log ends:\n{self.log_tail()}")

    def _close_ready_pipe(self) -> None:
        if self._ready_r >= 0:
            os.close(self._ready_r)
            self._ready_r = -1

    def stop(self, timeout_s: float | None = None, *, check: bool = True) -> None:
        """Ask the role to finish cleanly (it flushes, commits, closes); kill it if it won't
        within ``timeout_s`` (default ``stop_timeout_s``).

        With ``check``, a body that had already crashed by itself raises RoleError with
        its log tail, so a failure is never mistaken for a clean stop.
        """
        crashed = self.crashed
        super().stop(self.stop_timeout_s if timeout_s is None else timeout_s)
        if check and crashed:
            raise RoleError(f"Role {self.name!r} had crashed (exit code {self.exitcode}) before it "
                            f"was stopped. Its log ends:\n{self.log_tail()}")

    def restart(self, wait: bool = True) -> "Role":
        """Stop (cleanly) if running, then start a new process with the same arguments."""
        self.stop(check=False)
        return self.start(wait=wait)

    def finish(self, timeout_s: float) -> None:
        """Wait for the role to end by itself; raise RoleError (with its log) if it does
        not within ``timeout_s`` (it is then killed) or if it failed."""
        if not self.join(timeout_s):
            self.kill()
            raise RoleError(f"Role {self.name!r} did not finish within {timeout_s:.0f} s (killed). "
                            f"Its log ends:\n{self.log_tail()}")
        if self.exitcode:
            raise RoleError(f"Role {self.name!r} failed (exit code {self.exitcode}). "
                            f"Its log ends:\n{self.log_tail()}")

    # -- measuring -----------------------------------------------------------------
    def _cpu_total(self) -> float:
        try:
            t = psutil.Process(self.process.pid).cpu_times()
            return t.user + t.system
        except (psutil.Error, AttributeError):
            return 0.0

    def _before_signal(self) -> None:
        """CPU since the role said it was ready (start-up imports are not its work)."""
        total = self._cpu_total()
        if total:
            self._cpu_last_s = max(0.0, total - self._cpu_at_ready_s)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of this role's work so far (from ready on), over
        all incarnations."""
        if self.alive:
            self._before_signal()
        return self._cpu_done_s + self._cpu_last_s

    def _on_exit(self) -> None:
        self._close_ready_pipe()
        if self._cpu_last_s == 0.0:  # it ended by itself: its own last number is the best one
            self._cpu_last_s = float(self.recorder.role_stats(self.name).get("own_cpu_s", 0.0))
        self._cpu_done_s += self._cpu_last_s
        self._cpu_last_s = 0.0
        # The owner's number wins over the role's own: a killed role never wrote one.
        self.recorder.write_role_stats(self.name, cpu_s=self._cpu_done_s)

    def __enter__(self) -> "Role":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(check=exc[0] is None)


# -- the standard roles ---------------------------------------------------------------------

#: How long :func:`produce` waits after a publish before it writes the trace row: out of
#: the window in which the event travels (a few hundred µs), far below any schedule's gap.
RECORD_AFTER_S = 0.002


def produce(ctx: RoleContext, spec, schedule_s: list[float], event_type: str = "order.ready",
            keys: int = 10, payload_bytes: int = 0, start_delay_s: float = 0.0) -> None:
    """Producer role: publish one event at each time in ``schedule_s`` (seconds from the gate).

    Events are keyed ``order-0`` .. ``order-{keys-1}`` in turn; each is recorded in the
    trace after ``publish`` accepted it, so a lost event is the transport's loss. The
    schedule starts when the run's start gate opens (:meth:`RoleContext.gate`), after
    every other role is ready, so no process start counts as delivery delay.

    The trace row is written :data:`RECORD_AFTER_S` after the publish (less when the
    next event is due sooner), not at once: on a 2-core machine the server and the
    subscriber need both cores while the event travels, and a producer writing its
    trace in that window measured ~40 µs onto a ~480 µs pub/sub delay (benchmarks/run.py).
    """
    publisher = spec.publisher()
    trace = ctx.recorder.producer_trace(ctx.name)
    times_s = [start_delay_s + at_s for at_s in schedule_s]
    try:
        filler = "x" * payload_bytes
        for seq in ctx.on_schedule(times_s):
            payload = {"order": seq, "pad": filler} if payload_bytes else {"order": seq}
            event = new_event(event_type, f"order-{seq % keys}", payload, producer=ctx.name, seq=seq)
            publisher.publish(event)
            # Recorded once the transport accepted it: a publish that raises ends the
            # role, and the trace never claims it was sent.
            gap_s = times_s[seq + 1] - times_s[seq] if seq + 1 < len(times_s) else RECORD_AFTER_S
            ctx.sleep(min(RECORD_AFTER_S, gap_s / 2))
            trace.record(event)
        publisher.flush()
    finally:
        publisher.close()
        trace.close()


def consume(ctx: RoleContext, spec, group: str | None = None, receive_timeout_s: float = 0.1,
            counters_every_s: float = 0.25, wait_for_assignment: bool = True,
            take_over: bool = False) -> None:
    """Consumer role: receive until asked to stop, recording every delivery and its cost.

    A clean stop (``Role.stop``) commits what was received (``Subscriber.commit``:
    a Kafka offset commit, a Redis Streams XACK, nothing where there is nothing to
    commit); after a SIGKILL (``Role.kill``) that is left undone, as in a real crash.
    With ``wait_for_assignment`` the role is ready only once its subscriber will
    really receive (a Kafka group join); pass False for a member that may
    legitimately get no partition (more members than partitions). Records that are
    not edalab events are skipped by the subscriber and their number noted
    (``ctx.note("malformed skipped", count=...)``) when the role ends.

    ``take_over=True`` is for the only member of its group, restarted after a kill: it
    first takes over what its killed predecessor received but never acknowledged
    (``Subscriber.take_over_pending``: Redis Streams' XAUTOCLAIM; Kafka and the NATS
    queue redeliver such events by themselves). Left False where members run side by
    side, as it would take in-flight events from a live member.
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    received = 0
    if wait_for_assignment:
        # Ready before the join completes would count the join as delivery delay.
        subscriber.wait_ready(timeout_s=30.0)
    ctx.ready()
    next_write = time.monotonic() + counters_every_s
    try:
        for delivery in subscriber.take_over_pending() if take_over else ():
            trace.record(delivery)
            received += 1
        while not ctx.stopping:
            for delivery in subscriber.receive(receive_timeout_s):
                trace.record(delivery)
                received += 1
            if time.monotonic() >= next_write:
                trace.write_counters(subscriber.counters, received=received)
                next_write = time.monotonic() + counters_every_s
    finally:
        if ctx.stopping:
            # A clean stop hands back what was processed, so a restart does not see it
            # again; a SIGKILL never reaches this line.
            try:
                subscriber.commit()
            except Exception as exc:  # the broker may be gone; then at-least-once applies
                print(f"commit on stop failed: {exc}", flush=True)
        trace.write_counters(subscriber.counters, received=received)
        # Envelopes that were not edalab events were skipped by the subscriber; say how
        # many (not every transport's subscriber counts them: HTTP refuses them at POST).
        malformed = getattr(subscriber, "malformed", 0)
        if malformed:
            ctx.note("malformed skipped", count=malformed)
        subscriber.close()
        trace.close()
