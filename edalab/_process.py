"""One base for every child process edalab owns: embedded servers and role processes.

A server (Tansu, Valkey) and a role (a producer, a consumer) are both programs that
this process starts and must never leave behind. Whatever the kind, a child:

* runs in its own session / process group (a Ctrl+C in a terminal does not reach
  it twice, and :meth:`ChildProcess.kill` takes its own children with it);
* gets ``PR_SET_PDEATHSIG`` = SIGKILL on Linux, so the kernel kills it the moment
  its owner dies, even by SIGKILL (a Jupyter kernel restart or crash);
* writes stdout and stderr to a log file whose tail goes into every error;
* is stopped gracefully (SIGTERM, a grace period, then SIGKILL) by :meth:`stop`,
  and killed at interpreter exit if still running;
* is *ready* when its kind says so: :meth:`ChildProcess.is_ready` is the hook (a real
  request for servers, a byte on a pipe for roles), waited for with one deadline.

Subclasses: :class:`edalab.KafkaServer`, :class:`edalab.RedisServer` (``_servers.py``)
and :class:`edalab.Role` (``roles.py``).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Sequence

import psutil

__all__ = ["ChildProcess", "die_with_parent", "stop_all_children"]

_PR_SET_PDEATHSIG = 1
_LIVE: "weakref.WeakSet[ChildProcess]" = weakref.WeakSet()


def die_with_parent(parent_pid: int):
    """A ``preexec_fn`` that puts the child in its own session and ties its life to its parent's."""
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def preexec() -> None:
        os.setsid()
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return preexec


class ChildProcess:
    """A child program owned by this process: spawn, wait ready, stop, kill, pause.

    Subclasses call :meth:`_spawn` to start the program and :meth:`_wait_ready` to
    wait for it, and override :meth:`is_ready`, :meth:`_exited_error` and
    :meth:`_timeout_error` to say what ready means and what a failure should tell the
    user. :meth:`_on_exit` runs once after the process ended, however it ended.
    """

    #: what kind of child this is, for messages ("kafka server", "role")
    kind = "process"

    def __init__(self, name: str, log_path: str | Path) -> None:
        self.name = name
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.paused = False
        self._stop_requested = False
        #: time.time_ns() when the latest kill() sent its SIGKILL (None: not killed)
        self.killed_at_ns: int | None = None

    # -- what subclasses provide -----------------------------------------------------
    def is_ready(self) -> bool:
        """True once the child can do its job (subclasses ask it a real question)."""
        return True

    def _exited_error(self, code: int) -> Exception:
        return RuntimeError(f"{self.kind} {self.name!r} exited with code {code} while starting. "
                            f"Its log ends:\n{self.log_tail()}")

    def _timeout_error(self, limit_s: float) -> Exception:
        return TimeoutError(f"{self.kind} {self.name!r} was not ready within {limit_s:g} s. "
                            f"Its log ends:\n{self.log_tail()}")

    def _on_exit(self) -> None:
        """Called once after the process ended (stopped, killed or by itself)."""

    # -- starting -------------------------------------------------------------------------
    def _spawn(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
               cwd: str | Path | None = None, stdin=subprocess.DEVNULL,
               pass_fds: Sequence[int] = ()) -> subprocess.Popen:
        """Start ``argv`` as this object's process, logging to :attr:`log_path`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(argv), stdin=stdin, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                pass_fds=tuple(pass_fds), close_fds=True, preexec_fn=die_with_parent(os.getpid()))
        self.paused = False
        self._stop_requested = False
        self._ended = False
        _LIVE.add(self)
        return self.process

    def _wait_ready(self, limit_s: float, *, poll_s: float = 0.02) -> None:
        """Wait until :meth:`is_ready`; on exit or after ``limit_s`` raise the kind's error."""
        deadline = time.monotonic() + limit_s
        while True:
            code = self.process.poll()
            if code is not None:
                self._ended_now()
                raise self._exited_error(code)
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise self._timeout_error(limit_s)
            time.sleep(poll_s)

    # -- state ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def running(self) -> bool:
        return self.alive

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def exitcode(self) -> int | None:
        return self.process.poll() if self.process else None

    @property
    def crashed(self) -> bool:
        """True when the process ended by itself with a failure (not stopped or killed by us)."""
        code = self.exitcode
        return code not in (None, 0) and not self._stop_requested

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the child's log (what it printed, tracebacks included)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join(text) or "(empty log)"

    # -- stopping ---------------------------------------------------------------------------
    def _signal(self, sig: int) -> None:
        try:  # the whole group: whatever the child started goes with it
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s`` seconds, then SIGKILL. Calling it twice is fine."""
        if self.process is None:
            return
        if self.alive:
            self._stop_requested = True
            if self.paused:
                self.resume()  # a stopped process cannot act on SIGTERM
            self._before_signal()
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(5)
        self._ended_now()

    def kill(self) -> None:
        """SIGKILL: the child gets no chance to flush, commit or say goodbye."""
        self.killed_at_ns = None
        if self.process is None:
            return
        if self.alive:
            self._stop_requested = True
            self._before_signal()
            # When the signal went: the exit and the bookkeeping after it can take a few
            # hundred ms on a busy machine, and the run's timeline must not count them as up.
            self.killed_at_ns = time.time_ns()
            self._signal(signal.SIGKILL)
            self.process.wait(5)
        self._ended_now()

    def _before_signal(self) -> None:
        """Hook: last look at the live process (roles read its CPU time here)."""

    def pause(self) -> None:
        """SIGSTOP: alive, connections open, but doing nothing (a frozen process)."""
        if self.alive and not self.paused:
            self._signal(signal.SIGSTOP)
            self.paused = True
            # The signal is asynchronous: return only once it took effect, so that what
            # the caller does next really happens while the child is frozen.
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
            self._signal(signal.SIGCONT)
            self.paused = False

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the child to end by itself; True if it did."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        self._ended_now()
        return True

    def _ended_now(self) -> None:
        if self.process is None or getattr(self, "_ended", True):
            return
        self._ended = True
        _LIVE.discard(self)
        self._on_exit()

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.alive else "stopped")
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"


@atexit.register
def stop_all_children() -> None:
    """Stop every child still running (at interpreter exit; also used by tests)."""
    for child in list(_LIVE):
        try:
            child.stop(timeout_s=2.0)
        except Exception:
            pass
