"""Environment faults (issue 12): each one a clear EdalabError within 5 s.

Already covered elsewhere, not repeated here: a port taken (tests/test_servers.py,
PortInUse), EDALAB_TANSU_BIN pointing nowhere and a server that exits while starting
(test_servers.py), nothing listening on the bootstrap address, a bootstrap that
accepts and never answers, a Redis URL that points at Kafka (tests/test_lab.py).

Here: a server binary that is not executable, one that runs but never answers, a
Kafka bootstrap that points at Redis, a Redis URL that points at an HTTP server, an
address that never accepts (a listening socket whose backlog swallows the connection:
no answer at all) for Kafka and Redis, a run directory that cannot be created, and a
disk that fills up during a run. There is no small tmpfs to fill on CI machines, so a
run directory where nothing can be written is one under a regular file and one under
/proc, and a disk filling up is RLIMIT_FSIZE on the run (writes past it fail with
EFBIG, "File too large", as writes to a full disk fail with ENOSPC). The role then
stops with a RoleError whose log tail ends with the recorder's ExperimentError: the OS's
reason, and what to do (free space, or EDALAB_RUNS_DIR).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

import edalab
from edalab import (
    BinaryNotFound,
    ConfigError,
    KafkaServer,
    KafkaUnavailable,
    Recorder,
    RedisServer,
    RedisUnavailable,
    ServerStartTimeout,
)

WITHIN_S = 5.0


class _Clock:
    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.took_s = time.monotonic() - self.started
        assert self.took_s < WITHIN_S, f"took {self.took_s:.1f} s"


@pytest.mark.parametrize("server_class, variable", [(KafkaServer, "EDALAB_TANSU_BIN"),
                                                     (RedisServer, "EDALAB_REDIS_SERVER")])
def test_a_server_binary_that_is_not_executable_says_which_and_what_to_do(
        server_class, variable, tmp_path, monkeypatch):
    binary = tmp_path / "server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o644)
    monkeypatch.setenv(variable, str(binary))
    with _Clock(), pytest.raises(BinaryNotFound, match=f"{variable}=.*not an executable.*unset it"):
        server_class().start()


def test_a_server_binary_that_never_answers_times_out_with_its_log_and_leaves_nothing(
        tmp_path, monkeypatch):
    binary = tmp_path / "silent-redis"
    binary.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 60\n")
    binary.chmod(0o755)
    monkeypatch.setenv("EDALAB_REDIS_SERVER", str(binary))
    server = RedisServer(start_timeout_s=2)
    with _Clock(), pytest.raises(ServerStartTimeout, match=r"(?s)within 2 s.*pretending to start"):
        server.start()
    assert server.pid is None or not psutil.pid_exists(server.pid) or \
        psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE


def test_a_kafka_bootstrap_that_points_at_redis_is_refused(lab):
    address = lab.redis_url.removeprefix("redis://").split("/")[0]
    with _Clock(), pytest.raises(KafkaUnavailable, match=address):
        edalab.start(kafka_bootstrap=address, redis_url=lab.redis_url)


@pytest.fixture
def http_server():
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_redis_url_that_points_at_an_http_server_is_refused(lab, http_server):
    with _Clock(), pytest.raises(RedisUnavailable, match=str(http_server)):
        edalab.start(kafka_bootstrap=lab.kafka_bootstrap, redis_url=f"redis://127.0.0.1:{http_server}/0")


@pytest.fixture
def never_accepts():
    """A listening socket nobody accepts on: the kernel completes the handshake into
    the backlog and then nothing is ever said (a black hole, not a refusal)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_a_kafka_address_that_never_answers_fails_within_5_s(never_accepts, lab):
    with _Clock(), pytest.raises(KafkaUnavailable, match=str(never_accepts)):
        edalab.start(kafka_bootstrap=f"127.0.0.1:{never_accepts}", redis_url=lab.redis_url)


def test_a_redis_address_that_never_answers_fails_within_5_s(never_accepts, lab):
    with _Clock(), pytest.raises(RedisUnavailable, match=str(never_accepts)):
        edalab.start(kafka_bootstrap=lab.kafka_bootstrap,
                     redis_url=f"redis://127.0.0.1:{never_accepts}/0")


def test_a_transport_whose_redis_never_answers_fails_within_5_s(never_accepts):
    from edalab.transports.redis import RedisStreamSpec

    spec = RedisStreamSpec(url=f"redis://127.0.0.1:{never_accepts}/0", stream="s",
                           request_timeout_s=2.0, max_block_ms=500)
    with _Clock(), pytest.raises(RedisUnavailable, match=str(never_accepts)):
        spec.publisher().publish(edalab._events.new_event("t", "k"))


@pytest.mark.parametrize("where", ["under a file", "under /proc"])
def test_a_run_directory_that_cannot_be_written_is_a_clear_error(where, tmp_path):
    if where == "under a file":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        run_dir = blocker / "run"
    else:
        run_dir = "/proc/edalab-run"
    with _Clock(), pytest.raises(ConfigError, match=r"run directory .* cannot be created.*writable"):
        Recorder(run_dir)
    with _Clock(), pytest.raises(ConfigError, match="run directory"):
        edalab.Scenario("faults", run_dir=run_dir)


FULL_DISK_SCRIPT = """
import resource, signal, sys, time
# Ignored, a write past RLIMIT_FSIZE fails with EFBIG ("File too large") instead of killing
# the process; roles inherit both, as they would inherit a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
import edalab
from edalab import Scenario, workloads
from edalab._servers import RedisServer
from edalab.roles import produce
from edalab.transports.redis import RedisStreamSpec
with RedisServer() as redis:
    spec = RedisStreamSpec(url=redis.url, stream="disk")
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
    sc = Scenario("disk", run_dir=sys.argv[1])
    sc.add("orders", produce, kwargs={"spec": spec, "schedule_s": workloads.steady(2000, 5),
                                      "payload_bytes": 200})
    started = time.monotonic()
    try:
        with sc.run(progress=False) as run:
            run.wait_finished("orders", timeout_s=30)
        print("NO ERROR")
    except edalab.EdalabError as exc:
        print(f"AFTER {time.monotonic() - started:.2f} {type(exc).__name__}: {exc}")
"""


def test_a_full_disk_under_a_run_stops_the_role_with_the_reason_within_5_s(tmp_path):
    """A "full disk" here is RLIMIT_FSIZE (64 kB per file): writes past it fail like
    writes to a full disk (EFBIG instead of ENOSPC), without filling a real one."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(("AFTER", "NO ERROR"))), "")
    assert line.startswith("AFTER"), (out.stdout[-500:], out.stderr[-1500:])
    took_s = float(line.split()[1])
    assert took_s < WITHIN_S
    assert "RoleError" in line and "'orders'" in out.stdout and "File too large" in out.stdout
    assert "Could not write the run's trace" in out.stdout and "EDALAB_RUNS_DIR" in out.stdout
