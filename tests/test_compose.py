"""Structure checks for docker-compose.yml.

CI has no Docker engine, so the Compose file is never started there. These
tests parse it with PyYAML and check the settings that decide whether it works
with edalab: KRaft listeners that fit together, ports published on 127.0.0.1
only, group settings that accept short consumer sessions, a three-broker
`cluster` profile with replication, NATS with JetStream on, pinned image tags.

Each check is a function that raises AssertionError; the tests at the bottom
also feed it broken copies of the file to show that it does catch mistakes.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
KAFKA_IMAGE = "apache/kafka"
CLUSTER_PROFILE = "cluster"


# --- helpers ------------------------------------------------------------------

def load_compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def image_name(service: dict) -> str:
    """'apache/kafka:4.1.1' -> 'apache/kafka' (a registry host may carry a port: 'host:5000/name:tag')."""
    image = str(service.get("image", "")).split("@", 1)[0]
    head, _, last = image.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name


def kafka_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if image_name(svc) == KAFKA_IMAGE}


def in_profile(service: dict, profile: str | None) -> bool:
    profiles = service.get("profiles") or []
    return profile in profiles if profile else not profiles


def published_ports(service: dict) -> list[tuple[str | None, int, int]]:
    """(host_ip, host_port, container_port) for each published port."""
    out = []
    for entry in service.get("ports", []) or []:
        if isinstance(entry, dict):  # long syntax
            out.append((entry.get("host_ip"), int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        m = re.fullmatch(r"(?:(\[[^\]]+\]|[^:]+):)?(?:(\d+):)?(\d+)", spec)
        assert m, f"cannot parse port entry {entry!r}"
        first, second, container = m.groups()
        if second is None and first is not None and first.isdigit():
            host_ip, host_port = None, int(first)             # "HOST:CONTAINER"
        elif second is None:
            host_ip, host_port = first, None                  # "CONTAINER" (random host port)
        else:
            host_ip, host_port = first, int(second)           # "IP:HOST:CONTAINER"
        out.append((host_ip, host_port, int(container)))
    return out


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}"""
    out = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        m = re.fullmatch(r"([A-Za-z0-9_-]+)://([^:]*):(\d+)", item)
        assert m, f"cannot parse listener {item!r}"
        out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


def protocol_map(value: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, proto = item.partition(":")
        assert proto, f"bad security protocol map entry {item!r}"
        out[name] = proto
    return out


def voters(value: str) -> list[tuple[int, str, int]]:
    out = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        m = re.fullmatch(r"(\d+)@([^:]+):(\d+)", item)
        assert m, f"bad quorum voter {item!r}"
        out.append((int(m.group(1)), m.group(2), int(m.group(3))))
    return out


# --- checks (each raises AssertionError) -------------------------------------

def check_required_services(compose: dict) -> None:
    services = compose.get("services", {})
    for name in ("kafka", "redis"):
        assert name in services, f"service {name!r} missing"
        assert in_profile(services[name], None), f"service {name!r} must start without a profile"
    assert image_name(services["kafka"]) == KAFKA_IMAGE, "kafka must use the official apache/kafka image"
    assert image_name(services["redis"]) == "redis", "redis must use the official redis image"
    assert published_ports(services["redis"]) and any(
        hp == 6379 for _, hp, _ in published_ports(services["redis"])), "redis must be published on 6379"
    default_brokers = [n for n, s in kafka_services(compose).items() if in_profile(s, None)]
    assert default_brokers == ["kafka"], f"exactly one broker without a profile, got {default_brokers}"


def check_ports_loopback(compose: dict) -> None:
    seen: dict[int, str] = {}
    for name, svc in compose["services"].items():
        for host_ip, host_port, _ in published_ports(svc):
            assert host_ip == "127.0.0.1", f"{name}: port {host_port} must bind 127.0.0.1, binds {host_ip or 'all interfaces'}"
            assert host_port is not None, f"{name}: give an explicit host port"
            assert host_port not in seen, f"host port {host_port} used by {seen[host_port]} and {name}"
            seen[host_port] = name


def check_kraft_broker(name: str, svc: dict) -> None:
    env = env_of(svc)
    roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",") if r.strip()}
    assert roles == {"broker", "controller"}, f"{name}: KRaft combined mode needs roles broker,controller, got {roles}"
    assert env.get("KAFKA_NODE_ID", "").isdigit(), f"{name}: KAFKA_NODE_ID missing"
    assert env.get("CLUSTER_ID"), f"{name}: CLUSTER_ID missing"

    lst = listeners(env.get("KAFKA_LISTENERS", ""))
    adv = listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    pmap = protocol_map(env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", ""))
    ctrl = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
    inter = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "")

    for lname in lst:
        assert lname in pmap, f"{name}: listener {lname} is not in the security protocol map"
    for lname in adv:
        assert lname in lst, f"{name}: advertised listener {lname} is not in KAFKA_LISTENERS"
    assert ctrl, f"{name}: KAFKA_CONTROLLER_LISTENER_NAMES missing"
    for c in ctrl.split(","):
        assert c in lst, f"{name}: controller listener {c} not in KAFKA_LISTENERS"
        assert c not in adv, f"{name}: the controller listener must not be advertised to clients"
    assert inter in lst and inter in adv, f"{name}: inter-broker listener {inter!r} must be listened on and advertised"

    # the listener advertised as localhost must be the one published on the host, on the same port
    host_listeners = {ln: port for ln, (host, port) in adv.items() if host == "localhost"}
    assert len(host_listeners) == 1, f"{name}: exactly one listener should be advertised as localhost, got {host_listeners}"
    (ln, adv_port), = host_listeners.items()
    published = {hp: cp for _, hp, cp in published_ports(svc)}
    assert adv_port in published, f"{name}: {ln} advertises localhost:{adv_port} but that host port is not published ({sorted(published)})"
    assert published[adv_port] == lst[ln][1], (
        f"{name}: host port {adv_port} goes to container port {published[adv_port]}, "
        f"but listener {ln} listens on {lst[ln][1]}")
    # the other advertised listeners name the container itself, for other containers
    hostname = svc.get("hostname", name)
    for other, (host, _port) in adv.items():
        if other != ln:
            assert host in (hostname, name), f"{name}: internal listener {other} advertises {host!r}, not the container name"

    # every controller in the quorum is reachable on its controller listener
    vs = voters(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
    me = [v for v in vs if v[0] == int(env["KAFKA_NODE_ID"])]
    assert me, f"{name}: node {env['KAFKA_NODE_ID']} is not among the quorum voters {vs}"
    assert me[0][1] in (hostname, name) and me[0][2] == lst[ctrl.split(',')[0]][1], (
        f"{name}: its voter entry {me[0]} does not match its host and controller port")

    assert int(env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "-1")) == 0, f"{name}: initial rebalance delay must be 0"
    min_session = env.get("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS")
    assert min_session is not None and int(min_session) <= 2000, (
        f"{name}: group.min.session.timeout.ms must be <= 2000 so edalab's 2000 ms sessions are accepted, got {min_session}")
    assert "healthcheck" in svc and svc["healthcheck"].get("test"), f"{name}: healthcheck missing"


def check_single_broker(compose: dict) -> None:
    svc = compose["services"]["kafka"]
    check_kraft_broker("kafka", svc)
    env = env_of(svc)
    assert len(voters(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])) == 1, "the default broker is its own single controller"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env.get(key) == "1", f"kafka: {key} must be 1 on a single broker (Kafka's default 3 cannot be met)"
    adv = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert ("localhost", 9092) in adv.values(), "the default broker is advertised to the host as localhost:9092"


def check_cluster(compose: dict) -> None:
    brokers = {n: s for n, s in kafka_services(compose).items() if in_profile(s, CLUSTER_PROFILE)}
    assert len(brokers) == 3, f"the {CLUSTER_PROFILE!r} profile needs 3 Kafka brokers, got {sorted(brokers)}"
    node_ids, cluster_ids, controllers = set(), set(), {}
    for name, svc in brokers.items():
        check_kraft_broker(name, svc)
        env = env_of(svc)
        node_ids.add(int(env["KAFKA_NODE_ID"]))
        cluster_ids.add(env["CLUSTER_ID"])
        lst = listeners(env["KAFKA_LISTENERS"])
        controllers[int(env["KAFKA_NODE_ID"])] = (svc.get("hostname", name), lst[env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")[0]][1])
        assert int(env.get("KAFKA_DEFAULT_REPLICATION_FACTOR", "0")) == 3, f"{name}: default replication factor must be 3"
        assert int(env.get("KAFKA_MIN_INSYNC_REPLICAS", "0")) == 2, f"{name}: min.insync.replicas must be 2"
        assert int(env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "0")) == 3, f"{name}: offsets topic replication must be 3"
        assert int(env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "0")) == 3, f"{name}: transaction log replication must be 3"
    assert len(node_ids) == 3, f"cluster node ids must differ, got {node_ids}"
    assert len(cluster_ids) == 1, f"the three brokers must share one CLUSTER_ID, got {cluster_ids}"
    assert cluster_ids.isdisjoint({env_of(compose["services"]["kafka"]).get("CLUSTER_ID")}), \
        "the cluster must not reuse the single broker's CLUSTER_ID"
    for name, svc in brokers.items():
        vs = voters(env_of(svc)["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert {v[0]: (v[1], v[2]) for v in vs} == controllers, (
            f"{name}: quorum voters {vs} must name all three brokers {controllers}")


def nats_flags(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def check_nats(compose: dict) -> None:
    """The message queue: the official nats image with JetStream, published on 4222, healthchecked."""
    services = compose.get("services", {})
    assert "nats" in services, "service 'nats' missing"
    svc = services["nats"]
    assert in_profile(svc, None), "service 'nats' must start without a profile"
    assert image_name(svc) == "nats", "nats must use the official nats image"
    flags = nats_flags(svc)
    assert "-js" in flags or "--jetstream" in flags, f"nats must run with -js (JetStream), command is {flags}"
    assert any(hp == 4222 and cp == 4222 for _, hp, cp in published_ports(svc)), "nats must be published on 4222"
    assert all(cp != 8222 for _, _, cp in published_ports(svc)), "nats: the monitoring port stays unpublished"
    test = " ".join(map(str, svc.get("healthcheck", {}).get("test") or []))
    assert "healthz" in test and "js-enabled-only" in test, f"nats: healthcheck must ask JetStream's health, got {test!r}"
    port = next((flags[i + 1] for i, f in enumerate(flags[:-1]) if f in ("-m", "--http_port")), None)
    assert port and f":{port}/" in test, f"nats: the healthcheck asks a port the server does not monitor on ({flags})"


def check_images_pinned(compose: dict) -> None:
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        last = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or ":" in last, f"{name}: image {image!r} has no tag"
        tag = last.split("@")[0].rsplit(":", 1)[-1] if ":" in last else ""
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d", tag)), (
            f"{name}: image {image!r} must be pinned to a version tag, not {tag!r}")


ALL_CHECKS = [check_required_services, check_ports_loopback, check_single_broker, check_cluster, check_nats,
              check_images_pinned]


# --- tests on the real file ----------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_required_services(compose):
    check_required_services(compose)


def test_published_ports_bind_loopback_only(compose):
    check_ports_loopback(compose)


def test_single_broker_kraft_listeners_and_group_settings(compose):
    check_single_broker(compose)


def test_cluster_profile(compose):
    check_cluster(compose)


def test_images_pinned(compose):
    check_images_pinned(compose)


def test_nats_with_jetstream(compose):
    check_nats(compose)


def test_expected_values(compose):
    """The concrete values edalab's docs and lessons rely on."""
    services = compose["services"]
    assert ("127.0.0.1", 9092, 9092) in published_ports(services["kafka"])
    assert ("127.0.0.1", 6379, 6379) in published_ports(services["redis"])
    assert ("127.0.0.1", 4222, 4222) in published_ports(services["nats"])
    host_ports = sorted(hp for n in ("kafka-1", "kafka-2", "kafka-3") for _, hp, _ in published_ports(services[n]))
    assert host_ports == [29092, 39092, 49092]


# --- the checks catch broken files ------------------------------------------------

def _set_env(svc: dict, key: str, value) -> None:
    svc["environment"] = dict(env_of(svc))
    if value is None:
        svc["environment"].pop(key, None)
    else:
        svc["environment"][key] = value


BREAKAGES = {
    "redis missing": lambda c: c["services"].pop("redis"),
    "port on all interfaces": lambda c: c["services"]["kafka"].update(ports=["9092:9092"]),
    "port on 0.0.0.0": lambda c: c["services"]["redis"].update(ports=["0.0.0.0:6379:6379"]),
    "broker-only roles (no KRaft controller)": lambda c: _set_env(c["services"]["kafka"], "KAFKA_PROCESS_ROLES", "broker"),
    "listener missing from protocol map": lambda c: _set_env(
        c["services"]["kafka"], "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
    "no controller listener name": lambda c: _set_env(c["services"]["kafka"], "KAFKA_CONTROLLER_LISTENER_NAMES", None),
    "host listener advertised on the wrong port": lambda c: _set_env(
        c["services"]["kafka"], "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka:19092,PLAINTEXT_HOST://localhost:9093"),
    "host listener advertised as container name": lambda c: _set_env(
        c["services"]["kafka"], "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka:19092,PLAINTEXT_HOST://kafka:9092"),
    "initial rebalance delay 3000": lambda c: _set_env(c["services"]["kafka"], "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", 3000),
    "min session timeout default": lambda c: _set_env(c["services"]["kafka"], "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", None),
    "min session timeout 6000": lambda c: _set_env(c["services"]["kafka"], "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", 6000),
    "only two cluster brokers": lambda c: c["services"].pop("kafka-3"),
    "cluster replication factor 1": lambda c: _set_env(c["services"]["kafka-2"], "KAFKA_DEFAULT_REPLICATION_FACTOR", 1),
    "voters name two brokers": lambda c: _set_env(
        c["services"]["kafka-1"], "KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka-1:9093,2@kafka-2:9093"),
    "latest tag": lambda c: c["services"]["kafka"].update(image="apache/kafka:latest"),
    "no tag": lambda c: c["services"]["redis"].update(image="redis"),
    "nats missing": lambda c: c["services"].pop("nats"),
    "nats without JetStream": lambda c: c["services"]["nats"].update(command=["-m", "8222"]),
    "nats on all interfaces": lambda c: c["services"]["nats"].update(ports=["4222:4222"]),
    "nats monitoring published": lambda c: c["services"]["nats"]["ports"].append("127.0.0.1:8222:8222"),
    "nats healthcheck on a port not monitored": lambda c: c["services"]["nats"].update(command=["-js"]),
    "nats latest": lambda c: c["services"]["nats"].update(image="nats:latest"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_checks_catch(compose, breakage):
    broken = copy.deepcopy(compose)
    BREAKAGES[breakage](broken)
    failures = []
    for check in ALL_CHECKS:
        try:
            check(broken)
        except (AssertionError, KeyError):
            failures.append(check.__name__)
    assert failures, f"no check noticed: {breakage}"
