"""HTTP transports: REST polling, long polling, Server-Sent Events and webhooks (notebooks 01-02).

Notebook 02 asks "how many calls does it take to learn about one event?" with the
restaurant example: the *kitchen* is an in-memory event service, and guests learn
that their order is ready by polling, long polling, an SSE stream or a webhook.

The package is split by concern:

* ``_app``: the event service (:func:`event_service_app`) and the webhook receiver
  (:func:`webhook_receiver_app`), Starlette apps;
* ``_server``: :class:`BackgroundServer`, uvicorn in a thread on loopback;
* ``_clients``: :class:`HttpPublisher` and the four subscribers;
* ``_spec``: :class:`EventServiceSpec` and the :func:`serve_event_service` role;
* ``_restaurant``: notebook 01's ``GET /orders/{key}``, an extra route of the service.

Open it with ``EventServiceSpec(url, mode=...)`` once a service runs (there is no
``lab.transport("http")``: the service is not one of the lab's servers). Event
bodies are the canonical :meth:`edalab.Event.to_bytes` JSON everywhere, so
``Counters.bytes_received`` counts the same bytes here as on Kafka and Redis.
"""

from edalab.transports.http._app import (
    MAX_BATCH_EVENTS,
    MAX_WAIT_S,
    SSE_KEEPALIVE_S,
    event_service_app,
    webhook_receiver_app,
)
from edalab.transports.http._clients import (
    HttpPublisher,
    LongPollingSubscriber,
    PollingSubscriber,
    SseSubscriber,
    WebhookSubscriber,
)
from edalab.transports.http._server import BackgroundServer
from edalab.transports.http._spec import EventServiceSpec, serve_event_service

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
    "webhook_receiver_app",
    "MAX_BATCH_EVENTS",
    "MAX_WAIT_S",
    "SSE_KEEPALIVE_S",
]
