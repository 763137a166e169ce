"""The one exception hierarchy of edalab.

Every message says what went wrong *and what to do next*::

    EdalabError
     +-- ConfigError            bad argument or environment variable (also a ValueError)
     +-- ServerError            an embedded server could not be started
     |    +-- BinaryNotFound       no server program installed
     |    +-- PortInUse            the requested port is taken by another program
     |    +-- ServerExited         the server stopped during start-up (log tail attached)
     |    +-- ServerStartTimeout   it did not answer in time (log tail attached)
     +-- ServiceUnavailable     a server elsewhere (or edalab up's) does not answer
     |    +-- KafkaUnavailable
     |    +-- RedisUnavailable
     |    +-- NatsUnavailable
     +-- RoleError              a role process failed (see edalab.roles)
     |    +-- UnsendableRole       its body or arguments cannot travel to its process
     +-- ExperimentError        an experiment could not run as asked
"""

from __future__ import annotations

__all__ = [
    "EdalabError",
    "ConfigError",
    "ServerError",
    "BinaryNotFound",
    "PortInUse",
    "ServerExited",
    "ServerStartTimeout",
    "ServiceUnavailable",
    "KafkaUnavailable",
    "RedisUnavailable",
    "NatsUnavailable",
    "RoleError",
    "UnsendableRole",
    "ExperimentError",
]


class EdalabError(Exception):
    """Base class of every error edalab raises on purpose."""


class ConfigError(EdalabError, ValueError):
    """An argument or an ``EDALAB_*`` environment variable has an invalid value."""


class ServerError(EdalabError):
    """An embedded server could not be started."""


class BinaryNotFound(ServerError):
    """The server program (Valkey/Redis or Tansu) is not installed."""


class PortInUse(ServerError):
    """The port asked for is already taken by another program."""


class ServerExited(ServerError):
    """The server process exited while starting; the message carries its log tail."""


class ServerStartTimeout(ServerError):
    """The server did not answer a real request within the start timeout."""


class ServiceUnavailable(EdalabError):
    """A server that edalab did not start (or ``edalab up`` started) does not answer."""


class KafkaUnavailable(ServiceUnavailable):
    """The Kafka bootstrap address does not answer like a Kafka broker."""


class RedisUnavailable(ServiceUnavailable):
    """The Redis URL does not answer like a Redis server."""


class NatsUnavailable(ServiceUnavailable):
    """The NATS URL does not answer like a NATS server with JetStream."""


class RoleError(EdalabError):
    """A role process (producer, consumer, service) failed or could not start."""


class UnsendableRole(RoleError, TypeError):
    """A role's body or one of its arguments cannot be sent to the role's own process
    (it holds a socket, a lock, a lab...); the message names the object."""


class ExperimentError(EdalabError):
    """An experiment was asked for something it cannot do."""
