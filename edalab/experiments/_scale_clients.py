"""Many HTTP clients in one process, as asyncio coroutines (notebook 11's client role).

A process per client would cap a 2-core machine at a few dozen clients; coroutines
on raw asyncio streams (a few lines of HTTP/1.1, no client library on the hot path)
let one process hold hundreds of keep-alive connections, so N reaches several
hundred while most CPU still goes to the one server being measured.

Each client watches one piece of state (the latest event for one key on the event
service) in one of three ways:

* ``poll``: ``GET /orders/{key}`` every ``poll_interval_s`` (fixed rate from a random
  phase; a tick missed because the server was slow is skipped, as a real client does);
* ``long-poll``: ``GET /events?after=N&wait_s=W``, asked again at once after each answer;
* ``sse``: one ``GET /events/stream`` per client; the server pushes each event.

Light at import (no numpy, no pandas): every client process imports this module.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

__all__ = ["watch_state", "poll_client", "long_poll_client", "sse_client", "OBSERVATION_COLUMNS", "STEP_COLUMNS"]

#: one row per poll answer (poll) or per event received (long-poll, sse)
OBSERVATION_COLUMNS = ["step", "client", "sent_ns", "recv_ns", "seq", "produced_ns", "empty"]
#: one row per step and client process: what its clients asked and what failed
STEP_COLUMNS = ["step", "clients", "requests", "empty", "errors"]

_REQUEST_TIMEOUT_S = 10.0        # a saturated server answers late; later than this is an error
_LONG_POLL_WAIT_S = 20.0         # longer than a step: a long poll ends with news, not by timeout


async def _get(reader, writer, path: str) -> bytes:
    """One GET on an open keep-alive connection; the response body (Content-Length framed)."""
    writer.write(b"GET %s HTTP/1.1\r\nhost: edalab\r\n\r\n" % path.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    at = head.lower().find(b"content-length:")
    length = int(head[at + 15: head.find(b"\r\n", at)])
    return await reader.readexactly(length)


def _seq_and_time(event: dict) -> tuple[int, int]:
    return int(event["seq"]), int(event["produced_at_ns"])


async def poll_client(i, host, port, key, interval_s, start_s, end_s, rows, counts):
    """One polling client: ask for the state every ``interval_s`` on one keep-alive connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        next_s = start_s + random.uniform(0.0, interval_s)      # clients do not poll in step
        last_seq = None
        while True:
            now = time.time()
            if next_s >= end_s:
                return
            if next_s > now:
                await asyncio.sleep(next_s - now)
            sent_ns = time.time_ns()
            counts["requests"] += 1
            body = json.loads(await asyncio.wait_for(_get(reader, writer, f"/orders/{key}"), _REQUEST_TIMEOUT_S))
            recv_ns = time.time_ns()
            seq, produced_ns = _seq_and_time(body["event"]) if "event" in body else (-1, 0)
            empty = seq == last_seq                              # nothing new: a wasted request
            counts["empty"] += empty
            last_seq = seq
            rows.append((i, sent_ns, recv_ns, seq, produced_ns, int(empty)))
            next_s = max(next_s + interval_s, time.time())       # skip ticks the server made us miss
    finally:
        writer.close()


async def _start_position(reader, writer, key) -> int:
    body = json.loads(await asyncio.wait_for(_get(reader, writer, f"/orders/{key}"), _REQUEST_TIMEOUT_S))
    return int(body.get("position", -1))


async def long_poll_client(i, host, port, key, start_s, end_s, rows, counts):
    """One long-polling client: ask for what is after the last event seen; the server holds the question."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        after = await _start_position(reader, writer, key)
        while time.time() < end_s:
            sent_ns = time.time_ns()
            counts["requests"] += 1
            body = json.loads(await asyncio.wait_for(
                _get(reader, writer, f"/events?after={after}&wait_s={_LONG_POLL_WAIT_S}"), _LONG_POLL_WAIT_S + 5))
            recv_ns = time.time_ns()
            counts["empty"] += not body["events"]
            for event in body["events"]:
                rows.append((i, sent_ns, recv_ns, *_seq_and_time(event), 0))
            after = int(body["next"])
    finally:
        writer.close()


async def sse_client(i, host, port, key, start_s, end_s, rows, counts):
    """One SSE client: one request, then read the events the server pushes on the open stream."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        after = await _start_position(reader, writer, key)
        counts["requests"] += 1
        writer.write(b"GET /events/stream?after=%d HTTP/1.1\r\nhost: edalab\r\n\r\n" % after)
        await reader.readuntil(b"\r\n\r\n")                      # headers; the body is chunked
        buffer = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            chunk = await reader.readexactly(size + 2)
            recv_ns = time.time_ns()
            buffer += chunk[:-2]
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                for line in message.split(b"\n"):
                    if line.startswith(b"data: "):
                        rows.append((i, 0, recv_ns, *_seq_and_time(json.loads(line[6:])), 0))
    finally:
        writer.close()


async def _run_step(method, n, first, host, port, key, interval_s, start_s, end_s, rows, counts):
    if method == "poll":
        tasks = [poll_client(first + j, host, port, key, interval_s, start_s, end_s, rows, counts) for j in range(n)]
    elif method == "long-poll":
        tasks = [long_poll_client(first + j, host, port, key, start_s, end_s, rows, counts) for j in range(n)]
    else:
        tasks = [sse_client(first + j, host, port, key, start_s, end_s, rows, counts) for j in range(n)]
    tasks = [asyncio.ensure_future(t) for t in tasks]
    if not tasks:                                   # this process has no client in this step
        await asyncio.sleep(max(end_s - time.time(), 0.0))
        return
    # Until the step's end, then every client hangs up (SSE streams and long polls never end by themselves).
    done, pending = await asyncio.wait(tasks, timeout=max(end_s - time.time(), 0.0))
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    counts["errors"] += sum(isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)
                            for r in results)


def watch_state(ctx, base_url: str, steps: list[dict], process: int, processes: int,
                key: str = "order-0") -> None:
    """Client role: run each step's share of clients against the service, then record.

    ``steps`` are dicts ``method`` (poll/long-poll/sse), ``clients`` (all processes
    together), ``poll_interval_s``, ``start_s`` and ``end_s`` (seconds after the gate).
    This process runs clients ``process``, ``process + processes``, ... of each step.
    Observations are kept in memory and written after the last step, so writing them
    costs no CPU while the server is measured.
    """
    from urllib.parse import urlparse

    url = urlparse(base_url)
    t0_ns = ctx.gate()
    if t0_ns is None:
        return
    t0_s = t0_ns / 1e9
    all_rows, all_counts = [], []

    async def main():
        for number, step in enumerate(steps):
            n = len(range(process, step["clients"], processes))
            rows, counts = [], {"requests": 0, "empty": 0, "errors": 0}
            start_s, end_s = t0_s + step["start_s"], t0_s + step["end_s"]
            if time.time() < start_s:
                await asyncio.sleep(start_s - time.time())
            if ctx.stopping:
                return
            await _run_step(step["mode"], n, process * 1_000_000, url.hostname, url.port, key,
                            step.get("poll_interval_s", 1.0), start_s, end_s, rows, counts)
            all_rows.append((number, rows))
            all_counts.append((number, n, counts))

    asyncio.run(main())
    observations = ctx.recorder.table_writer(ctx.name, "observations", OBSERVATION_COLUMNS)
    step_rows = ctx.recorder.table_writer(ctx.name, "client_steps", STEP_COLUMNS)
    try:
        for number, rows in all_rows:
            for client, sent_ns, recv_ns, seq, produced_ns, empty in rows:
                observations.write({"role": ctx.name, "step": number, "client": client, "sent_ns": sent_ns,
                                    "recv_ns": recv_ns, "seq": seq, "produced_ns": produced_ns, "empty": empty})
        for number, n, counts in all_counts:
            step_rows.write({"role": ctx.name, "step": number, "clients": n, **counts})
    finally:
        observations.close()
        step_rows.close()
