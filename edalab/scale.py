"""A scale model of polling vs push, calibrated on this machine's real many-client runs (notebook 11).

One laptop cannot run a million clients. This model takes the costs measured by
:func:`edalab.experiments.many_clients_sweep` (a real uvicorn server, hundreds of
real clients) and predicts the same quantities for any N, per method:

* **server CPU** (CPU seconds per second): ``idle + a * x**b`` for one server, where
  ``x`` is the server's work per second: requests for REST polling and long polling,
  pushed events (clients x updates) for SSE. ``a`` and ``b`` are fitted per method on
  the run (``b < 1`` when a busier server handles several requests per wake-up). For
  REST polling ``a`` also scales as ``interval**c`` (fitted when the run polled at two
  or more intervals): a poll on a connection that sat idle for a second costs the
  server about twice one that came 0.1 s after the last;
* **requests/s**: ``N / interval`` (polling), about 0 (SSE: one request per connection);
  long polling answers each client once per update, *unless* the next update comes
  while the server is still answering the last one: a client whose answer was not yet
  written gets both in one answer. With the server busy ``S`` per update (below), that
  leaves ``N (1 - exp(-λS)) / (λS)`` answers per update: ``N x update rate`` for rare
  updates, at most ``N / S`` (one per fan-out) when they come faster than it;
* **open connections** and **memory**: one keep-alive connection per client (a poller
  whose interval is longer than the server's keep-alive reconnects each time instead),
  memory per connection measured;
* **delay**: polling ``interval / 2 + response``; push ``d0 + k * clients per server``
  (one server writes to its clients one after the other), fitted on the run, plus the
  time an update waits while the server still writes the one before: one server
  process is one queue whose job per update is its *fan-out* ``S = clients x CPU per
  answer`` (from the CPU curve, no new parameter); pending updates share the next
  fan-out, so with updates at random moments (``x = λS``) the mean wait is
  ``S/2 x x e^x / (1 + x e^x)``: ``λS²/2`` for rare updates, never more than ``S/2``.
  It is why push's delay grows faster than linearly with clients: ``S`` grows with N
  and the wait with ``S²``. (Long polling feels it most: its answer costs a request,
  five times an SSE event.) Line and fan-out are per core-second: a server that waits
  for a core (2 cores shared with the clients, other work on the machine) takes
  *stretch* = ``1 + run-queue wait / CPU`` (the scheduler's counters, measured per
  step) wall seconds per CPU second. The line is fitted on each step's delay less its
  wait, over its stretch, so a run on a busy machine calibrates a server with a core
  of its own (long polling's shared answers use the CPU fan-out: on a busy machine the
  run's lie between that and the wall fan-out's);
* **waste and staleness** of polled state with updates at random moments (rate λ):
  an answer is unchanged with probability ``exp(-λT)``; the copy is stale, and an
  update is never seen, a share ``1 - (1 - exp(-λT)) / (λT)`` of the time.

:func:`servers_needed` then adds servers until each stays under its CPU target and
connection limit; :func:`simulate` draws every client's delay and staleness (numpy,
vectorised over clients; a million clients in well under 10 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edalab import _checks
from edalab._errors import ConfigError

__all__ = ["Calibration", "ServerLimits", "calibrate", "predict", "simulate", "servers_needed",
           "agreement", "max_rel_error", "METHODS"]

METHODS = ("rest-poll", "long-poll", "sse")


@dataclass(frozen=True)
class ServerLimits:
    """What one server may carry: ``cores`` x ``cpu_target`` CPU seconds per second,
    ``max_connections`` open connections, ``memory_bytes`` for connections; keep-alive
    connections idle longer than ``keepalive_s`` are closed (uvicorn's default here: 75 s)."""

    cores: int = 4
    cpu_target: float = 0.7
    max_connections: int = 50_000
    memory_bytes: float = 8 * 2**30
    keepalive_s: float = 75.0


@dataclass(frozen=True)
class Calibration:
    """Costs measured on one run (see :func:`calibrate`); every field in the unit its name says."""

    idle_cpu_per_s: float
    cpu_curves: dict            # method -> (a, b, x_top): CPU s/s = idle + a * x**b up to the largest measured x
    response_ms: float          # a poll's answer time at low load (median)
    push_delay_ms: dict         # method -> (d0_ms, ms per client on one server)
    memory_per_connection_bytes: float
    update_rate_per_s: float
    source: dict = field(default_factory=dict)
    # updates per second during the idle step: the idle cost is mostly taking in updates
    # (a POST each), so it is scaled by each step's own update rate
    idle_update_rate_per_s: float = 0.0
    # REST polling's cost per request scales as interval ** this (> 0: a request on a connection
    # that sat idle longer costs more), within the measured intervals (beyond them, their end's)
    poll_interval_exponent: float = 0.0
    poll_intervals_s: tuple = (1.0, 1.0)


def _idle(calibration: Calibration, rate_per_s) -> float:
    """Server CPU s/s without clients at ``rate_per_s`` updates per second."""
    if calibration.idle_update_rate_per_s > 0 and rate_per_s is not None:
        return calibration.idle_cpu_per_s * rate_per_s / calibration.idle_update_rate_per_s
    return calibration.idle_cpu_per_s


def _work_per_s(method: str, clients, interval_s: float, rate_per_s: float):
    clients = np.asarray(clients, dtype=float)
    if method == "rest-poll":
        return clients / interval_s
    return clients * rate_per_s                 # long-poll: answers; sse: pushed events


def _requests_per_s(method: str, clients, interval_s: float, rate_per_s: float, fanout_s=None):
    clients = np.asarray(clients, dtype=float)
    if method == "sse":
        return clients * 0.0
    if method == "long-poll" and fanout_s is not None:
        return clients * _answers_per_update(rate_per_s, fanout_s) * rate_per_s
    return _work_per_s(method, clients, interval_s, rate_per_s)


def _answers_per_update(rate_per_s: float, fanout_s):
    """Long polling: the share of clients that get a separate answer per update. A client
    at place ``u`` (0..1) of a fan-out of ``S`` seconds takes the next update into the same
    answer when it comes within ``uS``: on average ``(1 - exp(-λS)) / (λS)`` answers per update."""
    x = np.maximum(np.asarray(rate_per_s * fanout_s, dtype=float), 1e-9)
    return -np.expm1(-x) / x


def _wait_ms(rate_per_s: float, fanout_s):
    """Mean wait (ms) of an update behind the fan-out of the one before. A fan-out takes
    ``S`` and carries every update that came while the one before was written (long polls
    and SSE streams both send what is pending in one answer), so the server works in
    busy periods of back-to-back fan-outs: with updates at random moments (rate λ,
    ``x = λS``) a busy period holds ``e^x`` fan-outs on average, the server is busy a
    share ``x e^x / (1 + x e^x)`` of the time, and an update that comes while it is
    waits half a fan-out on average. For rare updates that is ``λS²/2``, as in any
    queue; it never exceeds ``S/2``, because pending updates share the next fan-out."""
    fanout_s = np.asarray(fanout_s, dtype=float)
    x = rate_per_s * fanout_s
    grows = x * np.exp(np.minimum(x, 50.0))
    return 1000 * grows / (1 + grows) * fanout_s / 2


def _fanout_s(calibration: "Calibration", method: str, clients_per_process, rate_per_s: float):
    """Seconds one server process is busy per update: its clients x its CPU per answer
    (or per pushed event) at that load, from the fitted CPU curve (idle cost left out)."""
    n = np.asarray(clients_per_process, dtype=float)
    x = np.maximum(n * rate_per_s, 1e-9)
    per_unit_s = (_cpu_one(calibration, method, x, None) - _idle(calibration, None)) / x
    return n * per_unit_s


def _stretch(rows) -> np.ndarray:
    """Wall seconds per CPU second of the server in each measured step: ``1 + run-queue wait /
    CPU`` (the scheduler's own counters). A server sharing 2 cores with its clients, and on a
    busy machine with other work, waits for a core: its fan-out then lasts that much longer.
    1 where the run did not measure it."""
    if "server_wait_per_s" not in rows:
        return np.ones(len(rows))
    wait = rows["server_wait_per_s"].to_numpy(float) / np.maximum(rows["server_cpu_per_s"].to_numpy(float), 1e-9)
    return 1 + np.nan_to_num(np.clip(wait, 0, None), nan=0.0)


def calibrate(result) -> Calibration:
    """Fit the model's costs on a :class:`~edalab.experiments.ManyClientsResult` (its own run)."""
    s = result.measured()
    # A saturated step (pollers answered less than asked, or a core's worth of server CPU)
    # measures the machine's limit, not the cost per request: the model is fitted without it.
    asked = s["clients"] / s["poll_interval_s"]
    saturated = ((s["method"] == "rest-poll") & (s["requests_per_s"] < 0.85 * asked)) | (s["server_cpu_per_s"] >= 0.9)
    if (~saturated).any():
        s = s[~saturated]
    idle = result.idle_cpu_per_s()
    idle_rate = float(result.summary.loc[result.summary["method"] == "idle", "updates_per_s"].iloc[0])
    curves, push = {}, {}
    poll_c, poll_range = 0.0, (1.0, 1.0)
    for method, rows in s.groupby("method"):
        if method != "rest-poll":              # push work needs updates: windows without any say nothing
            rows = rows[rows["updates_per_s"] > 0]
        x = _work_per_s(method, rows["clients"], rows["poll_interval_s"].fillna(1.0).to_numpy(),
                        rows["updates_per_s"].to_numpy())
        if method == "long-poll":               # the answers the server wrote (updates coalesce)
            x = rows["requests_per_s"].to_numpy(float)
        base = idle * rows["updates_per_s"].to_numpy() / idle_rate if idle_rate > 0 else idle
        y = np.maximum(rows["server_cpu_per_s"].to_numpy() - base, 1e-6)
        intervals = rows["poll_interval_s"].to_numpy(float)
        if method == "rest-poll" and len(set(intervals)) > 1 and len(rows) >= 4:
            # log CPU = log a + b log x + c log interval: three numbers on four or more steps
            design = np.c_[np.ones(len(x)), np.log(x), np.log(intervals)]
            (log_a, b, poll_c), *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
            poll_range = (float(intervals.min()), float(intervals.max()))
        elif len(set(np.round(x))) > 1:
            b, log_a = np.polyfit(np.log(x), np.log(y), 1)
        else:
            b, log_a = 1.0, float(np.log(np.mean(y / x)))
        curves[method] = (float(np.exp(log_a)), float(b), float(np.max(x)))
        if method != "rest-poll":
            timed = rows.dropna(subset=["latency_mean_ms"])
            n, d = timed["clients"].to_numpy(float), timed["latency_mean_ms"].to_numpy()
            # The fan-out line is fitted on a server with a core of its own (each step's delay
            # over its stretch), without the wait behind earlier updates, which the model adds
            # from the CPU per answer (its own term, not a fitted one).
            partial = Calibration(idle, {method: curves[method]}, 1.0, {}, 1.0, 1.0)
            rate, stretch = timed["updates_per_s"].to_numpy(float), _stretch(timed)
            d = (d - _wait_ms(rate, stretch * _fanout_s(partial, method, n, rate))) / stretch
            k, d0 = np.polyfit(n, d, 1) if len(set(n)) > 1 else (0.0, float(d.mean()))
            if d0 < 0:                  # no delay below zero at few clients: the line through 0
                k, d0 = float(np.dot(n, d) / np.dot(n, n)), 0.0
            push[method] = (float(d0), float(max(k, 0.0)))
    # A poll's answer time as the delay shows it (mean delay - interval / 2), the median over
    # the polling steps (one starved step does not set it): the clients' own timestamps
    # include their process's queueing.
    polls = s[s["method"] == "rest-poll"]
    offsets = (polls["latency_mean_ms"] - polls["poll_interval_s"] * 500).dropna()
    response_ms = float(offsets.median()) if len(offsets) else 1.0
    conn = s["open_connections"].to_numpy(float)
    idle_rss = float(result.summary.loc[result.summary["method"] == "idle", "server_rss_mb"].iloc[0])
    memory = float(np.nanmax((s["server_rss_mb"].to_numpy() - idle_rss) * 2**20 / np.maximum(conn, 1)))
    return Calibration(idle, curves, max(response_ms, 0.1), push, max(memory, 1024.0),
                       float(result.params.get("update_rate_per_s", 10.0)),
                       {"run_dir": result.params.get("run_dir"), "steps": len(s)},
                       idle_update_rate_per_s=idle_rate if idle_rate > 0 else 0.0,
                       poll_interval_exponent=float(poll_c), poll_intervals_s=poll_range)


def _check_method(method: str, calibration: Calibration) -> str:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    if method not in calibration.cpu_curves:
        raise ConfigError(f"This calibration has no {method!r} run; calibrate on a sweep that ran it.")
    return method


def _curve(calibration: Calibration, method: str, interval_s: float = 1.0) -> tuple:
    """(a, b, x_top) of ``method``; REST polling's ``a`` at ``interval_s`` (clamped to the run's intervals)."""
    a, b, x_top = calibration.cpu_curves[method]
    if method == "rest-poll" and calibration.poll_interval_exponent:
        low, high = calibration.poll_intervals_s
        a = a * float(np.clip(interval_s, low, high)) ** calibration.poll_interval_exponent
    return a, b, x_top


def _cpu_one(calibration: Calibration, method: str, work_per_s, rate_per_s=None, interval_s: float = 1.0):
    """CPU s/s of one server process doing ``work_per_s``: the fitted curve up to the largest
    measured load, and beyond it that load's average cost per unit (no economy of scale
    the run did not show)."""
    a, b, x_top = _curve(calibration, method, interval_s)
    x = np.asarray(work_per_s, dtype=float)
    return _idle(calibration, rate_per_s) + np.where(x <= x_top, a * x ** b, a * x_top ** (b - 1) * x)


def _work_max(calibration: Calibration, method: str, target: float, rate_per_s=None,
              interval_s: float = 1.0) -> float:
    """The work per second one process carries at ``target`` CPU s/s."""
    a, b, x_top = _curve(calibration, method, interval_s)
    budget = target - _idle(calibration, rate_per_s)
    if budget <= 0:
        raise ConfigError("cpu_target is below the server's idle cost: raise cpu_target.")
    if a * x_top ** b >= budget:
        return (budget / a) ** (1 / b)
    return budget / (a * x_top ** (b - 1))


def servers_needed(calibration: Calibration, method: str, clients, *, poll_interval_s: float = 1.0,
                   update_rate_per_s: float | None = None, limits: ServerLimits = ServerLimits()):
    """Servers for ``clients`` (array): enough that each stays under its CPU target, connection and
    memory limits; and which limit decided (``cpu``, ``connections``, ``memory``)."""
    rate = calibration.update_rate_per_s if update_rate_per_s is None else update_rate_per_s
    clients = np.asarray(clients, dtype=float)
    # One server process per core (a Python server uses one core); each at the CPU target.
    x_max = _work_max(calibration, method, limits.cpu_target, rate, poll_interval_s) * limits.cores
    connections = _connections(method, clients, poll_interval_s, limits, calibration)
    need = {"cpu": np.ceil(_work_per_s(method, clients, poll_interval_s, rate) / x_max),
            "connections": np.ceil(connections / limits.max_connections),
            "memory": np.ceil(connections * calibration.memory_per_connection_bytes / limits.memory_bytes)}
    stacked = np.vstack([need["cpu"], need["connections"], need["memory"]])
    servers = np.maximum(stacked.max(axis=0), 1)
    bottleneck = np.array(["cpu", "connections", "memory"])[stacked.argmax(axis=0)]
    return servers, bottleneck


def _connections(method, clients, interval_s, limits, calibration):
    if method == "rest-poll" and interval_s > limits.keepalive_s:
        return clients * min(1.0, calibration.response_ms / 1000 / interval_s)
    return clients


def predict(calibration: Calibration, method: str, clients, *, poll_interval_s: float = 1.0,
            update_rate_per_s: float | None = None, limits: ServerLimits = ServerLimits(),
            one_server: bool = False, stretch: float = 1.0) -> pd.DataFrame:
    """The model's numbers for each N in ``clients`` (a list or array; vectorised).

    ``one_server=True`` keeps every client on one server (what a measured step did);
    otherwise servers are added as :func:`servers_needed` says, and CPU and delays are
    those of the servers sharing the load. Columns as in the measured summary, plus
    ``servers`` and ``bottleneck``. ``stretch``: wall seconds per CPU second of a server
    (1: a core of its own; :func:`agreement` passes each measured step's, as the scheduler
    counted it), which lengthens push's fan-out and so its delay and long polling's sharing.
    """
    method = _check_method(method, calibration)
    interval = _checks.number(poll_interval_s, "poll_interval_s", unit="seconds", positive=True)
    rate = calibration.update_rate_per_s if update_rate_per_s is None else _checks.number(
        update_rate_per_s, "update_rate_per_s", unit="updates per second", positive=True)
    n = np.atleast_1d(np.asarray(clients, dtype=float))
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise ConfigError("clients must be numbers >= 0 (how many clients watch the state).")
    if one_server:
        servers, bottleneck = np.ones_like(n), np.array(["-"] * len(n))
    else:
        servers, bottleneck = servers_needed(calibration, method, n, poll_interval_s=interval,
                                             update_rate_per_s=rate, limits=limits)
    processes = servers if one_server else servers * limits.cores
    stretch = _checks.number(stretch, "stretch", unit="wall seconds per CPU second", minimum=1.0)
    fanout_s = _fanout_s(calibration, method, n / processes, rate) if method != "rest-poll" else np.zeros_like(n)
    requests = _requests_per_s(method, n, interval, rate, fanout_s)
    work = requests if method == "long-poll" else _work_per_s(method, n, interval, rate)
    cpu = processes * _cpu_one(calibration, method, work / processes, rate, interval)
    busy = np.clip(cpu / processes - _idle(calibration, rate), 0, 0.95)
    if method == "rest-poll":
        response = calibration.response_ms / (1 - busy)          # a busier server answers later
        mean = interval * 1000 / 2 + response
        p50, p99 = mean, interval * 1000 * 0.99 + response
        lam_t = rate * interval
        wasted = np.full_like(n, math.exp(-lam_t))
        stale = np.full_like(n, 1 - (1 - math.exp(-lam_t)) / lam_t)
        missed = stale
    else:
        d0, per_client = calibration.push_delay_ms[method]
        fan = stretch * per_client * n / processes        # each process writes to its clients in turn
        mean = stretch * d0 + fan
        mean = mean + _wait_ms(rate, stretch * fanout_s)  # behind the fan-out before, in wall seconds
        p50, p99 = mean, mean + 0.98 * fan
        wasted = np.zeros_like(n)
        stale = np.minimum(rate * mean / 1000, 1.0)
        missed = np.zeros_like(n)
    connections = _connections(method, n, interval, limits, calibration)
    return pd.DataFrame({
        "method": method, "poll_interval_s": interval if method == "rest-poll" else np.nan, "clients": n,
        "servers": servers, "bottleneck": bottleneck, "server_cpu_per_s": cpu,
        "requests_per_s": requests, "open_connections": connections,
        "memory_mb": connections * calibration.memory_per_connection_bytes / 2**20,
        "latency_mean_ms": mean * np.ones_like(n), "latency_p50_ms": p50 * np.ones_like(n),
        "latency_p99_ms": p99 * np.ones_like(n), "wasted_fraction": wasted, "stale_fraction": stale,
        "missed_fraction": missed})


def simulate(calibration: Calibration, method: str, clients: int = 1_000_000, *, poll_interval_s: float = 1.0,
             update_rate_per_s: float | None = None, updates: int = 16, limits: ServerLimits = ServerLimits(),
             seed: int = 1) -> dict:
    """Monte Carlo over every client (numpy, vectorised): delay p50/p99/mean, stale and missed shares.

    Updates come at random moments (rate λ); each poller has its own random phase,
    each pushed client its own place in its server's fan-out. One pass per update
    over all clients: memory stays at a few arrays of ``clients`` floats.
    """
    method = _check_method(method, calibration)
    n = _checks.count(clients, "clients", minimum=1, maximum=50_000_000)
    updates = _checks.count(updates, "updates", minimum=2, maximum=10_000)
    rate = calibration.update_rate_per_s if update_rate_per_s is None else update_rate_per_s
    row = predict(calibration, method, [n], poll_interval_s=poll_interval_s, update_rate_per_s=rate,
                  limits=limits).iloc[0]
    rng = np.random.default_rng(seed)
    times_s = np.cumsum(rng.exponential(1 / rate, updates + 1))
    delays = np.empty((updates, n), dtype=np.float32)
    stale_s = np.zeros(n)
    missed = np.zeros(n)
    if method == "rest-poll":
        phase = rng.uniform(0, poll_interval_s, n)
        response_s = (row["latency_mean_ms"] - poll_interval_s * 1000 / 2) / 1000
        for k in range(updates):
            next_poll = phase + poll_interval_s * np.ceil((times_s[k] - phase) / poll_interval_s)
            learned = next_poll + response_s
            delays[k] = learned - times_s[k]
            stale_s += np.minimum(learned, times_s[k + 1]) - times_s[k]
            missed += next_poll > times_s[k + 1]             # overwritten before the client asked
    else:
        d0, per_client = calibration.push_delay_ms[method]
        spread_s = 2 * (row["latency_mean_ms"] - d0) / 1000
        for k in range(updates):
            delays[k] = max(d0, 0.0) / 1000 + rng.uniform(0, spread_s, n)
            stale_s += np.minimum(delays[k], times_s[k + 1] - times_s[k])
    flat = delays.reshape(-1)
    # one in-place partial sort for both percentiles (np.percentile copies and sorts twice)
    ranks = [int(0.5 * (flat.size - 1)), int(0.99 * (flat.size - 1))]
    mean_s = float(flat.mean(dtype=np.float64))
    flat.partition(ranks)
    p50_s, p99_s = float(flat[ranks[0]]), float(flat[ranks[1]])
    return {"method": method, "clients": n, "servers": float(row["servers"]), "latency_mean_ms": mean_s * 1000,
            "latency_p50_ms": p50_s * 1000, "latency_p99_ms": p99_s * 1000,
            "stale_fraction": float(stale_s.sum() / (n * (times_s[updates] - times_s[0]))),
            "missed_fraction": float(missed.sum() / (n * updates))}


def agreement(result, calibration: Calibration | None = None) -> pd.DataFrame:
    """Measured vs predicted (one server, each step's own update rate and stretch) for every measured step.

    The stretch (wall seconds per CPU second of the server, from its run-queue wait) is
    what the step's machine gave the server: on 2 cores shared with the clients, and
    with other work, a server waits for a core, and push's fan-out lasts that much
    longer. The model is calibrated per core-second and compared at the step's stretch.

    Relative errors ``(predicted - measured) / measured`` of server CPU, requests/s (where
    any were made) and mean delay; the run's own calibration unless one is given.
    ``saturated`` marks a step where the server (or the machine it shares with the
    clients) could not keep up: pollers got fewer than 85 % of the answers they asked
    for, or the server used 90 % of a core. The model never runs a server there (it adds
    servers first), so such a step is outside where model and run overlap.
    """
    cal = calibrate(result) if calibration is None else calibration
    rows = []
    measured = result.measured()
    for (_, m), stretch in zip(measured.iterrows(), _stretch(measured)):
        interval = m["poll_interval_s"] if m["method"] == "rest-poll" else 1.0
        # a window without updates (random moments) measured no delay; its rate is then the run's
        rate = m["updates_per_s"] if m["updates_per_s"] > 0 else cal.update_rate_per_s
        p = predict(cal, m["method"], [m["clients"]], poll_interval_s=interval,
                    update_rate_per_s=rate, one_server=True, stretch=float(stretch)).iloc[0]
        asked = m["clients"] / m["poll_interval_s"] if m["method"] == "rest-poll" else np.nan
        row = {"method": m["method"], "poll_interval_s": m["poll_interval_s"], "clients": m["clients"],
               "stretch": float(stretch),
               "saturated": bool(m["requests_per_s"] < 0.85 * asked or m["server_cpu_per_s"] >= 0.9)}
        for col in ("server_cpu_per_s", "requests_per_s", "latency_mean_ms"):
            row[f"measured_{col}"], row[f"predicted_{col}"] = m[col], p[col]
            row[f"rel_error_{col}"] = (p[col] - m[col]) / m[col] if m[col] > 0 else np.nan  # NaN: not measured
        rows.append(row)
    return pd.DataFrame(rows)


def max_rel_error(result, calibration: Calibration | None = None, methods=None,
                  include_saturated: bool = False) -> float:
    """The largest |relative error| of :func:`agreement` (server CPU, requests/s, mean delay),
    over ``methods`` (default all) and the steps that were not saturated (unless asked)."""
    table = agreement(result, calibration)
    if not include_saturated:
        table = table[~table["saturated"]]
    if methods is not None:
        table = table[table["method"].isin(list(methods))]
    errors = table[[c for c in table if c.startswith("rel_error_")]].abs().to_numpy()
    return float(np.nanmax(errors))
