"""Roles: producers, consumers and services as separate OS processes (notebooks 01-05).

A listener that is "down" must really be down, a crash must be a real SIGKILL, and
CPU must be measured per process, so every role runs in its own process
(a fresh interpreter per role, which behaves the same in Jupyter and scripts). Each role writes its own trace files in the run
directory of a :class:`~edalab.Recorder`.

Like the servers, role processes die with their owner (``PR_SET_PDEATHSIG`` on
Linux) and are stopped at interpreter exit.

    with Role("billing", consume, recorder, spec=kafka_spec, group="billing") as billing:
        billing.pause()   # SIGSTOP: alive but deaf
        billing.resume()
        billing.kill()    # SIGKILL: no goodbye, no commit
        billing.restart()
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import psutil

from edalab._errors import ConfigError, RoleError
from edalab._events import new_event
from edalab._recorder import Recorder
from edalab._servers import _die_with_parent

__all__ = ["Role", "RoleContext", "produce", "consume", "poisson_schedule_s"]

_LIVE_ROLES: "weakref.WeakSet[Role]" = weakref.WeakSet()


class RoleContext:
    """What a role's function gets: its name, the recorder, and when to stop."""

    def __init__(self, name: str, recorder: Recorder, ready_fd: int, stop_event: threading.Event):
        self.name = name
        self.recorder = recorder
        self._ready_fd = ready_fd
        self._stop = stop_event
        self.cpu_at_ready_s = 0.0

    def ready(self) -> None:
        """Tell the owner that this role is set up (connected, subscribed) and working."""
        if self._ready_fd >= 0:
            t = os.times()
            self.cpu_at_ready_s = t.user + t.system  # start-up (imports) is not the role's work
            os.write(self._ready_fd, b"r")
            os.close(self._ready_fd)
            self._ready_fd = -1

    @property
    def stopping(self) -> bool:
        """True once the owner asked this role to finish (``Role.stop`` sends SIGTERM)."""
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when asked to stop; returns True if asked to stop."""
        return self._stop.wait(max(0.0, seconds))


def _target_path(target: Callable | str) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None)
    if not module or module == "__main__" or "<locals>" in target.__qualname__:
        raise ConfigError(f"{target!r} cannot run in a role process: it must be a function "
                          f"defined at module level in an importable module (not in a notebook).")
    return f"{module}:{target.__qualname__}"


def _role_main() -> None:
    """Entry point inside the role process (``python -m edalab.roles``).

    A fresh interpreter rather than multiprocessing: it never re-runs the owner's
    ``__main__`` (a notebook or a script without a main guard).
    """
    target, name, run_dir, kwargs, ready_fd = pickle.load(sys.stdin.buffer)
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Jupyter's "interrupt" is for the kernel only
    module, _, qualname = target.partition(":")
    func = importlib.import_module(module)
    for part in qualname.split("."):
        func = getattr(func, part)
    recorder = Recorder(run_dir)
    ctx = RoleContext(name, recorder, ready_fd, stop_event)
    try:
        func(ctx, **kwargs)
    finally:
        t = os.times()
        recorder.write_role_stats(name, own_cpu_s=t.user + t.system - ctx.cpu_at_ready_s,
                                  exited_at_ns=time.time_ns())


class Role:
    """One role as an OS process: start, stop, kill, pause, resume, restart, CPU seconds.

    Args:
        name: unique within the run directory (it names the trace files).
        target: a module-level function ``f(ctx: RoleContext, **kwargs)``.
        recorder: where the role writes its traces (its ``run_dir``).
        ready_timeout_s: how long :meth:`start` waits for ``ctx.ready()``.
        **kwargs: passed to ``target``; must be picklable (specs, numbers, lists).
    """

    def __init__(self, name: str, target: Callable | str, recorder: Recorder, *,
                 ready_timeout_s: float = 30.0, **kwargs: Any):
        self.name = name
        self.target = _target_path(target)
        self.recorder = recorder
        self.kwargs = kwargs
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        self.paused = False
        self._ready_r = -1
        self._done = True
        self._cpu_done_s = 0.0  # CPU of earlier incarnations (before restart)
        self._cpu_last_s = 0.0
        self._cpu_at_ready_s = 0.0
        self.log_path = Path(recorder.run_dir) / f"role-{name}.log"

    # -- life cycle ---------------------------------------------------------------
    def start(self, wait: bool = True) -> "Role":
        """Start the process; with ``wait`` block until the role said it is ready."""
        if self.alive:
            return self
        ready_r, ready_w = os.pipe()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edalab.roles"], stdin=subprocess.PIPE, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(ready_w,), close_fds=True,
                preexec_fn=_die_with_parent(os.getpid()))
        os.close(ready_w)
        self._ready_r = ready_r
        self.process.stdin.write(pickle.dumps(
            (self.target, self.name, str(self.recorder.run_dir), self.kwargs, ready_w)))
        self.process.stdin.close()
        self._done = False
        self._cpu_last_s = 0.0
        self._cpu_at_ready_s = 0.0
        self.paused = False
        _LIVE_ROLES.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the role is ready; raise RoleError (with its log) if it died or hung."""
        if self._ready_r < 0:
            return
        limit_s = timeout_s or self.ready_timeout_s
        deadline = time.monotonic() + limit_s
        while True:
            readable, _, _ = select.select([self._ready_r], [], [], 0.05)
            if readable and os.read(self._ready_r, 1) == b"r":
                os.close(self._ready_r)
                self._ready_r = -1
                self._cpu_at_ready_s = self._cpu_total()
                return
            if self.process.poll() is not None:
                self._close_ready_pipe()
                raise RoleError(f"Role {self.name!r} exited with code {self.process.returncode} "
                                f"before it was ready. Its log ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RoleError(f"Role {self.name!r} was not ready within {limit_s:g} s (killed). "
                                f"Its log ends:\n{self.log_tail()}")

    def _close_ready_pipe(self) -> None:
        if self._ready_r >= 0:
            os.close(self._ready_r)
            self._ready_r = -1

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the role to finish cleanly (it flushes, commits, closes); kill it if it won't."""
        if not self.alive:
            self._finish()
            return
        if self.paused:
            self.resume()
        self._sample_cpu()
        self.process.terminate()  # SIGTERM: the role's ctx.stopping becomes True
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._finish()

    def kill(self) -> None:
        """SIGKILL: the role gets no chance to flush, commit or say goodbye."""
        if not self.alive:
            self._finish()
            return
        self._sample_cpu()
        self.process.kill()
        self.process.wait(5)
        self._finish()

    def pause(self) -> None:
        """SIGSTOP: the process stays alive and keeps its connections, but does nothing."""
        if self.alive and not self.paused:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.paused = True
            # The signal is asynchronous: return only once it took effect, so that
            # whatever the caller does next really happens while the role is frozen.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    if psutil.Process(self.process.pid).status() == psutil.STATUS_STOPPED:
                        break
                except psutil.Error:
                    break
                time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.alive and self.paused:
            os.kill(self.process.pid, signal.SIGCONT)
            self.paused = False

    def restart(self, wait: bool = True) -> "Role":
        """Stop (cleanly) if running, then start a new process with the same arguments."""
        self.stop()
        return self.start(wait=wait)

    def join(self, timeout_s: float) -> bool:
        """Wait for the role to finish by itself; True if it did."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        self._finish()
        return True

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

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def exitcode(self) -> int | None:
        return self.process.poll() if self.process else None

    # -- measuring -----------------------------------------------------------------
    def _cpu_total(self) -> float:
        try:
            t = psutil.Process(self.process.pid).cpu_times()
            return t.user + t.system
        except (psutil.Error, AttributeError):
            return 0.0

    def _sample_cpu(self) -> None:
        """CPU since the role said it was ready (start-up imports are not its work)."""
        total = self._cpu_total()
        if total:
            self._cpu_last_s = max(0.0, total - self._cpu_at_ready_s)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of this role's work so far (from ready on), over
        all incarnations."""
        if self.alive:
            self._sample_cpu()
        return self._cpu_done_s + self._cpu_last_s

    def _finish(self) -> None:
        if self.process is None or self._done:
            return
        self._done = True
        self._close_ready_pipe()
        if self._cpu_last_s == 0.0:  # it ended by itself: its own last number is the best one
            self._cpu_last_s = float(self.recorder.role_stats(self.name).get("own_cpu_s", 0.0))
        self._cpu_done_s += self._cpu_last_s
        self._cpu_last_s = 0.0
        # The owner's number wins over the role's own: a killed role never wrote one.
        self.recorder.write_role_stats(self.name, cpu_s=self._cpu_done_s)
        _LIVE_ROLES.discard(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
        except OSError:
            return "(no log)"

    def __enter__(self) -> "Role":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.alive else "stopped")
        return f"<Role {self.name} pid={self.pid} {state}>"


@atexit.register
def _stop_all_roles() -> None:
    for role in list(_LIVE_ROLES):
        try:
            role.kill()
        except Exception:
            pass


# -- the standard roles ---------------------------------------------------------------------

def poisson_schedule_s(count: int, rate_per_s: float, seed: int = 0) -> list[float]:
    """Send times (seconds from start) of ``count`` events arriving at random at ``rate_per_s``.

    Random arrivals matter: the polling model (delay ≈ interval/2 + round trip)
    assumes events land at random moments relative to the polls.
    """
    if count < 0 or rate_per_s <= 0:
        raise ConfigError(f"count must be >= 0 and rate_per_s > 0 (got {count}, {rate_per_s})")
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0 / rate_per_s, size=count)).tolist()


def produce(ctx: RoleContext, spec, schedule_s: list[float], event_type: str = "order.ready",
            keys: int = 10, payload_bytes: int = 0, start_delay_s: float = 0.0,
            gate_path: str | None = None) -> None:
    """Producer role: publish one event at each time in ``schedule_s`` (seconds from start).

    Events are keyed ``order-0`` .. ``order-{keys-1}`` in turn; each is recorded in the
    trace right after ``publish`` accepted it, so writing the trace is not part of the
    measured delivery delay and a lost event is the transport's loss.

    With ``gate_path`` the role gets ready, then waits until that file exists before
    its schedule starts: the owner can start it alongside the consumers and open the
    gate once everyone is ready, instead of paying for a process start in between.
    """
    publisher = spec.publisher()
    trace = ctx.recorder.producer_trace(ctx.name)
    ctx.ready()
    if gate_path is not None:
        while not os.path.exists(gate_path):
            if ctx.sleep(0.002):
                return
    if ctx.sleep(start_delay_s):
        return
    start = time.monotonic()
    filler = "x" * payload_bytes
    try:
        for seq, at_s in enumerate(schedule_s):
            if ctx.sleep(start + at_s - time.monotonic()):
                break
            payload = {"order": seq, "pad": filler} if payload_bytes else {"order": seq}
            event = new_event(event_type, f"order-{seq % keys}", payload, producer=ctx.name, seq=seq)
            publisher.publish(event)
            # Recorded once the transport accepted it (and after the clock-sensitive part):
            # a publish that raises ends the role, and the trace never claims it was sent.
            trace.record(event)
        publisher.flush()
    finally:
        publisher.close()
        trace.close()


def consume(ctx: RoleContext, spec, group: str | None = None, receive_timeout_s: float = 0.1,
            counters_every_s: float = 0.25, wait_for_assignment: bool = True) -> None:
    """Consumer role: receive until asked to stop, recording every delivery and its cost.

    A clean stop (``Role.stop``) commits (Kafka) or acknowledges (Redis Streams) what was
    received; after a SIGKILL (``Role.kill``) that is left undone, as in a real crash.
    With ``wait_for_assignment`` a Kafka consumer is ready only once it owns partitions;
    pass False for a member that may legitimately get none (more members than partitions).
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    received = 0
    if wait_for_assignment and hasattr(subscriber, "wait_for_assignment"):
        # A Kafka consumer only gets partitions once its group join completes; ready
        # before that would count the join as delivery delay.
        subscriber.wait_for_assignment(timeout_s=30.0)
    ctx.ready()
    next_write = time.monotonic() + counters_every_s
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(receive_timeout_s):
                trace.record(delivery)
                received += 1
            if time.monotonic() >= next_write:
                trace.write_counters(subscriber.counters, received=received)
                next_write = time.monotonic() + counters_every_s
    finally:
        if ctx.stopping:
            # A clean stop hands back what was processed (Kafka commit, Streams XACK), so
            # a restart does not see it again; a SIGKILL never reaches this line.
            for settle in ("commit", "ack"):
                if hasattr(subscriber, settle):
                    try:
                        getattr(subscriber, settle)()
                    except Exception as exc:  # the broker may be gone; then at-least-once applies
                        print(f"{settle} on stop failed: {exc}", flush=True)
        trace.write_counters(subscriber.counters, received=received)
        subscriber.close()
        trace.close()


if __name__ == "__main__":
    _role_main()
