"""edalab: experiments that test the claims made for event-driven architecture.

The public surface notebooks use (everything else is private):

* servers and clients: :func:`start`, :class:`Lab`, :class:`KafkaServer`, :class:`RedisServer`,
  :class:`NatsServer` (JetStream, the message queue)
* notebook setup: :func:`check_environment`
* events: :class:`Event`, :func:`new_event`
* running experiments: :class:`Scenario` (roles, one start gate, a timeline, waiting),
  :class:`Role` (one process running a body you wrote), :class:`Recorder` (traces ->
  samples, summary), :class:`DeliveryWatcher` (what was delivered so far)
* submodules: ``transports`` (Kafka, Redis, NATS queue, HTTP), ``roles``, ``experiments``, ``course``
  (the claims and each notebook's recorded verdict),
  ``plots`` (charts), ``widgets`` (imported on demand: it needs ipywidgets),
  ``exercises`` (checks for each notebook's exercise), ``workloads`` (send schedules,
  the restaurant's menu and order trace in data/)
* errors: :class:`EdalabError` and its subclasses (tree in ``edalab._errors``);
  :class:`EdalabWarning` for a setting that is allowed but probably a unit slip
"""

from edalab._errors import (
    BinaryNotFound,
    ConfigError,
    EdalabError,
    ExperimentError,
    KafkaUnavailable,
    NatsUnavailable,
    PortInUse,
    RedisUnavailable,
    RoleError,
    UnsendableRole,
    ServerError,
    ServerExited,
    ServerStartTimeout,
    ServiceUnavailable,
)
from edalab._checks import EdalabWarning
from edalab._events import Event, new_event
from edalab._lab import Lab, start
from edalab._notebook import check_environment
from edalab._recorder import DeliveryWatcher, Recorder
from edalab.harness import Run, Scenario
from edalab._servers import KafkaServer, RedisServer
from edalab._nats_server import NatsServer
from edalab.roles import Role

_SUBMODULES = ("course", "experiments", "exercises", "plots", "roles", "scale", "topology", "transports", "widgets", "workloads")


def __getattr__(name: str):
    # Submodules load on first use: role processes import edalab and should not pay
    # for pandas and matplotlib they never touch.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"edalab.{name}")
    raise AttributeError(f"module 'edalab' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "start", "Lab", "check_environment", "Recorder", "Role", "Scenario", "Run", "DeliveryWatcher",
    "course", "experiments", "exercises", "plots", "roles", "topology", "transports", "workloads", "KafkaServer", "RedisServer", "NatsServer", "Event", "new_event",
    "EdalabError", "ConfigError", "ServerError", "BinaryNotFound", "PortInUse", "ServerExited",
    "ServerStartTimeout", "ServiceUnavailable", "KafkaUnavailable", "RedisUnavailable", "NatsUnavailable",
    "RoleError", "UnsendableRole", "ExperimentError", "EdalabWarning", "__version__",
]
