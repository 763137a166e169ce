"""The in-memory HTTP event service and the webhook receiver, as Starlette apps (notebook 02).

The service keeps an ordered log of events (positions 0, 1, 2, ...) in memory and
serves it four ways: REST polling, long polling, Server-Sent Events and webhooks.
It knows nothing about restaurants: routes a lesson needs on top (notebook 01's
``GET /orders/{key}``, in :mod:`edalab.transports.http._restaurant`) come in as
``extra_routes``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edalab._events import Event
from edalab.transports._base import Delivery

__all__ = ["MAX_BATCH_EVENTS", "MAX_WAIT_S", "SSE_KEEPALIVE_S", "ServiceState",
           "event_service_app", "webhook_receiver_app"]

#: Longest long poll the service holds (seconds); longer requests are cut to this.
MAX_WAIT_S = 60.0
#: Seconds between SSE comment lines that keep an idle stream (and its proxies) alive.
SSE_KEEPALIVE_S = 15.0
#: Most events one ``GET /events`` answer carries; the client asks again for the rest.
MAX_BATCH_EVENTS = 1000

# Clients (ours and the service's webhook client) drop idle keep-alive connections
# before the server does (its limit is in _server.py); see there why.
CLIENT_KEEPALIVE_S = 60.0
# Webhook retries wait 50 ms, 100 ms, 200 ms ... at most 1 s: short, because the
# course measures delay, and a retry storm is not what a lesson is about.
_WEBHOOK_BACKOFF_FIRST_S = 0.05
_WEBHOOK_BACKOFF_MAX_S = 1.0
_WEBHOOK_QUEUE_MAX_EVENTS = 100_000

JSON_TYPE = "application/json"



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
class ServiceState:
    """Everything the event service keeps; lives in one event loop (one process).

    ``extra_routes`` of :func:`event_service_app` read it: ``log`` (event bytes by
    position), :meth:`latest` and :meth:`count`.
    """

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

    def latest(self, key: str) -> tuple[int, bytes] | None:
        """The position and bytes of the newest event with ``key``, or None."""
        position = self.latest_position_by_key.get(key)
        return None if position is None else (position, self.log[position])

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


async def _deliver_webhooks(state: ServiceState, target: _WebhookTarget) -> None:
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
                    headers={"content-type": JSON_TYPE},
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


#: Makes one extra route of the event service from its state (see event_service_app).
RouteFactory = Callable[[ServiceState], Route]


def event_service_app(
    *,
    max_wait_s: float = MAX_WAIT_S,
    sse_keepalive_s: float = SSE_KEEPALIVE_S,
    extra_routes: Sequence[RouteFactory] = (),
) -> Starlette:
    """The in-memory event service of notebook 02, as an ASGI app.

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
    * ``POST /subscriptions`` ``{"url", "retries": 0, "timeout_s": 2.0}`` -> 201;
      registers a webhook (again with the same url: new settings, same queue).
    * ``DELETE /subscriptions?url=...`` -> 204 (404 if unknown); stops delivering to it.
    * ``GET /stats`` -> requests by route, empty answers, events stored, open SSE
      streams, webhook deliveries ``ok``/``failed``/``retried``/``queued`` per URL, and
      ``now_ns`` (the server's wall clock as it counted; notebook 11 takes rates from it).

    Webhook delivery: one asyncio queue and worker per subscriber, so each gets events
    in order and a slow or dead one does not delay the others. Connection errors,
    timeouts and 5xx are retried ``retries`` times with a short backoff, then counted
    as failed. Events posted before a subscription are not sent to it.

    Args:
        max_wait_s: cap on a long poll's ``wait_s`` (seconds).
        sse_keepalive_s: seconds between keep-alive comments on an idle SSE stream.
        extra_routes: functions that take the service's :class:`ServiceState` and
            return a Starlette ``Route`` served next to the ones above, e.g.
            :func:`edalab.transports.http._restaurant.order_status_route`.

    Shutdown: the app sets ``app.state.begin_shutdown``, which
    :class:`BackgroundServer` calls first so open long polls and streams end at once.
    """
    state = ServiceState(max_wait_s=max_wait_s, sse_keepalive_s=sse_keepalive_s)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.changed = asyncio.Event()
        state.closing = False
        state.client = httpx.AsyncClient(
            limits=httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_S),
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
        return Response(body, media_type=JSON_TYPE)

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
                # the server's clock when it counted: rates over two snapshots need no client timing
                "now_ns": time.time_ns(),
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
            Route("/subscriptions", post_subscription, methods=["POST"]),
            Route("/subscriptions", delete_subscription, methods=["DELETE"]),
            Route("/stats", stats, methods=["GET"]),
            *(make_route(state) for make_route in extra_routes),
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
