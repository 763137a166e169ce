"""A login/authorization check as a REST call vs as request/reply over a broker (notebook 06).

The caller needs an answer *now* ("may ana open this order?"). Two ways to ask:

* ``rest``: ``POST /authorize`` to an auth service (Starlette in its own role process);
* ``redis-list``: push the question to a Redis list with a **correlation id** and the
  name of a **reply list**, then wait (``BRPOP``, with a timeout) for the answer with
  that id; an auth responder role pops questions and pushes answers.

A caller role per method asks at a steady rate from the gate. On the timeline both
responders are killed (SIGKILL) and later started again, so the run shows what a
caller sees while its responder is down: REST an error at once, the broker a timeout
later, and questions that wait in the list and are answered when nobody listens any
more. Every call goes to table ``calls``, every question a responder served to
table ``served``; the client functions' lines of code are counted from their source.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.harness import Scenario
from edalab.experiments._result import MethodRows

__all__ = ["RR_METHODS", "TOKENS", "authorize", "auth_app", "serve_auth_rest", "serve_auth_broker",
           "rest_authorize", "broker_authorize", "call_rest", "call_broker", "code_lines",
           "authorization_check", "RequestReplyResult"]

#: the ways of asking compared (the column ``method``)
RR_METHODS = ("rest", "redis-list")
#: the users the auth service knows, and their tokens
TOKENS = {"ana": "t-ana", "bo": "t-bo", "chen": "t-chen"}
REQUESTS_KEY = "auth:requests"


def authorize(user: str, token: str) -> bool:
    """The check itself, the same in both responders."""
    return TOKENS.get(user) == token


def auth_app():
    """The auth service: ``POST /authorize {"user", "token"}`` -> ``{"allowed": bool}``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request):
        return JSONResponse({"ok": True})

    async def check(request):
        body = await request.json()
        return JSONResponse({"allowed": authorize(body["user"], body["token"])})

    return Starlette(routes=[Route("/health", health), Route("/authorize", check, methods=["POST"])])


def serve_auth_rest(ctx, url: str) -> None:
    """Role: the auth service at ``url`` until asked to stop (or killed)."""
    from urllib.parse import urlparse

    from edalab.transports.http import BackgroundServer

    where = urlparse(url)
    with BackgroundServer(auth_app(), host=where.hostname, port=where.port):
        ctx.ready()
        while not ctx.sleep(0.2):
            pass


def serve_auth_broker(ctx, redis_url: str, requests_key: str = REQUESTS_KEY) -> None:
    """Role: pop questions from ``requests_key``, push each answer to its reply list."""
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    served = ctx.recorder.table_writer(ctx.name, "served", ["id", "at_ns"])
    ctx.ready()
    while not ctx.stopping:
        item = r.brpop([requests_key], timeout=0.2)
        if item is None:
            continue
        ask = json.loads(item[1])
        answer = {"id": ask["id"], "allowed": authorize(ask["user"], ask["token"])}
        r.lpush(ask["reply_to"], json.dumps(answer))
        r.expire(ask["reply_to"], 60)  # a caller that is gone leaves no list behind for long
        served.write({"role": ctx.name, "id": ask["id"], "at_ns": time.time_ns()})
    served.close()


# -- the two clients: what a caller must write (their lines are counted) -------------------

def rest_authorize(client, user, token, timeout_s):
    """Ask the auth service over HTTP; raises on an error or after timeout_s."""
    response = client.post("/authorize", json={"user": user, "token": token}, timeout=timeout_s)
    response.raise_for_status()
    return response.json()["allowed"]


def broker_authorize(r, user, token, reply_to, timeout_s, call_id=None):
    """Ask over Redis lists: a question with a correlation id, then wait for its answer."""
    call_id = call_id or uuid.uuid4().hex
    question = {"id": call_id, "reply_to": reply_to, "user": user, "token": token}
    r.lpush(REQUESTS_KEY, json.dumps(question))
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer to {call_id} within {timeout_s} s")
        item = r.brpop([reply_to], timeout=left)
        if item is None:
            raise TimeoutError(f"no answer to {call_id} within {timeout_s} s")
        answer = json.loads(item[1])
        if answer["id"] == call_id:     # an old answer (to a question we gave up on): skip
            return answer["allowed"]


def code_lines(function) -> int:
    """Lines of code of ``function``: its source without the signature, docstring, blank
    lines and comment-only lines."""
    import ast

    source = inspect.getsource(function)
    body = ast.parse(source).body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    lines = source.splitlines()[body[0].lineno - 1:] if body else []
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _call_loop(ctx, ask, rate_per_s: float) -> None:
    """Ask ``ask(call_id)`` every 1/rate_per_s s until stopped; each call to table ``calls``."""
    calls = ctx.recorder.table_writer(ctx.name, "calls", ["id", "t_ns", "latency_ms", "outcome", "detail"])
    t0_ns = ctx.gate()
    if t0_ns is None:
        return
    n = 0
    while not ctx.stopping:
        call_id, t_ns, t = f"{ctx.name}-{n}", time.time_ns(), time.perf_counter()
        try:
            ask(call_id)
            outcome, detail = "ok", ""
        except TimeoutError as exc:
            outcome, detail = "timeout", type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - what the caller sees is what we measure
            outcome = "timeout" if "Timeout" in type(exc).__name__ else "error"
            detail = type(exc).__name__
        calls.write({"role": ctx.name, "id": call_id, "t_ns": t_ns,
                     "latency_ms": (time.perf_counter() - t) * 1000, "outcome": outcome, "detail": detail})
        n += 1
        ctx.sleep(t + 1 / rate_per_s - time.perf_counter())
    calls.close()


def call_rest(ctx, url: str, rate_per_s: float, timeout_s: float, client_fn=rest_authorize) -> None:
    """Caller role over REST: ``client_fn(client, user, token, timeout_s)`` at a steady rate."""
    import httpx

    with httpx.Client(base_url=url) as client:
        _call_loop(ctx, lambda call_id: client_fn(client, "ana", "t-ana", timeout_s), rate_per_s)


def call_broker(ctx, redis_url: str, rate_per_s: float, timeout_s: float,
                client_fn=broker_authorize) -> None:
    """Caller role over Redis lists: ``client_fn(r, user, token, reply_to, timeout_s, call_id)``."""
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=timeout_s + 5)
    reply_to = f"auth:replies:{ctx.name}:{uuid.uuid4().hex[:6]}"
    _call_loop(ctx, lambda call_id: client_fn(r, "ana", "t-ana", reply_to, timeout_s, call_id),
               rate_per_s)
    r.close()


def authorization_check(lab, *, rest_client=rest_authorize, broker_client=broker_authorize, rate_per_s: float = 40.0, timeout_s: float = 0.5, up_s: float | None = None,
                  down_s: float | None = None, after_s: float | None = None, quick: bool | None = None,
                  run_dir: str | Path | None = None) -> "RequestReplyResult":
    """Ask the same authorization question over REST and over Redis lists (notebook 06).

    Args:
        lab: from :func:`edalab.start` (Redis is its Valkey).
        rest_client: ``rest_client(client, user, token, timeout_s)`` -> allowed, with an httpx
            client (default :func:`rest_authorize`); notebook 06 passes its own copy.
        broker_client: ``broker_client(r, user, token, reply_to, timeout_s, call_id)`` -> allowed,
            with a redis-py client (default :func:`broker_authorize`).
        rate_per_s: questions per second per caller (a caller waits for each answer).
        timeout_s: how long a caller waits for an answer, in seconds (both methods).
        up_s: seconds with the responders up (latency is measured here); default 6, quick 3.
        down_s: seconds both responders are dead (SIGKILL) afterwards; default 3, quick 1.5.
        after_s: seconds the callers go on once both restarted responders are ready; default 3, quick 2.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here.
    """
    from edalab._servers import free_port

    quick = quick_mode(quick)
    for name, fn in (("rest_client", rest_client), ("broker_client", broker_client)):
        if not callable(fn):
            raise ConfigError(f"{name} must be a client function, not {type(fn).__name__}.")
    rate = _checks.number(rate_per_s, "rate_per_s", unit="questions per second", positive=True,
                          sensible=(1, 500))
    timeout = _checks.number(timeout_s, "timeout_s", unit="seconds", positive=True, sensible=(0.01, 10))
    up = _checks.number((3.0 if quick else 6.0) if up_s is None else up_s, "up_s", unit="seconds",
                        positive=True, sensible=(0.5, 120))
    down = _checks.number((1.5 if quick else 3.0) if down_s is None else down_s, "down_s", unit="seconds",
                          positive=True, sensible=(0.2, 120))
    after = _checks.number((2.0 if quick else 3.0) if after_s is None else after_s, "after_s",
                           unit="seconds", positive=True, sensible=(0.5, 120))
    url = f"http://127.0.0.1:{free_port()}"
    lab.redis().delete(REQUESTS_KEY)  # no questions left over from an earlier run
    sc = Scenario("request-reply", run_dir=run_dir)
    sc.add("auth-rest", serve_auth_rest, kwargs={"url": url})
    sc.add("auth-broker", serve_auth_broker, kwargs={"redis_url": lab.redis_url})
    common = {"rate_per_s": rate, "timeout_s": timeout}
    sc.add("rest", call_rest, kwargs={"url": url, "client_fn": rest_client, **common})
    sc.add("redis-list", call_broker, kwargs={"redis_url": lab.redis_url, "client_fn": broker_client, **common})
    with sc.run(progress="authorization: REST vs Redis") as run:
        for role in ("auth-rest", "auth-broker"):
            run.at(up).kill(role)
            run.at(up + down).start(role)
        def both_back() -> bool:  # each responder's new process said it is ready
            life = sc.recorder.lifecycle()
            ready = life[life["what"] == "ready"]["role"].value_counts()
            return all(ready.get(role, 0) >= 2 for role in ("auth-rest", "auth-broker"))

        run.sleep(up + down)
        if not run.until(both_back, timeout_s=60):
            raise ExperimentError("The responders were not ready again within 60 s of their restart; "
                                  "is the machine overloaded? Run again.")
        run.sleep(after)
        for caller in RR_METHODS:  # before their responders: no error from the end of the run
            sc[caller].stop()
    params = dict(quick=quick, rate_per_s=rate, timeout_s=timeout, up_s=up, down_s=down, after_s=after,
                  run_dir=str(sc.run_dir),
                  code_lines={"rest": code_lines(rest_client), "redis-list": code_lines(broker_client)})
    return analyse(sc.recorder.table("calls"), sc.recorder.table("served"), sc.recorder.lifecycle(), params)


def _phase_bounds(lifecycle, role: str) -> tuple[int, int]:
    """When ``role`` was killed and when its new process was ready again (ns)."""
    rows = lifecycle[lifecycle["role"] == role]
    killed = rows[rows["what"] == "killed"]
    gate = lifecycle.loc[lifecycle["what"] == "opened", "at_ns"]
    if not len(killed):
        killed_ns = 2**63 - 1
    else:  # the planned moment: a call in flight then already met a dying process
        killed_ns = min(int(killed["at_ns"].iloc[0]), int(gate.iloc[0] + killed["planned_s"].iloc[0] * 1e9))
    ready = rows.loc[(rows["what"] == "ready") & (rows["at_ns"] > killed_ns), "at_ns"]
    return killed_ns, int(ready.iloc[0]) if len(ready) else 2**63 - 1


def analyse(calls, served, lifecycle, params: dict) -> "RequestReplyResult":
    """Pure: phase of each call (up, down, back), the summary per method."""
    import numpy as np
    import pandas as pd

    responders = {"rest": "auth-rest", "redis-list": "auth-broker"}
    samples, rows = [], []
    for method, responder in responders.items():
        mine = calls[calls["role"] == method].copy()
        killed_ns, back_ns = _phase_bounds(lifecycle, responder)
        # up: answered (or failed) before the kill; back: asked once the new process was ready
        ended_ns = mine["t_ns"] + mine["latency_ms"] * 1e6
        mine["phase"] = np.select([ended_ns < killed_ns, mine["t_ns"] < back_ns], ["up", "down"], "back")
        up = mine[(mine["phase"] == "up") & (mine["outcome"] == "ok")]["latency_ms"]
        down = mine[mine["phase"] == "down"]
        timed_out = set(mine.loc[mine["outcome"] == "timeout", "id"])
        answered = set(served.loc[served["role"] == responder, "id"]) if len(served) else set()
        rows.append({"method": method, "calls_up": int((mine["phase"] == "up").sum()),
                     "latency_p50_ms": up.quantile(0.5), "latency_p99_ms": up.quantile(0.99),
                     "latency_mean_ms": up.mean(), "code_lines": params["code_lines"][method],
                     "calls_down": len(down), "down_errors": int((down["outcome"] == "error").sum()),
                     "down_timeouts": int((down["outcome"] == "timeout").sum()),
                     "down_ok": int((down["outcome"] == "ok").sum()),
                     "down_fail_ms": down.loc[down["outcome"] != "ok", "latency_ms"].median(),
                     "down_s": (back_ns - killed_ns) / 1e9, "stale_served": len(timed_out & answered),
                     "back_ok": int(((mine["phase"] == "back") & (mine["outcome"] == "ok")).sum())})
        samples.append(mine.rename(columns={"role": "method"}))
    return RequestReplyResult(pd.concat(samples, ignore_index=True), pd.DataFrame(rows), params)


@dataclass
class RequestReplyResult(MethodRows):
    """What :func:`authorization_check` measured (notebook 06).

    ``samples``: every call (role = method, id, t_ns, latency_ms, outcome ok/error/timeout,
    detail, phase up/down/back). ``summary``: one row per ``method`` with ``latency_*_ms``
    of the answered calls while the responder was up, ``code_lines`` of the client, and,
    while the responder was down, the calls, their outcome counts and the median time until
    a failed call failed (``down_fail_ms``: when the caller knew; a question asked late in
    the outage may still be answered once the responder is back, ``down_ok``), plus ``stale_served``: questions a responder
    answered after their caller had given up.
    """

    samples: "object"
    summary: "object"
    params: dict = field(default_factory=dict)

