"""Security basics (issue 12): loopback only, token auth kept, no secrets in the repo.

Already checked elsewhere and not repeated: KafkaServer and RedisServer alone listen
on 127.0.0.1 only (tests/test_servers.py); docker-compose.yml publishes every port on
127.0.0.1 (tests/test_compose.py, check_ports_loopback).

Here: every process of a whole lab (Kafka, Redis and any other server ``edalab.start``
starts), the servers of ``edalab up``, moto's S3 server, Tansu on S3, and the HTTP event
service listen on 127.0.0.1 only: read from the OS (psutil) for each server's process
and all its children, so a second port (metrics, monitoring) counts too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import psutil

from edalab._servers import KafkaServer, MotoServer
from edalab.transports.http import BackgroundServer, event_service_app

from conftest import run_edalab

ROOT = Path(__file__).resolve().parents[1]


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of ``pid`` and its children."""
    process = psutil.Process(pid)
    found = set()
    for proc in [process, *process.children(recursive=True)]:
        try:
            found |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return found


def assert_loopback_only(pid: int, what: str) -> None:
    addresses = listening(pid)
    assert addresses, f"{what} (pid {pid}) listens nowhere?"
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}, f"{what} listens on {sorted(addresses)}"


def test_every_server_of_a_lab_listens_on_loopback_only(lab):
    servers = lab._servers
    assert servers, "the session lab started no servers of its own"
    for server in servers:
        assert_loopback_only(server.pid, type(server).__name__)


def test_s3_storage_and_tansu_on_it_listen_on_loopback_only_and_log_no_credentials(tmp_path):
    """The S3 credentials go to Tansu's environment, never into the files edalab writes."""
    with MotoServer(log_dir=tmp_path / "s3") as moto:
        assert_loopback_only(moto.pid, "moto S3 server")
        secret = moto.s3_env()["AWS_SECRET_ACCESS_KEY"]
        bucket = moto.create_bucket("edalab-check")  # a name that does not contain the secret
        with KafkaServer(storage_engine=f"s3://{bucket}/", env=moto.s3_env(),
                         log_dir=tmp_path / "kafka") as kafka:
            assert_loopback_only(kafka.pid, "Tansu on S3")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written  # the logs are there
    assert not [p for p in written if secret in p.read_text(errors="ignore")]


def test_the_http_event_service_listens_on_loopback_only():
    with BackgroundServer(event_service_app()) as service:
        ours = {(ip, port) for ip, port in listening(os.getpid()) if port == service.port}
        assert ours == {("127.0.0.1", service.port)}


def test_the_servers_of_edalab_up_listen_on_loopback_only():
    started = run_edalab("up", "--json", timeout=90)
    try:
        assert started.returncode == 0, started.stderr[-800:]
        state = json.loads(started.stdout[started.stdout.index("{"):])
        assert_loopback_only(int(state["pid"]), "edalab up and its servers")
    finally:
        run_edalab("down", timeout=60)


JUPYTER_WITHOUT_AUTH = re.compile(
    r"""(ServerApp|NotebookApp|IdentityProvider)\.(token|password)\s*=\s*(''|""|\s|$)"""
    r"""|JUPYTER_TOKEN\s*=\s*(''|""|\s|$)|disable_check_xsrf|--no-token""")


def test_scripts_lab_keeps_jupyter_token_auth_on():
    lab_script = (ROOT / "scripts" / "lab").read_text()
    assert "edalab lab" in lab_script  # it hands over to the CLI, checked next
    from edalab import _cli

    for path in (ROOT / "scripts" / "lab", Path(_cli.__file__)):
        text = path.read_text()
        assert not JUPYTER_WITHOUT_AUTH.search(text), f"{path} turns Jupyter's token off"
    # No Jupyter config in the repo that would turn it off either.
    configs = subprocess.run(["git", "ls-files", "*jupyter*config*"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.split()
    for config in configs:
        assert not JUPYTER_WITHOUT_AUTH.search((ROOT / config).read_text()), config


SECRET = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|ghp_[0-9A-Za-z]{36}"
                    r"|xox[baprs]-[0-9A-Za-z-]{10,}")


def test_no_secret_is_committed():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           timeout=10).stdout.split()
    leaks = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".parquet", ".gz", ".zip"} or not path.is_file():
            continue
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        leaks += [f"{name}: {m.group(0)[:12]}..." for m in SECRET.finditer(text)]
    assert not leaks, leaks
