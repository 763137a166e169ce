"""The event envelope every transport carries (introduced in notebook 01).

One envelope and one serialization (UTF-8 JSON) for Kafka, Redis pub/sub, Redis
Streams and HTTP, so that a measurement compares transports and not encodings.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from edalab._errors import EdalabError

__all__ = ["Event", "MalformedEvent", "new_event"]

_SEQ = itertools.count()
#: The envelope's fields and their JSON types; the first three must be present.
_FIELD_TYPES: dict[str, type] = {"id": str, "type": str, "key": str, "payload": dict,
                                 "produced_at_ns": int, "producer": str, "seq": int}
_REQUIRED = ("id", "type", "key")


class MalformedEvent(EdalabError, ValueError):
    """Bytes that are not an edalab envelope (not JSON, a field missing or of the wrong
    type, an unknown field such as another version's). Subscribers count and skip
    them (their ``malformed`` attribute) instead of crashing: one bad record must not
    stop a consumer (issue 12's fuzz tests, tests/test_fuzz.py)."""


@dataclass(frozen=True)
class Event:
    """One thing that happened, as it travels from a producer to its consumers.

    Attributes:
        id: unique id of this event (a string; the recorder matches on it).
        type: what happened, e.g. ``"order.ready"``.
        key: what it is about, e.g. an order id; transports that partition
            (Kafka) route by it, and per-key ordering is checked on it.
        payload: JSON-serialisable data (a dict).
        produced_at_ns: wall-clock time when the producer created it
            (``time.time_ns()``), so processes on one machine can compare times.
        producer: name of the producing role.
        seq: the producer's sequence number for this event (0, 1, 2, ...).
    """

    id: str
    type: str
    key: str
    payload: dict[str, Any] = field(default_factory=dict)
    produced_at_ns: int = 0
    producer: str = ""
    seq: int = 0

    def to_bytes(self) -> bytes:
        """Serialise to compact UTF-8 JSON (the one wire format of the course)."""
        # Not dataclasses.asdict: it deep-copies the payload, which costs more than
        # the JSON encoding itself on the hot path of every transport.
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> "Event":
        """Parse what :meth:`to_bytes` wrote.

        Raises:
            MalformedEvent: ``data`` is not an envelope; the message says what is wrong.
        """
        if not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise MalformedEvent(f"an envelope is JSON bytes, not {type(data).__name__}")
        try:
            fields = json.loads(bytes(data) if isinstance(data, memoryview) else data)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
            raise MalformedEvent(f"not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(fields, dict):
            raise MalformedEvent(f"not a JSON object but a {type(fields).__name__}")
        unknown = sorted(set(fields) - set(_FIELD_TYPES))
        if unknown:
            raise MalformedEvent(f"unknown fields {unknown[:5]} (another envelope version?)")
        missing = [name for name in _REQUIRED if name not in fields]
        if missing:
            raise MalformedEvent(f"fields {missing} are missing")
        for name, value in fields.items():
            wanted = _FIELD_TYPES[name]
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                raise MalformedEvent(f"field {name!r} must be of type {wanted.__name__}, "
                                     f"not {type(value).__name__}")
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """The envelope's fields as a plain dict (the payload is shared, not copied)."""
        return {"id": self.id, "type": self.type, "key": self.key, "payload": self.payload,
                "produced_at_ns": self.produced_at_ns, "producer": self.producer, "seq": self.seq}


def new_event(
    type: str,
    key: str,
    payload: dict[str, Any] | None = None,
    *,
    producer: str = "",
    seq: int | None = None,
) -> Event:
    """Make an event stamped with the current wall-clock time and a fresh id."""
    if seq is None:
        seq = next(_SEQ)
    return Event(
        id=f"{producer or os.getpid()}-{seq}-{uuid.uuid4().hex[:8]}",
        type=type,
        key=str(key),
        payload=dict(payload or {}),
        produced_at_ns=time.time_ns(),
        producer=producer,
        seq=seq,
    )
