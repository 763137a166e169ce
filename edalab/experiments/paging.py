"""Paging a REST list vs reading a topic from an offset, while records are added (notebook 06).

The claim tested: *"a REST API with paginated responses does the same as a topic."*
A **records API** (a Starlette app in its own role process) serves a feed, newest
first, ``GET /records?offset=&limit=`` (offset pages) or ``?before=<id>&limit=`` (a
cursor: the id of the last item seen). The same records are in a one-partition Kafka
topic. While readers go through the ``records`` that exist at the gate, an
**inserter** role adds new records at ``insert_rate_per_s`` (at the front of the feed,
at the end of the topic). Each reader is a role; a pager is a generator
``pager(get_page, limit)`` that yields pages (lists of ``{"id": ...}``), so the
notebook (and the exercise) pass their own. Counted from the readers' tables: requests,
seconds, and the items of the first snapshot each reader missed or saw twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.harness import Scenario
from edalab.experiments._result import MethodRows

__all__ = ["PAGING_METHODS", "records_api_app", "serve_records", "insert_records", "offset_pager",
           "cursor_pager", "read_pages", "read_topic", "paging_under_inserts", "PagingResult",
           "paging_table"]

#: the readers compared (the column ``method``)
PAGING_METHODS = ("rest-offset", "rest-cursor", "kafka")


def records_api_app(initial: int):
    """The records API: ids ``1..initial`` at the start, newest (highest id) first."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    feed = list(range(initial, 0, -1))  # newest first: feed[0] is the latest id

    async def health(request):
        return JSONResponse({"ok": True})

    async def records(request):
        q = request.query_params
        limit = int(q.get("limit", 20))
        if "before" in q:   # key-set (cursor): everything older than the last item seen
            before = int(q["before"])
            start = next((i for i, rid in enumerate(feed) if rid < before), len(feed))
        else:               # offset: position in the list as it is *now*
            start = int(q.get("offset", 0))
        return JSONResponse({"items": [{"id": rid} for rid in feed[start:start + limit]]})

    async def insert(request):
        feed.insert(0, feed[0] + 1 if feed else 1)
        return JSONResponse({"id": feed[0]})

    return Starlette(routes=[Route("/health", health), Route("/records", records),
                             Route("/records", insert, methods=["POST"])])


def serve_records(ctx, url: str, initial: int) -> None:
    """Role: the records API at ``url`` until asked to stop."""
    from urllib.parse import urlparse

    from edalab.transports.http import BackgroundServer

    where = urlparse(url)
    with BackgroundServer(records_api_app(initial), host=where.hostname, port=where.port):
        ctx.ready()
        while not ctx.sleep(0.2):
            pass


def insert_records(ctx, url: str, spec, rate_per_s: float, duration_s: float) -> None:
    """Role: from the gate, add a record at ``rate_per_s`` for ``duration_s``: POST it to the
    API (front of the feed) and publish it to the topic (its end), with the same id."""
    import httpx

    from edalab._events import new_event

    publisher = spec.publisher()
    with httpx.Client(base_url=url, timeout=5.0) as client:
        if ctx.gate() is None:
            return
        start, n = time.monotonic(), 0
        while time.monotonic() - start < duration_s and not ctx.stopping:
            rid = client.post("/records").raise_for_status().json()["id"]
            publisher.publish(new_event("record.added", "feed", {"id": rid}, producer=ctx.name, seq=rid))
            n += 1
            if ctx.sleep(start + n / rate_per_s - time.monotonic()):
                break
        publisher.flush()
        ctx.note("inserted", count=n)
    publisher.close()


def offset_pager(get_page, limit):
    """Offset paging: ask for items ``offset .. offset+limit`` of the list as it is now."""
    offset = 0
    while True:
        items = get_page(offset=offset, limit=limit)
        yield items
        if len(items) < limit:
            return
        offset += len(items)


def cursor_pager(get_page, limit):
    """Cursor paging: ask for the items older than the last one seen (key-set)."""
    cursor = None
    while True:
        items = get_page(limit=limit) if cursor is None else get_page(before=cursor, limit=limit)
        yield items
        if len(items) < limit:
            return
        cursor = items[-1]["id"]


def read_pages(ctx, url: str, pager: Callable, limit: int, page_pause_s: float, timeout_s: float = 60.0) -> None:
    """Role: from the gate, page through the API with ``pager``; pause ``page_pause_s`` per
    page (the client's work on it); every id seen goes to table ``seen``."""
    import httpx

    seen = ctx.recorder.table_writer(ctx.name, "seen", ["n", "id", "request", "t_s"])
    with httpx.Client(base_url=url, timeout=5.0) as client:
        requests = 0

        def get_page(**params):
            nonlocal requests
            requests += 1
            return client.get("/records", params=params).raise_for_status().json()["items"]

        if ctx.gate() is None:
            return
        start, n = time.monotonic(), 0
        for page in pager(get_page, limit):
            for item in page:
                seen.write({"role": ctx.name, "n": n, "id": int(item["id"]), "request": requests,
                            "t_s": time.monotonic() - start})
                n += 1
            if time.monotonic() - start > timeout_s:
                raise ExperimentError(f"{ctx.name}: the pager did not finish within {timeout_s:g} s "
                                      f"({requests} requests); does it stop at a short page?")
            if ctx.sleep(page_pause_s):
                return
        ctx.note("done", requests=requests, seconds=time.monotonic() - start)
    seen.close()


def read_topic(ctx, spec, records: int, limit: int, page_pause_s: float, timeout_s: float = 60.0) -> None:
    """Role: from the gate, read the topic from offset 0 in batches of ``limit`` (pausing like
    a pager) until every id ``1..records`` was seen."""
    seen = ctx.recorder.table_writer(ctx.name, "seen", ["n", "id", "request", "t_s"])
    reader = spec.replayer("beginning")
    try:
        if ctx.gate() is None:
            return
        start, n, wanted = time.monotonic(), 0, set(range(1, records + 1))
        while wanted and not ctx.stopping:
            batch = reader.receive(0.5)
            for delivery in batch:
                rid = int(delivery.event.payload["id"])
                wanted.discard(rid)
                seen.write({"role": ctx.name, "n": n, "id": rid, "request": reader.counters.requests,
                            "t_s": time.monotonic() - start})
                n += 1
            if time.monotonic() - start > timeout_s:
                raise ExperimentError(f"{ctx.name}: {len(wanted)} records still unread after {timeout_s:g} s.")
            if batch and ctx.sleep(page_pause_s):
                return
        ctx.note("done", requests=reader.counters.requests, seconds=time.monotonic() - start)
    finally:
        reader.close()
        seen.close()


def _check(records, limit, insert_rate_per_s, page_pause_s, pagers, quick) -> dict:
    quick = quick_mode(quick)
    records = _checks.count((300 if quick else 1000) if records is None else records, "records",
                            minimum=1, sensible_max=20000, what="records in the list at the start")
    limit = _checks.count(limit, "limit", minimum=1, sensible_max=1000, what="items per page")
    rate = _checks.number(insert_rate_per_s, "insert_rate_per_s", unit="records per second",
                          minimum=0, sensible=(0, 500))
    pause = _checks.number(page_pause_s, "page_pause_s", unit="seconds", minimum=0, sensible=(0, 2))
    if not isinstance(pagers, dict) or not pagers or not all(callable(p) for p in pagers.values()):
        raise ConfigError("pagers must be a dict of method name -> pager(get_page, limit), "
                          "e.g. {'rest-offset': offset_pager}.")
    return dict(quick=quick, records=records, limit=limit, insert_rate_per_s=rate, page_pause_s=pause)


def paging_under_inserts(lab, *, records: int | None = None, limit: int = 20, insert_rate_per_s: float = 40.0,
                         page_pause_s: float = 0.05, pagers: dict | None = None, topic_reader: bool = True,
                         quick: bool | None = None, run_dir: str | Path | None = None) -> "PagingResult":
    """Read the ``records`` that exist at the gate page by page (each pager) and from a topic,
    while new records arrive (notebook 06).

    Args:
        lab: from :func:`edalab.start` (the topic is on its Kafka broker).
        records: records in the feed and topic before the readers start (default 1000, quick 300).
        limit: items per page (and most records per topic batch).
        insert_rate_per_s: new records per second while the readers read (0: a still list).
        page_pause_s: the client's work per page, in seconds (paging is rarely back to back).
        pagers: method name -> ``pager(get_page, limit)`` generator (default: offset and cursor).
        topic_reader: also read the topic from offset 0 (method ``kafka``).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here.
    """
    from edalab._events import new_event
    from edalab._servers import free_port

    pagers = {"rest-offset": offset_pager, "rest-cursor": cursor_pager} if pagers is None else pagers
    p = _check(records, limit, insert_rate_per_s, page_pause_s, pagers, quick)
    spec = lab.transport("kafka", partitions=1, max_poll_records=p["limit"])
    with spec.publisher() as publisher:  # the same records as the API starts with, oldest first
        for rid in range(1, p["records"] + 1):
            publisher.publish(new_event("record.added", "feed", {"id": rid}, producer="seed", seq=rid))
        publisher.flush()
    url = f"http://127.0.0.1:{free_port()}"
    sc = Scenario("paging", run_dir=run_dir)
    sc.add("records-api", serve_records, kwargs={"url": url, "initial": p["records"]})
    for method, pager in pagers.items():
        sc.add(method, read_pages, kwargs={"url": url, "pager": pager, "limit": p["limit"],
                                           "page_pause_s": p["page_pause_s"]})
    if topic_reader:
        sc.add("kafka", read_topic, kwargs={"spec": spec, "records": p["records"], "limit": p["limit"],
                                            "page_pause_s": p["page_pause_s"]})
    readers = [*pagers, *(["kafka"] if topic_reader else [])]
    expected_s = p["records"] / p["limit"] * (p["page_pause_s"] + 0.01) + 5
    if p["insert_rate_per_s"] > 0:
        sc.add("inserter", insert_records, kwargs={"url": url, "spec": spec, "rate_per_s": p["insert_rate_per_s"],
                                                   "duration_s": expected_s * 3})
    with sc.run(progress="paging under inserts") as run:
        run.until(lambda: all(not sc[m].alive for m in readers), timeout_s=expected_s * 3 + 30)
        for method in readers:
            run.wait_finished(method, timeout_s=5)
        if "inserter" in sc.roles:  # before the API it posts to stops
            sc["inserter"].stop()
    return PagingResult(paging_table(sc.recorder.table("seen"), p["records"], readers),
                        sc.recorder.table("seen"), {**p, "methods": readers, "run_dir": str(sc.run_dir)})


def paging_table(seen, records: int, methods):
    """One row per method: requests, seconds, items read, the first snapshot's ids missed and
    repeated (extra copies), and new ids (added during the read) that it also saw. Pure."""
    import pandas as pd

    rows = []
    for method in methods:
        ids = seen.loc[seen["role"] == method, "id"] if len(seen) else pd.Series(dtype=int)
        old = ids[ids <= records]
        rows.append({"method": method, "requests": int(seen.loc[seen["role"] == method, "request"].max())
                     if len(old) else 0,
                     "seconds": float(seen.loc[seen["role"] == method, "t_s"].max()) if len(old) else 0.0,
                     "items_read": len(ids), "missed": records - old.nunique(),
                     "repeated": len(old) - old.nunique(), "new_seen": int((ids > records).sum())})
    return pd.DataFrame(rows)


@dataclass
class PagingResult(MethodRows):
    """What :func:`paging_under_inserts` measured: ``summary`` (one row per ``method``:
    requests, seconds, items_read, missed, repeated, new_seen), ``samples`` (every id each
    reader saw, in order: role, n, id, request, t_s) and ``params``."""

    summary: "pd.DataFrame"  # noqa: F821
    samples: "pd.DataFrame"  # noqa: F821
    params: dict = field(default_factory=dict)

