"""Roles as real processes: ready, stop, kill, pause, restart, CPU, no leftovers."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import edalab
from edalab import Recorder, Role, RoleError, Scenario, workloads
from edalab.roles import consume, produce
from edalab.transports.http import BackgroundServer, EventServiceSpec, event_service_app


@pytest.fixture
def service():
    with BackgroundServer(event_service_app()) as server:
        yield server.url


def test_producer_and_consumer_roles_deliver_everything(service, tmp_path):
    spec = EventServiceSpec(service, mode="sse")
    sc = Scenario(run_dir=tmp_path)
    waiter = sc.add("waiter", consume, kwargs={"spec": spec})
    sc.add("kitchen", produce, kwargs={"spec": spec, "schedule_s": workloads.poisson(40, 200, seed=3)})
    with sc.run(progress=False) as run:
        run.wait_finished("kitchen", timeout_s=20)
        assert run.until_delivered(40, roles=["waiter"], timeout_s=10)
    summary = sc.recorder.summary()
    assert summary.loc["waiter", "delivered"] == 40 and summary.loc["waiter", "lost"] == 0
    assert waiter.cpu_seconds() > 0


def test_killed_consumer_misses_what_was_sent_while_it_was_down(service, tmp_path):
    recorder = Recorder(tmp_path)
    waiter = Role("waiter", consume, recorder, kwargs={"spec": EventServiceSpec(service, mode="sse")}).start()
    pid = waiter.pid
    waiter.kill()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    producer = Role("kitchen", produce, recorder, kwargs={"spec": EventServiceSpec(service, mode="sse"),
                                                          "schedule_s": [0.0, 0.01, 0.02]}).start()
    assert producer.join(10)
    assert recorder.summary(groups=["waiter"]).loc["waiter", "lost"] == 3


def test_pause_stops_work_and_resume_continues(service, tmp_path):
    recorder = Recorder(tmp_path)
    spec = EventServiceSpec(service, mode="poll", poll_interval_s=0.01)
    with Role("poller", consume, recorder, kwargs={"spec": spec}) as poller:
        poller.pause()
        assert psutil.Process(poller.pid).status() == psutil.STATUS_STOPPED
        cpu_paused = poller.cpu_seconds()
        time.sleep(0.3)
        assert poller.cpu_seconds() == pytest.approx(cpu_paused, abs=0.01)
        poller.resume()
        assert psutil.Process(poller.pid).status() != psutil.STATUS_STOPPED


def test_restart_runs_a_new_process(service, tmp_path):
    role = Role("waiter", consume, Recorder(tmp_path), kwargs={"spec": EventServiceSpec(service, mode="sse")})
    first = role.start().pid
    second = role.restart().pid
    assert first != second and role.alive
    role.stop()
    assert not role.alive


def test_a_role_that_fails_at_start_reports_its_log(tmp_path):
    spec = EventServiceSpec("http://127.0.0.1:9", mode="sse")  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(RoleError, match="(?s)exited with code.*not answering"):
        Role("waiter", consume, Recorder(tmp_path), kwargs={"spec": spec}).start()
    assert time.monotonic() - started < 15


def test_roles_die_with_their_sigkilled_owner(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edalab import Recorder, Role
        from edalab.transports.http import serve_event_service
        role = Role("svc", serve_event_service, Recorder({str(tmp_path)!r}),
                    kwargs={{"base_url": "http://127.0.0.1:0"}})
        role.start()
        print(role.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        deadline = time.monotonic() + 5
        while psutil.pid_exists(pid) and time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        owner.kill()


@pytest.mark.parametrize("take_over", [False, True])
def test_a_restarted_stream_consumer_takes_over_what_its_killed_predecessor_held(lab, tmp_path, take_over):
    """A member killed between XREADGROUP and XACK leaves its entries pending under its own
    name: a restart under a new name never reads them again, unless it takes them over."""
    spec = lab.transport("redis-stream")
    predecessor = spec.subscriber("billing")  # stands for the killed member: received, never acked
    publisher = spec.publisher()
    publisher.publish(edalab.new_event("order.placed", "order-1", {"order": 1}, producer="test", seq=0))
    publisher.close()
    held = predecessor.receive(5.0)
    assert len(held) == 1
    predecessor.close()  # no commit(): as after a SIGKILL
    sc = Scenario(run_dir=tmp_path)
    sc.add("billing", consume, kwargs={"spec": spec, "group": "billing", "take_over": take_over})
    with sc.run(progress=False) as run:
        got = run.until_delivered(1, roles=["billing"], timeout_s=3 if take_over else 1.5)
    assert got == take_over
