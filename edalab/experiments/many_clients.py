"""Many clients against one real HTTP server: polling, long polling and push (notebook 11).

Notebook 02 measured one consumer. "Events scale, polling does not" is a claim about
N consumers, so here N clients (asyncio coroutines, spread over a few client
processes: :func:`edalab.experiments._scale_clients.watch_state`) watch one piece of
state on the event service, a real uvicorn server in its own process, while a
producer changes that state at random moments (``update_rate_per_s``).

The run is one :class:`~edalab.Scenario` with a timeline of *steps*: first an idle
step (server and producer only: the server's base cost), then one step per method
and N. Each step opens its clients' connections, settles, and is measured over a
window: the server's CPU seconds per second, requests per second (counted by the
server), open TCP connections and memory (from the server process), and, from the
clients' observations, the delay until each client knew each update, wasted
(unchanged) answers, the share of time a polled copy was stale and the updates a
poller never saw. :mod:`edalab.scale` is calibrated from this result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edalab import _checks
from edalab._config import new_run_dir, quick_mode
from edalab.harness import Scenario
from edalab.roles import produce
from edalab.workloads import poisson

if TYPE_CHECKING:
    from edalab.experiments._scale_analysis import ManyClientsResult

__all__ = ["many_clients_sweep", "SCALE_METHODS"]

#: the methods compared (``method`` column), as in notebook 02
SCALE_METHODS = ("rest-poll", "long-poll", "sse")
_CLIENT_MODE = {"rest-poll": "poll", "long-poll": "long-poll", "sse": "sse"}
#: seconds after a step starts (its clients connect) before its window is measured
SETTLE_S = 0.5
QUICK_CLIENTS = (30, 120)
QUICK_METHODS = ("rest-poll", "sse")
FULL_CLIENTS = (50, 150, 300, 450)
QUICK_INTERVALS_S = (0.2, 0.5)
FULL_INTERVALS_S = (0.1, 0.25, 1.0)


def _check(clients, methods, poll_intervals_s, update_rate_per_s, window_s, processes, quick, seed,
           push_window_s=None) -> dict:
    quick = quick_mode(quick)
    clients = [_checks.count(n, f"clients[{i}]", minimum=1, maximum=5000, sensible_max=1000, what="clients")
               for i, n in enumerate(_checks.numbers(
                   (QUICK_CLIENTS if quick else FULL_CLIENTS) if clients is None else clients,
                   "clients", unit="clients", positive=True))]
    # Quick (CI) leaves long polling out: the notebook stays within its time budget on 2 cores
    methods = _checks.choices((QUICK_METHODS if quick else SCALE_METHODS) if methods is None else methods,
                              "methods", SCALE_METHODS)
    intervals = _checks.numbers((QUICK_INTERVALS_S if quick else FULL_INTERVALS_S)
                                if poll_intervals_s is None else poll_intervals_s,
                                "poll_intervals_s", unit="seconds", positive=True, maximum=60, sensible=(0.05, 10))
    rate = _checks.number(6.0 if update_rate_per_s is None else update_rate_per_s, "update_rate_per_s",
                          unit="updates per second", positive=True, sensible=(0.2, 50))
    window_s = _checks.number((1.2 if quick else 4.0) if window_s is None else window_s, "window_s",
                              unit="seconds", minimum=0.5, maximum=120, sensible=(0.8, 30))
    push_window_s = window_s if push_window_s is None else _checks.number(
        push_window_s, "push_window_s", unit="seconds", minimum=0.5, maximum=120, sensible=(0.8, 30))
    processes = _checks.count(2 if processes is None else processes, "processes", minimum=1, maximum=16,
                              what="client processes")
    seed = _checks.count(seed, "seed")
    return dict(quick=quick, clients=sorted(set(clients)), methods=list(dict.fromkeys(methods)),
                poll_intervals_s=sorted(set(intervals), reverse=True), update_rate_per_s=rate,
                window_s=window_s, push_window_s=push_window_s, processes=processes, seed=seed)


def _steps(p: dict) -> list[dict]:
    """The timeline: an idle step, then each method (each poll interval) at each N."""
    steps = [{"method": "idle", "clients": 0, "poll_interval_s": float("nan")}]
    for method in p["methods"]:
        for interval in (p["poll_intervals_s"] if method == "rest-poll" else [float("nan")]):
            steps += [{"method": method, "clients": n, "poll_interval_s": interval} for n in p["clients"]]
    gap_s = 0.2                                    # connections of the last step close in the gap
    start_s = 0.2
    for step in steps:
        # Measured: the window after the settle; then a tail of one poll interval, so an
        # update near the window's end is still learned by every client before it hangs up.
        # A poller's first poll comes up to one interval after it connected: the window
        # starts once every client has polled at least once.
        tail_s = step["poll_interval_s"] if step["method"] == "rest-poll" else 0.4
        settle_s = max(SETTLE_S, tail_s + 0.1)
        window_s = p["push_window_s"] if step["method"] in ("long-poll", "sse") else p["window_s"]
        step.update(start_s=start_s, window_start_s=start_s + settle_s,
                    window_end_s=start_s + settle_s + window_s, mode=_CLIENT_MODE.get(step["method"], "poll"))
        step["end_s"] = step["window_end_s"] + tail_s + 0.1
        start_s = step["end_s"] + gap_s
    return steps


def many_clients_sweep(lab=None, *, clients: Sequence[int] | None = None, methods: Sequence[str] | None = None,
                       poll_intervals_s: Sequence[float] | None = None, update_rate_per_s: float | None = None,
                       window_s: float | None = None, push_window_s: float | None = None,
                       processes: int | None = None, quick: bool | None = None,
                       seed: int = 1, run_dir: str | Path | None = None,
                       progress: bool = True) -> ManyClientsResult:
    """Measure one HTTP server under N clients per method (notebook 11).

    Args:
        lab: unused (the event service is started here); accepted so every
            experiment is called the same way.
        clients: the N values, as a list (default 50-450; quick: 30, 120).
        methods: from :data:`SCALE_METHODS` (default all three; quick: REST polling and SSE).
        poll_intervals_s: REST poll intervals in seconds (default 0.1, 0.25, 1; quick 0.2, 0.5).
        update_rate_per_s: how often the watched state changes (random moments; default 6).
        window_s: seconds measured per (method, N) step, after :data:`SETTLE_S` for
            the clients to connect (default 4; quick 1.2).
        push_window_s: the window of the long-polling and SSE steps (default ``window_s``).
            Their mean delay is a mean over the window's *updates* (all clients learn
            one update together, so one scheduler hiccup moves every client's delay):
            more updates, not more clients, make it precise.
        processes: client processes the coroutines are spread over (default 2).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: the update times are reproducible with the same seed.
        run_dir: keep the traces here (default: a new folder in the runs directory).
        progress: show a progress bar.
    """
    from edalab._servers import free_port
    from edalab.experiments._scale_analysis import analyse
    from edalab.experiments._scale_clients import watch_state
    from edalab.transports.http import EventServiceSpec, serve_event_service

    p = _check(clients, methods, poll_intervals_s, update_rate_per_s, window_s, processes, quick, seed, push_window_s)
    steps = _steps(p)
    root = Path(run_dir) if run_dir is not None else new_run_dir("many-clients")
    base_url = f"http://127.0.0.1:{free_port()}"
    total_s = steps[-1]["end_s"]          # updates end with the last step: the producer is done before the service stops
    schedule_s = [t for t in poisson(int(total_s * p["update_rate_per_s"] * 1.5) + 10,
                                     p["update_rate_per_s"], p["seed"]) if t < total_s]
    sc = Scenario("many-clients", run_dir=root)
    service = sc.add("service", serve_event_service, kwargs={"base_url": base_url})
    spec = EventServiceSpec(base_url, mode="poll")
    sc.add("producer", produce, kwargs={"spec": spec, "schedule_s": schedule_s, "keys": 1,
                                        "event_type": "state.changed"})
    client_roles = [sc.add(f"clients-{i}", watch_state, stop_timeout_s=30.0,
                           kwargs={"base_url": base_url, "steps": steps, "process": i, "processes": p["processes"]})
                    for i in range(p["processes"])]
    samples = []
    from tqdm.auto import tqdm

    # One bar over the steps (the run's own bar counts events, and this run has none to expect)
    bar = tqdm(total=len(steps), desc="many clients", unit="step", disable=not progress, leave=False)
    with sc.run(progress=False) as run:
        for number, step in enumerate(steps):
            bar.set_postfix_str(f"{step['method']} N={step['clients']}")
            w0, w1 = step["window_start_s"], step["window_end_s"]
            run.sleep(max(w0 - run.elapsed_s(), 0.0))
            before = _server_sample(base_url, service, client_roles)
            run.sleep(max((w0 + w1) / 2 - run.elapsed_s(), 0.0))
            middle = _server_sample(base_url, service, client_roles, connections=True)
            run.sleep(max(w1 - run.elapsed_s(), 0.0))
            after = _server_sample(base_url, service, client_roles)
            samples.append({"step": number, "before": before, "middle": middle, "after": after})
            bar.update()
        bar.close()
        run.wait_finished("producer", timeout_s=30)
        for i in range(p["processes"]):
            run.wait_finished(f"clients-{i}", timeout_s=60)
    params = {**p, "run_dir": str(root), "settle_s": SETTLE_S, "steps": steps}
    return analyse(sc.recorder, steps, samples, run.gate_ns, params)


def _cpu_s(pid: int, field: int = 0) -> float:
    """CPU seconds of every thread of ``pid`` so far, from the scheduler's ns counters
    (``field=1``: seconds it was ready to run but waited for a core instead).

    ``psutil``'s CPU times count clock ticks (10 ms): too coarse for a 1.5 s window
    of a server that is busy 3 % of the time. ``/proc/<pid>/task/*/schedstat`` counts
    ns (Linux); elsewhere fall back to psutil.
    """
    import glob

    import psutil

    total_ns, found = 0, False
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total_ns += int(f.read().split()[field])
            found = True
        except (OSError, ValueError, IndexError):          # a thread that just ended
            pass
    if found:
        return total_ns / 1e9
    if field:
        return float("nan")               # no run-queue counter here
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _server_sample(base_url: str, service, clients=(), connections: bool = False) -> dict:
    """The server's CPU seconds, request counts by route, memory and (optionally) open connections;
    the client processes' CPU seconds (the model's delay terms are calibrated on their cost per answer)."""
    import time

    import httpx
    import psutil

    with httpx.Client(timeout=5.0) as client:
        stats = client.get(base_url + "/stats").json()
    # CPU read right after the server counted: on a busy machine the owner may get the
    # answer late, so the request counts carry the server's own clock (stats_ns)
    sample = {"t_ns": time.time_ns(), "cpu_s": _cpu_s(service.pid), "requests": stats["requests"],
              "stats_ns": stats["now_ns"], "clients_cpu_s": sum(_cpu_s(c.pid) for c in clients),
              "wait_s": _cpu_s(service.pid, 1), "clients_wait_s": sum(_cpu_s(c.pid, 1) for c in clients)}
    process = psutil.Process(service.pid)
    sample["rss_bytes"] = process.memory_info().rss
    if connections:
        sample["connections"] = sum(c.status == psutil.CONN_ESTABLISHED for c in process.net_connections("tcp"))
    return sample
