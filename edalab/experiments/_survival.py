"""What survives a server's SIGKILL and restart, per storage (notebook 08).

:func:`what_survives` writes events one at a time, each acknowledged before the next
(so the time per event is the cost of that storage), SIGKILLs the server, starts it
again on the same port and reads the topic or stream back with a brand-new reader.
Every server is this function's own (never the shared lab's):

* ``tansu-memory``: Tansu with ``memory://`` storage, the course's embedded broker;
* ``tansu-s3``: Tansu with ``s3://`` storage on a local moto S3 server;
* ``valkey``: Valkey without persistence, as ``edalab.start()`` runs it;
* ``valkey-aof``: Valkey with the append-only file on (``appendfsync everysec``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edalab import _checks
from edalab._config import quick_mode
from edalab._events import new_event
from edalab._lab import Lab
from edalab._lazy import lazy_module
from edalab._servers import MotoServer, RedisServer

pd = lazy_module("pandas")

__all__ = ["SURVIVAL_METHODS", "SurvivalResult", "what_survives", "read_all"]

#: what :func:`what_survives` compares, in the ``method`` column
SURVIVAL_METHODS = ("tansu-memory", "tansu-s3", "valkey", "valkey-aof")
_STORAGE = {"tansu-memory": "memory", "tansu-s3": "S3 (moto)", "valkey": "none", "valkey-aof": "append-only file"}


@dataclass
class SurvivalResult:
    """What :func:`what_survives` measured.

    Attributes:
        summary: one row per ``method``: ``storage``, ``written`` (acknowledged
            before the kill), ``kept`` (read back after the restart), ``lost``,
            ``acked_per_s`` (sequential acknowledged writes per second) and
            ``restart_s`` (from the restart until the server answered).
        params: the checked parameters.
    """

    summary: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The summary, rounded for reading."""
        return self.summary.round({"acked_per_s": 0, "restart_s": 2})


def what_survives(lab, *, methods: Sequence[str] = SURVIVAL_METHODS, events: int | None = None,
                  quick: bool | None = None, read_timeout_s: float = 10.0) -> SurvivalResult:
    """Write ``events`` events, SIGKILL the server, restart it, count what is still there.

    Args:
        lab: from :func:`edalab.start`; only its addresses fill in the service a
            method does not start (every server that is killed is this function's own).
        methods: a list of :data:`SURVIVAL_METHODS`.
        events: events written before the kill (default 200, quick 50).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        read_timeout_s: longest time to read back one topic or stream.
    """
    quick = quick_mode(quick)
    methods = _checks.choices(methods, "methods", SURVIVAL_METHODS)
    events = _checks.count((50 if quick else 200) if events is None else events, "events", minimum=1,
                           sensible_max=5000, what=" events")
    read_timeout_s = _checks.number(read_timeout_s, "read_timeout_s", unit="seconds", positive=True,
                                    sensible=(1, 120))
    rows = []
    with contextlib.ExitStack() as cleanup:
        moto = cleanup.enter_context(MotoServer()) if "tansu-s3" in methods else None
        from tqdm.auto import tqdm

        bar = tqdm(methods, desc="what survives a SIGKILL", unit="server", leave=False)
        for method in bar:
            bar.set_postfix_str(method)  # what is being written, killed and read now
            own, kind = _own_lab(lab, method, moto)
            cleanup.callback(own.stop)
            rows.append({"method": method, "storage": _STORAGE[method],
                         **_write_kill_read(own, kind, events, read_timeout_s)})
            own.stop()
    summary = pd.DataFrame(rows).set_index("method")
    return SurvivalResult(summary, {"methods": list(methods), "events": events, "quick": quick})


def _own_lab(lab, method: str, moto: MotoServer | None) -> tuple[Lab, str]:
    from edalab.experiments.broker_outage import start_broker

    if method.startswith("tansu"):
        broker = start_broker(method.split("-")[1], moto)
        return Lab.on_servers(broker, redis_url=lab.redis_url), "kafka"
    redis = RedisServer(appendonly=method == "valkey-aof").start()
    return Lab.on_servers(redis=redis, kafka_bootstrap=lab.kafka_bootstrap), "redis"


def _write_kill_read(own: Lab, kind: str, events: int, read_timeout_s: float) -> dict[str, Any]:
    transport = "kafka" if kind == "kafka" else "redis-stream"
    options = {"partitions": 1} if kind == "kafka" else {}
    spec = own.transport(transport, **options)
    publisher = spec.publisher()
    written = set()
    started = time.perf_counter()
    try:
        for seq in range(events):
            event = new_event("order.placed", f"order-{seq % 10}", {"order": seq}, producer="survival", seq=seq)
            publisher.publish(event)
            publisher.flush()          # acknowledged before the next one
            written.add(event.id)
    finally:
        publisher.close()
    acked_per_s = events / (time.perf_counter() - started)
    server = own.server(kind)
    server.restart(kill=True)          # SIGKILL, then a new process on the same port
    if kind == "kafka":                # a broker that forgot the topic gets it back, empty
        own.create_topic(spec.topic, partitions=1)
    kept = read_all(spec, read_timeout_s) & written
    return {"written": len(written), "kept": len(kept), "lost": len(written - kept),
            "acked_per_s": acked_per_s, "restart_s": server.ready_in_s}


def read_all(spec, timeout_s: float, *, expect: int | None = None, quiet_s: float = 1.0) -> set[str]:
    """The ids of every event a brand-new reader finds from the beginning of ``spec``'s topic.

    Stops after ``quiet_s`` without a new event, at ``timeout_s``, or as soon as
    ``expect`` ids are read when the count is known (no quiet second to wait out).
    """
    reader = spec.replayer("beginning")
    ids: set[str] = set()
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while ((expect is None or len(ids) < expect) and time.monotonic() < deadline
               and time.monotonic() - quiet_since < quiet_s):
            batch = reader.receive(0.2)
            if batch:
                quiet_since = time.monotonic()
            ids.update(d.event.id for d in batch)
    finally:
        reader.close()
    return ids
