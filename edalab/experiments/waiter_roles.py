"""The restaurant's roles for the waiter analogy (notebook 01): kitchen, customers, waiter.

Each runs in its own process through :class:`edalab.Scenario`
(:func:`edalab.experiments.waiter.waiter_analogy` declares them). Every role waits
for the run's one start gate (``ctx.gate()``) and counts time from it, so start-up
never counts as delay and the kitchen and the listener follow the same schedule.
Roles write only through the recorder: traces, counters, notes and the tables
``kitchen`` and ``asks`` (``ctx.recorder.table_writer``).

:func:`waiter` is the body notebook 01 shows in a cell; a learner may pass an edited
copy as ``waiter_analogy(lab, waiter=...)``.
"""

from __future__ import annotations

import heapq
import math
import time

from edalab._events import Event, new_event
from edalab.transports._base import Counters, Delivery

__all__ = ["ORDER_PLACED", "ORDER_READY", "KITCHEN_OPEN", "KITCHEN_COLUMNS", "ASK_COLUMNS",
           "kitchen", "customers", "waiter"]

ORDER_PLACED = "order.placed"
ORDER_READY = "order.ready"
#: Event the kitchen sends before the gate, so connections and metadata are set up
#: before the first order is timed; listeners ignore it (its key is not an order's).
KITCHEN_OPEN = "kitchen.open"
#: Columns of the ``kitchen`` table (wall-clock ns): placed, ready (the event was
#: created) and stored (the transport confirmed it: broker ack, HTTP 202).
KITCHEN_COLUMNS = ("key", "order", "placed_at_ns", "ready_at_ns", "stored_at_ns")
#: Columns of the ``asks`` table: one row per "is it ready?" a customer asked.
ASK_COLUMNS = ("key", "order", "asked_at_ns", "answered_at_ns", "status")


def _opening(t0_ns: int) -> float:
    """The gate's wall-clock time as a ``time.monotonic()`` value (schedules sleep on it)."""
    return time.monotonic() + (t0_ns - time.time_ns()) / 1e9


def kitchen(ctx, spec, orders: list[dict], announce_placed: bool = False) -> None:
    """Role: the cook. At each order's ``ready_at_s`` publish ``order.ready`` (notebook 01).

    ``orders`` come from :func:`edalab.workloads.restaurant_orders` (seconds after the
    gate). With ``announce_placed`` (REST polling) it also posts ``order.placed`` when an
    order comes in, so the status endpoint knows the order ("still cooking"). Each
    ``order.ready`` is flushed on its own, so ``stored_at_ns`` is when the transport
    confirmed it. Notes ``opened`` with the gate time ``t0_ns``, which the analysis
    counts from.
    """
    publisher = spec.publisher()
    produced = ctx.recorder.producer_trace(ctx.name)
    log = ctx.recorder.table_writer(ctx.name, "kitchen", KITCHEN_COLUMNS)
    try:
        publisher.publish(new_event(KITCHEN_OPEN, "kitchen", producer=ctx.name, seq=-1))
        publisher.flush(timeout_s=10.0)
        t0_ns = ctx.gate()
        if t0_ns is None:
            return
        ctx.note("opened", t0_ns=t0_ns)
        t0 = _opening(t0_ns)
        steps = sorted([(o["placed_at_s"], 0, o) for o in orders] + [(o["ready_at_s"], 1, o) for o in orders],
                       key=lambda step: (step[0], step[1]))
        placed_at_ns: dict[str, int] = {}
        for at_s, is_ready, order in steps:
            if ctx.sleep(t0 + at_s - time.monotonic()):
                break
            key, number = order["key"], order["order"]
            if not is_ready:
                placed_at_ns[key] = time.time_ns()
                if announce_placed:
                    publisher.publish(new_event(ORDER_PLACED, key, {"order": number},
                                                producer=ctx.name, seq=number))
                continue
            event = new_event(ORDER_READY, key, {"order": number, "cook_s": order["cook_s"]},
                              producer=ctx.name, seq=number)
            publisher.publish(event)
            publisher.flush(timeout_s=10.0)
            stored_at_ns = time.time_ns()
            produced.record(event)
            log.write(dict(role=ctx.name, key=key, order=number, placed_at_ns=placed_at_ns.get(key, 0),
                           ready_at_ns=event.produced_at_ns, stored_at_ns=stored_at_ns))
    finally:
        publisher.close()
        produced.close()
        log.close()


def customers(ctx, base_url: str, orders: list[dict], poll_interval_s: float,
              request_timeout_s: float = 5.0, give_up_after_s: float = 20.0) -> None:
    """Role: every customer asks ``GET /orders/{key}`` every ``poll_interval_s`` (notebook 01).

    One process plays all customers. Order n's customer asks first ``poll_interval_s``
    after ordering, then on a fixed schedule (placed + k x interval; an ask that falls
    behind skips missed slots rather than catching up) until the answer is
    ``order.ready``. Every ask goes to the ``asks`` table; the "yes" answers are the
    receipts of the consumer trace. Ends by itself once every order was heard, or
    ``give_up_after_s`` after the last order should have been ready.
    """
    import httpx

    client = httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(request_timeout_s))
    trace = ctx.recorder.consumer_trace(ctx.name)
    asks = ctx.recorder.table_writer(ctx.name, "asks", ASK_COLUMNS)
    counters = Counters()
    heard = 0
    try:
        client.get("/health").raise_for_status()  # open the keep-alive connection before timing
        t0_ns = ctx.gate()
        if t0_ns is None:
            return
        t0 = _opening(t0_ns)
        give_up_at = t0 + max((o["ready_at_s"] for o in orders), default=0.0) + give_up_after_s
        due = [(o["placed_at_s"] + poll_interval_s, o["order"], o["key"]) for o in orders]
        heapq.heapify(due)
        while due and not ctx.stopping and time.monotonic() < give_up_at:
            due_s, number, key = heapq.heappop(due)
            if ctx.sleep(t0 + due_s - time.monotonic()):
                break
            asked_at_ns = time.time_ns()
            response = client.get(f"/orders/{key}")
            answered_at_ns = time.time_ns()
            counters.requests += 1
            answer = response.json()  # 404 {"status": "unknown"} before the kitchen knows the order
            status = answer.get("status", "unknown")
            asks.write(dict(role=ctx.name, key=key, order=number, asked_at_ns=asked_at_ns,
                            answered_at_ns=answered_at_ns, status=status))
            if status == ORDER_READY:
                event = Event(**answer["event"])
                trace.record(Delivery(event, answered_at_ns))
                counters.bytes_received += len(event.to_bytes())
                heard += 1
                continue
            counters.empty_responses += 1
            next_s = due_s + poll_interval_s
            late_s = time.monotonic() - t0 - next_s
            if late_s > 0:
                next_s += math.ceil(late_s / poll_interval_s) * poll_interval_s
            heapq.heappush(due, (next_s, number, key))
    finally:
        trace.write_counters(counters, received=heard, setup_requests=0, setup_empty=0)
        trace.close()
        asks.close()
        client.close()


# The body notebook 01 shows in a cell (keep the two the same: tests/test_waiter.py checks).
def waiter(ctx, spec):
    """The waiter: subscribe once, then hear every order.ready the moment it arrives."""
    subscriber = spec.subscriber("waiter")      # Redis: SUBSCRIBE; Kafka: join group "waiter"
    trace = ctx.recorder.consumer_trace(ctx.name)
    subscriber.wait_ready(timeout_s=30)         # subscribed (Kafka: partition assigned)
    if ctx.gate() is None:                      # the restaurant opens, for every role at once
        return
    setup = subscriber.counters.to_dict()       # what subscribing cost, before the first order
    heard = 0
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(timeout_s=0.2):
                if delivery.event.type == "order.ready":
                    trace.record(delivery)       # the customer knows now
                    heard += 1
    finally:
        trace.write_counters(subscriber.counters, received=heard,
                             setup_requests=setup["requests"], setup_empty=setup["empty_responses"])
        subscriber.commit()
        subscriber.close()
