"""The ``edalab`` command, checked with clients that are not edalab's own."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil

from conftest import run_edalab
from edalab._servers import free_port

REPO = Path(__file__).resolve().parent.parent


def ping_with_redis_cli(url: str) -> str:
    """PING with redis-cli where installed, else with a hand-written RESP request."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if cli:
        return subprocess.run([cli, "-h", host, "-p", port, "PING"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PING\r\n")  # inline command form, as a telnet user would type it
        return sock.recv(16).decode().strip().lstrip("+")


def produce_and_consume_with_librdkafka(bootstrap: str) -> bytes:
    from confluent_kafka import Consumer, Producer

    topic = f"cli-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"hello from librdkafka")
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cli-check",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 2000,
                         "heartbeat.interval.ms": 500})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg.value()
    finally:
        consumer.close()
    raise AssertionError("librdkafka consumed nothing in 30 s")


def jetstream_round_trip_with_nats_py(url: str) -> bytes:
    """Publish to a fresh JetStream stream and pull it back with nats-py alone (not edalab's transport)."""
    import asyncio

    import nats

    async def round_trip() -> bytes:
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=5)
            name = f"cli-{uuid.uuid4().hex[:8]}"
            await js.add_stream(name=name, subjects=[name])
            await js.publish(name, b"hello from nats-py", timeout=5)
            sub = await js.pull_subscribe(name, durable="cli-check", stream=name)
            [msg] = await sub.fetch(1, timeout=5)
            await msg.ack()
            return msg.data
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(round_trip(), 20))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_json_serves_independent_clients_and_down_leaves_nothing(tmp_path):
    up = run_edalab("up", "--json")
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    try:
        assert produce_and_consume_with_librdkafka(state["kafka_bootstrap"]) == b"hello from librdkafka"
        assert ping_with_redis_cli(state["redis_url"]) == "PONG"
        assert jetstream_round_trip_with_nats_py(state["nats_url"]) == b"hello from nats-py"
        status = run_edalab("status", "--json")
        assert status.returncode == 0
        assert set(json.loads(status.stdout)["health"].values()) == {"answers"}, status.stdout
        server_pids = [json.loads(status.stdout)[k] for k in ("kafka_pid", "redis_pid", "nats_pid")]
        assert not any(gone(p) for p in server_pids)
    finally:
        down = run_edalab("down")
    assert down.returncode == 0 and "Stopped" in down.stdout
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in server_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(p) for p in server_pids), "edalab down left a server running"
    again = run_edalab("down")
    assert again.returncode == 0 and "nothing to stop" in again.stdout
    assert run_edalab("status").returncode == 3


def test_supervisor_killed_with_sigkill_takes_its_servers_along():
    state = json.loads(run_edalab("up", "--json").stdout)
    kids = psutil.Process(state["pid"]).children()
    assert len(kids) == 3  # Tansu, Valkey, NATS
    psutil.Process(state["pid"]).kill()
    gone, alive = psutil.wait_procs(kids, timeout=5)
    assert not alive
    assert "not running" in run_edalab("status").stdout


def test_doctor_lists_binaries_and_plan():
    out = run_edalab("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tansu 0.6.0" in out.stdout and "Valkey server" in out.stdout
    assert re.search(r"NATS server: nats-server: v2\.\d+", out.stdout), out.stdout
    assert "edalab.start() would start the embedded server on 127.0.0.1 and a free port for NATS" in out.stdout


def test_errors_are_one_paragraph_not_a_traceback(tmp_path):
    env = {**__import__("os").environ, "EDALAB_TANSU_BIN": "/nonexistent/tansu"}
    out = run_edalab("up", env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "EDALAB_TANSU_BIN" in out.stderr
    out = run_edalab("up", env={**os.environ, "EDALAB_NATS_SERVER": "/nonexistent/nats-server"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "EDALAB_NATS_SERVER" in out.stderr


def test_doctor_says_when_nats_is_missing_and_where_a_nats_elsewhere_is_used():
    out = run_edalab("doctor", env={**os.environ, "EDALAB_NATS_SERVER": "/nonexistent/nats-server"})
    assert out.returncode == 1 and "NATS server: MISSING" in out.stdout
    out = run_edalab("doctor", env={**os.environ, "EDALAB_NATS_URL": "nats://127.0.0.1:4222"})
    assert "would use nats://127.0.0.1:4222 from EDALAB_NATS_URL for NATS" in out.stdout


def edalab_command() -> list[str]:
    script = Path(sys.executable).with_name("edalab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edalab._cli"]


def test_lab_help_says_options_go_to_jupyterlab_and_other_commands_still_refuse_them():
    help_text = run_edalab("lab", "--help").stdout
    assert "goes to JupyterLab" in help_text and "--no-browser --port" in help_text
    refused = run_edalab("status", "--no-browser")
    assert refused.returncode == 2 and "unrecognized arguments: --no-browser" in refused.stderr


def test_lab_takes_jupyter_options_prints_a_working_url_and_leaves_no_process(tmp_path):
    """`edalab lab --no-browser --port P` (what scripts/lab passes on), as root when run as root."""
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime")}
    with open(tmp_path / "lab.log", "w") as log:
        lab = subprocess.Popen([*edalab_command(), "lab", "--no-browser", "--port", str(port)], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in lab.stdout], daemon=True).start()
    printed, url, descendants = [], None, []
    try:
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and lab.poll() is None:
            try:
                printed.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if re.fullmatch(r"http://\S+/lab\?token=\w+", printed[-1]):
                url = printed[-1]
        log_tail = (tmp_path / "lab.log").read_text()[-3000:]
        assert url, f"no URL printed; stdout: {printed}; log: {log_tail}"
        assert f":{port}/" in url
        assert any("--allow-root" in line for line in printed) == (os.geteuid() == 0), printed
        token = url.split("token=")[1]
        assert httpx.get(url, timeout=10, trust_env=False).status_code == 200
        base = url.split("/lab?")[0]
        assert httpx.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=10,
                         trust_env=False).status_code == 200
        assert httpx.get(f"{base}/api/status", timeout=10, trust_env=False).status_code == 403
        descendants = psutil.Process(lab.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants)
        assert "jupyterlab" in names and "edalab._up" in names and "tansu" in names, names
        assert "nats-server" in names, names
        assert run_edalab("status").returncode == 0
    finally:
        lab.send_signal(signal.SIGTERM)
        try:
            code = lab.wait(timeout=30)
        finally:
            lab.kill()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert not alive, f"left running: {[' '.join(p.cmdline()) for p in alive]}"
    assert code == 128 + signal.SIGTERM
    time.sleep(0.2)  # the reader thread has the last lines
    while not lines.empty():
        printed.append(lines.get())
    assert "Stopped the servers this `edalab lab` started." in printed
    assert run_edalab("status").returncode == 3
    assert not list((tmp_path / "jupyter-runtime").glob("jpserver-*.json")), "JupyterLab did not shut down cleanly"
