"""The roles of notebook 12's restaurant, built twice, each service its own process.

Light to import: a role process loads only this (and what a body imports inside).

* :func:`orders_service`: the front door, an HTTP server taking ``POST /orders``
  ``{"order": n}`` from the guest (:func:`edalab.experiments._chain_roles.guest`).
  REST-orchestrated, it calls stock, kitchen and billing in turn and waits for each
  (kitchen answers once the dish is cooked, which is when the order is *served*).
  Event-choreographed, it publishes ``order.placed`` with the whole order, answers
  once the broker acknowledged it, and learns that a dish is served from the
  ``order.cooked`` events it consumes.
* :func:`rest_service`: stock, kitchen or billing as an HTTP server (``POST /work``).
* :func:`event_service`: stock, kitchen or billing consuming ``order.placed`` in its
  own group; the kitchen cooks many dishes at once and publishes ``order.cooked``.
  It commits only when nothing is on the stove, so a kitchen killed mid-cook gets
  those orders again when it restarts (at-least-once: some are cooked twice).

Tables written through the Recorder: ``served`` (the orders service: one row each
time it learns a dish is served), ``requests`` (every request a service made and
waited for: an HTTP call or a publish), ``handled`` (each service: one row per order
it finished) and ``fetches`` (Kafka consumers: fetch requests so far, per process).
"""

from __future__ import annotations

import heapq
import time

__all__ = ["orders_service", "rest_service", "event_service", "SERVED_COLUMNS", "REQUEST_COLUMNS",
           "HANDLED_COLUMNS", "FETCH_COLUMNS", "SERVICES"]

#: the services the orders service needs, in the order the orchestrator calls them
SERVICES = ("stock", "kitchen", "billing")
SERVED_COLUMNS = ["method", "order", "served_ns"]
REQUEST_COLUMNS = ["method", "service", "order", "target", "ok", "at_ns"]
HANDLED_COLUMNS = ["method", "service", "order", "done_ns"]
FETCH_COLUMNS = ["method", "service", "pid", "requests", "t_ns"]
_FETCHES_EVERY_S = 0.5


def _serve(ctx, app, url: str) -> None:
    """Run ``app`` at ``url`` until the owner stops the role."""
    from urllib.parse import urlparse

    from edalab.transports.http import BackgroundServer

    where = urlparse(url)
    with BackgroundServer(app, host=where.hostname, port=where.port):
        ctx.ready()
        while not ctx.sleep(0.2):
            pass


def rest_service(ctx, url: str, service: str, method: str, work_ms: float = 5.0, cooks: bool = False) -> None:
    """Role: stock, kitchen or billing as an HTTP server at ``url`` (REST design, notebook 12).

    ``POST /work`` with an order: ``work_ms`` of its own work, one order at a time;
    with ``cooks`` (the kitchen) it then cooks the order for its ``cook_s`` seconds,
    many orders at once (a kitchen has many cooks), and answers when the dish is done.
    """
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    handled = ctx.recorder.table_writer(ctx.name, "handled", HANDLED_COLUMNS)
    worker = asyncio.Lock()

    async def work(request):
        order = await request.json()
        async with worker:
            await asyncio.sleep(work_ms / 1000)
        if cooks:
            await asyncio.sleep(float(order["cook_s"]))
        handled.write({"role": ctx.name, "method": method, "service": service, "order": int(order["order"]),
                       "done_ns": time.time_ns()})
        return JSONResponse({"order": order["order"], "done_by": service})

    async def health(request):
        return JSONResponse({"service": service})

    app = Starlette(routes=[Route("/work", work, methods=["POST"]), Route("/health", health)])
    try:
        _serve(ctx, app, url)
    finally:
        handled.close()


def orders_service(ctx, url: str, method: str, orders: list[dict], urls: dict | None = None,
                   placed_spec=None, cooked_spec=None, group: str = "orders", work_ms: float = 2.0,
                   timeout_s: float = 2.0) -> None:
    """Role: the orders service at ``url``, orchestrating (``urls``) or publishing (``placed_spec``).

    ``orders[n]`` is order ``n`` of the evening (``order``, ``order_id``, ``table``,
    ``item_id``, ``quantity``, ``amount_eur``, ``cook_s``).

    * With ``urls`` (service -> base URL): call stock, kitchen, billing in turn and
      wait for each (``timeout_s``, plus the cook time for the kitchen); the order is
      served when the kitchen answers. 200 when all answered, 503 naming the first
      that did not (the stock reserved for a failed order stays reserved: undoing it
      would be the orchestrator's job too).
    * With ``placed_spec``: publish ``order.placed`` and wait for the broker's ack
      (200), 503 if the broker did not take it; meanwhile consume ``cooked_spec`` in
      ``group`` and write ``served`` for each ``order.cooked``.
    """
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from edalab._events import new_event

    served = ctx.recorder.table_writer(ctx.name, "served", SERVED_COLUMNS)
    requests = ctx.recorder.table_writer(ctx.name, "requests", REQUEST_COLUMNS)
    publisher = placed_spec.publisher() if placed_spec is not None else None
    worker = asyncio.Lock()
    clients: dict[str, httpx.AsyncClient] = {}  # made in the server's event loop, on first use

    def note_request(order: int, target: str, ok: bool) -> None:
        requests.write({"role": ctx.name, "method": method, "service": "orders", "order": order, "target": target,
                        "ok": int(ok), "at_ns": time.time_ns()})

    async def call(target: str, order: dict) -> bool:
        if target not in clients:
            clients[target] = httpx.AsyncClient(base_url=urls[target])
        wait_s = timeout_s + (float(order["cook_s"]) if target == "kitchen" else 0.0)
        try:
            answer = await clients[target].post("/work", json=order, timeout=wait_s)
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        note_request(order["order"], target, ok)
        return ok

    def publish(order: dict) -> None:
        publisher.publish(new_event("order.placed", f"order-{order['order_id']}", order, producer=ctx.name,
                                    seq=order["order"]))
        publisher.flush(timeout_s=timeout_s)

    async def take_order(request):
        order = orders[int((await request.json())["order"])]
        async with worker:  # the service's own work, one order at a time
            await asyncio.sleep(work_ms / 1000)
        if publisher is not None:
            try:  # waits for the broker's ack: the broker is on the accept path
                await asyncio.to_thread(publish, order)
                note_request(order["order"], "broker", True)
            except Exception as exc:  # noqa: BLE001 - any broker failure is a refused order
                note_request(order["order"], "broker", False)
                return JSONResponse({"error": f"orders: the broker did not take it ({exc})"}, status_code=503)
            return JSONResponse({"order": order["order"], "accepted": True})
        for target in SERVICES:
            if not await call(target, order):
                return JSONResponse({"error": f"orders: {target} did not answer"}, status_code=503)
            if target == "kitchen":
                served.write({"role": ctx.name, "method": method, "order": order["order"],
                              "served_ns": time.time_ns()})
        return JSONResponse({"order": order["order"], "served": True})

    async def health(request):
        return JSONResponse({"service": "orders"})

    app = Starlette(routes=[Route("/orders", take_order, methods=["POST"]), Route("/health", health)])
    try:
        if cooked_spec is None:
            _serve(ctx, app, url)
            return
        from urllib.parse import urlparse

        from edalab.transports.http import BackgroundServer

        subscriber = cooked_spec.subscriber(group)
        fetches = ctx.recorder.table_writer(ctx.name, "fetches", FETCH_COLUMNS)
        where = urlparse(url)
        try:
            subscriber.wait_ready(timeout_s=30.0)
            with BackgroundServer(app, host=where.hostname, port=where.port):
                ctx.ready()
                _consume(ctx, subscriber, fetches, method, "orders", lambda delivery: served.write(
                    {"role": ctx.name, "method": method, "order": delivery.event.payload["order"],
                     "served_ns": delivery.received_at_ns}))
        finally:
            subscriber.close()
            fetches.close()
    finally:
        if publisher is not None:
            publisher.close()
        served.close()
        requests.close()


def _consume(ctx, subscriber, fetches, method: str, service: str, handle, idle=None,
             can_commit=lambda: True) -> None:
    """Receive until stopped: ``handle(delivery)`` each; ``idle()`` after each receive
    returns the longest next wait in seconds; fetch counts written every half second.
    A clean stop commits when ``can_commit()`` (not with dishes still on the stove)."""
    next_write = 0.0
    wait_s = 0.1
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(wait_s):
                handle(delivery)
            wait_s = idle() if idle is not None else 0.1
            if time.monotonic() >= next_write:
                fetches.write({"role": ctx.name, "method": method, "service": service, "pid": _pid(),
                               "requests": subscriber.counters.requests, "t_ns": time.time_ns()})
                next_write = time.monotonic() + _FETCHES_EVERY_S
        if can_commit():
            subscriber.commit()  # a clean stop hands back what was done; a SIGKILL never gets here
    finally:
        fetches.write({"role": ctx.name, "method": method, "service": service, "pid": _pid(),
                       "requests": subscriber.counters.requests, "t_ns": time.time_ns()})


def _pid() -> int:
    import os

    return os.getpid()


def event_service(ctx, spec, service: str, method: str, group: str, work_ms: float = 5.0,
                  cooked_spec=None) -> None:
    """Role: stock, kitchen or billing consuming ``order.placed`` in ``group`` (notebook 12).

    Each order costs ``work_ms`` of its own work. With ``cooked_spec`` (the kitchen)
    the order then cooks for its ``cook_s`` while the kitchen takes the next ones,
    and ``order.cooked`` is published when it is done. The kitchen commits only when
    nothing is cooking (its ``spec`` must not commit on each receive), so a kill
    mid-cook means those orders come again after the restart.
    """
    subscriber = spec.subscriber(group)
    handled = ctx.recorder.table_writer(ctx.name, "handled", HANDLED_COLUMNS)
    fetches = ctx.recorder.table_writer(ctx.name, "fetches", FETCH_COLUMNS)
    requests = ctx.recorder.table_writer(ctx.name, "requests", REQUEST_COLUMNS)
    publisher = cooked_spec.publisher() if cooked_spec is not None else None
    stove: list[tuple[float, int, dict]] = []  # (done at, monotonic s; order; the order)

    def done(order: dict) -> None:
        handled.write({"role": ctx.name, "method": method, "service": service, "order": order["order"],
                       "done_ns": time.time_ns()})

    def handle(delivery) -> None:
        order = delivery.event.payload
        time.sleep(work_ms / 1000)  # the service's own work, one order at a time
        if publisher is None:
            done(order)
        else:
            heapq.heappush(stove, (time.monotonic() + float(order["cook_s"]), order["order"], order))

    def idle() -> float:
        if publisher is None:
            return 0.1
        from edalab._events import new_event

        while stove and stove[0][0] <= time.monotonic():
            _, _, order = heapq.heappop(stove)
            publisher.publish(new_event("order.cooked", f"order-{order['order_id']}", order, producer=ctx.name,
                                        seq=order["order"]))
            publisher.flush(timeout_s=5.0)
            requests.write({"role": ctx.name, "method": method, "service": service, "order": order["order"],
                            "target": "broker", "ok": 1, "at_ns": time.time_ns()})
            done(order)
        if not stove:
            subscriber.commit()  # nothing on the stove: everything received so far is cooked
            return 0.1
        return max(0.0, min(0.1, stove[0][0] - time.monotonic()))

    try:
        subscriber.wait_ready(timeout_s=30.0)  # joined the group: the join is not counted as delay
        ctx.ready()
        _consume(ctx, subscriber, fetches, method, service, handle, idle, can_commit=lambda: not stove)
    finally:
        if publisher is not None:
            publisher.close()
        subscriber.close()
        for writer in (handled, fetches, requests):
            writer.close()
