"""``edalab up`` / ``down`` / ``status``: servers that outlive the command that started them.

``up`` starts a small supervisor process in its own session. The supervisor
starts the embedded servers (they die with it, see edalab._servers), writes
``up.json`` in the state folder, and stops everything on SIGTERM (``down``).
:func:`edalab.start` finds ``up.json`` and reuses those servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from edalab._config import state_dir
from edalab._errors import EdalabError, ServerError
from edalab._lab import read_up_state
from edalab._nats_server import NatsServer, find_nats_binary
from edalab._servers import KafkaServer, RedisServer, find_redis_binary, find_tansu_binary

__all__ = ["up", "down"]


def _state_path():
    return state_dir() / "up.json"


def up(timeout_s: float = 30.0) -> tuple[dict, bool]:
    """Start the background servers unless they run; return (state, started_now)."""
    state = read_up_state()
    if state:
        return state, False
    find_tansu_binary(), find_redis_binary(), find_nats_binary()  # a missing binary is said here, not in a log
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _state_path().unlink(missing_ok=True)
    log_path = folder / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edalab._up"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_up_state()
        if state and state.get("pid") == proc.pid:
            return state, True
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    else:
        proc.kill()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
    raise ServerError(f"`edalab up` could not start the servers. Its log ({log_path}) ends:\n{tail}")


def down(timeout_s: float = 10.0) -> bool:
    """Stop ``edalab up``'s servers; return False when nothing was running."""
    state = read_up_state()
    if not state:
        _state_path().unlink(missing_ok=True)
        return False
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            if _is_zombie(pid):  # exited, but its parent (e.g. `edalab lab`) has not reaped it yet
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)  # the servers die with it (PDEATHSIG)
    except ProcessLookupError:
        pass
    _state_path().unlink(missing_ok=True)
    return True


def _is_zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _supervise() -> None:
    """Body of the supervisor process (``python -m edalab._up``)."""
    logs = state_dir() / "logs"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGHUP, lambda *_: stopping.append(1))
    servers = [KafkaServer(log_dir=logs), RedisServer(log_dir=logs), NatsServer(log_dir=logs)]
    try:
        for server in servers:
            server.start()
        kafka, redis, nats = servers
        state = {"pid": os.getpid(), "kafka_bootstrap": kafka.bootstrap, "redis_url": redis.url,
                 "nats_url": nats.url, "kafka_pid": kafka.pid, "redis_pid": redis.pid, "nats_pid": nats.pid,
                 "logs": str(logs), "started_at": time.time()}
        tmp = _state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, _state_path())
        print(json.dumps(state), flush=True)
        while not stopping and all(s.running() for s in servers):
            time.sleep(0.2)
        for s in servers:
            if not s.running():
                print(f"{s.kind} server exited; log tail:\n{s.log_tail()}", flush=True)
    finally:
        for server in servers:
            server.stop()
        try:
            if json.loads(_state_path().read_text()).get("pid") == os.getpid():
                _state_path().unlink()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    try:
        _supervise()
    except EdalabError as exc:  # the log then holds the explanation, not a traceback
        print(exc, flush=True)
        sys.exit(2)
