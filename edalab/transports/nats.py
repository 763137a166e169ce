"""A message queue: NATS JetStream with a work-queue stream (notebook 09).

Where Kafka and Redis Streams keep a *log* that consumers read at their own position,
a queue hands each message to one consumer and forgets it once that consumer says it
is done. ``lab.transport("nats-queue", topic="orders", ack_wait_s=1.0, max_deliver=3)``
opens :class:`NatsQueueSpec`:

* a JetStream stream with WorkQueue retention on subject ``<topic>``: a message is
  removed once it is acknowledged;
* consumers are *durable pull consumers* named after the group; members of a group
  compete (each message goes to one of them). A work-queue stream allows one consumer
  per subject, so there is ONE group per queue: a second, different group is a
  :class:`~edalab.ConfigError` (use a log, Kafka or Redis Streams, for fan-out);
* per message, what a log does not have: :meth:`NatsQueueSubscriber.ack` (done: gone),
  :meth:`~NatsQueueSubscriber.nak` (failed: deliver again, maybe after a delay),
  :meth:`~NatsQueueSubscriber.term` (never deliver again) and
  :meth:`~NatsQueueSubscriber.delivery_count`; a message not acked within
  ``ack_wait_s`` comes back by itself; after ``max_deliver`` deliveries JetStream gives
  up on it;
* dead letters (:meth:`NatsQueueSpec.dead_letters`): messages JetStream gave up on
  (``max_deliver`` reached) and messages a consumer terminated. See that method for how
  they are kept.

nats-py is an asyncio client; edalab's interface is synchronous, so every client object
(publisher, subscriber, a spec's short admin calls) runs its own event loop on a private
thread, every call has a timeout, and ``close()`` ends the connection and the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edalab._errors import ConfigError, EdalabError, ExperimentError, NatsUnavailable
from edalab._events import Event, MalformedEvent
from edalab.transports._base import Capabilities, Delivery, Publisher, Subscriber, TransportSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from edalab._lab import Lab

__all__ = ["NatsQueueSpec", "NatsQueuePublisher", "NatsQueueSubscriber", "DEFAULT_GROUP"]

#: the group of subscribers opened with ``group=None`` (a queue has one group)
DEFAULT_GROUP = "workers"
#: seconds a client may take to open its TCP connection and say hello
CONNECT_TIMEOUT_S = 5.0
#: how many recent deliveries a subscriber remembers for :meth:`NatsQueueSubscriber.delivery_count`
_REMEMBERED = 100_000
#: seconds without a further message after which a receive() takes its batch as complete
_BATCH_GAP_S = 0.05
#: header of a terminated message's copy in the dead-letter stream: its sequence in the queue
_SEQ_HEADER = "Edalab-Queue-Seq"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _check_positive(what: str, value: Any, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{what} must be {kind}, not {value!r}.")


def _stream_name(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic)


# ---------------------------------------------------------------------------------------
# The synchronous face of nats-py: one loop thread per client object
# ---------------------------------------------------------------------------------------


class _LoopThread:
    """A private asyncio event loop running on its own (daemon) thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout_s: float):
        """Run ``coro`` on the loop; wait at most ``timeout_s`` for it (TimeoutError after)."""
        if self.loop.is_closed() or not self.thread.is_alive():
            coro.close()
            raise ExperimentError("This NATS client is closed: open a new publisher or subscriber.")
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)
        try:
            return future.result(timeout_s + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread."""
        if self.loop.is_closed():
            return

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_rest(), 2.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


class _Client:
    """A nats-py connection and its JetStream context on a private loop thread."""

    def __init__(self, url: str, request_timeout_s: float, role: str) -> None:
        self.url = url
        self.request_timeout_s = request_timeout_s
        self._check_listening()
        self._loop = _LoopThread(f"edalab-nats-{role}")
        try:
            self.nc = self.call(self._connect(role), CONNECT_TIMEOUT_S + 1.0)
        except BaseException:
            self._loop.close()
            raise
        self.js = self.nc.jetstream(timeout=request_timeout_s)

    def _check_listening(self) -> None:
        # nats-py retries a refused connection for minutes when reconnecting is allowed:
        # a plain TCP connect first says "nothing there" within seconds.
        from edalab._nats_server import parse_nats_url

        host, port = parse_nats_url(self.url)
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise NatsUnavailable(
                f"Nothing answers at {self.url} ({exc}). Check that the NATS server runs (`edalab "
                f"status`, or lab.describe() in a notebook) and that the URL is right.") from None

    async def _connect(self, role: str):
        import nats

        async def ignore(*_args) -> None:
            """nats-py would log every reconnect attempt with a traceback; errors reach
            the caller of the failed call instead."""

        return await nats.connect(
            self.url, name=f"edalab-{role}", connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
            max_reconnect_attempts=20, reconnect_time_wait=0.25, error_cb=ignore, disconnected_cb=ignore,
            reconnected_cb=ignore, closed_cb=ignore)

    def call(self, coro, timeout_s: float | None = None):
        """Run ``coro`` on this client's loop; NATS errors become edalab errors with advice."""
        import nats.errors
        import nats.js.errors

        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        try:
            return self._loop.run(coro, timeout_s)
        except EdalabError:
            raise
        except nats.js.errors.APIError as exc:
            raise ExperimentError(f"JetStream at {self.url} refused the request: {exc.description} "
                                  f"(error {exc.err_code}).") from exc
        except (nats.errors.Error, OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise NatsUnavailable(
                f"The NATS at {self.url} did not answer ({type(exc).__name__}: {exc}). Check that it "
                f"runs (`edalab status`, or lab.describe() in a notebook); if it is only busy, raise "
                f"request_timeout_s.") from exc

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.call(self.nc.close(), 5.0)
        self._loop.close()


async def _ensure_streams(js, spec: "NatsQueueSpec") -> None:
    """Create the queue's work-queue stream and its dead-letter stream (kept if they exist)."""
    from nats.js import api
    from nats.js.errors import BadRequestError

    queue = api.StreamConfig(name=spec.stream, subjects=[spec.topic], retention=api.RetentionPolicy.WORK_QUEUE,
                             storage=api.StorageType.FILE)
    dead = api.StreamConfig(name=spec.dead_stream, subjects=[spec.dead_subject, spec.max_deliveries_subject],
                            retention=api.RetentionPolicy.LIMITS, storage=api.StorageType.FILE)
    for config in (queue, dead):
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code == 10058:  # the name exists with another configuration
                info = await js.stream_info(config.name)
                if set(config.subjects) <= set(info.config.subjects or []) \
                        and info.config.retention == config.retention:
                    continue
                raise ConfigError(
                    f"A JetStream stream named {config.name!r} exists with other settings "
                    f"(subjects {info.config.subjects}, retention {info.config.retention}). Use another "
                    f"topic name.") from None
            if exc.err_code == 10065:  # subjects overlap
                raise ConfigError(
                    f"Subject {spec.topic!r} is already taken by another JetStream stream on {spec.url}. "
                    f"Use another topic name.") from None
            raise


# ---------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsQueueSpec(TransportSpec):
    """A JetStream work queue: each message to one member of the group, gone once acked.

    Attributes:
        url: ``nats://host:port`` (``lab.nats_url``).
        topic: the subject messages are published on; the stream is named after it.
        ack_wait_s: seconds JetStream waits for a delivered message's ack before it
            delivers the message again (to any member). RabbitMQ has no timer: it
            redelivers when the consumer's connection closes.
        max_deliver: deliveries per message at most; then JetStream stops and the
            message becomes a dead letter (:meth:`dead_letters`).
        max_ack_pending: messages delivered and not yet acked, over the whole group, at
            most; JetStream delivers no more until some are acked (RabbitMQ's prefetch
            is the same limit per consumer).
        fetch_batch: messages one ``receive()`` takes at most.
        ack_on_receive: each ``receive()`` first acks what the previous one returned and
            was not settled (acked, nak'ed, term'ed) yet, like Kafka's commit on each
            poll; default False: the consumer acks (``ack``, ``commit``) itself, and
            what it does not ack comes back after ``ack_wait_s``.
        request_timeout_s: longest wait for any answer from NATS.

    Consumer settings (ack_wait_s, max_deliver, max_ack_pending) belong to the group's
    durable consumer, created by its first subscriber; a later subscriber with other
    values is a ConfigError (use a fresh topic).
    """

    url: str
    topic: str
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000
    fetch_batch: int = 100
    ack_on_receive: bool = False
    request_timeout_s: float = 10.0

    kind = "nats-queue"
    # Kept until acked (durable); members of the one group compete (groups); acked
    # messages are gone, so there is nothing to replay; a nak'ed or timed-out message
    # comes back after later ones, so keys do not stay in order.
    capabilities = Capabilities(durable=True, groups=True, replay=False, key_ordering=False)

    def __post_init__(self) -> None:
        from edalab._nats_server import parse_nats_url

        parse_nats_url(self.url)
        tokens = self.topic.split(".") if isinstance(self.topic, str) else [""]
        if not all(_TOKEN_RE.match(t) for t in tokens) or self.topic.startswith("$"):
            raise ConfigError(f"topic must be a NATS subject of letters, digits, '-', '_' and dots "
                              f"(no spaces, no wildcards * >), not {self.topic!r}.")
        _check_positive("ack_wait_s", self.ack_wait_s)
        _check_positive("max_deliver", self.max_deliver, integer=True)
        _check_positive("max_ack_pending", self.max_ack_pending, integer=True)
        _check_positive("fetch_batch", self.fetch_batch, integer=True)
        _check_positive("request_timeout_s", self.request_timeout_s)
        if not isinstance(self.ack_on_receive, bool):
            raise ConfigError(f"ack_on_receive must be True or False, not {self.ack_on_receive!r}.")

    # -- names -------------------------------------------------------------------------
    @property
    def stream(self) -> str:
        """The work-queue stream's name (the topic with dots made underscores)."""
        return _stream_name(self.topic)

    @property
    def dead_stream(self) -> str:
        """The dead-letter stream's name."""
        return f"{self.stream}-dead"

    @property
    def dead_subject(self) -> str:
        """Where a terminated message's copy goes (in the dead-letter stream)."""
        return f"{self.topic}.dead"

    @property
    def max_deliveries_subject(self) -> str:
        """JetStream's advisory subject for messages of this queue that hit ``max_deliver``."""
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.*"

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def for_lab(cls, lab: "Lab", topic: str, **overrides: Any) -> "NatsQueueSpec":
        """The spec for ``topic`` on ``lab``'s NATS; keyword arguments override fields."""
        if not getattr(lab, "nats_url", None):
            raise ConfigError(f"{lab!r} has no NATS server. edalab.start() starts one; a lab built with "
                              f"Lab.on_servers(...) needs nats=NatsServer().start() or nats_url=lab.nats_url.")
        return cls(url=lab.nats_url, topic=topic, **overrides)

    @classmethod
    def from_lab(cls, lab: "Lab", name: str, **options: Any) -> "NatsQueueSpec":
        """The spec, with its work-queue stream and dead-letter stream created (kept if they exist)."""
        spec = cls.for_lab(lab, name, **options)
        with spec._admin() as client:
            client.call(_ensure_streams(client.js, spec))
        return spec

    def publisher(self) -> "NatsQueuePublisher":
        return NatsQueuePublisher(self)

    def subscriber(self, group: str | None = None) -> "NatsQueueSubscriber":
        """A member of ``group`` (default :data:`DEFAULT_GROUP`): members compete for messages.

        One group per queue: a work-queue stream lets one consumer take each subject, so a
        second, different group raises ConfigError.
        """
        return NatsQueueSubscriber(self, group)

    @contextlib.contextmanager
    def _admin(self):
        client = _Client(self.url, self.request_timeout_s, "admin")
        try:
            yield client
        finally:
            client.close()

    # -- looking at the queue ------------------------------------------------------------
    def pending(self) -> int:
        """Messages still in the queue's stream: not yet delivered, delivered and not yet
        acked, and dead ones that hit ``max_deliver`` (JetStream keeps those; acked and
        terminated messages are gone)."""
        with self._admin() as client:
            info = client.call(client.js.stream_info(self.stream))
        return int(info.state.messages)

    def dead_letters(self) -> list[Event]:
        """The events JetStream gave up on, oldest first: those delivered ``max_deliver``
        times without an ack, and those a consumer terminated (:meth:`NatsQueueSubscriber.term`).

        How they are kept: a second stream, ``<stream>-dead``, records (a) JetStream's
        MAX_DELIVERIES advisory, which names the message's sequence in the queue, whose
        body stays in the queue's stream (read here by sequence), and (b) a copy of each
        terminated message, which the subscriber publishes there before terming it,
        because JetStream removes a terminated message from a work-queue stream and its
        advisory carries no body. A message acked after its advisory (a slow consumer's
        late ack) was processed after all and is left out.
        """
        events: list[Event] = []

        async def read(js) -> None:
            from nats.js.errors import NotFoundError

            try:
                info = await js.stream_info(self.dead_stream)
            except NotFoundError:
                return
            if not info.state.messages:
                return
            for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                try:
                    record = await js.get_msg(self.dead_stream, seq)
                except NotFoundError:
                    continue
                if record.subject == self.dead_subject:
                    events.append(Event.from_bytes(record.data))
                    continue
                advisory = json.loads(record.data)
                try:
                    original = await js.get_msg(self.stream, int(advisory["stream_seq"]))
                except NotFoundError:  # acked late, after all
                    continue
                events.append(Event.from_bytes(original.data))

        with self._admin() as client:
            client.call(read(client.js), self.request_timeout_s * 3)
        return events


# ---------------------------------------------------------------------------------------
# Publisher
# ---------------------------------------------------------------------------------------


class NatsQueuePublisher(Publisher):
    """Publishes to the queue; ``publish`` returns once JetStream stored the message (PubAck).

    Attributes:
        last_seq: the queue's sequence number of the last message published.
        published: messages published.
    """

    def __init__(self, spec: NatsQueueSpec) -> None:
        self.spec = spec
        self.last_seq: int | None = None
        self.published = 0
        self._client = _Client(spec.url, spec.request_timeout_s, "publisher")
        try:
            self._client.call(_ensure_streams(self._client.js, spec))
        except BaseException:
            self._client.close()
            raise

    def publish(self, event: Event) -> None:
        ack = self._client.call(self._client.js.publish(
            self.spec.topic, event.to_bytes(), stream=self.spec.stream, timeout=self.spec.request_timeout_s))
        self.last_seq = ack.seq
        self.published += 1

    def flush(self, timeout_s: float = 10.0) -> None:
        """Every publish already waited for JetStream's PubAck; this waits for the connection's PONG."""
        self._client.call(self._client.nc.flush(timeout=timeout_s), timeout_s)

    def close(self) -> None:
        """Close the connection and stop this publisher's loop thread."""
        self._client.close()


# ---------------------------------------------------------------------------------------
# Subscriber
# ---------------------------------------------------------------------------------------


class NatsQueueSubscriber(Subscriber):
    """One member of the queue's group, over a durable pull consumer named after the group.

    ``receive(timeout_s)`` is one pull request (``$JS.API.CONSUMER.MSG.NEXT``) for up to
    ``fetch_batch`` messages that ends as soon as some are there (``no_wait`` with
    ``expires``), or after ``timeout_s`` with none. Each message delivered waits for this
    member's verdict: :meth:`ack` (done), :meth:`nak` (deliver again), :meth:`term`
    (never again, a dead letter), or :meth:`commit` (ack everything not yet settled).
    Without a verdict it comes back after ``ack_wait_s``, to any member; the same goes for
    what a killed member held, so :meth:`take_over_pending` returns ``[]``.

    Counters: ``requests`` counts pull requests, ``empty_responses`` those that brought
    nothing; acks ride on the same connection and are not counted.

    Attributes:
        group: the group (= the durable consumer's name).
    """

    def __init__(self, spec: NatsQueueSpec, group: str | None = None) -> None:
        super().__init__()
        group = DEFAULT_GROUP if group is None else group
        if not isinstance(group, str) or not _NAME_RE.match(group):
            raise ConfigError(f"group must be a name of letters, digits, '-' and '_', not {group!r}.")
        self.spec = spec
        self.group = group
        # delivery identity -> (delivery, message): waiting for a verdict / recently seen
        self._unsettled: dict[int, tuple[Delivery, Any]] = {}
        self._recent: OrderedDict[int, tuple[Delivery, Any]] = OrderedDict()
        self._requests = 0
        #: how JetStream ended the last pull request (e.g. "404 No Messages"), for diagnosis
        self.last_status: str | None = None
        #: messages that were not edalab events (term'ed and skipped)
        self.malformed = 0
        self._client = _Client(spec.url, spec.request_timeout_s, "subscriber")
        try:
            self._client.call(self._open(), spec.request_timeout_s * 3)
        except BaseException:
            self._client.close()
            raise

    async def _open(self) -> None:
        from nats.js import api
        from nats.js.errors import BadRequestError, NotFoundError

        js, spec = self._client.js, self.spec
        await _ensure_streams(js, spec)
        try:
            info = await js.consumer_info(spec.stream, self.group)
        except NotFoundError:
            others = [c.name for c in await js.consumers_info(spec.stream) if c.name != self.group]
            if others:
                raise self._second_group_error(others[0]) from None
            config = api.ConsumerConfig(
                name=self.group, durable_name=self.group, ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL, ack_wait=spec.ack_wait_s, max_deliver=spec.max_deliver,
                max_ack_pending=spec.max_ack_pending, filter_subject=spec.topic)
            try:
                await js.add_consumer(spec.stream, config)
            except BadRequestError as exc:
                if exc.err_code == 10100:  # another group won a race to the stream
                    raise self._second_group_error("another group") from None
                raise
        else:
            have = (info.config.ack_wait, info.config.max_deliver, info.config.max_ack_pending)
            want = (float(spec.ack_wait_s), spec.max_deliver, spec.max_ack_pending)
            if have[0] is None or abs(have[0] - want[0]) > 1e-6 or have[1:] != want[1:]:
                raise ConfigError(
                    f"Group {self.group!r} of queue {spec.topic!r} already exists with ack_wait_s={have[0]}, "
                    f"max_deliver={have[1]}, max_ack_pending={have[2]}; this spec asks for "
                    f"ack_wait_s={want[0]}, max_deliver={want[1]}, max_ack_pending={want[2]}. Use a fresh "
                    f"topic (lab.transport('nats-queue') with no topic makes one).")
        self._inbox = self._client.nc.new_inbox()
        # Every answer to our pull requests lands here, stamped when nats-py hands it over.
        self._arrived: asyncio.Queue = asyncio.Queue()

        async def arrived(msg) -> None:
            self._arrived.put_nowait((msg, self._now_ns()))

        self._sub = await self._client.nc.subscribe(f"{self._inbox}.*", cb=arrived)
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{self.group}"

    def _second_group_error(self, other: str) -> ConfigError:
        return ConfigError(
            f"Queue {self.spec.topic!r} already has group {other!r}; a work queue hands each message to "
            f"ONE group (its members compete), so group {self.group!r} cannot read it too. Use the same "
            f"group, or a log (lab.transport('kafka') or 'redis-stream') where every group gets every event.")

    # -- receiving ---------------------------------------------------------------------
    def receive(self, timeout_s: float) -> list[Delivery]:
        """Wait at most ``timeout_s`` for messages; return those that came (maybe none)."""
        timeout_s = max(0.0, float(timeout_s))
        return self._client.call(self._receive(timeout_s), timeout_s + self.spec.request_timeout_s)

    async def _receive(self, timeout_s: float) -> list[Delivery]:
        from nats.js.client import JetStreamContext

        nc = self._client.nc
        if self.spec.ack_on_receive and self._unsettled:
            for _delivery, msg in self._unsettled.values():
                await msg.ack()
            self._unsettled.clear()
        deliveries: list[Delivery] = []
        # Messages an earlier request brought after we stopped waiting for it come first.
        while not self._arrived.empty() and len(deliveries) < self.spec.fetch_batch:
            msg, received_at_ns = self._arrived.get_nowait()
            if not JetStreamContext.is_status_msg(msg):
                await self._take(msg, received_at_ns, deliveries)
        if deliveries:
            return deliveries
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        request: dict[str, Any] = {"batch": self.spec.fetch_batch, "no_wait": True}
        if timeout_s >= 0.001:
            # no_wait with expires: wait up to expires for a first message, then hand over
            # what is there and end the request with a status (404).
            request["expires"] = int(timeout_s * 1e9)
        await nc.publish(self._next_subject, json.dumps(request).encode(), reply=reply)
        self.counters.requests += 1
        until = time.monotonic() + timeout_s
        deadline = until + self.spec.request_timeout_s
        while len(deliveries) < self.spec.fetch_batch:  # a full batch ends the request without a status
            wait_s = max(0.001, deadline - time.monotonic())
            if deliveries:
                # The server ends a request with a status right after the messages it had,
                # except when max_ack_pending holds the rest back: then the request lingers
                # until it expires. A pause this long means the batch is over; anything it
                # still brings waits in self._arrived for the next receive().
                wait_s = min(wait_s, _BATCH_GAP_S)
            try:
                msg, received_at_ns = await asyncio.wait_for(self._arrived.get(), wait_s)
            except asyncio.TimeoutError:
                if deliveries:
                    break
                raise NatsUnavailable(f"JetStream at {self.spec.url} did not end a pull request within "
                                      f"{self.spec.request_timeout_s:g} s of its expiry.") from None
            status = JetStreamContext.is_status_msg(msg)
            if status:
                if msg.subject != reply:
                    continue  # the end of an earlier request that we stopped waiting for
                self.last_status = f"{status} {msg.headers.get('Description', '')}".strip()
                if status == "409" and "Deleted" in str(msg.headers.get("Description", "")):
                    raise ExperimentError(f"Group {self.group!r} of queue {self.spec.topic!r} was deleted.")
                break  # 404 no (more) messages, 408 expired, 409 limits: the request is over
            await self._take(msg, received_at_ns, deliveries)
        # Ended early with nothing (e.g. "408 Requests Pending" while max_ack_pending
        # holds messages back): wait out timeout_s for what an earlier request still brings,
        # rather than return at once and make the caller's loop spin.
        while not deliveries and time.monotonic() < until:
            try:
                msg, received_at_ns = await asyncio.wait_for(self._arrived.get(), until - time.monotonic())
            except asyncio.TimeoutError:
                break
            if not JetStreamContext.is_status_msg(msg):
                await self._take(msg, received_at_ns, deliveries)
        self.counters.empty_responses += not deliveries
        return deliveries

    async def _take(self, msg, received_at_ns: int, deliveries: list[Delivery]) -> None:
        """Add the message to ``deliveries``; one that is not an edalab event is counted in
        :attr:`malformed`, logged and term'ed (never redelivered), like Streams' ack-and-skip:
        one bad message must not stop a consumer or come back forever."""
        self.counters.bytes_received += len(msg.data)
        try:
            event = Event.from_bytes(msg.data)
        except MalformedEvent as exc:
            self.malformed += 1
            log.warning("Term'ed a message of queue %r that is not an edalab event: %s", self.spec.topic, exc)
            await msg.term()
            return
        deliveries.append(self._remember(Delivery(event, received_at_ns), msg))

    def _remember(self, delivery: Delivery, msg) -> Delivery:
        key = id(delivery)
        self._unsettled[key] = (delivery, msg)
        self._recent[key] = (delivery, msg)
        if len(self._recent) > _REMEMBERED:
            self._recent.popitem(last=False)
        return delivery

    # -- verdicts ----------------------------------------------------------------------
    def _message(self, delivery: Delivery, verb: str):
        entry = self._unsettled.get(id(delivery))
        if entry is None or entry[0] is not delivery:
            known = id(delivery) in self._recent and self._recent[id(delivery)][0] is delivery
            raise ExperimentError(
                f"Cannot {verb} this delivery: "
                + ("it was already acked, nak'ed or term'ed (one verdict per delivery)." if known else
                   "it did not come from this subscriber's receive().")
                + f" Event {getattr(getattr(delivery, 'event', None), 'id', delivery)!r}.")
        return entry[1]

    def ack(self, delivery: Delivery) -> None:
        """Done: JetStream removes the message from the queue (waits for its confirmation)."""
        msg = self._message(delivery, "ack")
        self._client.call(msg.ack_sync(timeout=self.spec.request_timeout_s))
        del self._unsettled[id(delivery)]

    def nak(self, delivery: Delivery, delay_s: float = 0.0) -> None:
        """Failed: deliver the message again (to any member), after ``delay_s`` seconds.

        It counts as a delivery: after ``max_deliver`` of them it is a dead letter.
        """
        if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)) or delay_s < 0:
            raise ConfigError(f"delay_s must be a number of seconds >= 0, not {delay_s!r}.")
        msg = self._message(delivery, "nak")

        async def nak() -> None:
            await msg.nak(delay=delay_s or None)
            await self._client.nc.flush(timeout=self.spec.request_timeout_s)

        self._client.call(nak())
        del self._unsettled[id(delivery)]

    def term(self, delivery: Delivery) -> None:
        """Never deliver this message again: a copy goes to the dead letters, then JetStream
        drops it (RabbitMQ: reject without requeue, to a dead-letter exchange)."""
        msg = self._message(delivery, "term")

        async def term() -> None:
            headers = {_SEQ_HEADER: str(msg.metadata.sequence.stream)}
            await self._client.js.publish(self.spec.dead_subject, msg.data, stream=self.spec.dead_stream,
                                          timeout=self.spec.request_timeout_s, headers=headers)
            await msg.term()
            await self._client.nc.flush(timeout=self.spec.request_timeout_s)

        self._client.call(term())
        del self._unsettled[id(delivery)]

    def delivery_count(self, delivery: Delivery) -> int:
        """How many times JetStream has delivered this message so far (1 = first time)."""
        entry = self._recent.get(id(delivery))
        if entry is None or entry[0] is not delivery:
            raise ExperimentError("This delivery did not come from this subscriber's receive() (or is "
                                  f"older than its last {_REMEMBERED} deliveries).")
        return int(entry[1].metadata.num_delivered)

    def commit(self, through: Delivery | None = None) -> None:
        """Ack every message received and not yet settled (with ``through``: up to that
        delivery, in the order they were received), and wait until JetStream has them all."""
        if not self._unsettled:
            return
        keys = list(self._unsettled)
        if through is not None:
            if id(through) not in self._unsettled or self._unsettled[id(through)][0] is not through:
                raise ExperimentError("commit(through=...) needs a delivery this subscriber's receive() "
                                      "returned and that is not settled yet.")
            keys = keys[: keys.index(id(through)) + 1]
        messages = [self._unsettled[key][1] for key in keys]
        timeout_s = self.spec.request_timeout_s

        async def ack_all() -> None:
            await asyncio.gather(*(m.ack_sync(timeout=timeout_s) for m in messages))

        self._client.call(ack_all(), timeout_s * 2)
        for key in keys:
            del self._unsettled[key]

    @property
    def unsettled(self) -> int:
        """Messages this member received and has not acked, nak'ed or term'ed."""
        return len(self._unsettled)

    def close(self) -> None:
        """Disconnect without acking: what was not settled comes back after ``ack_wait_s``
        (to another member), as after a crash. Stops this subscriber's loop thread."""
        self._unsettled.clear()
        self._recent.clear()
        self._client.close()
