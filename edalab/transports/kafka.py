"""Kafka transport: a log that consumers pull from (notebooks 01-04).

A :class:`KafkaSpec` names a topic on a Kafka-protocol broker (the embedded Tansu,
``edalab up``'s, or a real Kafka). Its publisher sends each event keyed by
``event.key``, so one key always lands in one partition and keeps its order. Its
subscribers are consumer-group members:

* ``spec.subscriber("billing")`` twice: the two *compete*, each gets some partitions;
* ``spec.subscriber()`` (no group): a fresh group per subscriber, so each gets
  *every* event (fan-out);
* ``spec.replayer("beginning")``: a reader outside any group that reads the topic
  again from an offset (replay).

Kafka is a pull transport: the client asks the broker (Fetch requests) and the
broker answers, with records or empty-handed after ``fetch_max_wait_ms``. The
subscriber's :class:`~edalab.transports.Counters` count those fetch round trips,
read from kafka-python's own metrics, because one ``poll()`` may send several
fetches or none.

Differences of the embedded Tansu from Apache Kafka that matter here (see
docs/brokers.md): a waiting fetch is not woken by new data, only noticed at the
broker's next internal re-check (mean delay about 1/6 to 1/4 of ``fetch_max_wait_ms``,
worst about 1/2); ``end_offsets()`` is wrong when the last batch holds more than
one record (so :meth:`KafkaSubscriber.lag` uses the high watermark of fetch
responses instead); a group join takes about half the session timeout.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.metrics.measurable_stat import AbstractMeasurableStat
from kafka.structs import OffsetAndMetadata

from edalab._errors import ConfigError, ExperimentError, KafkaUnavailable
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

__all__ = ["KafkaPublisher", "KafkaSpec", "KafkaSubscriber"]

log = logging.getLogger(__name__)

#: kafka-python's bootstrap wait; explicit so a wrong address fails in seconds.
BOOTSTRAP_TIMEOUT_MS = 5000
#: Seconds :meth:`KafkaPublisher.close` waits for events still in the producer's buffer.
CLOSE_TIMEOUT_S = 5.0
_ACKS = ("all", 0, 1)
_Offsets = dict[TopicPartition, OffsetAndMetadata]
_OFFSET_RESETS = ("earliest", "latest")


#: positions of uncommitted deliveries kept for commit(through=...) at most
_POSITIONS_KEPT = 100_000


@dataclass(frozen=True)
class KafkaSpec(TransportSpec):
    """A Kafka topic and the client settings to publish to it and consume from it.

    Picklable, so a role process can open its own clients from it. Build it with
    :meth:`for_lab` in notebooks; the defaults of the timing fields suit an Apache
    Kafka elsewhere, not the embedded Tansu.

    Attributes:
        bootstrap: ``"host:port"`` of a broker.
        topic: the topic (create it first, e.g. ``lab.create_topic(partitions=3)``).
        session_timeout_ms, heartbeat_interval_ms: consumer-group liveness; a member
            silent for ``session_timeout_ms`` is dropped and its partitions move.
        fetch_max_wait_ms: longest a fetch waits at the broker for data.
        auto_offset_reset: where a group without a committed offset starts,
            ``"earliest"`` (whole topic) or ``"latest"`` (only new events).
        enable_auto_commit: let kafka-python commit in the background (every 5 s)
            instead of the explicit commits described in :class:`KafkaSubscriber`.
        commit_each_receive: with auto commit off, each ``receive()`` first commits
            what the previous ``receive()`` returned (at-least-once).
        acks: ``"all"`` (every in-sync replica stored it), ``1`` (the leader stored
            it) or ``0`` (do not wait for the broker at all).
        request_timeout_ms: longest wait for any broker answer.
        max_block_ms: longest ``publish()`` may block (for metadata or buffer space).
        max_poll_records: most events one ``receive()`` returns; the rest of a fetch
            stays buffered in the client (and counts as lag).
        groups_per_topic: Kafka's consumer groups are cluster-wide; with True (the
            default) a subscriber's group ``"billing"`` joins as ``"<topic>.billing"``,
            so runs on fresh topics never share a group's state (on the embedded
            Tansu, a group whose members left during a join can stall; once, seen as
            the next run's join hanging: docs/brokers.md, item 10). False uses the name as given.
    """

    bootstrap: str
    topic: str
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    fetch_max_wait_ms: int = 500
    auto_offset_reset: str = "earliest"
    enable_auto_commit: bool = False
    commit_each_receive: bool = True
    acks: Any = "all"
    request_timeout_ms: int = 15000
    max_block_ms: int = 10000
    max_poll_records: int = 500
    groups_per_topic: bool = True

    kind = "kafka"
    # A partitioned log kept on the broker: groups compete for partitions, readers
    # seek anywhere, and a key always lands in one partition (so keeps its order).
    capabilities = Capabilities(durable=True, groups=True, replay=True, key_ordering=True)

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap, str) or not self.bootstrap.strip():
            raise ConfigError(f"bootstrap must be 'host:port', not {self.bootstrap!r}. "
                              "Use KafkaSpec.for_lab(lab, topic) to take it from a Lab.")
        if not isinstance(self.topic, str) or not self.topic:
            raise ConfigError(f"topic must be a non-empty string, not {self.topic!r}.")
        if isinstance(self.acks, bool) or self.acks not in _ACKS:
            raise ConfigError(f"acks must be 'all', 1 or 0, not {self.acks!r}.")
        if self.auto_offset_reset not in _OFFSET_RESETS:
            raise ConfigError(f"auto_offset_reset must be 'earliest' or 'latest', "
                              f"not {self.auto_offset_reset!r}.")
        for name in ("session_timeout_ms", "heartbeat_interval_ms", "fetch_max_wait_ms",
                     "request_timeout_ms", "max_block_ms", "max_poll_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}.")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms}); a third of it is usual.")
        if self.request_timeout_ms <= max(self.session_timeout_ms, self.fetch_max_wait_ms):
            raise ConfigError(
                f"request_timeout_ms ({self.request_timeout_ms}) must exceed session_timeout_ms "
                f"and fetch_max_wait_ms, or group joins and fetches time out on the client "
                f"first; try {max(15000, self.session_timeout_ms + 5000)}.")

    def group_id(self, group: str) -> str:
        """The Kafka group id a subscriber of consumer group ``group`` joins as."""
        return f"{self.topic}.{group}" if self.groups_per_topic else group

    @classmethod
    def for_lab(cls, lab: "Lab", topic: str, **overrides: Any) -> "KafkaSpec":
        """The spec for ``topic`` on ``lab``'s broker, with timings that suit that broker.

        Keyword arguments override any field, e.g. ``acks=1``.
        """
        d = lab.kafka_defaults
        fields: dict[str, Any] = dict(
            bootstrap=lab.kafka_bootstrap, topic=topic,
            session_timeout_ms=d.session_timeout_ms,
            heartbeat_interval_ms=d.heartbeat_interval_ms,
            fetch_max_wait_ms=d.fetch_max_wait_ms,
            request_timeout_ms=max(15000, d.session_timeout_ms + 5000))
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_lab(cls, lab: "Lab", name: str, *, partitions: int = 1,
                 **overrides: Any) -> "KafkaSpec":
        """Create topic ``name`` with ``partitions`` on ``lab`` (kept if it exists) and
        return its spec; keyword arguments override fields (see :meth:`for_lab`)."""
        return cls.for_lab(lab, lab.create_topic(name, partitions=partitions), **overrides)

    def publisher(self) -> "KafkaPublisher":
        return KafkaPublisher(self)

    def subscriber(self, group: str | None = None) -> "KafkaSubscriber":
        """A member of consumer group ``group``; ``None`` makes a fresh group (fan-out)."""
        return KafkaSubscriber(self, group)

    def replayer(self, start: ReplayStart = "beginning") -> "KafkaSubscriber":
        """A reader outside any group, assigned every partition and seeked to ``start``.

        ``start`` is ``"beginning"`` or an offset applied to *every* partition (on a
        one-partition topic: skip the first *n* events). It joins no group, so it is
        ready at once and :meth:`KafkaSubscriber.commit` does nothing.
        """
        check_replay_start(start)
        subscriber = KafkaSubscriber(self, None)
        try:
            subscriber.assign_and_seek(start)
        except BaseException:
            subscriber.close()
            raise
        return subscriber


def _unavailable(spec: KafkaSpec, exc: BaseException) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"The Kafka broker at {spec.bootstrap} did not answer ({type(exc).__name__}: {exc}). "
        f"Check that it runs (`edalab status`, or lab.describe() in a notebook) and that "
        f"the bootstrap address is right.")


class KafkaPublisher(Publisher):
    """Sends events to ``spec.topic``, keyed by ``event.key``, without waiting.

    ``publish()`` only hands the event to kafka-python's buffer; a background thread
    sends it. :meth:`flush` waits until every event so far is stored (as ``acks``
    defines) and raises if any was refused.

    Attributes:
        sent: events handed to ``publish()``.
        failed: events the broker refused or that timed out (known after ``flush``).
    """

    def __init__(self, spec: KafkaSpec) -> None:
        self.spec = spec
        self.sent = 0
        self.failed = 0
        self._errors: list[BaseException] = []
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=spec.bootstrap, client_id=f"edalab-publisher-{os.getpid()}",
                acks=spec.acks, linger_ms=0, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                request_timeout_ms=spec.request_timeout_ms, max_block_ms=spec.max_block_ms)
        except kafka_errors.KafkaError as exc:
            raise _unavailable(spec, exc) from exc

    def publish(self, event: Event) -> None:
        try:
            future = self._producer.send(self.spec.topic, key=event.key.encode(),
                                         value=event.to_bytes())
        except kafka_errors.KafkaTimeoutError as exc:
            raise KafkaUnavailable(
                f"Could not publish to topic {self.spec.topic!r} within max_block_ms="
                f"{self.spec.max_block_ms} ({exc}). Check that the broker at "
                f"{self.spec.bootstrap} runs and that the topic exists "
                f"(lab.create_topic).") from exc
        future.add_errback(self._errors.append)
        self.sent += 1

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait at most ``timeout_s`` until every published event is stored.

        Raises:
            KafkaUnavailable: events were still unsent at the timeout, or the broker
                refused some (the first error is chained).
        """
        try:
            self._producer.flush(timeout=timeout_s)
        except kafka_errors.KafkaTimeoutError as exc:
            raise KafkaUnavailable(
                f"Events to topic {self.spec.topic!r} were still unsent after {timeout_s} s. "
                f"Check that the broker at {self.spec.bootstrap} runs, or flush with a longer "
                f"timeout_s.") from exc
        errors, self._errors = self._errors, []
        if errors:
            self.failed += len(errors)
            raise KafkaUnavailable(
                f"{len(errors)} event(s) to topic {self.spec.topic!r} were not stored "
                f"(first: {type(errors[0]).__name__}: {errors[0]}). Check that the topic "
                f"exists and the broker runs.") from errors[0]

    def close(self) -> None:
        """Send what is buffered (waiting at most CLOSE_TIMEOUT_S) and disconnect."""
        self._producer.close(timeout=CLOSE_TIMEOUT_S)


class _CumulativeCount(AbstractMeasurableStat):
    """Counts the recordings of a kafka-python sensor over all time.

    kafka-python 3.0.12 keeps only windowed rates (``fetch-rate`` over 2 x 30 s
    samples), not the Java client's ``fetch-total``; this stat supplies it.
    """

    def __init__(self, only_positive: bool = False) -> None:
        self.count = 0
        self._only_positive = only_positive

    def record(self, config, value, now) -> None:  # noqa: ARG002 - kafka-python's signature
        if not self._only_positive or value > 0:
            self.count += 1

    def measure(self, config, now) -> float:  # noqa: ARG002
        return float(self.count)


class _FetchCounter:
    """Fetch responses and fetch responses that carried records, from kafka-python sensors.

    kafka-python records the ``fetch-latency`` sensor once per fetch response, and
    the ``records-fetched`` sensor once per response with its record count, after
    the response's partitions have been handed out by ``poll()``. We add cumulative
    counts to both and publish them as ``fetch-total`` and ``fetch-records-total``
    in ``consumer.metrics()['consumer-fetch-manager-metrics']``.
    """

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.responses = _CumulativeCount()
        self.with_records = _CumulativeCount(only_positive=True)
        metrics = getattr(consumer, "_metrics", None)  # None with metrics_enabled=False
        self.available = False
        if metrics is None:
            return
        try:
            group = f"{consumer.config['metric_group_prefix']}-fetch-manager-metrics"
            metrics.sensor("fetch-latency").add(metrics.metric_name(
                "fetch-total", group, "Fetch responses received (edalab)."), self.responses)
            metrics.sensor("records-fetched").add(metrics.metric_name(
                "fetch-records-total", group,
                "Fetch responses that carried at least one record (edalab)."), self.with_records)
            self.available = True
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("Cannot count Kafka fetch requests from kafka-python's metrics (%s); "
                        "counting polls instead.", exc)


class _CommitBeforeRevoke(AsyncConsumerRebalanceListener):
    """Commit what was handed out before a rebalance moves partitions away.

    Revocation happens inside ``poll()``, i.e. inside the *next* ``receive()``, when
    the caller has finished the previous batch; committing it then means the next
    owner of the partition starts after it instead of repeating it. kafka-python
    runs listeners on its IO thread, where only non-blocking calls are allowed,
    hence the async listener and ``commit_async``.
    """

    def __init__(self, subscriber: "KafkaSubscriber") -> None:
        self._subscriber = subscriber

    async def on_partitions_revoked(self, revoked) -> None:
        sub = self._subscriber
        offsets = {tp: o for tp, o in sub._uncommitted.items() if tp in revoked}
        if (offsets and not sub._closing and sub.spec.commit_each_receive
                and not sub.spec.enable_auto_commit):
            try:
                await sub._consumer.commit_async(offsets)
            except kafka_errors.KafkaError as exc:
                sub.commit_failures += 1
                log.info("Kafka commit before rebalance failed for group %s (%s); those "
                         "events will come again.", sub.group, exc)
        for tp in revoked:
            sub._uncommitted.pop(tp, None)

    async def on_partitions_assigned(self, assigned) -> None:
        pass


class KafkaSubscriber(Subscriber):
    """One consumer-group member reading ``spec.topic`` (see :class:`KafkaSpec`).

    ``receive(timeout_s)`` is one ``KafkaConsumer.poll(timeout_ms=...)``. The first
    ``receive()`` also joins the group, which takes about 1 s on the embedded Tansu
    (:meth:`wait_ready` does that up front). While the group (re)balances,
    ``receive()`` waits for the join to finish (at most ``session_timeout_ms``)
    before polling, even beyond ``timeout_s``: kafka-python 3.0.12 loses a join that
    completes between two polls, so two members polled in turn from one thread
    would otherwise never settle.

    Commits (when ``enable_auto_commit`` is off, the default): the caller asking for
    more is taken as the sign that it finished what it got, so with
    ``commit_each_receive`` each ``receive()`` first commits the offsets after the
    events the previous ``receive()`` returned; :meth:`commit` commits everything
    returned so far. :meth:`close` does **not** commit: a subscriber closed right
    after a ``receive()`` behaves like one that crashed while processing, and the
    group's next member gets those events again (at-least-once).

    Counters (see :class:`~edalab.transports.Counters`):
        requests: Fetch responses received from the broker, read from kafka-python's
            metrics (``fetch-total``, added by edalab). One ``poll()`` may send
            several fetches (each waits up to ``fetch_max_wait_ms``) or none (records
            already buffered); a fetch still in flight is counted when its answer
            arrives. Group heartbeats, joins, commits and metadata requests are not
            counted: they do not carry events.
        empty_responses: fetch responses that carried no record (``fetch-total``
            minus ``fetch-records-total``). A response is counted as carrying records
            once ``poll()`` has handed all of them out, so with more than
            ``max_poll_records`` buffered it counts as empty until then.
        bytes_received: event bytes (record values) returned.

        If kafka-python's metrics are unavailable (``fetch_counting`` is False),
        requests counts ``poll()`` calls and empty_responses polls that returned
        nothing.

    Attributes:
        group: the consumer group id (a fresh ``edalab-fanout-...`` when none given).
        fan_out: True when the group was made for this subscriber alone.
        fetch_counting: True when requests are real fetches (see above).
        commit_failures: automatic commits the group refused (e.g. during a
            rebalance); they are retried, and events whose commit never succeeds
            are delivered again.
        malformed: records skipped because they are not edalab events (logged).
    """

    def __init__(self, spec: KafkaSpec, group: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.fan_out = group is None
        self.group = group if group is not None else f"edalab-fanout-{uuid.uuid4().hex[:12]}"
        self.commit_failures = 0
        #: records skipped because they were not edalab events (MalformedEvent)
        self.malformed = 0
        self._uncommitted: _Offsets = {}
        # where each delivery returned and not yet committed sits: id(delivery) -> (tp, next offset)
        self._positions: dict[int, tuple[Any, Any]] = {}
        # Events polled by wait_ready(), handed out by the next receive().
        self._buffered: list[Delivery] = []
        self._buffered_offsets: _Offsets = {}
        self._manual = False
        self._closing = False
        self._polls = 0
        self._empty_polls = 0
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=spec.bootstrap, group_id=spec.group_id(self.group),
                client_id=f"edalab-subscriber-{os.getpid()}",
                auto_offset_reset=spec.auto_offset_reset,
                enable_auto_commit=spec.enable_auto_commit,
                session_timeout_ms=spec.session_timeout_ms,
                heartbeat_interval_ms=spec.heartbeat_interval_ms,
                fetch_max_wait_ms=spec.fetch_max_wait_ms,
                max_poll_records=spec.max_poll_records,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                request_timeout_ms=spec.request_timeout_ms)
        except kafka_errors.KafkaError as exc:
            raise _unavailable(spec, exc) from exc
        self._fetches = _FetchCounter(self._consumer)
        self.fetch_counting = self._fetches.available
        self._consumer.subscribe([spec.topic], listener=_CommitBeforeRevoke(self))

    # -- receiving ------------------------------------------------------------------
    def receive(self, timeout_s: float) -> list[Delivery]:
        """One poll: wait at most ``timeout_s`` seconds for events; return them in
        partition order (order across partitions is not defined)."""
        if self.spec.commit_each_receive and not self.spec.enable_auto_commit:
            self._commit_quietly(self._uncommitted)
        if self._buffered:
            deliveries, offsets = self._buffered, self._buffered_offsets
            self._buffered, self._buffered_offsets = [], {}
        else:
            deliveries, offsets = self._poll(timeout_s)
        self._uncommitted.update(offsets)
        return deliveries

    def _poll(self, timeout_s: float) -> tuple[list[Delivery], _Offsets]:
        timeout_ms = max(0, int(timeout_s * 1000))
        self._finish_join(timeout_ms)
        records = self._consumer.poll(timeout_ms=timeout_ms)
        received_at_ns = self._now_ns()
        deliveries = []
        offsets = {}
        for tp, batch in records.items():
            for record in batch:
                self.counters.bytes_received += len(record.value or b"")
                try:
                    event = Event.from_bytes(record.value)
                except MalformedEvent as exc:
                    # Skipped, and committed past with the rest of the batch: a poison
                    # record must not stop the group (tests/test_fuzz.py).
                    self.malformed += 1
                    log.warning("Skipped a record that is not an edalab event at %s[%d] offset "
                                "%d: %s", tp.topic, tp.partition, record.offset, exc)
                    continue
                delivery = Delivery(event, received_at_ns)
                deliveries.append(delivery)
                self._positions[id(delivery)] = (tp, OffsetAndMetadata(record.offset + 1, "", -1))
            if batch:
                offsets[tp] = OffsetAndMetadata(batch[-1].offset + 1, "", -1)
        self._polls += 1
        self._empty_polls += not deliveries
        self._update_counters()
        return deliveries, offsets

    def _finish_join(self, timeout_ms: int) -> None:
        """Wait for a pending group join in one call, up to a session timeout.

        kafka-python 3.0.12 throws away a JoinGroup/SyncGroup result that arrives
        while no ``poll()`` is running and starts a new join instead, so a consumer
        that is often outside ``poll()`` (busy processing, or sharing a thread with
        other members, as in a notebook) may never join. Waiting for the join here
        avoids that, at the cost of ``receive()`` blocking while the group
        (re)balances: about 1 s on Tansu, at most ``session_timeout_ms``.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        if self._manual or coordinator is None:
            return
        try:
            if coordinator.need_rejoin():
                join_timeout_ms = max(self.spec.session_timeout_ms, timeout_ms)
                coordinator.ensure_active_group(timeout_ms=join_timeout_ms)
        except AttributeError:  # a kafka-python without these internals: poll() joins
            pass

    def _update_counters(self) -> None:
        if self.fetch_counting:
            self.counters.requests = self._fetches.responses.count
            self.counters.empty_responses = (self._fetches.responses.count
                                             - self._fetches.with_records.count)
        else:
            self.counters.requests = self._polls
            self.counters.empty_responses = self._empty_polls

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Join the group now: return once this member owns partitions.

        Events that arrive meanwhile are kept for the next ``receive()``. Use it
        before a timing measurement, so the ~1 s join is not counted as delay. A
        replayer (:meth:`KafkaSpec.replayer`) owns its partitions already.

        Raises:
            KafkaUnavailable: no partition was assigned within ``timeout_s`` (the
                topic is missing, or the group has more members than partitions).
        """
        deadline_ns = self._now_ns() + int(timeout_s * 1e9)
        while not self._consumer.assignment():
            remaining_s = (deadline_ns - self._now_ns()) / 1e9
            if remaining_s <= 0:
                raise KafkaUnavailable(
                    f"No partition of topic {self.spec.topic!r} was assigned to this member of "
                    f"group {self.group!r} within {timeout_s} s. Check that the topic exists "
                    f"(lab.create_topic) and that the group has no more members than the "
                    f"topic has partitions.")
            deliveries, offsets = self._poll(min(remaining_s, 0.1))
            self._buffered += deliveries
            self._buffered_offsets.update(offsets)

    def assignment(self) -> set[int]:
        """The partition numbers this member reads now."""
        return {tp.partition for tp in self._consumer.assignment()}

    # -- offsets --------------------------------------------------------------------
    def commit(self, through: Delivery | None = None) -> None:
        """Commit the offsets after every event returned so far (a synchronous request);
        with ``through``, only its partition's offset just after that event.

        Does nothing on a replayer (:meth:`KafkaSpec.replayer`): it has no group
        position to keep. A commit the group refuses because this member was dropped
        (paused past its session) is counted in ``commit_failures``, not raised: the
        events go to the partitions' new owner. Raises KafkaUnavailable if the broker
        does not answer. :meth:`take_over_pending` is not needed on Kafka: a group
        member starts from the group's committed offset by itself.
        """
        if self._manual or not self._uncommitted:
            return
        if through is not None:
            position = self._positions.get(id(through))
            if position is None:
                raise ExperimentError("commit(through=...) needs a delivery this subscriber's receive() "
                                      "returned and that is not committed yet.")
            tp, offset = position
            offsets = {tp: offset}
        else:
            offsets = dict(self._uncommitted)
        try:
            self._consumer.commit(offsets, timeout_ms=self.spec.request_timeout_ms)
        except kafka_errors.CommitFailedError as exc:
            # The group moved on without this member (it was paused or slow past its
            # session): its partitions went to others, who get these events again
            # (at-least-once). Not an error of the caller's; it rejoins on receive().
            self.commit_failures += 1
            log.info("Kafka commit for group %s refused (%s): this member was dropped from "
                     "the group; its events go to the new owner.", self.group, exc)
            return
        except kafka_errors.KafkaError as exc:
            raise KafkaUnavailable(
                f"Could not commit group {self.group!r}'s offsets at {self.spec.bootstrap} "
                f"({type(exc).__name__}: {exc}). The events will be delivered again; check "
                f"that the broker runs.") from exc
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]
        self._forget_positions(offsets)

    def _forget_positions(self, committed: _Offsets) -> None:
        """Drop the positions of deliveries that ``committed`` covers (and the oldest, past a
        bound, for a consumer that never commits: a fan-out reader, a replayer)."""
        stale = [key for key, (tp, o) in self._positions.items()
                 if tp in committed and o.offset <= committed[tp].offset]
        for key in stale:
            del self._positions[key]
        while len(self._positions) > _POSITIONS_KEPT:
            del self._positions[next(iter(self._positions))]

    def _commit_quietly(self, offsets: _Offsets) -> None:
        if self._manual or not offsets:
            return
        offsets = dict(offsets)
        try:
            self._consumer.commit(offsets, timeout_ms=self.spec.request_timeout_ms)
        except kafka_errors.KafkaError as exc:
            # Typically a rebalance in progress. The offsets stay uncommitted: the
            # revoke listener or the next receive() tries again, and if both fail the
            # events are delivered again (at-least-once), never lost.
            self.commit_failures += 1
            log.info("Kafka commit for group %s failed (%s); will retry.", self.group, exc)
            return
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]
        self._forget_positions(offsets)

    def lag(self) -> dict[int, int]:
        """Events not yet returned, per assigned partition: ``highwater - position``.

        The high watermark is the one the last fetch response reported (Tansu's
        ``end_offsets()`` is unreliable), so it is known only after a first
        ``receive()`` and is as fresh as the last fetch. Partitions without a
        fetch response yet are left out.
        """
        lags = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            position = self._consumer.position(tp, timeout_ms=self.spec.request_timeout_ms)
            if position is not None:
                lags[tp.partition] = highwater - position
        return lags

    def assign_and_seek(self, offset: ReplayStart = "beginning") -> set[int]:
        """Stop being a group member; read every partition from ``offset`` (replay).

        ``offset`` is ``"beginning"`` or an offset applied to every partition. Meant
        for fan-out subscribers; :meth:`KafkaSpec.replayer` is the usual way in.
        Afterwards :meth:`commit` does nothing. Returns the partitions now read.
        """
        check_replay_start(offset)
        partitions = self._consumer.partitions_for_topic(self.spec.topic)
        if not partitions:
            raise KafkaUnavailable(f"Topic {self.spec.topic!r} has no partitions at "
                                   f"{self.spec.bootstrap}. Create it first (lab.create_topic).")
        tps = [TopicPartition(self.spec.topic, p) for p in sorted(partitions)]
        self._consumer.unsubscribe()
        self._uncommitted.clear()
        self._positions.clear()
        self._buffered.clear()
        self._buffered_offsets.clear()
        self._manual = True
        self._consumer.assign(tps)
        if offset == "beginning":
            self._consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                self._consumer.seek(tp, offset)
        return set(partitions)

    def metrics(self) -> dict[str, dict[str, float]]:
        """kafka-python's consumer metrics (with edalab's ``fetch-total``), by group."""
        return self._consumer.metrics() or {}

    def close(self) -> None:
        """Leave the group and disconnect; uncommitted events go to the next member."""
        self._closing = True
        self._consumer.close(autocommit=self.spec.enable_auto_commit,
                             timeout_ms=self.spec.request_timeout_ms)
