"""The roles of notebook 07's small real run: HTTP services, event services, a guest.

Each runs as its own process (a :class:`edalab.Role`), so killing ``billing`` is a
real SIGKILL of a real server. Light to import: a role process loads only this.

* :func:`http_service`: one service as an HTTP server (``POST /orders``). It does its
  own work, then either calls the next service and waits (the synchronous chain) or
  publishes an event and waits for the broker's acknowledgement (the event version).
  It answers 503 when the service it waits for does not answer.
* :func:`event_service`: one service consuming order events in a consumer group.
* :func:`guest`: places orders at scheduled times over HTTP and writes each answer.

Tables written through the Recorder: ``calls`` (the guest: one row per order with
its answer) and ``handled`` (every service: one row per order it finished).
"""

from __future__ import annotations

import time

__all__ = ["http_service", "event_service", "guest", "HANDLED_COLUMNS", "CALL_COLUMNS"]

HANDLED_COLUMNS = ["service", "method", "order", "done_ns"]
CALL_COLUMNS = ["method", "order", "due_ns", "sent_ns", "answered_ns", "accepted", "status"]


def http_service(ctx, url: str, service: str, method: str, work_ms: float = 5.0, next_url: str | None = None,
                 spec=None, timeout_s: float = 1.0) -> None:
    """Role: ``service`` as an HTTP server at ``url`` (notebook 07).

    ``POST /orders`` with ``{"order": n}``: sleep ``work_ms`` (its own work, one order at
    a time: one worker), then call ``next_url`` and wait (``timeout_s`` at most) or
    publish an ``order.placed`` event to ``spec`` and wait for the broker's ack. 200
    when all that worked, 503 naming who did not answer otherwise.
    """
    import asyncio
    from urllib.parse import urlparse

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from edalab._events import new_event
    from edalab.transports.http import BackgroundServer

    handled = ctx.recorder.table_writer(ctx.name, "handled", HANDLED_COLUMNS)
    publisher = spec.publisher() if spec is not None else None
    worker = asyncio.Lock()
    client: list[httpx.AsyncClient] = []  # made in the server's event loop, on first use

    async def take_order(request):
        order = int((await request.json())["order"])
        async with worker:  # one order at a time: a service has a fixed capacity
            await asyncio.sleep(work_ms / 1000)
        if next_url is not None:
            if not client:
                client.append(httpx.AsyncClient(base_url=next_url, timeout=timeout_s))
            try:
                answer = await client[0].post("/orders", json={"order": order})
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                return JSONResponse({"error": f"{service}: the next service did not answer ({exc})"},
                                    status_code=503)
        if publisher is not None:
            try:  # waits for the broker's ack: the broker is on the accept path
                publisher.publish(new_event("order.placed", f"order-{order}", {"order": order},
                                            producer=ctx.name, seq=order))
                publisher.flush(timeout_s=timeout_s)
            except Exception as exc:  # noqa: BLE001 - any broker failure is a refused order
                return JSONResponse({"error": f"{service}: the broker did not take it ({exc})"}, status_code=503)
        handled.write({"role": ctx.name, "service": service, "method": method, "order": order,
                       "done_ns": time.time_ns()})
        return JSONResponse({"order": order, "accepted_by": service})

    async def health(request):  # BackgroundServer waits for it before the role says ready
        return JSONResponse({"service": service})

    where = urlparse(url)
    app = Starlette(routes=[Route("/orders", take_order, methods=["POST"]), Route("/health", health)])
    try:
        with BackgroundServer(app, host=where.hostname, port=where.port):
            ctx.ready()
            while not ctx.sleep(0.2):
                pass
    finally:
        if publisher is not None:
            publisher.close()
        handled.close()


def event_service(ctx, spec, service: str, group: str, method: str, work_ms: float = 5.0) -> None:
    """Role: ``service`` consuming order events as a member of ``group`` (notebook 07).

    For each event it does its own work (``work_ms``, one at a time) and writes when it
    finished. Members of the same group share the topic's partitions (competing
    consumers): a second instance takes half the work.
    """
    subscriber = spec.subscriber(group)
    handled = ctx.recorder.table_writer(ctx.name, "handled", HANDLED_COLUMNS)
    subscriber.wait_ready(timeout_s=30.0)  # joined the group: the join is not counted as delay
    ctx.ready()
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                time.sleep(work_ms / 1000)  # the service's own work
                handled.write({"role": ctx.name, "service": service, "method": method,
                               "order": delivery.event.payload["order"], "done_ns": time.time_ns()})
        subscriber.commit()  # a clean stop hands back what was done; a SIGKILL never gets here
    finally:
        subscriber.close()
        handled.close()


def guest(ctx, url: str, method: str, schedule_s: list[float], timeout_s: float = 1.0, concurrency: int = 1) -> None:
    """Role: place order ``n`` at ``schedule_s[n]`` seconds after the gate; write each answer.

    At most ``concurrency`` orders wait for an answer at once (1: one after another);
    an order due while all are busy waits in the guest, so ``answered_ns - due_ns`` is
    what the guest lived through. ``accepted`` is 1 for a 200 answer and 0 for an error
    answer, a refused connection or a timeout.
    """
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    calls = ctx.recorder.table_writer(ctx.name, "calls", CALL_COLUMNS)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def place(client, order: int, due_ns: int) -> None:
        sent_ns = time.time_ns()
        try:
            status = client.post("/orders", json={"order": order}).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        calls.write({"role": ctx.name, "method": method, "order": order, "due_ns": due_ns, "sent_ns": sent_ns,
                     "answered_ns": time.time_ns(), "accepted": int(status == 200), "status": status})

    with httpx.Client(base_url=url, timeout=timeout_s, limits=limits) as client, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="guest") as pool:
        try:
            gate_ns = ctx.gate()
            if gate_ns is None:
                return
            start = time.monotonic()
            for order, at_s in enumerate(schedule_s):
                if ctx.sleep(start + at_s - time.monotonic()):
                    break
                due_ns = gate_ns + int(at_s * 1e9)
                if concurrency == 1:
                    place(client, order, due_ns)
                else:
                    pool.submit(place, client, order, due_ns)
            pool.shutdown(wait=True)  # every order placed has its answer written
        finally:
            calls.close()
