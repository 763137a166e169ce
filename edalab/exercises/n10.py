"""Notebook 10's exercises: write the fold that rebuilds an order from its events; predict the callbacks.

:func:`check_apply` runs the learner's ``apply(state, event) -> state`` on order
histories made from ``data/`` (the same events the notebook's run replays), one with an
event type a newer producer added and one with schema v2 payloads, and compares each
rebuilt order with the reference fold's. :func:`check_callback_rate` checks a number.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from edalab._events import Event
from edalab.exercises import Feedback, read_number
from edalab.experiments._event_fold import apply_order_event, new_order, rebuild

__all__ = ["check_apply", "check_callback_rate", "hint", "solution", "reference_apply"]

#: the reference fold (the one the experiments use by default)
reference_apply = apply_order_event


def _cases() -> dict[str, list[Event]]:
    from edalab.experiments._event_sourcing import order_history

    pairs = order_history(60)
    events = [Event(id=str(i), type=kind, key="order-tab", payload=payload) for i, (kind, payload) in
              enumerate(pairs)]
    newer = events[:10] + [Event(id="tip", type="tip_added", key="order-tab", payload={"amount_eur": 2.0})] + \
        events[10:]
    v2 = [Event(id=e.id, type=e.type, key=e.key, payload={**e.payload, "schema_version": 2, "allergens": []})
          for e in events[:20]]
    return {"the tab's history": events, "a history with a 'tip_added' event (a newer producer's type)": newer,
            "schema v2 events (extra fields)": v2}


def _diagnose(got: dict, want: dict, events: list[Event]) -> str:
    if not isinstance(got, dict) or not {"items", "status", "version"} <= set(got):
        return (f"your fold returned {got!r}; return the order as a dict with 'items', 'status' and 'version' "
                f"(start from the state you were given).")
    if got["version"] != want["version"]:
        return f"version is {got['version']!r} after {len(events)} events; every event adds one to it."
    if got["status"] != want["status"]:
        return f"status is {got['status']!r}, expected {want['status']!r}: 'order_paid' sets it to 'paid'."
    extra = sorted(set(got["items"]) - set(want["items"]))
    if extra:
        return f"dish {extra[0]} is still in the order though it was removed: 'item_removed' drops the dish."
    more = [k for k in want["items"] if (got["items"].get(k) or 0) > want["items"][k]]
    if more:
        return (f"dish {more[0]} has {got['items'][more[0]]} portions, the events leave {want['items'][more[0]]}: "
                f"does 'item_removed' drop the dish, so that adding it again starts from nothing?")
    fewer = [k for k in want["items"] if (got["items"].get(k) or 0) < want["items"][k]]
    if fewer:
        return (f"dish {fewer[0]} has {got['items'].get(fewer[0], 0)} portions, the events add up to "
                f"{want['items'][fewer[0]]}: the same dish ordered twice adds its quantity to what is there.")
    return f"your order {got} differs from the expected {want}."


def check_apply(apply: object) -> Feedback:
    """Run ``apply(state, event)`` over three order histories from ``data/``; does it rebuild each order right?"""
    if apply is None:
        return Feedback(False, "write your function apply(state, event) in the cell first; it is still None.")
    if isinstance(apply, str):
        return Feedback(False, f"pass your function itself, apply=my_apply (no quotes), not the text {apply!r}.")
    if not callable(apply):
        return Feedback(False, f"pass a function apply(state, event) -> state, not {type(apply).__name__}.")
    for case, events in _cases().items():
        want = rebuild(events, reference_apply)
        state = new_order()
        for n, event in enumerate(events, 1):
            before = copy.deepcopy(state)
            try:
                result = apply(state, event)
            except Exception as exc:  # noqa: BLE001 - the learner's code: say what broke and where
                skip = " Skip event types your code does not know." if event.type not in (
                    "item_added", "item_removed", "order_paid") else ""
                return Feedback(False, f"on {case}, event {n} ({event.type} {event.payload}) raised "
                                       f"{type(exc).__name__}: {exc}.{skip}")
            if result is None and state == before:
                return Feedback(False, f"your fold returned None and changed nothing on event {n} ({event.type}): "
                                       f"return the order after the event, a dict like the state it got.")
            state = state if result is None else result   # a fold that changes the dict in place is fine
        if state != want:
            return Feedback(False, f"on {case}: " + _diagnose(state, want, events))
    return Feedback(True, "every order rebuilt right, including a newer producer's event type and v2 payloads. "
                          "The read model and the rebuilder of this notebook can run your fold (apply=...).")


def check_callback_rate(answer: object, subscribers: int, rate_per_s: float) -> Feedback:
    """Callbacks per second the source serves with ``subscribers`` notified subscribers at ``rate_per_s`` updates/s."""
    value = read_number(answer, "the callbacks per second", unit="requests per second", minimum=0)
    if isinstance(value, Feedback):
        return value
    expected = subscribers * rate_per_s
    if abs(value - expected) <= 0.02 * expected:
        return Feedback(True, f"{subscribers} subscribers x {rate_per_s:g} updates/s = {expected:g} GETs a second, "
                              f"and every new subscriber adds {rate_per_s:g} more, whoever runs it.")
    if abs(value - rate_per_s) <= 0.02 * rate_per_s:
        return Feedback(False, "that is one subscriber's share: each subscriber calls back for every event.")
    if abs(value) < 1e-9:
        return Feedback(False, "zero would be event-carried state transfer; these subscribers got thin events.")
    return Feedback(False, f"not {value:g}: every subscriber makes one GET per event it receives.")


def hint() -> str:
    return ("Copy the items (dict(state['items'])) and change the copy: for 'item_added' add payload['quantity'] "
            "to items.get(item_id, 0); for 'item_removed' pop the item_id; for 'order_paid' set status to 'paid'; "
            "any other type: change nothing. Return {'items': ..., 'status': ..., 'version': state['version'] + 1}.")


def solution() -> str:
    return ("def my_apply(state, event):\n"
            "    items, status = dict(state['items']), state['status']\n"
            "    if event.type == 'item_added':\n"
            "        item = event.payload['item_id']\n"
            "        items[item] = items.get(item, 0) + event.payload['quantity']\n"
            "    elif event.type == 'item_removed':\n"
            "        items.pop(event.payload['item_id'], None)\n"
            "    elif event.type == 'order_paid':\n"
            "        status = 'paid'\n"
            "    return {'items': items, 'status': status, 'version': state['version'] + 1}")


def _solution_apply() -> Callable:
    scope: dict = {}
    exec(solution(), scope)  # noqa: S102 - our own text: the solution shown must be one that passes
    return scope["my_apply"]
