"""Running the HTTP apps: uvicorn in a background thread, on loopback only.

:class:`BackgroundServer` serves the event service in tests, notebooks and the
``serve_event_service`` role, and the webhook receiver inside a subscriber. Every
server listens on loopback only: the apps have no authentication.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any, Self

import httpx
import uvicorn

from edalab._errors import ConfigError, PortInUse, ServerExited, ServerStartTimeout

__all__ = ["BackgroundServer"]

# Server keeps idle connections longer than clients do (CLIENT_KEEPALIVE_S in _app.py),
# so it is always the client that closes an idle keep-alive connection and never the
# server in the middle of a request the client just sent on it (which would show up
# as a spurious error).
_SERVER_KEEPALIVE_S = 75
# Backstop only: our apps end long polls and streams themselves when shutdown begins.
_GRACEFUL_SHUTDOWN_S = 2



class _UvicornServer(uvicorn.Server):
    """uvicorn.Server that ends long requests at shutdown.

    uvicorn only runs the app's lifespan shutdown *after* every connection closed, which
    an open SSE stream or long poll never does by itself; so the app's
    ``state.begin_shutdown()`` (if it has one) is called as the very first step.
    """

    def __init__(self, config: uvicorn.Config, app: Any):
        super().__init__(config)
        self._edalab_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        begin_shutdown = getattr(getattr(self._edalab_app, "state", None), "begin_shutdown", None)
        if callable(begin_shutdown):
            begin_shutdown()
        await super().shutdown(sockets=sockets)


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"host={host!r}: edalab's HTTP servers have no authentication and listen on "
            "loopback only; use host='127.0.0.1'."
        )


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves: the port is known (also for port=0) before
    uvicorn starts, and "port taken" becomes a clear PortInUse instead of uvicorn's exit."""
    _check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it Nagle's algorithm plus delayed ACKs add ~40 ms to
    # every response that uvicorn writes in two pieces (headers, then body).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Same as uvicorn: allow re-binding a port whose old connections are in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"Cannot listen on {host}:{port} ({exc}). Another program holds the port: "
            "stop it, choose another port, or pass port=0 for a free one."
        ) from exc
    return sock


def _make_server(app: Any, sock: socket.socket, log_level: str) -> _UvicornServer:
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=_SERVER_KEEPALIVE_S,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    return _UvicornServer(config, app)


class BackgroundServer:
    """Runs an ASGI app with uvicorn in a daemon thread on a free loopback port.

    For tests, notebooks (notebook 02 starts the event service this way) and the
    webhook receiver inside a consumer process::

        with BackgroundServer(event_service_app()) as service:
            httpx.get(service.url + "/health", timeout=2.0)

    ``start()`` returns when ``GET health_path`` answers 200 (a real request, not just
    an open port), within ``start_timeout_s`` seconds. ``stop()`` asks uvicorn to exit
    and waits at most ``stop_timeout_s`` seconds.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        health_path: str | None = "/health",
        log_level: str = "warning",
    ) -> None:
        _check_loopback(host)
        self.app = app
        self.host = host
        self._requested_port = port
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.health_path = health_path
        self.log_level = log_level
        self.port: int | None = None
        self._server: _UvicornServer | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if self.port is None:
            raise RuntimeError("BackgroundServer is not started; call start() or use it in a with block.")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            return self
        sock = _bind(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        self._server = _make_server(self.app, sock, self.log_level)

        def run() -> None:
            try:
                self._server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._crash = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"edalab-http-{self.port}", daemon=True)
        self._thread.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last_problem = "no answer yet"
        with httpx.Client(timeout=httpx.Timeout(1.0)) as client:
            while True:
                if not self._thread.is_alive():
                    raise ServerExited(
                        f"The HTTP server for {self.url} stopped while starting ({self._crash!r}); "
                        "its error is in the log above."
                    )
                if self._server.started:
                    if self.health_path is None:
                        return
                    try:
                        response = client.get(self.url + self.health_path)
                        if response.status_code == 200:
                            return
                        last_problem = f"GET {self.health_path} answered {response.status_code}"
                    except httpx.TransportError as exc:
                        last_problem = repr(exc)
                if time.monotonic() > deadline:
                    raise ServerStartTimeout(
                        f"The HTTP server at {self.url} did not answer GET {self.health_path} "
                        f"within {self.start_timeout_s} s ({last_problem}). Is the machine "
                        "overloaded? Raise start_timeout_s or check the log above."
                    )
                time.sleep(0.01)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait up to ``stop_timeout_s``; then force it."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(self.stop_timeout_s)
        if self._thread.is_alive():
            # Skips the graceful wait for open connections; the thread is a daemon,
            # so even if this does not end it, it cannot keep the process alive.
            self._server.force_exit = True
            self._thread.join(1.0)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
