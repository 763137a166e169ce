"""The restaurant's own route on the event service: "is my order ready?" (notebook 01).

Notebook 01's customers ask ``GET /orders/{key}`` every poll interval until the
answer is ``order.ready`` (edalab.experiments.waiter). It belongs to the restaurant,
not to the generic event service, so it is plugged in as an extra route
(``event_service_app(extra_routes=[order_status_route])``; the
``serve_event_service`` role does that by default).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edalab.transports.http._app import ServiceState

__all__ = ["order_status_route"]


def order_status_route(state: ServiceState) -> Route:
    """``GET /orders/{key}`` -> ``{"key", "status": <latest event type>, "position", "event"}``,
    or 404 ``{"key", "status": "unknown"}``; counted as ``orders_lookups`` in ``/stats``."""

    async def get_order(request: Request) -> Response:
        state.count("orders_lookups")
        key = request.path_params["key"]
        latest = state.latest(key)
        if latest is None:
            return JSONResponse({"key": key, "status": "unknown"}, status_code=404)
        position, raw = latest
        event = json.loads(raw)
        return JSONResponse({"key": key, "status": event["type"], "position": position, "event": event})

    return Route("/orders/{key}", get_order, methods=["GET"])
