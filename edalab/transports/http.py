"""HTTP transports: REST polling, long polling, Server-Sent Events and webhooks.

Notebook 02 asks "how many calls does it take to learn about one event?" with the
restaurant example: the *kitchen* is an in-memory event service (:func:`event_service_app`),
and guests learn that their order is ready by

* asking the waiter again and again (:class:`PollingSubscriber`, ``GET /events``),
* asking once and being told when it is ready (:class:`LongPollingSubscriber`,
  ``GET /events?wait_s=...``),
* keeping a line open to the kitchen (:class:`SseSubscriber`, ``GET /events/stream``),
* leaving a phone number (:class:`WebhookSubscriber`, ``POST /subscriptions``).

Servers are Starlette apps run by uvicorn, either blocking inside a role process
(:func:`serve`) or in a thread (:class:`BackgroundServer`, for tests, notebooks and the
webhook receiver inside a consumer). Clients are synchronous ``httpx.Client`` objects
with keep-alive and explicit timeouts. Everything listens on loopback only: the
service has no authentication.

Event bodies are the canonical :meth:`edalab.Event.to_bytes` JSON everywhere, so
``Counters.bytes_received`` counts the same bytes here as on Kafka and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edalab._errors import ConfigError, PortInUse, ServerExited, ServerStartTimeout, ServiceUnavailable
from edalab._events import Event
from edalab.transports._base import Delivery, Publisher, Subscriber, TransportSpec

__all__ = [
    "BackgroundServer",
    "EventServiceSpec",
    "serve_event_service",
    "HttpPublisher",
    "LongPollingSubscriber",
    "PollingSubscriber",
    "SseSubscriber",
    "WebhookSubscriber",
    "event_service_app",
    "serve",
    "webhook_receiver_app",
]

#: Longest long poll the service holds (seconds); longer requests are cut to this.
MAX_WAIT_S = 60.0
#: Seconds between SSE comment lines that keep an idle stream (and its proxies) alive.
SSE_KEEPALIVE_S = 15.0
#: Most events one ``GET /events`` answer carries; the client asks again for the rest.
MAX_BATCH_EVENTS = 1000

# Server keeps idle connections longer than clients do, so it is always the client
# that closes an idle keep-alive connection and never the server in the middle of a
# request the client just sent on it (which would show up as a spurious error).
_SERVER_KEEPALIVE_S = 75
_CLIENT_KEEPALIVE_S = 60.0
# Backstop only: our apps end long polls and streams themselves when shutdown begins.
_GRACEFUL_SHUTDOWN_S = 2
# Webhook retries wait 50 ms, 100 ms, 200 ms ... at most 1 s: short, because the
# course measures delay, and a retry storm is not what a lesson is about.
_WEBHOOK_BACKOFF_FIRST_S = 0.05
_WEBHOOK_BACKOFF_MAX_S = 1.0
_WEBHOOK_QUEUE_MAX_EVENTS = 100_000

_JSON = "application/json"


def _not_answering(url: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The edalab HTTP event service at {url} is not answering ({type(exc).__name__}: {exc}). "
        "Start it first (serve(event_service_app()) in a service role, or "
        "BackgroundServer(event_service_app()) in a notebook) and check the URL and port."
    )


@contextlib.contextmanager
def _service_errors(url: str) -> Iterator[None]:
    """Turn "nobody is listening" and "nobody answered in time" into ServiceUnavailable."""
    try:
        yield
    except (httpx.TransportError, OSError) as exc:
        raise _not_answering(url, exc) from exc


# --------------------------------------------------------------------------------------
# The event service (the kitchen)
# --------------------------------------------------------------------------------------


@dataclass
class _WebhookTarget:
    url: str
    retries: int
    timeout_s: float
    queue: asyncio.Queue
    worker: asyncio.Task | None = None
    ok: int = 0
    failed: int = 0
    retried: int = 0


@dataclass
class _ServiceState:
    """Everything the event service keeps; lives in one event loop (one process)."""

    max_wait_s: float
    sse_keepalive_s: float
    # Canonical event bytes by log position; the list index *is* the position.
    log: list[bytes] = field(default_factory=list)
    latest_position_by_key: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    empty_responses: dict[str, int] = field(default_factory=dict)
    sse_open: int = 0
    webhooks: dict[str, _WebhookTarget] = field(default_factory=dict)
    # Loop-bound objects, made in the lifespan so one app can be served by any loop.
    changed: asyncio.Event | None = None
    closing: bool = False
    client: httpx.AsyncClient | None = None

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1

    def count_empty(self, route: str) -> None:
        self.empty_responses[route] = self.empty_responses.get(route, 0) + 1

    def append(self, raw: bytes, key: str) -> int:
        position = len(self.log)
        self.log.append(raw)
        self.latest_position_by_key[key] = position
        self._wake()
        return position

    def _wake(self) -> None:
        # One Event per "generation": waiters hold the one that was current when they
        # looked at the log; setting it wakes exactly those, the fresh one stays clear.
        assert self.changed is not None
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def begin_shutdown(self) -> None:
        """End long polls and SSE streams now, so uvicorn's shutdown is not held up."""
        self.closing = True
        if self.changed is not None:
            self._wake()

    async def wait_after(self, position: int, timeout_s: float) -> bool:
        """Wait until the log has an event after ``position``; False on timeout/shutdown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.log) - 1 <= position and not self.closing:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return False
            assert self.changed is not None
            try:
                await asyncio.wait_for(self.changed.wait(), remaining_s)
            except TimeoutError:
                return False
        return len(self.log) - 1 > position

    def events_json(self, after: int, limit: int) -> tuple[bytes, int]:
        """``{"events": [...], "next": n}`` built from stored bytes, and the event count."""
        start = max(after + 1, 0)
        batch = self.log[start : start + limit]
        next_position = start + len(batch) - 1 if batch else after
        body = b'{"events":[' + b",".join(batch) + b'],"next":' + str(next_position).encode() + b"}"
        return body, len(batch)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return int(raw)  # ValueError becomes a 400 in the handlers


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait_unless_disconnected(request: Request, waiting: asyncio.Future) -> None:
    """Await ``waiting`` but give up when the client hangs up (no orphaned long polls)."""
    watcher = asyncio.ensure_future(_until_disconnect(request))
    waiting = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiting, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, watcher):
            task.cancel()


async def _deliver_webhooks(state: _ServiceState, target: _WebhookTarget) -> None:
    """Worker: POST each queued event to one subscriber, in log order, with retries."""
    assert state.client is not None
    while True:
        raw = await target.queue.get()
        attempt = 0
        while True:
            try:
                response = await state.client.post(
                    target.url,
                    content=raw,
                    headers={"content-type": _JSON},
                    timeout=httpx.Timeout(target.timeout_s),
                )
                # 5xx may be a passing hiccup and is worth a retry; 4xx means the
                # receiver rejects this event, and sending it again cannot help.
                worth_retry = response.status_code >= 500
                delivered = response.status_code < 300
            except httpx.TransportError:  # refused, reset, timed out
                worth_retry, delivered = True, False
            if delivered:
                target.ok += 1
                break
            if not worth_retry or attempt >= target.retries:
                target.failed += 1
                break
            attempt += 1
            target.retried += 1
            await asyncio.sleep(min(_WEBHOOK_BACKOFF_FIRST_S * 2 ** (attempt - 1), _WEBHOOK_BACKOFF_MAX_S))


def event_service_app(
    *, max_wait_s: float = MAX_WAIT_S, sse_keepalive_s: float = SSE_KEEPALIVE_S
) -> Starlette:
    """The in-memory event service of notebook 02 (the restaurant's kitchen), as an ASGI app.

    Routes (all JSON unless said otherwise):

    * ``GET /health`` -> ``{"ok": true}``
    * ``POST /events`` (an Event's JSON) -> 202 ``{"position": n}``; appends to the
      ordered log (positions 0, 1, 2, ...), wakes long polls and SSE streams and
      queues a webhook delivery per subscriber. Never waits for webhook delivery.
    * ``GET /events?after=N[&limit=L]`` -> ``{"events": [...], "next": n}``: events
      with position > N (``after=-1`` is the start), answered at once (REST polling).
      ``next`` is the last position returned (N when none): pass it as the next ``after``.
    * ``GET /events?after=N&wait_s=W`` -> the same, but held until an event after N
      exists or W seconds (at most ``max_wait_s``) pass (long polling).
    * ``GET /events/stream?after=N`` -> ``text/event-stream``: backlog after N, then
      each new event as ``id: <position>`` / ``data: <event json>``, and a ``:``
      comment line every ``sse_keepalive_s`` seconds while idle.
    * ``GET /orders/{key}`` -> ``{"key", "status": <latest event type>, "position",
      "event"}`` or 404 ``{"status": "unknown"}`` ("is my order ready?").
    * ``POST /subscriptions`` ``{"url", "retries": 0, "timeout_s": 2.0}`` -> 201;
      registers a webhook (again with the same url: new settings, same queue).
    * ``DELETE /subscriptions?url=...`` -> 204 (404 if unknown); stops delivering to it.
    * ``GET /stats`` -> requests by route, empty answers, events stored, open SSE
      streams, and webhook deliveries ``ok``/``failed``/``retried``/``queued`` per URL.

    Webhook delivery: one asyncio queue and worker per subscriber, so each gets events
    in order and a slow or dead one does not delay the others. Connection errors,
    timeouts and 5xx are retried ``retries`` times with a short backoff, then counted
    as failed. Events posted before a subscription are not sent to it.

    Args:
        max_wait_s: cap on a long poll's ``wait_s`` (seconds).
        sse_keepalive_s: seconds between keep-alive comments on an idle SSE stream.

    Shutdown: the app sets ``app.state.begin_shutdown``, which :func:`serve` and
    :class:`BackgroundServer` call first so open long polls and streams end at once.
    """
    state = _ServiceState(max_wait_s=max_wait_s, sse_keepalive_s=sse_keepalive_s)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.changed = asyncio.Event()
        state.closing = False
        state.client = httpx.AsyncClient(
            limits=httpx.Limits(keepalive_expiry=_CLIENT_KEEPALIVE_S),
            timeout=httpx.Timeout(5.0),  # each delivery passes its own; this is a fallback
        )
        try:
            yield
        finally:
            state.begin_shutdown()
            workers = [t.worker for t in state.webhooks.values() if t.worker is not None]
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for target in state.webhooks.values():
                target.worker = None
            await state.client.aclose()

    async def health(request: Request) -> Response:
        state.count("health")
        return JSONResponse({"ok": True})

    async def post_event(request: Request) -> Response:
        state.count("post_events")
        try:
            event = Event.from_bytes(await request.body())
        except (ValueError, TypeError) as exc:
            return _bad_request(f"body is not an edalab Event as JSON: {exc}")
        # Store the canonical bytes so every reader gets (and counts) exactly
        # what Event.to_bytes() makes on Kafka and Redis too.
        raw = event.to_bytes()
        position = state.append(raw, event.key)
        for target in state.webhooks.values():
            try:
                target.queue.put_nowait(raw)
            except asyncio.QueueFull:
                target.failed += 1
        return JSONResponse({"position": position}, status_code=202)

    async def get_events(request: Request) -> Response:
        try:
            after = _int_param(request, "after", -1)
            limit = min(max(_int_param(request, "limit", MAX_BATCH_EVENTS), 1), MAX_BATCH_EVENTS)
            wait_s = float(request.query_params.get("wait_s", 0.0))
        except ValueError as exc:
            return _bad_request(f"after and limit must be integers, wait_s a number: {exc}")
        if after < -1 or not math.isfinite(wait_s):
            return _bad_request("after must be >= -1 (-1 = from the start), wait_s finite")
        route = "long_polls" if wait_s > 0 else "polls"
        state.count(route)
        if wait_s > 0:
            await _wait_unless_disconnected(request, state.wait_after(after, min(wait_s, state.max_wait_s)))
        body, n_events = state.events_json(after, limit)
        if n_events == 0:
            state.count_empty(route)
        return Response(body, media_type=_JSON)

    async def stream_events(request: Request) -> Response:
        try:
            after = _int_param(request, "after", -1)
        except ValueError as exc:
            return _bad_request(f"after must be an integer: {exc}")
        state.count("sse_connections")

        async def lines():
            cursor = after
            state.sse_open += 1
            try:
                while not state.closing:
                    start = max(cursor + 1, 0)
                    batch = state.log[start:]
                    if batch:
                        chunk = b"".join(
                            b"id: %d\ndata: %s\n\n" % (start + i, raw) for i, raw in enumerate(batch)
                        )
                        cursor = start + len(batch) - 1
                        yield chunk
                        continue
                    if not await state.wait_after(cursor, state.sse_keepalive_s) and not state.closing:
                        yield b": keep-alive\n\n"
            finally:
                # Runs on normal end, shutdown, and when Starlette cancels us because
                # the client disconnected.
                state.sse_open -= 1

        return StreamingResponse(
            lines(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def get_order(request: Request) -> Response:
        state.count("orders_lookups")
        key = request.path_params["key"]
        position = state.latest_position_by_key.get(key)
        if position is None:
            return JSONResponse({"key": key, "status": "unknown"}, status_code=404)
        event = json.loads(state.log[position])
        return JSONResponse({"key": key, "status": event["type"], "position": position, "event": event})

    async def post_subscription(request: Request) -> Response:
        state.count("subscriptions")
        try:
            spec = json.loads(await request.body())
            url = str(spec["url"])
            retries = int(spec.get("retries", 0))
            timeout_s = float(spec.get("timeout_s", 2.0))
        except (ValueError, TypeError, KeyError) as exc:
            return _bad_request(f'expected {{"url": ..., "retries": 0, "timeout_s": 2.0}}: {exc!r}')
        if not url.startswith(("http://", "https://")) or retries < 0 or not 0 < timeout_s <= 60:
            return _bad_request("url must be http(s)://..., retries >= 0, 0 < timeout_s <= 60")
        target = state.webhooks.get(url)
        if target is None:
            target = _WebhookTarget(url, retries, timeout_s, asyncio.Queue(maxsize=_WEBHOOK_QUEUE_MAX_EVENTS))
            state.webhooks[url] = target
        target.retries, target.timeout_s = retries, timeout_s
        if target.worker is None or target.worker.done():
            target.worker = asyncio.create_task(_deliver_webhooks(state, target))
        return JSONResponse({"url": url, "retries": retries, "timeout_s": timeout_s}, status_code=201)

    async def delete_subscription(request: Request) -> Response:
        state.count("unsubscriptions")
        target = state.webhooks.pop(request.query_params.get("url", ""), None)
        if target is None:
            return JSONResponse({"error": "no such subscription"}, status_code=404)
        if target.worker is not None:
            target.worker.cancel()
        return Response(status_code=204)

    async def stats(request: Request) -> Response:
        state.count("stats")
        return JSONResponse(
            {
                "events_stored": len(state.log),
                "requests": dict(state.requests),
                "empty_responses": dict(state.empty_responses),
                "sse_open": state.sse_open,
                "webhooks": {
                    url: {"ok": t.ok, "failed": t.failed, "retried": t.retried, "queued": t.queue.qsize()}
                    for url, t in state.webhooks.items()
                },
            }
        )

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/events", post_event, methods=["POST"]),
            Route("/events", get_events, methods=["GET"]),
            Route("/events/stream", stream_events, methods=["GET"]),
            Route("/orders/{key}", get_order, methods=["GET"]),
            Route("/subscriptions", post_subscription, methods=["POST"]),
            Route("/subscriptions", delete_subscription, methods=["DELETE"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.begin_shutdown = state.begin_shutdown
    return app


def webhook_receiver_app(on_event: Callable[[Delivery], Any]) -> Starlette:
    """A webhook endpoint (notebook 02): ``POST /hook`` with an Event's JSON -> 204.

    ``on_event(Delivery)`` is called with ``received_at_ns`` taken as soon as the body
    was read. It runs in the server's event loop thread, so it must be quick and
    thread-safe (``queue.Queue.put`` is both). ``GET /health`` -> ``{"ok": true}``.
    """

    async def hook(request: Request) -> Response:
        body = await request.body()
        received_at_ns = time.time_ns()
        try:
            event = Event.from_bytes(body)
        except (ValueError, TypeError) as exc:
            return _bad_request(f"body is not an edalab Event as JSON: {exc}")
        on_event(Delivery(event, received_at_ns))
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/hook", hook, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


# --------------------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------------------


class _UvicornServer(uvicorn.Server):
    """uvicorn.Server that reports its port when ready and ends long requests at shutdown.

    uvicorn only runs the app's lifespan shutdown *after* every connection closed, which
    an open SSE stream or long poll never does by itself; so the app's
    ``state.begin_shutdown()`` (if it has one) is called as the very first step.
    """

    def __init__(self, config: uvicorn.Config, app: Any, port: int, on_ready: Callable[[int], Any] | None):
        super().__init__(config)
        self._edalab_app = app
        self._edalab_port = port
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_ready is not None:
            self._on_ready(self._edalab_port)

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


def _make_server(
    app: Any, sock: socket.socket, on_ready: Callable[[int], Any] | None, log_level: str
) -> _UvicornServer:
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
    return _UvicornServer(config, app, port, on_ready)


def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[int], Any] | None = None,
    log_level: str = "warning",
) -> None:
    """Run ``app`` with uvicorn in this process until SIGINT/SIGTERM (blocking).

    Used inside a role process (e.g. the service role of notebook 02). ``port=0``
    picks a free port; ``on_ready(port)`` is called with the bound port once the
    server accepts requests (call it something quick: write to a pipe or queue).

    After a clean shutdown on SIGINT/SIGTERM, uvicorn raises the signal again, so the
    process ends the way the signal asked (KeyboardInterrupt for SIGINT).

    Raises:
        ConfigError: ``host`` is not a loopback address.
        PortInUse: ``port`` is taken.
        ServerExited: the app's startup failed (uvicorn logged why).
    """
    sock = _bind(host, port)
    server = _make_server(app, sock, on_ready, log_level)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits this way when the app's lifespan startup fails
        raise ServerExited(
            f"The HTTP server on {host}:{sock.getsockname()[1]} stopped while starting "
            f"(exit code {exc.code}); its error is in the log above."
        ) from exc
    finally:
        sock.close()


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
        self._server = _make_server(self.app, sock, None, self.log_level)

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


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


def _client(base_url: str, timeout: httpx.Timeout) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=4, keepalive_expiry=_CLIENT_KEEPALIVE_S),
    )


class HttpPublisher(Publisher):
    """Publishes by ``POST /events`` to the event service (notebook 02).

    ``publish`` returns when the service stored the event (HTTP 202); its log position
    is then in ``last_position``. ``timeout_s`` bounds each request (seconds).

    Raises:
        ServiceUnavailable: the service does not answer (refused, reset, timed out).
    """

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = _client(self.base_url, httpx.Timeout(timeout_s))
        self.last_position: int | None = None

    def publish(self, event: Event) -> None:
        with _service_errors(self.base_url):
            response = self._client.post("/events", content=event.to_bytes(), headers={"content-type": _JSON})
        response.raise_for_status()
        self.last_position = response.json()["position"]

    def close(self) -> None:
        self._client.close()


class _CursorSubscriber(Subscriber):
    """Shared part of the two ``GET /events`` subscribers: the cursor and the parsing."""

    def __init__(self, base_url: str, after: int, timeout: httpx.Timeout) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        #: Log position of the last event received (-1: none yet, start of the log).
        self.cursor = after
        self._client = _client(self.base_url, timeout)

    def _get(self, params: dict[str, Any], timeout: httpx.Timeout | None = None) -> list[Delivery]:
        self.counters.requests += 1
        with _service_errors(self.base_url):
            if timeout is None:
                response = self._client.get("/events", params=params)
            else:
                response = self._client.get("/events", params=params, timeout=timeout)
        received_at_ns = time.time_ns()  # the body is fully read by now
        response.raise_for_status()
        answer = response.json()
        deliveries = []
        for fields in answer["events"]:
            event = Event(**fields)
            deliveries.append(Delivery(event, received_at_ns))
            self.counters.bytes_received += len(event.to_bytes())
        if not deliveries:
            self.counters.empty_responses += 1
        self.cursor = max(self.cursor, int(answer["next"]))
        return deliveries

    def close(self) -> None:
        self._client.close()


class PollingSubscriber(_CursorSubscriber):
    """REST polling on a fixed schedule (notebook 02's "asking the waiter again and again").

    Polls ``GET /events?after=<cursor>`` at t0, t0 + I, t0 + 2I, ... where
    I = ``poll_interval_s`` and t0 is the first ``receive`` call. The schedule does not
    depend on response times, so an event waits on average I/2 plus one round trip.
    A slot that passes while a poll is still running or while the caller is away
    is skipped (counted in ``missed_slots``), never made up for by polling late.

    ``receive(timeout_s)`` polls at each slot up to the deadline until a poll returns
    events; if no slot falls before the deadline it sleeps to the deadline and
    returns ``[]`` (so a calling loop never spins). Every GET counts as a request,
    every empty answer as an empty response.

    Args:
        base_url: the event service, e.g. ``BackgroundServer.url``.
        poll_interval_s: seconds between poll slots.
        timeout_s: bound on each HTTP request (seconds).
        after: log position to start after (-1: from the start of the log).
    """

    def __init__(
        self, base_url: str, poll_interval_s: float, timeout_s: float = 5.0, *, after: int = -1
    ) -> None:
        if not poll_interval_s > 0:
            raise ConfigError(f"poll_interval_s={poll_interval_s!r}: must be a positive number of seconds.")
        super().__init__(base_url, after, httpx.Timeout(timeout_s))
        self.poll_interval_s = poll_interval_s
        self.missed_slots = 0
        self._t0: float | None = None
        self._next_slot = 0

    def _slot_time(self, slot: int) -> float:
        assert self._t0 is not None
        return self._t0 + slot * self.poll_interval_s

    def _skip_past_slots(self, now: float) -> None:
        first_future_slot = math.floor((now - self._t0) / self.poll_interval_s) + 1
        if first_future_slot > self._next_slot:
            self.missed_slots += first_future_slot - self._next_slot
            self._next_slot = first_future_slot

    def receive(self, timeout_s: float) -> list[Delivery]:
        now = time.monotonic()
        deadline = now + timeout_s
        if self._t0 is None:
            self._t0 = now  # slot 0 is now: the first poll happens at once
        elif self._slot_time(self._next_slot) < now:
            self._skip_past_slots(now)
        while True:
            slot_time = self._slot_time(self._next_slot)
            if slot_time > deadline:
                time.sleep(max(0.0, deadline - time.monotonic()))
                return []
            time.sleep(max(0.0, slot_time - time.monotonic()))
            self._next_slot += 1
            deliveries = self._get({"after": self.cursor})
            now = time.monotonic()
            if self._slot_time(self._next_slot) < now:
                self._skip_past_slots(now)  # the poll overran one or more slots
            if deliveries:
                return deliveries


class LongPollingSubscriber(_CursorSubscriber):
    """Long polling (notebook 02's "ask once, be told when it is ready").

    Each request is ``GET /events?after=<cursor>&wait_s=W`` with
    W = min(``wait_s``, time left in ``receive``), at least ``min_wait_s``; the service
    answers as soon as an event exists. A request that times out empty counts as an
    empty response. ``receive`` repeats requests until events arrive or its timeout
    ends. ``connect_timeout_s`` bounds connecting; reading may take W plus
    ``read_margin_s`` seconds.
    """

    #: Shortest wait asked for, so the tail of a receive timeout does not become a
    #: burst of zero-wait requests (it may overrun the timeout by this much).
    min_wait_s = 0.01

    def __init__(
        self,
        base_url: str,
        wait_s: float = 30.0,
        *,
        connect_timeout_s: float = 5.0,
        read_margin_s: float = 5.0,
        after: int = -1,
    ) -> None:
        if not wait_s > 0:
            raise ConfigError(f"wait_s={wait_s!r}: must be a positive number of seconds.")
        super().__init__(base_url, after, httpx.Timeout(connect_timeout_s))
        self.wait_s = wait_s
        self.connect_timeout_s = connect_timeout_s
        self.read_margin_s = read_margin_s

    def receive(self, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return []
            wait_s = max(min(self.wait_s, remaining_s), self.min_wait_s)
            timeout = httpx.Timeout(self.connect_timeout_s, read=wait_s + self.read_margin_s)
            deliveries = self._get({"after": self.cursor, "wait_s": f"{wait_s:.3f}"}, timeout)
            if deliveries:
                return deliveries


class SseSubscriber(Subscriber):
    """Server-Sent Events (notebook 02's "an open line to the kitchen").

    Opens one ``GET /events/stream`` (one request) in the constructor, so a dead
    service fails at once with :class:`ServiceUnavailable`. A reader thread parses
    events as they arrive and stamps ``received_at_ns``; ``receive(timeout_s)`` takes
    them from a queue and returns within ``timeout_s`` even when nothing arrives.

    If the stream breaks, the reader reconnects after the last position it saw (one
    more request each time); after ``reconnect_give_up_s`` seconds without success,
    ``receive`` raises :class:`ServiceUnavailable`. Keep-alive comments are counted in
    ``keepalives_received``, not as responses.

    Args:
        base_url: the event service.
        connect_timeout_s: bound on connecting (seconds).
        read_timeout_s: longest silence tolerated on the stream before reconnecting;
            keep it above the service's keep-alive period (15 s).
        after: log position to start after (-1: from the start of the log).
    """

    def __init__(
        self,
        base_url: str,
        connect_timeout_s: float = 5.0,
        *,
        read_timeout_s: float = 3 * SSE_KEEPALIVE_S,
        reconnect_give_up_s: float = 10.0,
        after: int = -1,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.cursor = after
        self.keepalives_received = 0
        self.reconnect_give_up_s = reconnect_give_up_s
        self._client = _client(self.base_url, httpx.Timeout(connect_timeout_s, read=read_timeout_s))
        self._deliveries: queue.Queue[Delivery] = queue.Queue()
        self._closed = threading.Event()
        self._failure: ServiceUnavailable | None = None
        self._response_lock = threading.Lock()
        self._response: httpx.Response | None = self._open()
        # httpx's sync streaming API has no "read with a deadline": a read blocks until
        # bytes come or read_timeout_s passes. A thread that blocks on the stream and
        # feeds a queue lets receive() keep its own timeout exactly.
        self._reader = threading.Thread(target=self._read_forever, name="edalab-sse-reader", daemon=True)
        self._reader.start()

    def _open(self) -> httpx.Response:
        self.counters.requests += 1
        request = self._client.build_request(
            "GET", "/events/stream", params={"after": self.cursor}, headers={"accept": "text/event-stream"}
        )
        with _service_errors(self.base_url):
            response = self._client.send(request, stream=True)
        if response.status_code != 200:
            response.close()
            raise ServiceUnavailable(
                f"The event service at {self.base_url} refused the SSE stream "
                f"(HTTP {response.status_code}). Is that URL an edalab event service?"
            )
        return response

    def _consume(self, response: httpx.Response) -> None:
        """Parse the text/event-stream until it ends (one ``id:``/``data:`` per event)."""
        position: int | None = None
        data: str | None = None
        received_at_ns = 0
        for line in response.iter_lines():
            if line.startswith("data:"):
                received_at_ns = time.time_ns()
                data = line[5:].removeprefix(" ")
            elif line.startswith("id:"):
                position = int(line[3:].strip())
            elif line.startswith(":"):
                self.keepalives_received += 1
            elif line == "" and data is not None:
                event = Event.from_bytes(data)
                self.counters.bytes_received += len(data.encode())
                if position is not None:
                    self.cursor = position
                self._deliveries.put(Delivery(event, received_at_ns))
                position, data = None, None

    def _read_forever(self) -> None:
        response = self._response
        while True:
            try:
                self._consume(response)
            except (httpx.HTTPError, OSError, ValueError):
                pass  # broken stream; reconnect below unless we are closing
            finally:
                response.close()
            if self._closed.is_set():
                return
            response = self._reconnect()
            if response is None:
                return

    def _reconnect(self) -> httpx.Response | None:
        give_up_at = time.monotonic() + self.reconnect_give_up_s
        pause_s = 0.1
        while not self._closed.wait(pause_s):
            try:
                response = self._open()
            except ServiceUnavailable as exc:
                if time.monotonic() > give_up_at:
                    self._failure = exc
                    return None
                pause_s = min(pause_s * 2, 2.0)
                continue
            with self._response_lock:
                if self._closed.is_set():
                    response.close()
                    return None
                self._response = response
            return response
        return None

    def receive(self, timeout_s: float) -> list[Delivery]:
        try:
            first = self._deliveries.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            if self._failure is not None:
                raise self._failure
            return []
        deliveries = [first]
        while True:
            try:
                deliveries.append(self._deliveries.get_nowait())
            except queue.Empty:
                return deliveries

    def close(self) -> None:
        self._closed.set()
        with self._response_lock:
            response = self._response
        # Closing a socket does not wake a thread blocked reading it on Linux;
        # shutting it down does (the read sees end-of-stream).
        stream = response.extensions.get("network_stream") if response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(2.0)
        self._client.close()


class WebhookSubscriber(Subscriber):
    """Webhooks (notebook 02's "leave a phone number and get called").

    Starts a :class:`BackgroundServer` running :func:`webhook_receiver_app` on a free
    loopback port in this process, and registers its ``/hook`` URL with the service
    (``POST /subscriptions``). The service then POSTs every event posted *after* the
    registration. ``receive`` drains what arrived.

    ``counters.requests`` stays 0: the service makes the requests, not this
    subscriber (the service's ``/stats`` counts deliveries ok/failed/retried).

    Args:
        service_url: the event service.
        retries: how often the service retries a failed delivery.
        delivery_timeout_s: the service's timeout for each delivery (seconds).
        timeout_s: bound on this subscriber's own requests to the service (seconds).
    """

    def __init__(
        self,
        service_url: str,
        retries: int = 0,
        *,
        delivery_timeout_s: float = 2.0,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.service_url = service_url.rstrip("/")
        self._deliveries: queue.Queue[Delivery] = queue.Queue()
        self._receiver = BackgroundServer(webhook_receiver_app(self._deliveries.put)).start()
        self.hook_url = self._receiver.url + "/hook"
        self._client = _client(self.service_url, httpx.Timeout(timeout_s))
        try:
            with _service_errors(self.service_url):
                response = self._client.post(
                    "/subscriptions",
                    json={"url": self.hook_url, "retries": retries, "timeout_s": delivery_timeout_s},
                )
            response.raise_for_status()
        except BaseException:
            self._client.close()
            self._receiver.stop()
            raise

    def receive(self, timeout_s: float) -> list[Delivery]:
        try:
            deliveries = [self._deliveries.get(timeout=max(timeout_s, 0.0))]
        except queue.Empty:
            return []
        while True:
            try:
                deliveries.append(self._deliveries.get_nowait())
            except queue.Empty:
                break
        for delivery in deliveries:
            self.counters.bytes_received += len(delivery.event.to_bytes())
        return deliveries

    def close(self) -> None:
        # Unsubscribe first, so the service does not go on failing deliveries to a
        # receiver that is gone; best effort, the service may already be down.
        with contextlib.suppress(httpx.HTTPError):
            self._client.delete("/subscriptions", params={"url": self.hook_url})
        self._client.close()
        self._receiver.stop()


# -- specs and the service role (used by edalab.roles and the experiments) ----------------

_HTTP_MODES = ("poll", "long-poll", "sse", "webhook")


@dataclass(frozen=True)
class EventServiceSpec:
    """How to reach the event service over HTTP, and how a subscriber listens to it.

    ``mode`` is ``"poll"`` (REST polling every ``poll_interval_s``), ``"long-poll"``,
    ``"sse"`` or ``"webhook"``. Publishers always ``POST /events``.
    """

    base_url: str
    mode: str = "poll"
    poll_interval_s: float = 0.1
    long_poll_wait_s: float = 30.0
    webhook_retries: int = 0
    #: start after this log position; None = only events posted from now on
    after: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in _HTTP_MODES:
            raise ConfigError(f"mode must be one of {_HTTP_MODES}, not {self.mode!r}")
        if self.mode == "poll" and not self.poll_interval_s > 0:
            raise ConfigError(f"poll_interval_s must be positive, not {self.poll_interval_s!r}")

    @property
    def kind(self) -> str:
        return {"poll": "rest-poll"}.get(self.mode, self.mode)

    def publisher(self) -> HttpPublisher:
        return HttpPublisher(self.base_url)

    def subscriber(self, group: str | None = None) -> Subscriber:
        """A subscriber in this spec's mode (HTTP has no groups: everyone gets everything)."""
        after = self.after if self.after is not None else self._end_of_log()
        if self.mode == "poll":
            return PollingSubscriber(self.base_url, self.poll_interval_s, after=after)
        if self.mode == "long-poll":
            return LongPollingSubscriber(self.base_url, self.long_poll_wait_s, after=after)
        if self.mode == "sse":
            return SseSubscriber(self.base_url, after=after)
        return WebhookSubscriber(self.base_url, retries=self.webhook_retries)


    def _end_of_log(self) -> int:
        with _service_errors(self.base_url), httpx.Client(timeout=5.0) as client:
            stats = client.get(f"{self.base_url}/stats")
            stats.raise_for_status()
        return int(stats.json()["events_stored"]) - 1


TransportSpec.register(EventServiceSpec)


def serve_event_service(ctx, base_url: str) -> None:
    """Role: run the event service (the kitchen) at ``base_url`` until asked to stop."""
    from urllib.parse import urlparse

    parsed = urlparse(base_url)
    with BackgroundServer(event_service_app(), host=parsed.hostname, port=parsed.port):
        ctx.ready()
        while not ctx.sleep(0.5):
            pass
