"""Sending and receiving events over Kafka, Redis and HTTP behind one interface.

Every transport has a :class:`Publisher` and a :class:`Subscriber`. A subscriber
counts its own network requests, empty responses and bytes, because "how many
calls does it take to learn about one event?" is half of the polling-vs-push
question (notebook 02).
"""

from edalab.transports._base import Counters, Delivery, Publisher, Subscriber, TransportSpec
from edalab.transports.http import EventServiceSpec
from edalab.transports.kafka import KafkaSpec
from edalab.transports.redis import RedisPubSubSpec, RedisStreamSpec

__all__ = ["Counters", "Delivery", "Publisher", "Subscriber", "TransportSpec", "KafkaSpec",
           "RedisPubSubSpec", "RedisStreamSpec", "EventServiceSpec"]
