"""Sending and receiving events over Kafka, Redis, NATS JetStream and HTTP behind one interface.

Every transport has a :class:`Publisher` and a :class:`Subscriber`, opened from a
:class:`TransportSpec`; ``spec.capabilities`` (:class:`Capabilities`) says what it
promises (durable, groups, replay, key ordering), so experiments ask the spec
instead of checking its kind. A subscriber counts its own network requests, empty
responses and bytes, because "how many calls does it take to learn about one
event?" is half of the polling-vs-push question (notebook 02).

Open a broker transport by name with ``lab.transport("kafka")`` (names in
:data:`TRANSPORTS`, a table in :func:`describe_transports`). The HTTP transport
needs a running event service, so it is opened with ``EventServiceSpec(url, mode=...)``.
"""

from importlib import import_module

from edalab.transports._base import Capabilities, Counters, Delivery, Publisher, Subscriber, TransportSpec

__all__ = ["Capabilities", "Counters", "Delivery", "Publisher", "Subscriber", "TransportSpec",
           "KafkaSpec", "RedisPubSubSpec", "RedisStreamSpec", "NatsQueueSpec", "EventServiceSpec", "TRANSPORTS",
           "describe_transports"]

# The specs load on first use: every role process imports this package (through the
# recorder), and a Redis consumer should not pay for importing kafka-python and uvicorn.
_LAZY = {"KafkaSpec": "edalab.transports.kafka", "RedisStreamSpec": "edalab.transports.redis",
         "RedisPubSubSpec": "edalab.transports.redis", "NatsQueueSpec": "edalab.transports.nats",
         "EventServiceSpec": "edalab.transports.http"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name == "TRANSPORTS":
        #: The transports ``Lab.transport(name)`` opens, by name (= the spec's ``kind``).
        specs = [__getattr__(n) for n in ("KafkaSpec", "RedisStreamSpec", "RedisPubSubSpec", "NatsQueueSpec")]
        return {spec.kind: spec for spec in specs}
    raise AttributeError(f"module 'edalab.transports' has no attribute {name!r}")


def describe_transports():
    """A pandas table: one row per transport, its capabilities and how to open it.

    For notebooks ("which transport keeps events for a consumer that is away?").
    The HTTP rows are the event service's modes, opened with ``EventServiceSpec``.
    """
    import pandas as pd

    EventServiceSpec = __getattr__("EventServiceSpec")
    rows = [{"transport": name, **spec.capabilities.to_dict(),
             "open with": f'lab.transport("{name}")'} for name, spec in __getattr__("TRANSPORTS").items()]
    for mode in ("poll", "long-poll", "sse", "webhook"):
        spec = EventServiceSpec("http://127.0.0.1:0", mode=mode)
        rows.append({"transport": f"http {spec.kind}", **spec.capabilities.to_dict(),
                     "open with": f'EventServiceSpec(url, mode="{mode}")'})
    return pd.DataFrame(rows).set_index("transport")
