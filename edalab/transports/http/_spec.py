"""The HTTP transport's spec and the event-service role (used by edalab.roles and the experiments).

Unlike Kafka and Redis, the HTTP transport needs a running event service, so there
is no ``lab.transport("http")``: start the service (the :func:`serve_event_service`
role, or ``BackgroundServer(event_service_app())`` in a notebook) and open the
transport with ``EventServiceSpec(url, mode=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from edalab._errors import ConfigError
from edalab.transports._base import Capabilities, ReplayStart, Subscriber, TransportSpec, check_replay_start
from edalab.transports.http._app import RouteFactory, event_service_app
from edalab.transports.http._clients import (
    HttpPublisher,
    LongPollingSubscriber,
    PollingSubscriber,
    SseSubscriber,
    WebhookSubscriber,
    service_errors,
)
from edalab.transports.http._restaurant import order_status_route
from edalab.transports.http._server import BackgroundServer

__all__ = ["EventServiceSpec", "serve_event_service"]

_HTTP_MODES = ("poll", "long-poll", "sse", "webhook")

# Readers that pass a log position (poll, long poll, SSE): the service keeps every
# event in memory while it runs, so a reader that was away continues from its
# position and a new one can start anywhere; one ordered log keeps every key in order.
# Nothing survives a restart of the service, and there are no groups: every reader
# gets everything.
_CURSOR_CAPABILITIES = Capabilities(durable=True, groups=False, replay=True, key_ordering=True)
# Webhooks: the service pushes only events posted after the subscription, and one
# whose deliveries all fail (receiver away) is dropped; one worker per receiver
# delivers in log order, retries included.
_WEBHOOK_CAPABILITIES = Capabilities(durable=False, groups=False, replay=False, key_ordering=True)


@dataclass(frozen=True)
class EventServiceSpec(TransportSpec):
    """How to reach the event service over HTTP, and how a subscriber listens to it.

    ``mode`` is ``"poll"`` (REST polling every ``poll_interval_s``), ``"long-poll"``,
    ``"sse"`` or ``"webhook"``. Publishers always ``POST /events``. ``kind`` and
    ``capabilities`` depend on the mode: the three reading modes keep a position in
    the service's in-memory log (durable while the service runs, replayable), a
    webhook only gets what is posted while it is registered and reachable.
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

    @property
    def capabilities(self) -> Capabilities:
        return _WEBHOOK_CAPABILITIES if self.mode == "webhook" else _CURSOR_CAPABILITIES

    def publisher(self) -> HttpPublisher:
        return HttpPublisher(self.base_url)

    def subscriber(self, group: str | None = None) -> Subscriber:
        """A subscriber in this spec's mode (HTTP has no groups: everyone gets everything)."""
        after = self.after if self.after is not None else self._end_of_log()
        return self._open(after)

    def replayer(self, start: ReplayStart = "beginning") -> Subscriber:
        """A reader from log position ``start`` (``"beginning"``, or *n*: skip the first *n*).

        Poll, long-poll and SSE only; a webhook cannot replay (raises ExperimentError).
        """
        if self.mode == "webhook":
            return super().replayer(start)
        check_replay_start(start)
        return self._open(-1 if start == "beginning" else start - 1)

    def _open(self, after: int) -> Subscriber:
        if self.mode == "poll":
            return PollingSubscriber(self.base_url, self.poll_interval_s, after=after)
        if self.mode == "long-poll":
            return LongPollingSubscriber(self.base_url, self.long_poll_wait_s, after=after)
        if self.mode == "sse":
            return SseSubscriber(self.base_url, after=after)
        return WebhookSubscriber(self.base_url, retries=self.webhook_retries)

    def _end_of_log(self) -> int:
        with service_errors(self.base_url), httpx.Client(timeout=5.0) as client:
            stats = client.get(f"{self.base_url}/stats")
            stats.raise_for_status()
        return int(stats.json()["events_stored"]) - 1


def serve_event_service(ctx, base_url: str,
                        extra_routes: Sequence[RouteFactory] = (order_status_route,)) -> None:
    """Role: run the event service at ``base_url`` until asked to stop.

    ``extra_routes`` (see :func:`event_service_app`) default to the restaurant's
    ``GET /orders/{key}``, which notebook 01's customers poll.
    """
    from urllib.parse import urlparse

    parsed = urlparse(base_url)
    app = event_service_app(extra_routes=extra_routes)
    with BackgroundServer(app, host=parsed.hostname, port=parsed.port):
        ctx.ready()
        while not ctx.sleep(0.5):
            pass
