"""The kitchen that meets bad orders: its handler, its retrier and the order sender (notebook 09).

Role bodies of :func:`edalab.experiments.retry_strategies`, in a module of their own
so a role process imports neither pandas nor the experiment. :func:`kitchen` is the
consumer the lesson is about (the notebook shows it and passes its own copy);
:func:`cook` is its handler; :func:`retrier` serves the retry topic of the
``retry-topic`` strategy; :func:`send_orders` publishes one list of orders to several
topics, so every strategy gets the very same events.
"""

from __future__ import annotations

import dataclasses
import json
import time

from edalab._events import new_event

__all__ = ["STRATEGIES", "cook", "kitchen", "retrier", "send_orders", "ATTEMPT_COLUMNS"]

#: what the kitchen does with an order it cannot cook (see :func:`kitchen`)
STRATEGIES = ("retry-forever", "dead-letter", "retry-topic")
#: the ``attempts`` table each kitchen role writes: one row per attempt at an order
ATTEMPT_COLUMNS = ["event_id", "seq", "key", "attempt", "outcome", "error", "at_ns"]


def cook(event, attempt: int, menu_ids) -> None:
    """Raise if the order in ``event`` cannot be cooked; ``attempt`` counts from 1.

    A bad payload fails on every attempt (poison). ``payload["fail_first"]`` makes the
    stock service (simulated) time out on the order's first attempts: a transient
    failure that a retry fixes.
    """
    order = json.loads(event.payload["body"])                  # not JSON: ValueError
    if order.get("item_id") not in menu_ids:
        raise ValueError(f"item {order.get('item_id')!r} is not on the menu")
    quantity = order.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"quantity {quantity!r} is not a whole number of portions")
    if attempt <= event.payload.get("fail_first", 0):
        raise TimeoutError("the stock service did not answer in time")


def _again(event, attempt: int, error: str, due_ns: int = 0):
    """The event as it goes to the retry or dead-letter topic: same id, attempts so far."""
    return dataclasses.replace(event, payload={**event.payload, "attempt": attempt, "error": error,
                                               "due_ns": due_ns})


def kitchen(ctx, spec, dead_spec, retry_spec, menu_ids, strategy="dead-letter", max_attempts=4,
            backoff_ms=100.0, max_backoff_ms=1000.0, group="kitchen"):
    """Cook each order; on failure retry after backoff_ms, doubled each time (at most
    max_backoff_ms), and then, by strategy:
    retry-forever: never give up; dead-letter: after max_attempts, to the dead-letter topic;
    retry-topic: at once to the retry topic (the retrier role retries), the line moves on."""
    subscriber = spec.subscriber(group)
    dead, retry = dead_spec.publisher(), retry_spec.publisher()
    cooked = ctx.recorder.consumer_trace(ctx.name, group)
    attempts = ctx.recorder.table_writer(ctx.name, "attempts", ATTEMPT_COLUMNS)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()

    def log(event, attempt, outcome, error=""):
        attempts.write({"role": ctx.name, "event_id": event.id, "seq": event.seq, "key": event.key,
                        "attempt": attempt, "outcome": outcome, "error": error, "at_ns": time.time_ns()})

    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            event, attempt = delivery.event, 1
            while True:
                try:
                    cook(event, attempt, menu_ids)
                except Exception as exc:
                    log(event, attempt, "failed", repr(exc))
                    if strategy == "retry-topic":          # retry later, elsewhere: the line moves on
                        retry.publish(_again(event, attempt, repr(exc), time.time_ns() + int(backoff_ms * 1e6)))
                        break
                    if strategy == "dead-letter" and attempt >= max_attempts:
                        dead.publish(_again(event, attempt, repr(exc)))   # park it, move on
                        log(event, attempt, "dead-lettered", repr(exc))
                        break
                    if ctx.sleep(min(max_backoff_ms, backoff_ms * 2 ** (attempt - 1)) / 1000):  # the line waits
                        return
                    attempt += 1
                else:
                    cooked.record(delivery._replace(received_at_ns=time.time_ns()))
                    log(event, attempt, "cooked")
                    break
        subscriber.commit()
    for publisher in (dead, retry):
        publisher.flush()
        publisher.close()
    subscriber.close()


def retrier(ctx, retry_spec, dead_spec, menu_ids, max_attempts=4, backoff_ms=100.0, group="kitchen"):
    """The retry topic's consumer: wait until an order is due, try again; after
    max_attempts attempts in all, to the dead-letter topic."""
    subscriber = retry_spec.subscriber("retrier")
    retry, dead = retry_spec.publisher(), dead_spec.publisher()
    cooked = ctx.recorder.consumer_trace(ctx.name, group)
    attempts = ctx.recorder.table_writer(ctx.name, "attempts", ATTEMPT_COLUMNS)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            event = delivery.event
            attempt = event.payload["attempt"] + 1
            if ctx.sleep((event.payload["due_ns"] - time.time_ns()) / 1e9):
                return
            row = {"role": ctx.name, "event_id": event.id, "seq": event.seq, "key": event.key,
                   "attempt": attempt, "error": "", "at_ns": time.time_ns()}
            try:
                cook(event, attempt, menu_ids)
            except Exception as exc:
                attempts.write({**row, "outcome": "failed", "error": repr(exc)})
                if attempt >= max_attempts:
                    dead.publish(_again(event, attempt, repr(exc)))
                    attempts.write({**row, "outcome": "dead-lettered", "error": repr(exc)})
                else:
                    due_ns = time.time_ns() + int(backoff_ms * 1e6 * 2 ** (attempt - 1))
                    retry.publish(_again(event, attempt, repr(exc), due_ns))
            else:
                cooked.record(delivery._replace(received_at_ns=time.time_ns()))
                attempts.write({**row, "outcome": "cooked"})
        subscriber.commit()
    for publisher in (dead, retry):
        publisher.flush()
        publisher.close()
    subscriber.close()


def send_orders(ctx, specs, orders, rate_per_s):
    """Publish ``orders`` (dicts: key, payload) at ``rate_per_s`` to every spec in ``specs``:
    the same event (same id) to each, recorded once."""
    publishers = [spec.publisher() for spec in specs]
    trace = ctx.recorder.producer_trace(ctx.name)
    try:
        for seq in ctx.on_schedule([i / rate_per_s for i in range(len(orders))]):
            order = orders[seq]
            event = new_event("order.placed", order["key"], order["payload"], producer=ctx.name, seq=seq)
            for publisher in publishers:
                publisher.publish(event)
            trace.record(event)
        for publisher in publishers:
            publisher.flush()
    finally:
        for publisher in publishers:
            publisher.close()
        trace.close()
