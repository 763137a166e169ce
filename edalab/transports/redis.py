"""Redis transports: pub/sub (push, fire and forget) and Streams (a log with groups).

Notebooks 01-04 set the two side by side with Kafka:

* :class:`RedisPubSubSpec`: ``PUBLISH`` pushes an event to whoever is subscribed
  *at that moment*; nobody listening means the event is gone (``PUBLISH`` answers
  how many received it). Every subscriber gets every event (fan-out); there are no
  groups and no acknowledgements.
* :class:`RedisStreamSpec`: ``XADD`` appends to a stream that keeps events;
  consumer groups read with ``XREADGROUP``, members of one group compete, and an
  event stays *pending* until ``XACK`` (``commit()``); a dead member's pending
  events can be taken over (``take_over_pending()``, i.e. ``XAUTOCLAIM``), and
  ``spec.replayer(start)`` reads the stream again from any position.

Clients are redis-py with RESP2, explicit socket timeouts and no health-check
pings (they would count as traffic). Event bodies are :meth:`edalab.Event.to_bytes`,
so ``Counters.bytes_received`` counts the same bytes as on Kafka and HTTP.

Note for timing lessons: Valkey/Redis ends a blocking read's timeout on its
``hz`` clock (10 ticks a second by default), so ``XREADGROUP BLOCK 1`` returns
after about 100 ms and ``BLOCK 200`` after about 300 ms when no event comes; a
``receive(0)`` therefore reads without BLOCK.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import select
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from edalab._errors import ConfigError, ExperimentError, RedisUnavailable
from edalab._events import Event, MalformedEvent
from edalab.transports._base import (
    Capabilities,
    Delivery,
    Publisher,
    ReplayStart,
    Subscriber,
    TransportSpec,
    check_replay_start,
)

if TYPE_CHECKING:
    from edalab._lab import Lab

__all__ = [
    "RedisPubSubPublisher",
    "RedisPubSubSpec",
    "RedisPubSubSubscriber",
    "RedisStreamPublisher",
    "RedisStreamSpec",
    "RedisStreamSubscriber",
]

log = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to Redis.
CONNECT_TIMEOUT_S = 5.0
#: Stream entries one XREADGROUP / XAUTOCLAIM returns at most.
READ_COUNT = 100
#: The stream entry field that holds the event bytes.
EVENT_FIELD = b"event"


def _check_url(url: Any) -> None:
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")):
        raise ConfigError(f"{url!r} is not a Redis URL. Use redis://host:port/0, "
                          f"or the for_lab(lab, ...) constructor.")


def _check_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, not {value!r}.")


def _check_positive(what: str, value: Any) -> None:
    # `not value > 0` also refuses NaN, which compares false with everything
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{what} must be a positive number, not {value!r}.")


def _client(url: str, socket_timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                socket_timeout=socket_timeout_s, health_check_interval=0,
                                protocol=2)


@contextlib.contextmanager
def _redis_errors(url: str) -> Iterator[None]:
    """Turn "Redis is not there" into RedisUnavailable with advice."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(
            f"The Redis at {url} did not answer ({type(exc).__name__}: {exc}). Check that it "
            f"runs (`edalab status`, or lab.describe() in a notebook) and that the URL is "
            f"right.") from exc


# --------------------------------------------------------------------------------------
# Pub/sub
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisPubSubSpec(TransportSpec):
    """A Redis pub/sub channel.

    Attributes:
        url: ``redis://host:port/0``.
        channel: the channel name.
        request_timeout_s: longest wait for any Redis answer, including the
            subscription confirmation.
    """

    url: str
    channel: str
    request_timeout_s: float = 10.0

    kind = "redis-pubsub"
    # Redis pushes each PUBLISH to the connections subscribed at that moment and keeps
    # nothing; one connection receives in publish order, so one key stays in order.
    capabilities = Capabilities(durable=False, groups=False, replay=False, key_ordering=True)

    def __post_init__(self) -> None:
        _check_url(self.url)
        _check_name("channel", self.channel)
        _check_positive("request_timeout_s", self.request_timeout_s)

    @classmethod
    def for_lab(cls, lab: "Lab", channel: str, **overrides: Any) -> "RedisPubSubSpec":
        """The spec for ``channel`` on ``lab``'s Redis."""
        return cls(url=lab.redis_url, channel=channel, **overrides)

    def publisher(self) -> "RedisPubSubPublisher":
        return RedisPubSubPublisher(self)

    def subscriber(self, group: str | None = None) -> "RedisPubSubSubscriber":
        """A subscriber, already subscribed when this returns.

        ``group`` is ignored: pub/sub has no groups, every subscriber gets every
        event (fan-out). Competing consumers need Streams or Kafka.
        """
        return RedisPubSubSubscriber(self)


class RedisPubSubPublisher(Publisher):
    """``PUBLISH``es each event; returns when Redis has pushed it to the subscribers.

    Attributes:
        last_receivers: how many subscribers the last event reached (PUBLISH's answer).
        published: events published.
        published_to_nobody: events that reached no subscriber, i.e. were lost.
    """

    def __init__(self, spec: RedisPubSubSpec) -> None:
        self.spec = spec
        self.last_receivers: int | None = None
        self.published = 0
        self.published_to_nobody = 0
        self._client = _client(spec.url, spec.request_timeout_s)

    def publish(self, event: Event) -> None:
        with _redis_errors(self.spec.url):
            receivers = int(self._client.publish(self.spec.channel, event.to_bytes()))
        self.last_receivers = receivers
        self.published += 1
        self.published_to_nobody += receivers == 0

    def close(self) -> None:
        self._client.close()


class RedisPubSubSubscriber(Subscriber):
    """Subscribed to ``spec.channel`` from construction on; Redis pushes each event.

    The constructor waits (at most ``spec.request_timeout_s``) for Redis to confirm
    the subscription, so no event published after it returns is missed.

    Counters: ``requests`` is 1, the SUBSCRIBE; events are pushed without further
    requests, and waiting in ``receive()`` reads the open connection, so
    ``empty_responses`` stays 0.

    Attributes:
        malformed: messages skipped because they are not edalab events (logged).
    """

    def __init__(self, spec: RedisPubSubSpec) -> None:
        super().__init__()
        self.spec = spec
        self.malformed = 0
        self._client = _client(spec.url, spec.request_timeout_s)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        with _redis_errors(spec.url):
            self._pubsub.subscribe(spec.channel)
            self.counters.requests = 1
            deadline = time.monotonic() + spec.request_timeout_s
            while True:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    self.close()
                    raise RedisUnavailable(
                        f"Redis at {spec.url} did not confirm the subscription to "
                        f"{spec.channel!r} within {spec.request_timeout_s} s. Check that the "
                        f"server is not overloaded, or raise request_timeout_s.")
                message = self._pubsub.get_message(timeout=remaining_s)
                if message is not None and message["type"] == "subscribe":
                    break

    def receive(self, timeout_s: float) -> list[Delivery]:
        """Wait at most ``timeout_s`` for a first event, then take every event already here.

        The receipt time of an event that arrives while we wait is taken the moment
        its bytes are readable on the socket, before redis-py parses the reply: the
        delay measured is the transport's (publisher -> Valkey -> this socket), not the
        client library's parsing, like a subscriber reading the raw socket.
        """
        deliveries: list[Delivery] = []
        deadline = time.monotonic() + max(0.0, timeout_s)
        with _redis_errors(self.spec.url):
            while not deliveries:
                message = self._next_message(0.0)  # already buffered?
                arrived_ns = None
                if message is None:
                    remaining_s = deadline - time.monotonic()
                    if remaining_s <= 0 or not self._wait_readable(remaining_s):
                        break
                    arrived_ns = self._now_ns()
                    message = self._next_message(max(0.0, deadline - time.monotonic()))
                self._take(message, deliveries, arrived_ns)
            while True:
                message = self._next_message(0.0)
                if message is None:
                    break
                self._take(message, deliveries)
        return deliveries

    def _next_message(self, wait_s: float) -> dict | None:
        """The next message if its first bytes arrive within ``wait_s``, read to its end.

        redis-py reads a message with the same timeout it waits with, so
        ``get_message(timeout=0)`` on a large message still arriving (10 MB) fails
        half-way and leaves the connection unusable; once bytes are there, the rest
        gets up to ``request_timeout_s`` (tests/test_fuzz.py).
        """
        connection = self._pubsub.connection
        if connection is None or not connection.can_read(timeout=wait_s):
            return None
        return self._pubsub.get_message(timeout=self.spec.request_timeout_s)

    def _wait_readable(self, timeout_s: float) -> bool:
        """Block until the subscription's socket has bytes (True) or ``timeout_s`` passed."""
        sock = getattr(self._pubsub.connection, "_sock", None)  # redis-py keeps no public handle
        if sock is None:  # not connected yet: let redis-py connect and wait
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(timeout_s * 1000))

    def _take(self, message: dict | None, deliveries: list[Delivery], arrived_ns: int | None = None) -> None:
        if message is None or message["type"] != "message":
            return
        data = message["data"]
        # Before parsing: the delay is the transport's, not JSON's (nor redis-py's).
        received_at_ns = arrived_ns or self._now_ns()
        self.counters.bytes_received += len(data)
        try:
            event = Event.from_bytes(data)
        except MalformedEvent as exc:  # skipped: one bad message must not stop a subscriber
            self.malformed += 1
            log.warning("Skipped a message on channel %r that is not an edalab event: %s",
                        self.spec.channel, exc)
            return
        deliveries.append(Delivery(event, received_at_ns))

    def close(self) -> None:
        """Unsubscribe (by disconnecting) and release the connection."""
        self._pubsub.close()
        self._client.close()


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisStreamSpec(TransportSpec):
    """A Redis stream read by consumer groups.

    Attributes:
        url: ``redis://host:port/0``.
        stream: the stream's key.
        maxlen: keep at most this many entries (``XADD MAXLEN``); None keeps all.
        trim_approximately: trim with ``MAXLEN ~`` (cheaper; Redis trims whole
            internal nodes, so the stream may stay somewhat longer than ``maxlen``).
        ack: each ``receive()`` first acknowledges (XACK) what the previous
            ``receive()`` returned; with False only :meth:`RedisStreamSubscriber.commit`
            does, and the entries stay pending.
        max_block_ms: longest one ``XREADGROUP BLOCK`` waits; a longer
            ``receive()`` makes several reads. The socket timeout is set above it.
        request_timeout_s: longest wait for any other Redis answer.
    """

    url: str
    stream: str
    maxlen: int | None = None
    trim_approximately: bool = False
    ack: bool = True
    max_block_ms: int = 10000
    request_timeout_s: float = 10.0

    kind = "redis-stream"
    # One append-only stream: every group reads it in id order (so every key in order),
    # members of a group compete, and a group can be created at any entry id.
    capabilities = Capabilities(durable=True, groups=True, replay=True, key_ordering=True)

    def __post_init__(self) -> None:
        _check_url(self.url)
        _check_name("stream", self.stream)
        if self.maxlen is not None and (isinstance(self.maxlen, bool)
                                        or not isinstance(self.maxlen, int) or self.maxlen < 1):
            raise ConfigError(f"maxlen must be None or a positive integer, not {self.maxlen!r}.")
        if isinstance(self.max_block_ms, bool) or not isinstance(self.max_block_ms, int) \
                or self.max_block_ms < 1:
            raise ConfigError(
                f"max_block_ms must be a positive integer, not {self.max_block_ms!r}.")
        _check_positive("request_timeout_s", self.request_timeout_s)

    @classmethod
    def for_lab(cls, lab: "Lab", stream: str, **overrides: Any) -> "RedisStreamSpec":
        """The spec for ``stream`` on ``lab``'s Redis; keyword arguments override fields."""
        return cls(url=lab.redis_url, stream=stream, **overrides)

    def publisher(self) -> "RedisStreamPublisher":
        return RedisStreamPublisher(self)

    def subscriber(self, group: str | None = None) -> "RedisStreamSubscriber":
        """A member of consumer group ``group``; ``None`` makes a fresh group (fan-out).

        A group that does not exist yet is created at id 0, so it reads the whole
        stream, including events added before it existed.
        """
        return RedisStreamSubscriber(self, group)

    def replayer(self, start: ReplayStart = "beginning") -> "RedisStreamSubscriber":
        """A reader of the whole stream from ``start``, in a temporary group of its own.

        ``start`` is ``"beginning"`` or *n*: the group is created at the id of entry
        *n - 1* (``XRANGE ... COUNT n``), so it reads entries *n*, *n + 1*, ...; past
        the end of the stream it reads only new entries. The group is destroyed on
        ``close()``.
        """
        check_replay_start(start)
        start_id: bytes | str = "0"
        if start != "beginning" and start > 0:
            with _redis_errors(self.url), contextlib.closing(
                    _client(self.url, self.request_timeout_s)) as client:
                entries = client.xrange(self.stream, count=start)
            # The group starts *after* this id, i.e. at entry number ``start``.
            start_id = entries[-1][0] if len(entries) == start else "$"
        return RedisStreamSubscriber(self, None, start_id=start_id,
                                     group_prefix="edalab-replay")


class RedisStreamPublisher(Publisher):
    """``XADD``s each event (field ``event``); returns when Redis has stored it.

    Attributes:
        last_id: the stream id of the last event added (bytes, e.g. ``b"1718-0"``).
        published: events added.
    """

    def __init__(self, spec: RedisStreamSpec) -> None:
        self.spec = spec
        self.last_id: bytes | None = None
        self.published = 0
        self._client = _client(spec.url, spec.request_timeout_s)

    def publish(self, event: Event) -> None:
        with _redis_errors(self.spec.url):
            self.last_id = self._client.xadd(self.spec.stream, {EVENT_FIELD: event.to_bytes()},
                                             maxlen=self.spec.maxlen,
                                             approximate=self.spec.trim_approximately)
        self.published += 1

    def close(self) -> None:
        self._client.close()


class RedisStreamSubscriber(Subscriber):
    """One consumer of a stream's consumer group (see :class:`RedisStreamSpec`).

    ``receive(timeout_s)`` is ``XREADGROUP ... COUNT 100 BLOCK <timeout in ms>
    STREAMS <stream> >`` (new entries only; no BLOCK when ``timeout_s`` is 0, as
    ``BLOCK 0`` would wait forever). Acknowledging: the caller asking for more is
    taken as the sign that it finished what it got, so with ``spec.ack`` each
    ``receive()`` first XACKs what the previous one returned, in the same round trip
    (pipelined). :meth:`commit` acknowledges everything returned so far. :meth:`close`
    does not acknowledge: what the last ``receive()`` returned stays pending, as
    after a crash, and another member can take it over with :meth:`take_over_pending`.

    Counters: ``requests`` counts XREADGROUP and XAUTOCLAIM calls (the XACKs ride
    along with them); ``empty_responses`` the XREADGROUPs that returned nothing.

    Attributes:
        group: the consumer group (a fresh ``edalab-fanout-...`` when none given).
        consumer: this member's name, unique per subscriber.
        fan_out: True when the group was made for this subscriber alone (fan-out or
            replay); it is destroyed on :meth:`close`.

    Args:
        start_id: where a group created here starts (``"0"``: the whole stream).
        group_prefix: name prefix of a group made for this subscriber alone.
    """

    def __init__(self, spec: RedisStreamSpec, group: str | None = None, *,
                 start_id: bytes | str = "0", group_prefix: str = "edalab-fanout") -> None:
        super().__init__()
        self.spec = spec
        self.fan_out = group is None
        self.group = group if group is not None else f"{group_prefix}-{uuid.uuid4().hex[:12]}"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        #: entries skipped because they are not edalab events (logged, acknowledged)
        self.malformed = 0
        self._unacked: list[bytes] = []
        # id(delivery) -> its entry id, for commit(through=delivery); cleared when all are acked
        self._entry_of: dict[int, bytes] = {}
        # The socket must outwait the longest BLOCK, or redis-py reports a timeout.
        self._client = _client(spec.url, spec.max_block_ms / 1000 + spec.request_timeout_s)
        with _redis_errors(spec.url):
            try:
                self._client.xgroup_create(spec.stream, self.group, id=start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def receive(self, timeout_s: float) -> list[Delivery]:
        """Wait at most ``timeout_s`` (about 100 ms more on Redis's clock) for new entries."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            block_ms = min(remaining_ms, self.spec.max_block_ms) if remaining_ms >= 1 else None
            deliveries = self._read(block_ms)
            if deliveries or block_ms is None or time.monotonic() >= deadline - 0.001:
                return deliveries

    def _read(self, block_ms: int | None) -> list[Delivery]:
        pipe = self._client.pipeline(transaction=False)
        acking = self.spec.ack and bool(self._unacked)
        if acking:
            pipe.xack(self.spec.stream, self.group, *self._unacked)
        pipe.xreadgroup(self.group, self.consumer, {self.spec.stream: ">"},
                        count=READ_COUNT, block=block_ms)
        with _redis_errors(self.spec.url):
            answers = pipe.execute()
        if acking:
            self._unacked.clear()
            self._entry_of.clear()
        self.counters.requests += 1
        received_at_ns = self._now_ns()
        entries = [entry for _stream, stream_entries in (answers[-1] or [])
                   for entry in stream_entries]
        deliveries = self._deliver(entries, received_at_ns)
        self.counters.empty_responses += not deliveries
        return deliveries

    def _deliver(self, entries: list, received_at_ns: int) -> list[Delivery]:
        deliveries = []
        for entry_id, fields in entries:
            if fields is None:  # deleted (trimmed) while pending
                continue
            data = fields.get(EVENT_FIELD)
            # Acknowledged with the rest even when skipped, so a poison entry does not stay
            # pending and come back with every take-over (tests/test_fuzz.py).
            self._unacked.append(entry_id)
            try:
                if data is None:
                    raise MalformedEvent("no 'event' field: something other than an edalab "
                                         "publisher wrote it")
                self.counters.bytes_received += len(data)
                event = Event.from_bytes(data)
            except MalformedEvent as exc:
                self.malformed += 1
                log.warning("Skipped entry %r of stream %r, not an edalab event: %s",
                            entry_id, self.spec.stream, exc)
                continue
            delivery = Delivery(event, received_at_ns)
            deliveries.append(delivery)
            self._entry_of[id(delivery)] = entry_id
        return deliveries

    def commit(self, through: Delivery | None = None) -> None:
        """XACK every entry returned so far (with ``through``: up to that delivery's entry,
        in the order they were returned): they leave the group's pending list."""
        if not self._unacked:
            return
        upto = len(self._unacked)
        if through is not None:
            entry_id = self._entry_of.get(id(through))
            if entry_id not in self._unacked:
                raise ExperimentError("commit(through=...) needs a delivery this subscriber's receive() "
                                      "returned and that is not committed yet.")
            upto = self._unacked.index(entry_id) + 1
        with _redis_errors(self.spec.url):
            self._client.xack(self.spec.stream, self.group, *self._unacked[:upto])
        del self._unacked[:upto]
        if not self._unacked:
            self._entry_of.clear()

    def take_over_pending(self) -> list[Delivery]:
        """Take over every entry of this group still pending at any member (XAUTOCLAIM).

        Meant for a restart, when one member runs at a time: what is pending then
        belongs to a killed predecessor. With several live members use
        :meth:`claim_stale` with an idle time above their commit interval, or you
        steal work still in progress.
        """
        return self.claim_stale(min_idle_ms=0)

    def pending(self) -> int:
        """Entries of this group delivered to some member and not yet acknowledged (XPENDING)."""
        with _redis_errors(self.spec.url):
            return int(self._client.xpending(self.spec.stream, self.group)["pending"])

    def claim_stale(self, min_idle_ms: int) -> list[Delivery]:
        """Take over this group's entries pending for at least ``min_idle_ms`` (XAUTOCLAIM).

        Use it when a member died: its pending entries become this member's and
        are returned as deliveries (acknowledged like received ones).
        """
        if isinstance(min_idle_ms, bool) or not isinstance(min_idle_ms, int) or min_idle_ms < 0:
            raise ConfigError(f"min_idle_ms must be an integer >= 0, not {min_idle_ms!r}.")
        deliveries: list[Delivery] = []
        start_id: bytes | str = "0-0"
        with _redis_errors(self.spec.url):
            while True:
                answer = self._client.xautoclaim(self.spec.stream, self.group, self.consumer,
                                                 min_idle_time=min_idle_ms, start_id=start_id,
                                                 count=READ_COUNT)
                self.counters.requests += 1
                start_id, entries = answer[0], answer[1]
                deliveries += self._deliver(entries, self._now_ns())
                if start_id in (b"0-0", "0-0"):
                    return deliveries

    def close(self) -> None:
        """Disconnect without acknowledging; a fan-out or replay subscriber's own group
        is destroyed."""
        if self.fan_out:
            with contextlib.suppress(redis.RedisError):
                self._client.xgroup_destroy(self.spec.stream, self.group)
        self._client.close()
