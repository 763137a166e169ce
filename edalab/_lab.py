"""``edalab.start()``: find or start a Kafka-protocol broker, a Redis and a NATS, hand out clients.

For each of Kafka, Redis and NATS (JetStream, the message queue of notebook 09), the
first of these wins (notebook 00 explains):

1. an argument to :func:`start` (``kafka_bootstrap=``, ``redis_url=``, ``nats_url=``);
2. an environment variable (``EDALAB_KAFKA_BOOTSTRAP``, ``EDALAB_REDIS_URL``,
   ``EDALAB_NATS_URL``), e.g. the Docker Compose servers or a real cluster;
3. the servers of a running ``edalab up`` (shared by every notebook);
4. an embedded server started now on 127.0.0.1 and a free port, stopped by
   :meth:`Lab.stop`, at interpreter exit, or when this process dies.

Servers found elsewhere (1-3) must answer within seconds or :func:`start`
raises a :class:`~edalab.ServiceUnavailable` that says what to check.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from edalab._config import positive_float, positive_int, setting, state_dir
from edalab._errors import ConfigError, KafkaUnavailable, NatsUnavailable, RedisUnavailable
from edalab._nats_server import NatsServer, NoJetStream, NotNats, nats_jetstream_info, parse_nats_url
from edalab._servers import KafkaServer, RedisServer, port_in_use
from edalab._wire import kafka_api_versions, kafka_metadata_brokers, parse_host_port, redis_ping

if TYPE_CHECKING:
    from edalab.transports import TransportSpec

__all__ = ["Lab", "start", "KafkaClientDefaults", "read_up_state", "check_kafka", "check_redis", "check_nats"]

EMBEDDED, UP, ELSEWHERE = "embedded", "edalab up", "elsewhere"
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class KafkaClientDefaults:
    """Consumer-group timings chosen per broker.

    The embedded Tansu holds every group join for about half the session
    timeout, so it gets short sessions (a join takes ~1 s instead of 23-46 s with
    kafka-python's 45 s default). Apache Kafka refuses sessions below its
    ``group.min.session.timeout.ms`` (6 s unless lowered, as docker-compose.yml
    does), so servers elsewhere get safe values unless the user sets them.
    ``fetch_max_wait_ms`` is how long a fetch may wait for data: Apache Kafka
    answers as soon as data arrives; Tansu is not woken by new data and only re-checks
    during the wait (docs/brokers.md: mean delay ~15-18 ms at 100 ms, ~100 ms at 500 ms),
    so the embedded broker gets a short one.
    """

    session_timeout_ms: int
    heartbeat_interval_ms: int
    fetch_max_wait_ms: int

    @classmethod
    def for_mode(cls, mode: str) -> "KafkaClientDefaults":
        if mode in (EMBEDDED, UP):
            return cls(session_timeout_ms=2000, heartbeat_interval_ms=500, fetch_max_wait_ms=100)
        return cls(
            session_timeout_ms=setting(None, "EDALAB_KAFKA_SESSION_TIMEOUT_MS", 10000, positive_int),
            heartbeat_interval_ms=setting(None, "EDALAB_KAFKA_HEARTBEAT_MS", 3000, positive_int),
            fetch_max_wait_ms=500,
        )


def check_kafka(bootstrap: str, timeout_s: float = CHECK_TIMEOUT_S) -> list[tuple[int, str, int]]:
    """Ask a Kafka bootstrap address real questions; raise KafkaUnavailable with advice.

    Checks that one bootstrap server answers ApiVersions and Metadata, and that
    every broker it advertises can be reached from here. Returns the brokers.
    """
    errors = []
    for address in [a for a in bootstrap.split(",") if a.strip()]:
        try:
            host, port = parse_host_port(address, 9092)
        except ValueError as exc:
            raise ConfigError(f"Kafka bootstrap {bootstrap!r}: {exc}. Use host:port.") from None
        try:
            kafka_api_versions(host, port, timeout_s)
            brokers = kafka_metadata_brokers(host, port, timeout_s)
        except OSError as exc:
            errors.append(f"{address}: {exc or exc.__class__.__name__}")
            continue
        unreachable = [f"{h}:{p}" for _, h, p in brokers if not _reachable(h, p, timeout_s)]
        if unreachable:
            raise KafkaUnavailable(
                f"The Kafka at {address} answers, but advertises {', '.join(unreachable)}, which "
                f"this machine cannot reach. Clients connect to the advertised address after "
                f"bootstrap. Fix the broker's advertised listeners (in docker-compose.yml the host "
                f"listener must advertise localhost:9092).")
        return brokers
    raise KafkaUnavailable(
        f"No Kafka broker answers at {bootstrap!r} ({'; '.join(errors) or 'no address given'}). "
        f"Check that the broker runs (`docker compose ps`, `edalab status`) and that the address "
        f"is right, or unset EDALAB_KAFKA_BOOTSTRAP to use the embedded broker.")


def _reachable(host: str, port: int, timeout_s: float) -> bool:
    try:
        kafka_api_versions(host, port, timeout_s)
        return True
    except OSError:
        return False


def check_redis(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """PING the Redis at ``url``; raise RedisUnavailable (or ConfigError) with advice."""
    parsed = _parse_redis_url(url)
    port = parsed.port or 6379
    if parsed.scheme == "rediss" or parsed.password:
        # TLS or AUTH: let redis-py do the handshake it needs.
        import redis

        try:
            redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s).ping()
            return
        except redis.RedisError as exc:
            raise RedisUnavailable(f"The Redis at {url} does not answer PING ({exc}).") from None
    try:
        redis_ping(parsed.hostname, port, timeout_s)
    except OSError as exc:
        raise RedisUnavailable(
            f"Nothing answers like Redis at {url} ({exc or exc.__class__.__name__}). Check that "
            f"the server runs and the URL is right, or unset EDALAB_REDIS_URL to use the embedded "
            f"Redis.") from None


def check_nats(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> dict:
    """Ask the NATS at ``url`` for its JetStream account info; raise NatsUnavailable (or
    ConfigError) with advice. Returns the answer."""
    host, port = parse_nats_url(url)
    unset = "or unset EDALAB_NATS_URL to use the embedded NATS."
    try:
        return nats_jetstream_info(host, port, timeout_s)
    except NoJetStream as exc:
        raise NatsUnavailable(f"A NATS server answers at {url}, but {exc}. The message queue needs "
                              f"JetStream: start nats-server with -js (docker-compose.yml does), {unset}") from None
    except NotNats as exc:
        raise NatsUnavailable(f"{url} is not a NATS server: {exc}. Check the port (NATS usually listens on "
                              f"4222), {unset}") from None
    except OSError as exc:
        raise NatsUnavailable(
            f"Nothing answers like NATS at {url} ({exc or exc.__class__.__name__}). Check that the server "
            f"runs (`docker compose ps`, `edalab status`) and that the URL is right, {unset}") from None


def _parse_redis_url(url: str):
    parsed = urlparse(url)
    try:
        parsed.port
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(f"{url!r} is not a Redis URL. Use redis://host:port/0.")
    return parsed


def read_up_state() -> dict[str, Any] | None:
    """The servers of a running ``edalab up``, or None when none runs."""
    path = state_dir() / "up.json"
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state


class Lab:
    """The servers one notebook (or script) uses, and ready-configured clients for them.

    Attributes:
        kafka_bootstrap: ``"host:port"`` of the Kafka-protocol broker.
        redis_url: ``"redis://host:port/0"``.
        nats_url: ``"nats://host:port"`` of the NATS server with JetStream (the message queue,
            ``lab.transport("nats-queue")``); None for a lab built without one.
        kafka_mode, redis_mode, nats_mode: ``"embedded"``, ``"edalab up"`` or ``"elsewhere"``.
        kafka_defaults: consumer timings chosen for this broker (:class:`KafkaClientDefaults`).
    """

    def __init__(self, kafka_bootstrap: str, redis_url: str, kafka_mode: str, redis_mode: str,
                 servers: list, nats_url: str | None = None, nats_mode: str | None = None):
        self.kafka_bootstrap = kafka_bootstrap
        self.redis_url = redis_url
        self.nats_url = nats_url
        self.kafka_mode = kafka_mode
        self.redis_mode = redis_mode
        self.nats_mode = nats_mode
        self.kafka_defaults = KafkaClientDefaults.for_mode(kafka_mode)
        self._servers = servers
        self._clients: list[Any] = []

    @classmethod
    def on_servers(cls, kafka: KafkaServer | None = None, redis: RedisServer | None = None, *,
                   kafka_bootstrap: str | None = None, redis_url: str | None = None,
                   nats: NatsServer | None = None, nats_url: str | None = None) -> "Lab":
        """A lab on servers you started yourself, which it then owns (notebook 08).

        An experiment that kills and restarts a broker does it to its own servers, not
        to the shared lab's that other cells use. Pass a started ``kafka`` and/or
        ``redis`` (and optionally ``nats``); the address of the other comes from
        ``kafka_bootstrap`` / ``redis_url`` / ``nats_url`` (e.g. the shared lab's; a lab
        without NATS cannot open ``"nats-queue"``). :meth:`stop` stops the servers passed.
        """
        servers = [s for s in (kafka, redis, nats) if s is not None]
        if not servers:
            raise ConfigError("Lab.on_servers needs a started KafkaServer or RedisServer.")
        for server in servers:
            if not server.running():
                raise ConfigError(f"{server!r} is not running: start() it before building a lab on it.")
        if (kafka is None and not kafka_bootstrap) or (redis is None and not redis_url):
            raise ConfigError("Lab.on_servers needs both a Kafka and a Redis: pass the missing one's "
                              "address (kafka_bootstrap=lab.kafka_bootstrap or redis_url=lab.redis_url).")
        if nats is None and nats_url:
            parse_nats_url(nats_url)
        return cls(kafka.bootstrap if kafka else kafka_bootstrap, redis.url if redis else redis_url,
                   EMBEDDED if kafka else ELSEWHERE, EMBEDDED if redis else ELSEWHERE, servers,
                   nats_url=nats.url if nats else nats_url,
                   nats_mode=EMBEDDED if nats else (ELSEWHERE if nats_url else None))

    @property
    def servers(self) -> tuple:
        """The server processes this lab started and owns (empty for servers elsewhere)."""
        return tuple(self._servers)

    def server(self, kind: str):
        """The server of ``kind`` (``"kafka"``, ``"redis"``, ``"nats"``) this lab owns, to pause, kill or
        restart it (notebook 08); ConfigError if the lab does not own one."""
        found = next((s for s in self._servers if s.kind == kind), None)
        if found is None:
            raise ConfigError(f"This lab owns no {kind} server ({self!r}): it uses one elsewhere or "
                              f"`edalab up`'s. Start your own (edalab.KafkaServer(), RedisServer(), NatsServer()) and "
                              f"build a lab on it with Lab.on_servers(...).")
        return found

    def restart_server(self, kind: str, *, kill: bool = True):
        """SIGKILL (or stop, ``kill=False``) this lab's ``kind`` server and start it again on
        the same address; returns the server. What it held survives only on durable storage."""
        return self.server(kind).restart(kill=kill)

    # -- what runs where ---------------------------------------------------------
    @property
    def kafka_embedded(self) -> bool:
        """True when the broker is the embedded Tansu (ours or ``edalab up``'s)."""
        return self.kafka_mode in (EMBEDDED, UP)

    def describe(self) -> list[dict[str, Any]]:
        """One row per service: what it is, where, who started it, and (for a server this
        lab started) ``ready_in_s``: seconds from spawn until it answered a real request."""
        rows = []
        programs = {"kafka": "Tansu (Kafka protocol)" if self.kafka_embedded else "Kafka",
                    "redis": "Valkey/Redis", "nats": "NATS with JetStream (message queue)"}
        for name, address, mode in (("kafka", self.kafka_bootstrap, self.kafka_mode),
                                    ("redis", self.redis_url, self.redis_mode),
                                    ("nats", self.nats_url, self.nats_mode)):
            if address is None:
                continue
            server = next((s for s in self._servers if s.kind == name), None)
            rows.append({"service": name, "address": address, "started_by": mode,
                         "pid": server.pid if server else None,
                         "ready_in_s": server.ready_in_s if server else None,
                         "program": programs[name]})
        return rows

    def __repr__(self) -> str:
        nats = f" nats={self.nats_url} ({self.nats_mode})" if self.nats_url else ""
        return (f"<Lab kafka={self.kafka_bootstrap} ({self.kafka_mode}) "
                f"redis={self.redis_url} ({self.redis_mode}){nats}>")

    # -- clients -------------------------------------------------------------------
    def kafka_producer(self, **config: Any):
        """A kafka-python KafkaProducer for this broker; keyword args override defaults."""
        from kafka import KafkaProducer

        settings = dict(bootstrap_servers=self.kafka_bootstrap, client_id="edalab-producer",
                        bootstrap_timeout_ms=5000, request_timeout_ms=10000, max_block_ms=10000,
                        linger_ms=0)
        settings.update(config)
        return self._track(KafkaProducer(**settings))

    def kafka_consumer(self, *topics: str, group_id: str | None = None, **config: Any):
        """A kafka-python KafkaConsumer with timings that suit this broker.

        ``auto_offset_reset`` defaults to ``"earliest"`` (a new group reads the
        topic from the start); pass ``group_id=None`` for a consumer without a group.
        """
        from kafka import KafkaConsumer

        d = self.kafka_defaults
        settings = dict(bootstrap_servers=self.kafka_bootstrap, group_id=group_id,
                        client_id="edalab-consumer", auto_offset_reset="earliest",
                        session_timeout_ms=d.session_timeout_ms,
                        heartbeat_interval_ms=d.heartbeat_interval_ms,
                        fetch_max_wait_ms=d.fetch_max_wait_ms, bootstrap_timeout_ms=5000,
                        request_timeout_ms=max(15000, d.session_timeout_ms + 5000))
        settings.update(config)
        return self._track(KafkaConsumer(*topics, **settings))

    def kafka_admin(self, **config: Any):
        """A kafka-python KafkaAdminClient for this broker."""
        return self._track(self._new_admin(**config))

    def _new_admin(self, **config: Any):
        from kafka import KafkaAdminClient

        settings = dict(bootstrap_servers=self.kafka_bootstrap, client_id="edalab-admin",
                        bootstrap_timeout_ms=5000, request_timeout_ms=10000)
        settings.update(config)
        return KafkaAdminClient(**settings)

    def create_topic(self, name: str | None = None, partitions: int = 1) -> str:
        """Create a topic (a fresh unique name when ``name`` is None) and return its name."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ConfigError(f"partitions must be a positive integer, not {partitions!r}")
        name = name or f"edalab-{uuid.uuid4().hex[:10]}"
        admin = self._new_admin()  # short-lived: closed here, not handed out
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        return name

    def transport(self, name: str, *, topic: str | None = None, **options: Any) -> "TransportSpec":
        """Open the transport ``name`` on this lab's servers and return its spec.

        ``name`` is ``"kafka"``, ``"redis-stream"``, ``"redis-pubsub"`` or
        ``"nats-queue"`` (``edalab.transports.describe_transports()`` lists them with
        what each promises). ``topic`` names the Kafka topic, Redis stream or channel; by
        default a fresh unique one, so runs do not see each other's events. Other
        keyword arguments set the spec's fields, e.g. ``max_poll_records=50`` or
        ``commit_each_receive=False`` (Kafka), ``ack=False`` (Redis Streams),
        ``ack_wait_s=1.0, max_deliver=3`` (NATS queue), and ``partitions=3`` for a
        Kafka topic created here (an existing one is kept).

        The HTTP transport needs a running event service, so it is opened with
        ``edalab.transports.EventServiceSpec(url, mode=...)`` instead.

        Raises:
            ConfigError: unknown ``name``, or an option the spec does not have.
        """
        from edalab.transports import TRANSPORTS

        spec_class = TRANSPORTS.get(name)
        if spec_class is None:
            raise ConfigError(
                f"No transport named {name!r}; lab.transport knows {', '.join(map(repr, TRANSPORTS))}. "
                f"For HTTP, start an event service and use EventServiceSpec(url, mode=...).")
        try:
            return spec_class.from_lab(self, topic or f"edalab-{uuid.uuid4().hex[:10]}", **options)
        except TypeError as exc:  # an option the spec has no field for
            raise ConfigError(f"lab.transport({name!r}, ...): {exc}. See help({spec_class.__name__}) "
                              f"for its fields.") from exc

    def redis(self, **config: Any):
        """A redis-py client (decoded strings off; explicit timeouts)."""
        import redis

        settings = dict(socket_connect_timeout=5, socket_timeout=10, health_check_interval=0)
        settings.update(config)
        return self._track(redis.Redis.from_url(self.redis_url, **settings))

    def _track(self, client):
        self._clients.append(client)
        return client

    # -- life cycle -----------------------------------------------------------------
    def stop(self) -> None:
        """Close the clients handed out and stop the servers this Lab started.

        Servers of ``edalab up`` and servers elsewhere are left running.
        """
        for client in reversed(self._clients):
            try:
                client.close()
            except Exception:
                pass
        self._clients.clear()
        for server in self._servers:
            server.stop()
        self._servers = []

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _one_server(address, check, up, up_key: str, make, address_attr: str, servers: list):
    """One service for :func:`start`: the address given (checked), else ``edalab up``'s if
    it answers, else an embedded server started now (appended to ``servers``, so a later
    failure stops it). Returns ``(address, mode)``."""
    if address:
        check(address)
        return address, ELSEWHERE
    if up and _up_answers(up, up_key):
        return up[up_key], UP
    server = make().start()
    servers.append(server)
    return getattr(server, address_attr), EMBEDDED


def start(*, kafka_bootstrap: str | None = None, redis_url: str | None = None,
          nats_url: str | None = None, start_timeout_s: float | None = None, use_up: bool = True) -> Lab:
    """Find or start the course's Kafka-protocol broker, Redis and NATS (see module docs).

    The embedded NATS costs little (it answers 10-30 ms after its start; docs/brokers.md
    has the measured lab start times), so every lab has one, whether or not the notebook
    uses the message queue.

    Args:
        kafka_bootstrap: a Kafka elsewhere (``host:port``); default ``$EDALAB_KAFKA_BOOTSTRAP``.
        redis_url: a Redis elsewhere (``redis://host:port/0``); default ``$EDALAB_REDIS_URL``.
        nats_url: a NATS with JetStream elsewhere (``nats://host:port``); default ``$EDALAB_NATS_URL``.
        start_timeout_s: how long embedded servers may take to answer (default 20 s).
        use_up: reuse the servers of a running ``edalab up`` (default True).

    Returns:
        a :class:`Lab`; use it as a context manager or call ``lab.stop()``.
    """
    timeout_s = setting(start_timeout_s, "EDALAB_START_TIMEOUT_S", 20.0, positive_float)
    kafka_bootstrap = setting(kafka_bootstrap, "EDALAB_KAFKA_BOOTSTRAP", None)
    redis_url = setting(redis_url, "EDALAB_REDIS_URL", None)
    nats_url = setting(nats_url, "EDALAB_NATS_URL", None)
    if redis_url:
        _parse_redis_url(redis_url)  # a typo should not wait for a Kafka check first
    if nats_url:
        parse_nats_url(nats_url)
    up = read_up_state() if use_up else None
    servers: list = []
    try:
        kafka_bootstrap, kafka_mode = _one_server(kafka_bootstrap, check_kafka, up, "kafka_bootstrap",
                                                  lambda: KafkaServer(start_timeout_s=timeout_s),
                                                  "bootstrap", servers)
        redis_url, redis_mode = _one_server(redis_url, check_redis, up, "redis_url",
                                            lambda: RedisServer(start_timeout_s=timeout_s), "url", servers)
        nats_url, nats_mode = _one_server(nats_url, check_nats, up, "nats_url",
                                          lambda: NatsServer(start_timeout_s=timeout_s), "url", servers)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Lab(kafka_bootstrap, redis_url, kafka_mode, redis_mode, servers, nats_url=nats_url,
               nats_mode=nats_mode)


def _up_answers(up: dict[str, Any], key: str) -> bool:
    address = up.get(key)
    if not address:
        return False
    if key in ("redis_url", "nats_url"):
        parsed = urlparse(address)
        host, port = parsed.hostname, parsed.port
    else:
        host, port = parse_host_port(address, 9092)
    return port_in_use(host, port)
