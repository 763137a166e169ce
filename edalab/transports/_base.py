"""The transport interface shared by Kafka, Redis and HTTP (notebooks 01-04)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import NamedTuple

from edalab._events import Event

__all__ = ["Counters", "Delivery", "Publisher", "Subscriber", "TransportSpec"]


class Delivery(NamedTuple):
    """An event as one subscriber received it.

    ``received_at_ns`` is wall-clock ``time.time_ns()`` taken as soon as the
    subscriber had the bytes, so ``received_at_ns - event.produced_at_ns`` is the
    delivery delay across processes on one machine.
    """

    event: Event
    received_at_ns: int


@dataclass
class Counters:
    """What a subscriber spent to receive events.

    requests: network round trips it started (a poll, a fetch, a blocking read).
        A push transport makes one request to subscribe and then none.
    empty_responses: requests that came back with no event.
    bytes_received: payload bytes received (event bodies, not protocol framing).
    """

    requests: int = 0
    empty_responses: int = 0
    bytes_received: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Publisher(ABC):
    """Sends events. ``publish`` returns when the transport accepted the event."""

    @abstractmethod
    def publish(self, event: Event) -> None: ...

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything published has left this process (no-op by default)."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Subscriber(ABC):
    """Receives events and counts what receiving cost (see :class:`Counters`)."""

    def __init__(self) -> None:
        self.counters = Counters()

    @abstractmethod
    def receive(self, timeout_s: float) -> list[Delivery]:
        """Wait at most ``timeout_s`` seconds; return what arrived (maybe nothing).

        Must never block longer than ``timeout_s`` plus one network round trip.
        """

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _now_ns() -> int:
        return time.time_ns()


class TransportSpec(ABC):
    """Everything needed to open a publisher or subscriber, as a small picklable value.

    Specs cross process boundaries: a role process receives a spec and opens its
    own connections with it (see edalab.roles). Subclasses are frozen dataclasses.
    """

    #: short name used in result tables, e.g. ``"kafka"``, ``"redis-pubsub"``
    kind: str = "transport"

    @abstractmethod
    def publisher(self) -> Publisher: ...

    @abstractmethod
    def subscriber(self, group: str | None = None) -> Subscriber:
        """A subscriber; subscribers sharing a ``group`` compete for events where the
        transport supports groups (Kafka, Redis Streams), else each gets every event."""
