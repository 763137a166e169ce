"""Role bodies of notebook 05: webhook receivers, webhook senders and the retry policies.

Kept apart from :mod:`edalab.experiments.webhooks` so that a role process imports
only what it runs (no pandas, no matplotlib): a receiver is a real HTTP server
(:class:`~edalab.transports.http.BackgroundServer` with
:func:`~edalab.transports.http.webhook_receiver_app`) on a fixed loopback port, so a
restarted receiver is reachable at the same URL, as a real subscriber's would be.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from edalab._events import new_event

__all__ = ["no_retry", "retry_with_backoff", "webhook_receiver", "webhook_sender", "fan_out_sender",
           "timed_publisher", "ATTEMPT_COLUMNS", "SEND_COLUMNS"]

#: one row per POST the outage sender tried (table ``attempts``)
ATTEMPT_COLUMNS = ["seq", "attempt", "ok", "at_ns", "error"]
#: one row per event a fan-out sender handled (table ``sends``): wall and CPU time in ms
SEND_COLUMNS = ["step", "mode", "subscribers", "slow", "seq", "send_ms", "cpu_ms"]


def no_retry(attempt):
    """Retry policy of a plain webhook: never retry (None = give up)."""
    return None


def retry_with_backoff(attempt):
    """Wait 0.05 s, 0.1 s, 0.2 s ... at most 1 s before each retry; give up after 30."""
    if attempt > 30:
        return None                      # give up: the event is lost after all
    return min(0.05 * 2 ** (attempt - 1), 1.0)


def webhook_receiver(ctx, port: int, work_ms: float = 0.0) -> None:
    """Role: an HTTP server at ``127.0.0.1:port`` whose ``POST /hook`` records the event.

    The handler records the event as soon as its body arrived, then does ``work_ms``
    of work (writing it to a database, say) before it answers 204: a receiver killed
    mid-request has handled an event whose sender never hears "OK" (a duplicate when
    the sender retries).
    """
    from edalab.transports.http import BackgroundServer, webhook_receiver_app

    trace = ctx.recorder.consumer_trace(ctx.name, ctx.name)

    def on_event(delivery) -> None:
        trace.record(delivery)
        if work_ms:
            time.sleep(work_ms / 1000)   # one request at a time: the handler blocks its loop

    with BackgroundServer(webhook_receiver_app(on_event), port=port, start_timeout_s=20.0):
        ctx.ready()
        while not ctx.sleep(0.2):
            pass
    trace.close()


def _post(client: httpx.Client, url: str, body: bytes) -> str:
    """POST one event; '' when the receiver answered 2xx, else what went wrong."""
    try:
        response = client.post(url, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "" if response.is_success else f"HTTP {response.status_code}"


def webhook_sender(ctx, url: str, schedule_s: list[float], retry: Callable = no_retry,
                   attempt_timeout_s: float = 1.0, drain_timeout_s: float = 20.0) -> None:
    """Role: the order service calling one subscriber's webhook, with an outbox.

    Each order is stored in an in-memory outbox when it is created (and recorded as
    produced); one delivery thread POSTs the outbox in order. After a failed attempt
    ``retry(attempt)`` (attempt = 1, 2, ...) says how many seconds to wait before
    trying the same event again, or None to give up on it (it is lost). With
    :func:`no_retry` this is a plain webhook call. After the schedule the sender gives
    the outbox ``drain_timeout_s`` to empty. Every attempt goes to table ``attempts``.
    """
    produced = ctx.recorder.producer_trace(ctx.name)
    attempts = ctx.recorder.table_writer(ctx.name, "attempts", ATTEMPT_COLUMNS)
    outbox: collections.deque = collections.deque()
    wake, done = threading.Event(), threading.Event()

    def deliver() -> None:
        with httpx.Client(timeout=attempt_timeout_s) as client:
            while not (done.is_set() and not outbox) and not ctx.stopping:
                if not outbox:
                    wake.wait(0.05)
                    wake.clear()
                    continue
                event = outbox[0]
                attempt = 0
                while not ctx.stopping:
                    error = _post(client, url, event.to_bytes())
                    attempt += 1
                    attempts.write({"role": ctx.name, "seq": event.seq, "attempt": attempt,
                                    "ok": int(not error), "at_ns": time.time_ns(), "error": error})
                    if not error:
                        break
                    delay_s = retry(attempt)
                    if delay_s is None:
                        break                     # given up: lost
                    ctx.sleep(float(delay_s))
                outbox.popleft()

    worker = threading.Thread(target=deliver, name="webhook-delivery", daemon=True)
    worker.start()
    for seq in ctx.on_schedule(schedule_s):
        event = new_event("order.placed", f"order-{seq % 10}", {"order": seq}, producer=ctx.name, seq=seq)
        produced.record(event)           # the order exists: now the sender owes a delivery
        outbox.append(event)
        wake.set()
    done.set()
    worker.join(drain_timeout_s)
    ctx.note("finished", outbox_left=len(outbox))
    produced.close()
    attempts.close()


def fan_out_sender(ctx, urls: list[str], steps: list[dict], rate_per_s: float, events_per_step: int,
                   attempt_timeout_s: float = 5.0) -> None:
    """Role: POST every event to each subscriber URL of the current step, one step after another.

    A step is ``{"step", "mode" ("sequential" | "concurrent"), "subscribers": n, "slow": bool}``:
    the sender's list is the first ``n`` of ``urls`` (the slow receiver's URL is
    ``urls[-1]``; a ``slow`` step puts it first). Per event the table ``sends`` gets
    the wall time until every subscriber answered and the sender's CPU time.
    """
    produced = ctx.recorder.producer_trace(ctx.name)
    sends = ctx.recorder.table_writer(ctx.name, "sends", SEND_COLUMNS)
    fast, slow_url = urls[:-1], urls[-1]
    with httpx.Client(timeout=attempt_timeout_s, limits=httpx.Limits(max_connections=50)) as client, \
            ThreadPoolExecutor(max_workers=len(urls)) as pool:
        if ctx.gate() is None:
            return
        seq = 0
        for step in steps:
            targets = fast[:step["subscribers"]]
            if step["slow"]:
                targets = [slow_url, *targets[:-1]]
            start = time.monotonic()
            for k in range(events_per_step):
                if ctx.sleep(start + k / rate_per_s - time.monotonic()):
                    return
                event = new_event("order.placed", f"order-{seq % 10}", {"order": seq},
                                  producer=ctx.name, seq=seq)
                body = event.to_bytes()
                produced.record(event)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                if step["mode"] == "sequential":
                    for url in targets:
                        _post(client, url, body)
                else:
                    list(pool.map(lambda u: _post(client, u, body), targets))
                sends.write({"role": ctx.name, "step": step["step"], "mode": step["mode"],
                             "subscribers": len(targets), "slow": int(step["slow"]), "seq": seq,
                             "send_ms": (time.perf_counter() - wall0) * 1000,
                             "cpu_ms": (time.process_time() - cpu0) * 1000})
                seq += 1
    produced.close()
    sends.close()


def timed_publisher(ctx, spec, steps: list[dict], rate_per_s: float, events_per_step: int) -> None:
    """Role: the broker side of the fan-out: publish each event and wait until the broker
    stored it (``flush``), timing that per event in table ``sends`` like the webhook sender.

    The owner starts one more consumer group per step; this code never changes.
    """
    publisher = spec.publisher()
    produced = ctx.recorder.producer_trace(ctx.name)
    sends = ctx.recorder.table_writer(ctx.name, "sends", SEND_COLUMNS)
    try:
        if ctx.gate() is None:
            return
        seq = 0
        for step in steps:
            start = time.monotonic()
            for k in range(events_per_step):
                if ctx.sleep(start + k / rate_per_s - time.monotonic()):
                    return
                event = new_event("order.placed", f"order-{seq % 10}", {"order": seq},
                                  producer=ctx.name, seq=seq)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                publisher.publish(event)
                publisher.flush()
                sends.write({"role": ctx.name, "step": step["step"], "mode": "broker",
                             "subscribers": step["subscribers"], "slow": 0, "seq": seq,
                             "send_ms": (time.perf_counter() - wall0) * 1000,
                             "cpu_ms": (time.process_time() - cpu0) * 1000})
                produced.record(event)
                seq += 1
    finally:
        publisher.close()
        produced.close()
        sends.close()
