"""edalab: experiments that test the claims made for event-driven architecture.

The public surface notebooks use (everything else is private):

* servers and clients: :func:`start`, :class:`Lab`, :class:`KafkaServer`, :class:`RedisServer`
* notebook setup: :func:`check_environment`
* events: :class:`Event`, :func:`new_event`
* errors: :class:`EdalabError` and its subclasses (tree in ``edalab._errors``)
"""

from edalab._errors import (
    BinaryNotFound,
    ConfigError,
    EdalabError,
    ExperimentError,
    KafkaUnavailable,
    PortInUse,
    RedisUnavailable,
    RoleError,
    ServerError,
    ServerExited,
    ServerStartTimeout,
    ServiceUnavailable,
)
from edalab._events import Event, new_event
from edalab._lab import Lab, start
from edalab._notebook import check_environment
from edalab._servers import KafkaServer, RedisServer

__version__ = "0.1.0"

__all__ = [
    "start", "Lab", "check_environment", "KafkaServer", "RedisServer", "Event", "new_event",
    "EdalabError", "ConfigError", "ServerError", "BinaryNotFound", "PortInUse", "ServerExited",
    "ServerStartTimeout", "ServiceUnavailable", "KafkaUnavailable", "RedisUnavailable",
    "RoleError", "ExperimentError", "__version__",
]
