"""The transport interface shared by Kafka, Redis and HTTP (notebooks 01-04)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

from edalab._errors import ConfigError, ExperimentError
from edalab._events import Event

__all__ = ["Capabilities", "Counters", "Delivery", "Publisher", "ReplayStart", "Subscriber",
           "TransportSpec"]

#: Where a replay starts: ``"beginning"`` or a position *n* (skip the first *n* events).
ReplayStart = int | Literal["beginning"]


@dataclass(frozen=True)
class Capabilities:
    """What a transport promises, declared so experiments ask instead of guessing.

    An experiment checks ``spec.capabilities.replay`` rather than ``hasattr(...)`` or
    ``spec.kind == "kafka"``; notebook tables show them side by side
    (:func:`edalab.transports.describe_transports`).

    Attributes:
        durable: events wait in the broker for a consumer that is away (stopped,
            restarting, not yet subscribed) and reach it when it comes back.
        groups: consumers sharing a group *compete*: each event goes to one member
            of the group (work sharing), and every group gets every event.
        replay: a new reader can start from a position or the beginning
            (:meth:`TransportSpec.replayer`), e.g. to rebuild state or audit.
        key_ordering: events with the same key arrive in the order they were sent
            (from one publisher), also when consumers compete.
    """

    durable: bool
    groups: bool
    replay: bool
    key_ordering: bool

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


def check_replay_start(start: Any) -> None:
    """Raise ConfigError unless ``start`` is ``"beginning"`` or an integer >= 0."""
    if not (start == "beginning" or (isinstance(start, int) and not isinstance(start, bool)
                                     and start >= 0)):
        raise ConfigError(f"start must be 'beginning' or a position >= 0, not {start!r}.")


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

    def commit(self, through: Delivery | None = None) -> None:
        """Hand back what was received so far: it is processed, do not send it again.

        Kafka commits the group's offsets; Redis Streams XACKs the entries received; the
        NATS queue acks them. A no-op where there is nothing to hand back (pub/sub,
        HTTP): those transports never deliver an event twice anyway. Call it after
        processing, and before ``close()`` on a clean stop; a crashed consumer never gets
        to, so what it received is delivered again (at-least-once) where ``durable``.

        ``through``: hand back only up to this delivery (one ``receive()`` returned it),
        not the rest of its batch. A consumer that commits after each event must pass
        it: a bare ``commit()`` after the first event of a batch of three would also hand
        back the two not yet processed, and a crash then loses them (notebook 04).
        """

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until this subscriber will actually receive events published from now on.

        Kafka: the group join and partition assignment are done (about 1 s on the
        embedded Tansu). The others are ready once constructed (a no-op here).
        Call it before a timing measurement, so setting up is not counted as delay.

        Raises:
            EdalabError: not ready within ``timeout_s`` seconds (the subclass says why).
        """

    def take_over_pending(self) -> list[Delivery]:
        """What a killed predecessor in the same group received but never committed.

        Redis Streams: its pending entries move to this member (``XAUTOCLAIM``) and
        are returned. Kafka returns ``[]``: a group restarts from its committed offset
        by itself, so those events come again through ``receive()``. Transports
        without groups return ``[]``. Use it when one member runs at a time (a
        restart); with several live members it would steal work still in progress.
        """
        return []

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
    #: what the transport promises (see :class:`Capabilities`); each subclass sets it
    capabilities: Capabilities = Capabilities(durable=False, groups=False, replay=False,
                                              key_ordering=False)

    @classmethod
    def from_lab(cls, lab: Any, name: str, **options: Any) -> "TransportSpec":
        """The spec for topic/stream/channel ``name`` on ``lab``, creating what must
        exist first; ``options`` set the spec's fields. ``Lab.transport`` calls it."""
        return cls.for_lab(lab, name, **options)

    @abstractmethod
    def publisher(self) -> Publisher: ...

    @abstractmethod
    def subscriber(self, group: str | None = None) -> Subscriber:
        """A subscriber; subscribers sharing a ``group`` compete for events where the
        transport supports groups (Kafka, Redis Streams), else each gets every event."""

    def replayer(self, start: ReplayStart = "beginning") -> Subscriber:
        """A reader outside any group that starts at ``start`` (notebook 04's audit).

        ``start`` is ``"beginning"`` or a position *n*: skip the first *n* events.
        Only transports with ``capabilities.replay`` offer it; the others raise.

        Raises:
            ExperimentError: this transport keeps nothing to replay.
        """
        check_replay_start(start)
        raise ExperimentError(
            f"The {self.kind!r} transport cannot replay: "
            + ("it keeps no events once it has pushed them (capabilities.durable is False)"
               if not self.capabilities.durable else
               "it offers no way to start reading at a position (capabilities.replay is False)")
            + ". Use a transport whose capabilities.replay is True, e.g. "
              "lab.transport('redis-stream') or lab.transport('kafka').")
