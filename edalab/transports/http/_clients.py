"""Clients of the HTTP event service (notebook 02's restaurant guests).

Guests learn that their order is ready by

* asking the waiter again and again (:class:`PollingSubscriber`, ``GET /events``),
* asking once and being told when it is ready (:class:`LongPollingSubscriber`,
  ``GET /events?wait_s=...``),
* keeping a line open to the kitchen (:class:`SseSubscriber`, ``GET /events/stream``),
* leaving a phone number (:class:`WebhookSubscriber`, ``POST /subscriptions``).

:class:`HttpPublisher` posts events (``POST /events``). Clients are synchronous
``httpx.Client`` objects with keep-alive and explicit timeouts. None of them has
anything to commit or to wait for once constructed, so ``commit()``,
``wait_ready()`` and ``take_over_pending()`` are the base class's no-ops.
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from edalab._errors import ConfigError, ServiceUnavailable
from edalab._events import Event
from edalab.transports._base import Delivery, Publisher, Subscriber
from edalab.transports.http._app import CLIENT_KEEPALIVE_S, JSON_TYPE, SSE_KEEPALIVE_S, webhook_receiver_app
from edalab.transports.http._server import BackgroundServer

__all__ = ["HttpPublisher", "LongPollingSubscriber", "PollingSubscriber", "SseSubscriber",
           "WebhookSubscriber"]


def _not_answering(url: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The edalab HTTP event service at {url} is not answering ({type(exc).__name__}: {exc}). "
        "Start it first (the serve_event_service role, or "
        "BackgroundServer(event_service_app()) in a notebook) and check the URL and port."
    )


@contextlib.contextmanager
def service_errors(url: str) -> Iterator[None]:
    """Turn "nobody is listening" and "nobody answered in time" into ServiceUnavailable."""
    try:
        yield
    except (httpx.TransportError, OSError) as exc:
        raise _not_answering(url, exc) from exc



def _client(base_url: str, timeout: httpx.Timeout) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=4, keepalive_expiry=CLIENT_KEEPALIVE_S),
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
        with service_errors(self.base_url):
            response = self._client.post("/events", content=event.to_bytes(), headers={"content-type": JSON_TYPE})
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
        with service_errors(self.base_url):
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
        with service_errors(self.base_url):
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
            with service_errors(self.service_url):
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
