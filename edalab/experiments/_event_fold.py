"""Notebook 10's order events: what they carry, how to fold them back into an order, their schemas.

Light to import (no pandas): role processes load it. Pure functions only.

* :func:`apply_order_event` is the reference **fold** of event sourcing: an order's
  state is what you get by applying its events, in order, to an empty order
  (:func:`rebuild`). The learner writes their own in notebook 10's exercise.
* :data:`ITEM_ADDED_SCHEMAS` are three versions of the ``item_added`` payload: v2 adds
  a field (compatible), v3 renames one (breaking); :func:`check_compatibility` tells
  them apart before anything is published.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["EVENT_TYPES", "ITEM_ADDED_SCHEMAS", "new_order", "apply_order_event", "rebuild",
           "check_compatibility", "read_item_added_v1"]

#: the event types an order's history is made of (v1 readers know these)
EVENT_TYPES = ("item_added", "item_removed", "order_paid")

#: the ``item_added`` payload, version by version: field -> type name, and defaults for
#: fields that old events do not have (a reader replaying old events needs one)
ITEM_ADDED_SCHEMAS: dict[int, dict[str, Any]] = {
    1: {"fields": {"order_id": "str", "item_id": "str", "name": "str", "quantity": "int", "price_eur": "float"},
        "defaults": {}},
    # v2: one field more, with a default for the v1 events already in the log
    2: {"fields": {"order_id": "str", "item_id": "str", "name": "str", "quantity": "int", "price_eur": "float",
                   "cook_time_s": "float"},
        "defaults": {"cook_time_s": 0.0}},
    # v3: 'quantity' renamed 'portions': every v1 reader breaks
    3: {"fields": {"order_id": "str", "item_id": "str", "name": "str", "portions": "int", "price_eur": "float",
                   "cook_time_s": "float"},
        "defaults": {"cook_time_s": 0.0}},
}


def new_order() -> dict:
    """The state of an order before any event: no items, open, version 0."""
    return {"items": {}, "status": "open", "version": 0}


def apply_order_event(state: dict, event) -> dict:
    """The reference fold: the order after ``event`` (an :class:`edalab.Event`), as a new dict.

    ``item_added`` adds its ``quantity`` to what the order already has of that dish (the
    same dish can be ordered twice); ``item_removed`` drops the dish; ``order_paid``
    closes the order. A type this code does not know (a newer producer's) is skipped, not
    an error: an old consumer must survive a new kind of event. Every event counts in
    ``version``.
    """
    items = dict(state["items"])
    status = state["status"]
    payload = event.payload
    if event.type == "item_added":
        items[payload["item_id"]] = items.get(payload["item_id"], 0) + payload["quantity"]
    elif event.type == "item_removed":
        items.pop(payload["item_id"], None)
    elif event.type == "order_paid":
        status = "paid"
    return {"items": items, "status": status, "version": state["version"] + 1}


def rebuild(events: Iterable, apply: Callable = apply_order_event, state: dict | None = None) -> dict:
    """Fold ``events`` into an order, starting from ``state`` (a snapshot) or an empty order."""
    state = new_order() if state is None else copy.deepcopy(state)
    for event in events:
        result = apply(state, event)
        state = state if result is None else result  # a fold that changes the dict in place is fine too
    return state


def check_compatibility(old: dict, new: dict) -> list[str]:
    """What breaks when producers move from schema ``old`` to ``new``; [] when nothing does.

    Two directions matter for events (notebook 10):

    * **old readers, new events** (a consumer not yet redeployed): every field the old
      schema has must still be there, with the same type; extra fields are ignored.
    * **new readers, old events** (a replay of the log, event sourcing): every field the
      new schema adds needs a default, since the old events in the log do not have it.
    """
    problems = []
    for field, kind in old["fields"].items():
        if field not in new["fields"]:
            problems.append(f"field {field!r} is gone: old readers that use it break")
        elif new["fields"][field] != kind:
            problems.append(f"field {field!r} changed type {kind} -> {new['fields'][field]}: old readers break")
    for field in new["fields"]:
        if field not in old["fields"] and field not in new.get("defaults", {}):
            problems.append(f"new field {field!r} has no default: replaying old events with new code breaks")
    return problems


def read_item_added_v1(payload: dict) -> tuple[str, int]:
    """What a consumer written for v1 reads from an ``item_added`` payload: (dish, quantity).

    It takes the fields it knows and ignores the rest, so v2's extra field does not
    bother it; v3's renamed field does (KeyError).
    """
    return payload["item_id"], int(payload["quantity"])
