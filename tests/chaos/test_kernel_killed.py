"""Chaos: the notebook's kernel is killed in the middle of an experiment (issue #12).

A learner restarts a kernel, or Jupyter's kernel dies, while an experiment runs: its
servers (Tansu, Valkey, NATS) and role processes must not outlive it. This runs a real
ipykernel through jupyter_client, starts a lab and an experiment in it, SIGKILLs the
kernel once roles are running, and checks the OS process table.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

jupyter_client = pytest.importorskip("jupyter_client")

EXPERIMENT = """
import edalab
lab = edalab.start(use_up=False)
edalab.experiments.polling_vs_push(lab, methods=("redis-pubsub",), events=400, rate_per_s=20,
                                   progress=False)
"""


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _living(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_no_server_or_role_outlives_a_kernel_killed_mid_experiment():
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.execute(EXPERIMENT)
        kernel_pid = km.provisioner.process.pid
        # Wait until the experiment runs: three servers and its two roles are the kernel's children.
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            children = _descendants(kernel_pid)
            names = " ".join(" ".join(p.cmdline()) for p in children if p.is_running())
            if all(word in names for word in ("tansu", "valkey", "nats-server")) and names.count("_role_child") >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the experiment did not get going in the kernel: {_living(children)}")
        assert len(children) >= 5, _living(children)
        os.kill(kernel_pid, signal.SIGKILL)  # no atexit, no finally in the kernel runs
        kc.stop_channels()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    deadline = time.monotonic() + 5
    while _living(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _living(children), f"left behind 5 s after the kernel was killed: {_living(children)}"
