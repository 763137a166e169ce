"""The Kafka and Redis transports against the embedded servers (no mocks).

Every test uses its own topic, channel or stream, so tests do not see each other's
events. Kafka group joins take about 1 s on the embedded Tansu; tests that need a
settled group wait for the assignment before publishing.
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections import defaultdict

import pytest

from edalab import ConfigError, EdalabError, ExperimentError
from edalab._events import new_event
from edalab.transports import TRANSPORTS, Capabilities, describe_transports
from edalab.transports.kafka import KafkaSpec
from edalab.transports.redis import RedisPubSubSpec, RedisStreamSpec

N_EVENTS = 200
N_KEYS = 7
COLLECT_TIMEOUT_S = 10.0


def _name(prefix: str) -> str:
    return f"test-{prefix}-{uuid.uuid4().hex[:8]}"


def _events(n: int = N_EVENTS, producer: str = "test") -> list:
    return [new_event("order.placed", f"order-{i % N_KEYS}", {"i": i}, producer=producer, seq=i)
            for i in range(n)]


def _publish(spec, events) -> None:
    with spec.publisher() as publisher:
        for event in events:
            publisher.publish(event)
        publisher.flush(10.0)


def _collect(subscribers, n: int, timeout_s: float = COLLECT_TIMEOUT_S, step_s: float = 0.2):
    """Receive from the subscribers in turn until they hold ``n`` deliveries in total."""
    got = [[] for _ in subscribers]
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got)) < n and time.monotonic() < deadline:
        for i, subscriber in enumerate(subscribers):
            got[i] += subscriber.receive(step_s)
    return got


def _assert_all_once_in_key_order(deliveries, events) -> None:
    ids = [d.event.id for d in deliveries]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == {e.id for e in events}, "an event was lost"
    seqs_by_key = defaultdict(list)
    for d in deliveries:
        seqs_by_key[d.event.key].append(d.event.seq)
    for key, seqs in seqs_by_key.items():
        assert seqs == sorted(seqs), f"events of {key} arrived out of order"
    assert all(d.received_at_ns >= d.event.produced_at_ns for d in deliveries)


# -- configuration -------------------------------------------------------------------


def test_specs_are_picklable_and_validated(lab):
    kafka = KafkaSpec.for_lab(lab, "t", acks=1)
    assert kafka.kind == "kafka"
    assert kafka.session_timeout_ms == lab.kafka_defaults.session_timeout_ms
    assert kafka.fetch_max_wait_ms == lab.kafka_defaults.fetch_max_wait_ms
    for spec in (kafka, RedisPubSubSpec.for_lab(lab, "c"), RedisStreamSpec.for_lab(lab, "s")):
        assert pickle.loads(pickle.dumps(spec)) == spec
    assert KafkaSpec.for_lab(lab, "t", acks=0).acks == 0
    for bad in ("1", -1, 2, True, None):
        with pytest.raises(ConfigError):
            KafkaSpec.for_lab(lab, "t", acks=bad)
    with pytest.raises(ConfigError):
        KafkaSpec.for_lab(lab, "t", heartbeat_interval_ms=5000)
    with pytest.raises(ConfigError):
        RedisPubSubSpec(url="localhost:6379", channel="c")
    with pytest.raises(ConfigError):
        RedisStreamSpec.for_lab(lab, "s", maxlen=0)


# -- every transport delivers everything, in per-key order ----------------------------


def test_kafka_delivers_all_in_key_order(lab):
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=3))
    events = _events()
    _publish(spec, events)
    with spec.subscriber() as subscriber:
        [got] = _collect([subscriber], N_EVENTS)
        _assert_all_once_in_key_order(got, events)
        assert subscriber.counters.bytes_received == sum(len(e.to_bytes()) for e in events)
        assert subscriber.fetch_counting
        requests = subscriber.counters.requests
        assert requests == subscriber.metrics()["consumer-fetch-manager-metrics"]["fetch-total"]
        # Idle polling: each fetch waits fetch_max_wait_ms (100 ms) and comes back empty.
        empty_before = subscriber.counters.empty_responses
        assert subscriber.receive(0.5) == []
        assert subscriber.counters.requests - requests >= 2
        assert (subscriber.counters.empty_responses - empty_before
                == subscriber.counters.requests - requests)


def test_redis_stream_delivers_all_in_key_order(lab):
    spec = RedisStreamSpec.for_lab(lab, _name("stream"))
    events = _events()
    _publish(spec, events)
    with spec.subscriber() as subscriber:
        [got] = _collect([subscriber], N_EVENTS)
        _assert_all_once_in_key_order(got, events)
        receives = subscriber.counters.requests
        assert subscriber.receive(0.05) == []
        assert subscriber.counters.requests == receives + 1
        assert subscriber.counters.empty_responses >= 1
        assert subscriber.pending() == 0  # the last receive() acknowledged the batch before


def test_redis_pubsub_delivers_all_in_key_order(lab):
    spec = RedisPubSubSpec.for_lab(lab, _name("channel"))
    events = _events()
    with spec.subscriber() as subscriber:
        with spec.publisher() as publisher:
            for event in events:
                publisher.publish(event)
            assert publisher.last_receivers == 1
            assert publisher.published_to_nobody == 0
        [got] = _collect([subscriber], N_EVENTS)
        _assert_all_once_in_key_order(got, events)
        assert subscriber.counters.requests == 1  # the SUBSCRIBE; events are pushed
        assert subscriber.counters.empty_responses == 0


def test_redis_pubsub_receive_respects_timeout(lab):
    with RedisPubSubSpec.for_lab(lab, _name("channel")).subscriber() as subscriber:
        started = time.monotonic()
        assert subscriber.receive(0.2) == []
        assert 0.15 <= time.monotonic() - started < 1.0
        started = time.monotonic()
        assert subscriber.receive(0.0) == []
        assert time.monotonic() - started < 0.1


# -- groups: fan-out and competing consumers -------------------------------------------


def test_kafka_fan_out_each_group_gets_everything(lab):
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=3))
    events = _events(50)
    with spec.subscriber() as first, spec.subscriber() as second:
        assert first.group != second.group
        _publish(spec, events)
        got_first, got_second = _collect([first, second], 2 * len(events))
    _assert_all_once_in_key_order(got_first, events)
    _assert_all_once_in_key_order(got_second, events)


def test_kafka_competing_consumers_split_the_events(lab):
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=2))
    group = _name("group")
    with spec.subscriber(group) as first, spec.subscriber(group) as second:
        # Let the group settle (one partition each) before events exist, so no
        # rebalance can hand an already-delivered event to the other member.
        deadline = time.monotonic() + 15.0
        while not (len(first.assignment()) == len(second.assignment()) == 1):
            assert time.monotonic() < deadline, "the group did not settle"
            first.receive(0.1)
            second.receive(0.1)
        assert first.assignment() | second.assignment() == {0, 1}
        events = _events(100)
        _publish(spec, events)
        got_first, got_second = _collect([first, second], len(events))
    assert got_first and got_second, "both members should get a share"
    assert not {d.event.id for d in got_first} & {d.event.id for d in got_second}
    _assert_all_once_in_key_order(got_first + got_second, events)
    keys_first = {d.event.key for d in got_first}
    assert not keys_first & {d.event.key for d in got_second}, "a key belongs to one partition"


def test_redis_stream_competing_consumers_split_the_events(lab):
    spec = RedisStreamSpec.for_lab(lab, _name("stream"))
    group = _name("group")
    with spec.subscriber(group) as first, spec.subscriber(group) as second:
        events = _events(300)
        _publish(spec, events)
        # COUNT 100 per read: taking turns splits 300 entries between both.
        got_first, got_second = _collect([first, second], len(events), step_s=0.05)
    ids_first = {d.event.id for d in got_first}
    ids_second = {d.event.id for d in got_second}
    assert ids_first and ids_second and not ids_first & ids_second
    assert ids_first | ids_second == {e.id for e in events}


# -- retention: pub/sub forgets, a stream keeps -------------------------------------------


def test_pubsub_loses_events_nobody_listens_to_but_a_stream_keeps_them(lab):
    events = _events(10)
    pubsub = RedisPubSubSpec.for_lab(lab, _name("channel"))
    with pubsub.publisher() as publisher:
        for event in events:
            publisher.publish(event)
        assert publisher.last_receivers == 0
        assert publisher.published_to_nobody == len(events)
    with pubsub.subscriber() as late:
        assert late.receive(0.3) == []

    stream = RedisStreamSpec.for_lab(lab, _name("stream"))
    _publish(stream, events)
    with stream.subscriber("created-later") as late:
        [got] = _collect([late], len(events))
    _assert_all_once_in_key_order(got, events)


def test_redis_stream_maxlen_trims(lab):
    spec = RedisStreamSpec.for_lab(lab, _name("stream"), maxlen=5)
    events = _events(20)
    _publish(spec, events)
    with spec.subscriber() as subscriber:
        [got] = _collect([subscriber], 5, timeout_s=2.0)
    assert [d.event.seq for d in got] == [15, 16, 17, 18, 19]


# -- acknowledgement and redelivery -----------------------------------------------------------


def test_redis_stream_pending_entries_can_be_claimed_by_another_member(lab):
    spec = RedisStreamSpec.for_lab(lab, _name("stream"), ack=False)
    group = _name("group")
    events = _events(10)
    _publish(spec, events)
    crashed = spec.subscriber(group)
    [got] = _collect([crashed], len(events))
    assert len(got) == len(events)
    crashed.close()  # no ack: as if it died while processing

    with spec.subscriber(group) as survivor:
        assert survivor.pending() == len(events)
        assert survivor.receive(0.05) == []  # '>' only reads entries never delivered
        assert survivor.claim_stale(min_idle_ms=60_000) == []  # not idle long enough
        claimed = survivor.take_over_pending()
        _assert_all_once_in_key_order(claimed, events)
        assert survivor.pending() == len(events)  # now pending at the survivor
        survivor.commit()
        assert survivor.pending() == 0
        assert survivor.take_over_pending() == []


def test_kafka_uncommitted_events_are_delivered_again(lab):
    topic = lab.create_topic(partitions=1)
    group = _name("group")
    events = _events(20)
    _publish(KafkaSpec.for_lab(lab, topic), events)

    manual = KafkaSpec.for_lab(lab, topic, commit_each_receive=False)
    crashed = manual.subscriber(group)
    [got] = _collect([crashed], len(events))
    _assert_all_once_in_key_order(got, events)
    crashed.close()  # without commit: at-least-once means the next member repeats them

    with manual.subscriber(group) as again:
        [got] = _collect([again], len(events))
        _assert_all_once_in_key_order(got, events)
        again.commit()

    with KafkaSpec.for_lab(lab, topic).subscriber(group) as after_commit:
        after_commit.wait_ready(10.0)
        assert after_commit.receive(0.5) == []


def test_kafka_commit_each_receive_commits_the_previous_batch(lab):
    topic = lab.create_topic(partitions=1)
    group = _name("group")
    spec = KafkaSpec.for_lab(lab, topic)  # commit_each_receive=True
    events = _events(20)
    _publish(spec, events)
    with spec.subscriber(group) as first:
        [got] = _collect([first], len(events))
        assert len(got) == len(events)
        first.receive(0.0)  # asking for more commits what came before
    with spec.subscriber(group) as second:
        second.wait_ready(10.0)
        assert second.receive(0.5) == []


def test_kafka_rebalance_commits_what_the_leaving_partition_delivered(lab):
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=2))
    group = _name("group")
    events = _events(40)
    _publish(spec, events)
    with spec.subscriber(group) as first:
        [got] = _collect([first], len(events))
        assert len(got) == len(events) and first.assignment() == {0, 1}
        with spec.subscriber(group) as second:
            # The second member's join makes the first give up a partition; the first
            # commits what it delivered from it, so the second starts after it.
            got_first, got_second = [], []
            deadline = time.monotonic() + 15.0
            while not (len(first.assignment()) == len(second.assignment()) == 1):
                assert time.monotonic() < deadline, "the group did not settle"
                got_first += first.receive(0.1)
                got_second += second.receive(0.1)
            got_first += first.receive(0.3)
            got_second += second.receive(0.3)
    assert got_first == [] and got_second == [], "an event was delivered twice"
    assert first.commit_failures == 0


def test_kafka_acks_0_and_1_deliver(lab):
    topic = lab.create_topic(partitions=1)
    events = _events(10)
    _publish(KafkaSpec.for_lab(lab, topic, acks=0), events[:5])
    _publish(KafkaSpec.for_lab(lab, topic, acks=1), events[5:])
    with KafkaSpec.for_lab(lab, topic).replayer("beginning") as reader:  # no group join
        [got] = _collect([reader], len(events))
    _assert_all_once_in_key_order(got, events)


# -- lag and replay --------------------------------------------------------------------------------


def test_kafka_lag_from_highwater(lab):
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=1), max_poll_records=4)
    events = _events(10)
    _publish(spec, events)
    with spec.subscriber() as subscriber:
        assert subscriber.lag() == {}  # no fetch answered yet, so no high watermark
        subscriber.wait_ready(10.0)
        received = []
        deadline = time.monotonic() + COLLECT_TIMEOUT_S
        while not received and time.monotonic() < deadline:
            received += subscriber.receive(0.2)
        assert len(received) == 4  # max_poll_records
        assert subscriber.lag() == {0: len(events) - 4}
        while len(received) < len(events) and time.monotonic() < deadline:
            received += subscriber.receive(0.2)
            assert subscriber.lag() == {0: len(events) - len(received)}
        assert subscriber.lag() == {0: 0}


@pytest.mark.parametrize("name", ["kafka", "redis-stream"])
def test_replayer_from_beginning_and_from_position(lab, name):
    spec = lab.transport(name)
    events = _events(10)
    _publish(spec, events)
    with spec.subscriber() as live:  # a group reads them and hands them back
        [first] = _collect([live], len(events))
        live.commit()
    _assert_all_once_in_key_order(first, events)
    with spec.replayer("beginning") as reader:
        reader.wait_ready(10.0)
        [replayed] = _collect([reader], len(events))
        assert reader.receive(0.3) == []
    assert [d.event.seq for d in replayed] == list(range(10))
    with spec.replayer(6) as reader:
        [tail] = _collect([reader], 4)
        assert reader.receive(0.3) == []
    assert [d.event.seq for d in tail] == [6, 7, 8, 9]
    with spec.replayer(10) as reader:  # at the end: only what comes next
        assert reader.receive(0.3) == []
        more = _events(2, producer="later")
        _publish(spec, more)
        [new] = _collect([reader], 2)
    assert [d.event.id for d in new] == [e.id for e in more]
    for bad in (-1, "end", True, 1.5):
        with pytest.raises(ConfigError):
            spec.replayer(bad)


def test_redis_stream_replayer_removes_its_group_on_close(lab):
    spec = lab.transport("redis-stream")
    _publish(spec, _events(3))
    client = lab.redis()
    with spec.replayer(1) as reader:
        assert [g["name"].decode() for g in client.xinfo_groups(spec.stream)] == [reader.group]
        [got] = _collect([reader], 2)
    assert [d.event.seq for d in got] == [1, 2]
    assert client.xinfo_groups(spec.stream) == []


def test_kafka_assign_and_seek_replays_on_a_subscriber(lab):
    """The mechanism under KafkaSpec.replayer, on a subscriber made without a group."""
    spec = KafkaSpec.for_lab(lab, lab.create_topic(partitions=1))
    events = _events(10)
    _publish(spec, events)
    with spec.subscriber() as reader:
        assert reader.assign_and_seek(6) == {0}
        [tail] = _collect([reader], 4)
        assert [d.event.seq for d in tail] == [6, 7, 8, 9]
        with pytest.raises(ConfigError):
            reader.assign_and_seek(-1)


# -- capabilities are what the transports do ----------------------------------------------


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_capabilities_match_behaviour(lab, name):
    spec = lab.transport(name)
    caps = spec.capabilities
    assert isinstance(caps, Capabilities) and spec.kind == name
    events = _events(20)
    _publish(spec, events)  # nobody is subscribed yet

    # durable: a consumer that was away (here: not there yet) still gets them.
    with spec.subscriber(_name("late-group")) as late:
        late.wait_ready(30.0)
        [got] = _collect([late], len(events), timeout_s=3.0 if not caps.durable else COLLECT_TIMEOUT_S)
    if caps.durable:
        _assert_all_once_in_key_order(got, events)
    else:
        assert got == [], f"{name} says it is not durable but kept events"

    # replay: a reader can start from the beginning; otherwise it says why not.
    if caps.replay:
        with spec.replayer("beginning") as reader:
            [replayed] = _collect([reader], len(events))
        _assert_all_once_in_key_order(replayed, events)
    else:
        with pytest.raises(ExperimentError, match=name):
            spec.replayer("beginning")

    # groups: two members of one group split the events; without groups both get all.
    # A fresh topic (Kafka: one partition per member, so both get a share).
    spec = lab.transport(name, partitions=2) if name == "kafka" else lab.transport(name)
    group = _name("group")
    with spec.subscriber(group) as first, spec.subscriber(group) as second:
        if name == "kafka":
            deadline = time.monotonic() + 20.0
            while not (len(first.assignment()) == len(second.assignment()) == 1):
                assert time.monotonic() < deadline, "the group did not settle"
                first.receive(0.1)
                second.receive(0.1)
        more = _events(300, producer="groups")
        _publish(spec, more)
        expected = len(more) if caps.groups else 2 * len(more)
        got_first, got_second = _collect([first, second], expected, step_s=0.05)
    ids_first = {d.event.id for d in got_first}
    ids_second = {d.event.id for d in got_second}
    if caps.groups:
        assert ids_first and ids_second and not ids_first & ids_second
        assert ids_first | ids_second == {e.id for e in more}
    else:
        assert ids_first == ids_second == {e.id for e in more}
    # key_ordering: each member saw every key's events in the order sent.
    if caps.key_ordering:
        for got in (got_first, got_second):
            for key in {d.event.key for d in got}:
                seqs = [d.event.seq for d in got if d.event.key == key]
                assert seqs == sorted(seqs)


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_commit_wait_ready_and_take_over_exist_everywhere(lab, name):
    spec = lab.transport(name, commit_each_receive=False) if name == "kafka" else \
        lab.transport(name, ack=False) if name == "redis-stream" else lab.transport(name)
    group = _name("group")
    events = _events(10)
    with spec.subscriber(group) as subscriber:
        subscriber.wait_ready(30.0)
        assert subscriber.take_over_pending() == []  # no predecessor
        _publish(spec, events)
        [got] = _collect([subscriber], len(events))
        _assert_all_once_in_key_order(got, events)
        subscriber.commit()
        subscriber.commit()  # nothing new: still fine
    # What was committed is not handed to the group's next member.
    with spec.subscriber(group) as successor:
        successor.wait_ready(30.0)
        assert successor.take_over_pending() == []
        assert successor.receive(0.5) == []


def test_kafka_take_over_pending_is_empty_the_group_restarts_from_the_commit(lab):
    spec = lab.transport("kafka", commit_each_receive=False)
    group = _name("group")
    events = _events(10)
    _publish(spec, events)
    crashed = spec.subscriber(group)
    [got] = _collect([crashed], len(events))
    crashed.close()  # no commit
    with spec.subscriber(group) as successor:
        successor.wait_ready(30.0)
        assert successor.take_over_pending() == []
        [again] = _collect([successor], len(events))
    _assert_all_once_in_key_order(again, events)


def test_kafka_wait_ready_times_out_with_a_clear_error(lab):
    spec = lab.transport("kafka")  # one partition
    group = _name("group")
    with spec.subscriber(group) as owner:
        owner.wait_ready(30.0)
        with spec.subscriber(group) as extra:  # more members than partitions
            started = time.monotonic()
            with pytest.raises(EdalabError, match="partitions"):
                extra.wait_ready(3.0)
            assert time.monotonic() - started < 3.0 + 15.0


def test_pubsub_replayer_says_why_not(lab):
    spec = lab.transport("redis-pubsub")
    assert not spec.capabilities.replay
    with pytest.raises(ExperimentError, match="redis-pubsub.*keeps no events"):
        spec.replayer("beginning")


# -- opening transports by name ------------------------------------------------------------


def test_lab_transport_opens_every_name_with_options(lab):
    assert set(TRANSPORTS) == {"kafka", "redis-stream", "redis-pubsub", "nats-queue"}
    kafka = lab.transport("kafka", partitions=3, max_poll_records=50, commit_each_receive=False)
    assert isinstance(kafka, KafkaSpec) and kafka.max_poll_records == 50
    assert not kafka.commit_each_receive
    assert kafka.session_timeout_ms == lab.kafka_defaults.session_timeout_ms
    with kafka.publisher() as publisher:  # the topic exists, with 3 partitions
        publisher.publish(_events(1)[0])
        publisher.flush(10.0)
    with kafka.replayer("beginning") as reader:
        assert reader.assignment() == {0, 1, 2}
    stream = lab.transport("redis-stream", topic="my-stream", ack=False)
    assert isinstance(stream, RedisStreamSpec) and stream.stream == "my-stream" and not stream.ack
    pubsub = lab.transport("redis-pubsub")
    assert isinstance(pubsub, RedisPubSubSpec)
    assert pubsub.channel != lab.transport("redis-pubsub").channel  # fresh names
    with pytest.raises(ConfigError, match="'kafka'.*'redis-stream'.*'redis-pubsub'"):
        lab.transport("rabbitmq")
    with pytest.raises(ConfigError, match="no_such_field"):
        lab.transport("redis-stream", no_such_field=1)


def test_describe_transports_is_the_declared_capabilities():
    table = describe_transports()
    for name, spec_class in TRANSPORTS.items():
        assert table.loc[name, ["durable", "groups", "replay", "key_ordering"]].to_dict() \
            == spec_class.capabilities.to_dict()
    assert not table.loc["http webhook", "replay"] and table.loc["http sse", "replay"]


@pytest.mark.parametrize("method", ["kafka", "redis-stream", "nats-queue"])
def test_commit_through_a_delivery_hands_back_only_up_to_it(lab, method):
    """A consumer that commits after each event must not hand back the rest of its batch
    (notebook 04's "commit after every order"): the next member gets exactly the rest."""
    options = {"kafka": {"partitions": 1, "commit_each_receive": False}, "redis-stream": {"ack": False},
               "nats-queue": {"ack_wait_s": 1.0}}[method]
    spec = lab.transport(method, **options)
    group = _name("group")
    events = _events(6)
    first = spec.subscriber(group)
    first.wait_ready(10.0)
    _publish(spec, events)
    [got] = _collect([first], len(events))
    assert len(got) == len(events)
    by_seq = sorted(got, key=lambda d: d.event.seq)
    first.commit(through=by_seq[1])           # two handled; a crash now
    with pytest.raises(ExperimentError):
        first.commit(through=by_seq[0])       # already handed back: one verdict per delivery
    first.close()                             # no further commit: as if it died
    with spec.subscriber(group) as second:
        second.wait_ready(10.0)
        again = second.take_over_pending()    # Streams: the dead member's pending entries
        deadline = time.monotonic() + 15
        while len({d.event.id for d in again}) < len(events) - 2 and time.monotonic() < deadline:
            again += second.receive(0.5)
        assert sorted({d.event.seq for d in again}) == [e.seq for e in events[2:]], again
        second.commit()
