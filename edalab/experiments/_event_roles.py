"""The roles of notebook 10 (what goes in an event), each run as its own process.

Light to import: a role process loads only this, :mod:`._event_fold` and its clients.

Part 1, event notification vs event-carried state transfer:

* :func:`order_source`: the orders service. For each order update it writes the order
  to its database (Redis) and publishes two events: a **thin** one ("order 17 changed,
  version 3") and a **fat** one (the whole order). Table ``published``.
* :func:`order_api`: the same service's REST API, ``GET /orders/{id}`` (a real uvicorn
  server), reading the database. Table ``api_load``: requests served and CPU seconds,
  sampled every 0.1 s.
* :func:`notified_consumer`: gets the thin event and calls the API back for the order;
  :func:`state_consumer` keeps the order from the fat event. Both write when their local
  copy caught up with the source (table ``copies``).

Part 3, event sourcing: :func:`history_writer`, :func:`rebuilder`, :func:`read_model`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from edalab._events import new_event
from edalab.experiments._event_fold import ITEM_ADDED_SCHEMAS, apply_order_event, check_compatibility, new_order

__all__ = ["order_source", "order_api", "notified_consumer", "state_consumer", "history_writer", "rebuilder",
           "read_model", "FromStep", "COPY_COLUMNS"]

#: one row per event a consumer acted on: when its copy of the order caught up
COPY_COLUMNS = ["method", "step", "order_id", "version", "version_seen", "updated_ns", "applied_ns", "bytes",
                "ok", "error"]
PUBLISHED_COLUMNS = ["method", "step", "order_id", "version", "bytes", "updated_ns"]
LOAD_COLUMNS = ["t_ns", "requests", "cpu_s"]
REBUILD_COLUMNS = ["method", "events", "events_read", "repeat", "ms", "state"]
READ_MODEL_COLUMNS = ["order_id", "schema_version", "produced_ns", "applied_ns", "ok", "error"]


@dataclass(frozen=True)
class FromStep:
    """A subscription that begins at step ``first_step`` of the run: the subscriber it opens
    passes on only events whose payload ``step`` is at least that (notebook 10).

    Every subscriber process starts with the run and joins its group before the gate, so
    no process start or group join falls inside a step; the one that stands for "the
    second subscriber, added in step 1" hands its body nothing from step 0.
    """

    spec: object
    first_step: int

    def subscriber(self, group=None):
        return _FromStepSubscriber(self.spec.subscriber(group), self.first_step)

    def __getattr__(self, name):  # kind, capabilities, publisher, replayer: the real spec's
        if name in ("spec", "first_step") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.spec, name)


class _FromStepSubscriber:
    def __init__(self, inner, first_step: int) -> None:
        self.inner, self.first_step = inner, first_step

    def receive(self, timeout_s: float) -> list:
        return [d for d in self.inner.receive(timeout_s) if d.event.payload.get("step", 0) >= self.first_step]

    def __getattr__(self, name):  # wait_ready, commit, close, counters: the real subscriber's
        return getattr(self.inner, name)


def order_source(ctx, redis_url: str, prefix: str, thin_spec, fat_spec, updates: list[dict],
                 schedule_s: list[float], steps: list[int]) -> None:
    """Role: apply ``updates`` (one order dict each) at ``schedule_s`` (seconds after the gate); per
    update one database write and two events.

    The database write comes first and stamps ``updated_ns``: from then on the source
    has the new order, and a consumer's copy is stale until it has it too. Each event's
    payload carries its ``step`` (which phase of the run it belongs to) from ``steps``.
    """
    import redis

    db = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    thin, fat = thin_spec.publisher(), fat_spec.publisher()
    published = ctx.recorder.table_writer(ctx.name, "published", PUBLISHED_COLUMNS)
    try:
        for seq in ctx.on_schedule(schedule_s):
            order = dict(updates[seq])
            step = steps[seq]
            updated_ns = time.time_ns()
            order["updated_ns"] = updated_ns
            db.set(f"{prefix}:{order['order_id']}", json.dumps(order))
            key = f"order-{order['order_id']}"
            events = {"event-notification": (thin, {"order_id": order["order_id"], "version": order["version"],
                                                    "step": step}),
                      "state-transfer": (fat, {**order, "step": step})}
            for method, (publisher, payload) in events.items():
                event = new_event("order.changed", key, payload, producer=ctx.name, seq=seq)
                publisher.publish(event)
                published.write({"role": ctx.name, "method": method, "step": step, "order_id": order["order_id"],
                                 "version": order["version"], "bytes": len(event.to_bytes()),
                                 "updated_ns": updated_ns})
        thin.flush()
        fat.flush()
    finally:
        thin.close()
        fat.close()
        published.close()
        db.close()


def order_api(ctx, port: int, redis_url: str, prefix: str) -> None:
    """Role: ``GET /orders/{id}`` at ``127.0.0.1:port``: the order as the database has it now (404 if unknown).

    Every 0.1 s it writes how many requests it served so far and its CPU seconds
    (table ``api_load``), so the load each phase puts on the source can be read off.
    """
    import redis
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from edalab.transports.http import BackgroundServer

    db = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    served = [0]

    async def get_order(request):
        served[0] += 1
        raw = db.get(f"{prefix}:{request.path_params['order_id']}")
        if raw is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return Response(raw, media_type="application/json")

    async def health(request):
        return JSONResponse({"ok": True})

    load = ctx.recorder.table_writer(ctx.name, "api_load", LOAD_COLUMNS)
    app = Starlette(routes=[Route("/orders/{order_id}", get_order), Route("/health", health)])
    with BackgroundServer(app, port=port, start_timeout_s=20.0):
        ctx.ready()
        while not ctx.sleep(0.1):
            load.write({"role": ctx.name, "t_ns": time.time_ns(), "requests": served[0],
                        "cpu_s": time.process_time()})
    load.close()
    db.close()


def notified_consumer(ctx, spec, api_url: str, group: str) -> None:
    """Event notification: the event says *that* order N changed; ask the source for it (GET)."""
    import httpx

    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    copies = ctx.recorder.table_writer(ctx.name, "copies", COPY_COLUMNS)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    with httpx.Client(base_url=api_url, timeout=1.0) as client:
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                trace.record(delivery)
                event = delivery.event.payload
                try:                                        # the callback: one GET per event
                    answer = client.get(f"/orders/{event['order_id']}")
                    answer.raise_for_status()
                    order, size, error = answer.json(), len(answer.content), ""
                except httpx.HTTPError as exc:              # the source is down: no details
                    order, size, error = {}, 0, type(exc).__name__
                copies.write({"role": ctx.name, "method": "event-notification", "step": event["step"],
                              "order_id": event["order_id"], "version": event["version"],
                              "version_seen": order.get("version", -1),
                              "updated_ns": order.get("updated_ns", delivery.event.produced_at_ns),
                              "applied_ns": time.time_ns(), "bytes": size, "ok": int(not error), "error": error})
    subscriber.close()
    copies.close()
    trace.close()


def state_consumer(ctx, spec, group: str) -> None:
    """Event-carried state transfer: the event carries the order; keep a local copy, call nobody."""
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    copies = ctx.recorder.table_writer(ctx.name, "copies", COPY_COLUMNS)
    local: dict[int, dict] = {}
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            trace.record(delivery)
            order = delivery.event.payload
            local[order["order_id"]] = order                # the local copy: no call to the source
            copies.write({"role": ctx.name, "method": "state-transfer", "step": order["step"],
                          "order_id": order["order_id"], "version": order["version"],
                          "version_seen": order["version"], "updated_ns": order["updated_ns"],
                          "applied_ns": time.time_ns(), "bytes": 0, "ok": 1, "error": ""})
    subscriber.close()
    copies.close()
    trace.close()


# -- part 3: event sourcing ------------------------------------------------------------------

def history_writer(ctx, histories: dict, history: list[list], snapshot_every: int, redis_url: str,
                   prefix: str, live_spec, live_events: list[list], rate_per_s: float,
                   versions: list[int]) -> None:
    """Role: write one order's history into each topic of ``histories`` (size -> spec), then a live stream.

    Before it says ready, it publishes the first ``n`` events of ``history`` (pairs of
    type and payload) to the topic of size ``n``, and every ``snapshot_every`` events
    stores a snapshot (the folded order and the offset after it) in Redis. After the
    gate it publishes ``live_events`` at ``rate_per_s``, moving through the schema
    ``versions`` in equal parts; before each move it runs :func:`check_compatibility`
    and refuses a breaking version (note ``schema_refused``), staying on the last good one.
    """
    import redis

    db = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    for n, spec in histories.items():
        publisher, state = spec.publisher(), new_order()
        for offset, (kind, payload) in enumerate(history[:n]):
            event = new_event(kind, "order-tab", payload, producer=ctx.name, seq=offset)
            publisher.publish(event)
            state = apply_order_event(state, event)
            if (offset + 1) % snapshot_every == 0:
                db.set(f"{prefix}:snapshot:{n}", json.dumps({"state": state, "offset": offset + 1}))
        publisher.flush()
        publisher.close()
    publisher = live_spec.publisher()
    produced = ctx.recorder.producer_trace(ctx.name)
    version = versions[0]
    part = max(1, -(-len(live_events) // len(versions)))
    try:
        schedule_s = [i / rate_per_s for i in range(len(live_events))]
        for seq in ctx.on_schedule(schedule_s):
            wanted = versions[min(seq // part, len(versions) - 1)]
            if wanted != version:
                problems = check_compatibility(ITEM_ADDED_SCHEMAS[version], ITEM_ADDED_SCHEMAS[wanted])
                if problems:
                    ctx.note("schema_refused", version=wanted, problems="; ".join(problems))
                    versions = [v for v in versions if v != wanted]  # never again
                else:
                    version = wanted
            kind, payload = live_events[seq]
            payload = dict(payload, schema_version=version)
            if kind == "item_added" and version >= 3:
                payload["portions"] = payload.pop("quantity")
            if kind == "item_added" and version < 2:
                payload.pop("cook_time_s", None)
            event = new_event(kind, payload["order_id"], payload, producer=ctx.name, seq=seq)
            publisher.publish(event)
            produced.record(event)
        publisher.flush()
    finally:
        publisher.close()
        produced.close()
        db.close()


def _read(ctx, reader, events: int, timeout_s: float = 30.0) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < events:
        if time.monotonic() > deadline or ctx.stopping:
            raise TimeoutError(f"replay read {len(got)} of {events} events within {timeout_s} s")
        got += [d.event for d in reader.receive(0.2)]
    return got


def rebuilder(ctx, histories: dict, redis_url: str, prefix: str, repeats: int, apply=apply_order_event) -> None:
    """Role: rebuild the order of each history topic ``repeats`` times, by full replay and from the snapshot.

    Full replay: a reader from the beginning of the topic (``spec.replayer``), every
    event folded with ``apply``. Snapshot: the stored order, then a reader from the
    snapshot's offset, folding only the events after it. Table ``rebuilds``: wall time
    (opening the reader included: it is part of every rebuild), events read, the result.
    """
    import redis

    from edalab.experiments._event_fold import rebuild

    db = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    rows = ctx.recorder.table_writer(ctx.name, "rebuilds", REBUILD_COLUMNS)
    if ctx.gate() is None:
        return
    for repeat in range(repeats):
        for n, spec in histories.items():
            for method in ("full-replay", "snapshot"):
                t0 = time.perf_counter()
                start, state = "beginning", None
                if method == "snapshot":
                    raw = db.get(f"{prefix}:snapshot:{n}")
                    if raw is not None:
                        snap = json.loads(raw)
                        start, state = snap["offset"], snap["state"]
                skip = 0 if start == "beginning" else start
                reader = spec.replayer(start)
                try:
                    events = _read(ctx, reader, n - skip)
                finally:
                    reader.close()
                order = rebuild(events, apply, state)
                rows.write({"role": ctx.name, "method": method, "events": n, "events_read": len(events),
                            "repeat": repeat, "ms": (time.perf_counter() - t0) * 1000,
                            "state": json.dumps(order, sort_keys=True)})
    rows.close()
    db.close()


def read_model(ctx, spec, group: str, redis_url: str, prefix: str, apply=apply_order_event) -> None:
    """Role: the CQRS read side: fold each order event into that order's JSON in Redis.

    The query side reads Redis, never the log. Written for schema v1: it reads only the
    fields it knows. Table ``read_model``: when each event was produced and applied (its
    lag), and whether applying it failed.
    """
    import redis

    db = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    rows = ctx.recorder.table_writer(ctx.name, "read_model", READ_MODEL_COLUMNS)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            event = delivery.event
            key = f"{prefix}:read:{event.key}"
            try:
                raw = db.get(key)
                state = apply(json.loads(raw) if raw else new_order(), event)
                db.set(key, json.dumps(state))
                error = ""
            except Exception as exc:  # noqa: BLE001 - an event this code cannot read: count it, go on
                error = f"{type(exc).__name__}: {exc}"
            trace.record(delivery)
            rows.write({"role": ctx.name, "order_id": event.key, "schema_version": event.payload.get("schema_version", 1),
                        "produced_ns": event.produced_at_ns, "applied_ns": time.time_ns(), "ok": int(not error),
                        "error": error})
    subscriber.commit()
    subscriber.close()
    rows.close()
    trace.close()
    db.close()
