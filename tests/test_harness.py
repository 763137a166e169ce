"""The harness: bodies written anywhere run as processes, one gate, a timeline, clean ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import edalab
from edalab import ConfigError, Recorder, Role, RoleError, Scenario, UnsendableRole
from edalab._process import ChildProcess


def _redis_listener(ctx, url, channel):
    """A consumer written like a learner would: plain redis-py inside the body."""
    import redis

    from edalab import Event
    from edalab.transports import Delivery

    client = redis.Redis.from_url(url, socket_timeout=5)
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=2)  # the subscribe confirmation
    trace = ctx.recorder.consumer_trace(ctx.name)
    ctx.gate()
    while not ctx.stopping:
        message = pubsub.get_message(timeout=0.05)
        if message and message["type"] == "message":
            trace.record(Delivery(Event.from_bytes(message["data"]), time.time_ns()))
    trace.close()


def _redis_sender(ctx, url, channel, count):
    import redis

    from edalab import new_event

    client = redis.Redis.from_url(url, socket_timeout=5)
    trace = ctx.recorder.producer_trace(ctx.name)
    if ctx.gate() is None:
        return
    for seq in range(count):
        event = new_event("order.placed", f"order-{seq}", producer=ctx.name, seq=seq)
        client.publish(channel, event.to_bytes())
        trace.record(event)
        ctx.sleep(0.005)
    ctx.note("sent", count=count)


def test_scenario_runs_bodies_after_one_gate_and_records_everything(lab):
    channel = f"orders-{time.time_ns()}"
    sc = Scenario("test-gate")
    sc.add("waiter", _redis_listener, kwargs={"url": lab.redis_url, "channel": channel})
    sc.add("kitchen", _redis_sender, kwargs={"url": lab.redis_url, "channel": channel, "count": 30})
    with sc.run(progress=False) as run:
        run.wait_finished("kitchen", timeout_s=20)
        assert run.until_delivered(30, roles=["waiter"], timeout_s=10)
    summary = sc.recorder.summary()
    assert summary.loc["waiter", "delivered"] == 30 and summary.loc["waiter", "lost"] == 0
    life = sc.recorder.lifecycle()
    gate_at = life.loc[life["what"] == "opened", "at_ns"].iloc[0]
    assert (life.loc[life["what"] == "ready", "at_ns"] <= gate_at).all()  # everyone ready first
    assert (sc.recorder.produced()["produced_at_ns"] >= gate_at).all()   # nothing sent before the gate
    assert sc.recorder.notes("kitchen")["count"].tolist() == [30]


def test_timeline_kills_and_restarts_a_role_and_records_when(lab):
    channel = f"orders-{time.time_ns()}"
    sc = Scenario("test-timeline")
    sc.add("waiter", _redis_listener, kwargs={"url": lab.redis_url, "channel": channel})
    sc.add("kitchen", _redis_sender, kwargs={"url": lab.redis_url, "channel": channel, "count": 200})
    with sc.run(progress=False) as run:
        run.at(0.2).kill("waiter")
        run.at(0.6).start("waiter")
        run.wait_finished("kitchen", timeout_s=20)
    life = sc.recorder.lifecycle().set_index("what")
    assert life.loc["killed", "planned_s"] == 0.2 and life.loc["started", "role"].tolist()[-1] == "waiter"
    summary = sc.recorder.summary()
    # pub/sub keeps nothing for a listener that is down: the gap is counted, not hidden
    assert 0 < summary.loc["waiter", "lost"] < 200


def test_a_crashing_body_is_reported_with_its_traceback(tmp_path):
    def broken(ctx):
        ctx.ready()
        raise ValueError("the billing rule divides by the order count")

    sc = Scenario(run_dir=tmp_path)
    sc.add("billing", broken)
    with pytest.raises(RoleError, match="divides by the order count"):
        with sc.run(progress=False) as run:
            run.sleep(5)


def test_stop_reports_a_body_that_crashed_after_ready(tmp_path):
    def crashes_later(ctx):
        ctx.ready()
        raise RuntimeError("lost the connection")

    role = Role("worker", crashes_later, Recorder(tmp_path)).start()
    role.join(10)
    with pytest.raises(RoleError, match="lost the connection"):
        role.stop()


def test_unsendable_body_is_refused_at_once_naming_the_object(lab, tmp_path):
    lock = threading.Lock()

    def uses_a_lock(ctx):
        with lock:
            ctx.ready()

    with pytest.raises(UnsendableRole, match="variable 'lock' captured by uses_a_lock.*lock"):
        Role("locked", uses_a_lock, Recorder(tmp_path))
    client = lab.redis()

    def uses_a_client(ctx):
        client.ping()

    t0 = time.monotonic()
    with pytest.raises(UnsendableRole, match="client.*open connections"):
        Role("client", uses_a_client, Recorder(tmp_path))
    with pytest.raises(UnsendableRole, match=r"kwargs\['lab'\].*lab.transport"):
        Role("labbed", _redis_listener, Recorder(tmp_path), kwargs={"lab": lab})
    assert time.monotonic() - t0 < 5


def test_role_arguments_are_checked():
    with pytest.raises(TypeError):
        Role("x", _redis_listener, Recorder("/tmp/edalab-test-args"), url="redis://")  # no **kwargs
    with pytest.raises(ConfigError, match="kwargs must be a dict"):
        Role("x", _redis_listener, Recorder("/tmp/edalab-test-args"), kwargs=["url"])
    with pytest.raises(ConfigError, match="body must be a function"):
        Role("x", "module:function", Recorder("/tmp/edalab-test-args"))
    with pytest.raises(ConfigError, match="already in this scenario"):
        sc = Scenario(run_dir="/tmp/edalab-test-args")
        sc.add("a", _redis_listener)
        sc.add("a", _redis_listener)
    with pytest.raises(ConfigError, match="No role 'b'"):
        sc.run().at(1).kill("b")


def test_a_body_from_a_scripts_main_runs_from_another_directory(lab, tmp_path):
    """A function in a script's __main__ travels by value; one in a module next to the
    script is found although the role's working directory is elsewhere."""
    (tmp_path / "kitchen_helpers.py").write_text("def label(seq):\n    return f'order-{seq}'\n")
    script = tmp_path / "my_experiment.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        import edalab
        from kitchen_helpers import label

        def listener(ctx, url, channel):
            import redis
            from edalab import Event
            from edalab.transports import Delivery
            pubsub = redis.Redis.from_url(url, socket_timeout=5).pubsub()
            pubsub.subscribe(channel)
            pubsub.get_message(timeout=2)
            trace = ctx.recorder.consumer_trace(ctx.name)
            ctx.gate()
            while not ctx.stopping:
                m = pubsub.get_message(timeout=0.05)
                if m and m["type"] == "message":
                    trace.record(Delivery(Event.from_bytes(m["data"]), time.time_ns()))

        def sender(ctx, url, channel):
            import redis
            client = redis.Redis.from_url(url, socket_timeout=5)
            trace = ctx.recorder.producer_trace(ctx.name)
            ctx.gate()
            for seq in range(10):
                event = edalab.new_event("order.placed", label(seq), producer=ctx.name, seq=seq)
                client.publish(channel, event.to_bytes())
                trace.record(event)

        sc = edalab.Scenario(run_dir=sys.argv[1])
        sc.add("listener", listener, kwargs={{"url": {lab.redis_url!r}, "channel": "script-orders"}})
        sc.add("sender", sender, kwargs={{"url": {lab.redis_url!r}, "channel": "script-orders"}})
        with sc.run(progress=False) as run:
            run.wait_finished("sender", timeout_s=20)
            assert run.until_delivered(10, timeout_s=10)
        print("delivered", sc.recorder.summary().loc["listener", "delivered"])
    """))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], cwd=elsewhere,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "delivered 10" in out.stdout
    log = (tmp_path / "run" / "role-listener.log").read_text()
    assert "RuntimeWarning" not in log


def test_servers_and_roles_share_one_child_process_base():
    assert issubclass(edalab.KafkaServer, ChildProcess) and issubclass(Role, ChildProcess)


def test_runs_are_kept_in_one_folder_and_old_ones_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("EDALAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EDALAB_KEEP_RUNS", "3")
    folders = []
    for _ in range(5):
        folders.append(Scenario("prune").run_dir)
        os.utime(folders[-1], (time.time() - 100 + len(folders), time.time() - 100 + len(folders)))
    left = sorted(p for p in (tmp_path / "runs").iterdir())
    assert len(left) == 3 and folders[-1] in left and folders[0] not in left


def test_paused_role_uses_no_cpu(tmp_path):
    def spin(ctx):
        ctx.ready()
        while not ctx.stopping:
            pass

    with Role("spinner", spin, Recorder(tmp_path)) as role:
        role.pause()
        assert psutil.Process(role.pid).status() == psutil.STATUS_STOPPED
        # The kernel books a spinning process's last slice when it stops: read after that.
        time.sleep(0.2)
        before = role.cpu_seconds()
        time.sleep(0.5)
        assert role.cpu_seconds() == pytest.approx(before, abs=0.02)
        role.resume()
        # Spinning again: on a loaded machine it gets only a share of a core, so wait for it.
        deadline = time.monotonic() + 10
        while role.cpu_seconds() < before + 0.1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert role.cpu_seconds() >= before + 0.1


def test_a_slow_start_on_the_timeline_does_not_hold_up_the_next_action(tmp_path):
    def slow_to_get_ready(ctx, delay_s):
        ctx.sleep(delay_s)
        ctx.gate()
        while not ctx.stopping:
            ctx.sleep(0.01)

    sc = Scenario(run_dir=tmp_path)
    sc.add("fast", slow_to_get_ready, kwargs={"delay_s": 0.0})
    sc.add("slow", slow_to_get_ready, kwargs={"delay_s": 1.5}, start=False)
    with sc.run(progress=False) as run:
        run.at(0.1).start("slow")
        run.at(0.2).kill("fast")
        run.sleep(2.5)
    life = sc.recorder.lifecycle()
    gate = life.loc[life["what"] == "opened", "at_ns"].iloc[0]
    at = {role: (life.loc[(life["role"] == role) & (life["what"] == what), "at_ns"].iloc[-1] - gate) / 1e9
          for role, what in (("fast", "killed"), ("slow", "ready"))}
    assert at["fast"] < at["slow"] and at["slow"] > 1.5, at


def test_the_runs_progress_bar_moves_while_it_waits_for_a_producer(lab, capsys):
    channel = f"orders-{time.time_ns()}"
    sc = Scenario("test-progress")
    sc.add("waiter", _redis_listener, kwargs={"url": lab.redis_url, "channel": channel})
    sc.add("kitchen", _redis_sender, kwargs={"url": lab.redis_url, "channel": channel, "count": 100})
    with sc.run(expect_events=100, progress="kitchen to waiter") as run:
        run.wait_finished("kitchen", timeout_s=20)  # not until_delivered: the run's bar still moves
        assert 0 < run._bar.n <= 100
    err = capsys.readouterr().err
    assert "kitchen to waiter" in err and "/100" in err


def test_a_labelled_run_without_a_count_still_shows_what_runs_then_takes_a_total(lab, capsys):
    channel = f"orders-{time.time_ns()}"
    sc = Scenario("test-progress-timed")
    sc.add("waiter", _redis_listener, kwargs={"url": lab.redis_url, "channel": channel})
    sc.add("kitchen", _redis_sender, kwargs={"url": lab.redis_url, "channel": channel, "count": 30})
    with sc.run(progress="a timed run") as run:  # no expect_events: events so far, and the time
        assert run._bar is not None and run._bar.total is None
        assert run.until_delivered(30, roles=["waiter"], timeout_s=20)
        assert run._bar.total == 30  # until_delivered gave the bar its total
    with Scenario("test-no-label").run(progress=True) as run:  # no label, no count: no bar, as before
        assert run._bar is None
    assert "a timed run" in capsys.readouterr().err
