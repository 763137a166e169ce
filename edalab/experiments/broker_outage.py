"""The broker goes down: what the producer, the consumer and the storage do about it (notebook 08).

The order service sends ``order.placed`` events with kafka-python's ``KafkaProducer``
(:func:`send_orders`, the body the notebook shows); billing consumes them
(:func:`edalab.roles.consume`). Mid-stream the *broker* goes away: a SIGKILL and a
restart on the same address, or a SIGSTOP (a frozen broker: connections open, no
answers) and a SIGCONT. Each trial runs on its own Tansu, started here (never the
shared lab's), with in-memory storage (``tansu-memory``: a restart loses every
topic) or S3 storage on a local moto server (``tansu-s3``); all trials run at once,
each role in its own process (:class:`edalab.Scenario`).

Counted per trial (:mod:`edalab.experiments._outage_analysis`): sent, acknowledged,
failed (an error the caller got), delivered to billing, duplicated, lost
(acknowledged but neither delivered nor in the topic at the end), and kept (what a
fresh reader finds in the topic after the run); the consumer's stall and recovery.

:func:`what_survives` writes events, SIGKILLs the server, restarts it and reads back,
for Tansu on memory and S3 and for Valkey without and with AOF. The availability
arithmetic (1 vs 3 brokers, a synchronous chain) is in :mod:`._availability`.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab._events import new_event
from edalab._lab import Lab
from edalab._lazy import lazy_module
from edalab._servers import KafkaServer, MotoServer
from edalab.experiments._outage_analysis import OutageResult, analyse_outage
from edalab.experiments._survival import read_all
from edalab.harness import Scenario
from edalab.roles import consume
from edalab.workloads import steady

pd = lazy_module("pandas")

__all__ = ["STORAGES", "FAULTS", "PATIENT", "FIRE_AND_FORGET", "send_orders", "broker_goes_down",
           "OutageResult", "start_broker"]

#: Tansu's storage per trial; the ``method`` column is ``tansu-<storage>``
STORAGES = ("memory", "s3")
#: ``"kill"``: SIGKILL, then a restart on the same port; ``"pause"``: SIGSTOP, then SIGCONT
FAULTS = ("kill", "pause")
#: a send policy that waits out an outage of tens of seconds: acks from the broker,
#: retries until ``delivery_timeout_ms``, short requests so a dead connection is noticed.
#: Idempotence is off because on the embedded Tansu it loses or fails batches across a
#: broker kill (docs/brokers.md); against Apache Kafka keep kafka-python's default (on).
PATIENT = {"acks": "all", "retries": 2**31 - 1, "request_timeout_ms": 2000, "delivery_timeout_ms": 60000,
           "max_block_ms": 10000, "linger_ms": 0, "retry_backoff_ms": 100, "enable_idempotence": False}
#: a typical wrong one: no acknowledgement, no retries, and it gives up after a second
FIRE_AND_FORGET = {"acks": 0, "retries": 0, "request_timeout_ms": 500, "delivery_timeout_ms": 1000,
                   "max_block_ms": 500, "linger_ms": 0}
#: how long the producer's final flush may wait (s)
FLUSH_TIMEOUT_S = 30.0
SENDS_COLUMNS = ["seq", "event_id", "what", "at_ns", "blocked_ms", "error"]


def send_orders(ctx, bootstrap, topic, schedule_s, settings):
    """Send one order at each time of ``schedule_s`` (s after the gate) with
    ``KafkaProducer(**settings)``; record what became of each in table ``sends``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, **settings)
    sends = ctx.recorder.table_writer(ctx.name, "sends", SENDS_COLUMNS)

    def record(event, what, blocked_ms="", error=""):
        sends.write({"role": ctx.name, "seq": event.seq, "event_id": event.id, "what": what,
                     "at_ns": time.time_ns(), "blocked_ms": blocked_ms, "error": error})

    for seq in ctx.on_schedule(schedule_s):
        event = new_event("order.placed", f"order-{seq % 10}", {"order": seq}, producer=ctx.name, seq=seq)
        called = time.monotonic()
        try:          # send() only puts the event in the buffer; it blocks at most max_block_ms
            future = producer.send(topic, key=event.key.encode(), value=event.to_bytes())
        except Exception as exc:                 # the caller hears of it here ...
            record(event, "refused", round((time.monotonic() - called) * 1000, 3), repr(exc))
            continue
        record(event, "buffered", round((time.monotonic() - called) * 1000, 3))
        future.add_callback(lambda _meta, e=event: record(e, "acked"))        # ... or later, here
        future.add_errback(lambda exc, e=event: record(e, "failed", error=repr(exc)))
    try:
        producer.flush(timeout=FLUSH_TIMEOUT_S)  # what is still buffered: wait, but not forever
    except Exception as exc:
        ctx.note("flush_failed", error=repr(exc))
    producer.close(timeout=5)                    # what is left now fails (errback)
    sends.close()


def start_broker(storage: str, moto: MotoServer | None = None) -> KafkaServer:
    """A Tansu of our own on ``"memory"`` or ``"s3"`` (a fresh bucket on ``moto``), started."""
    if storage == "memory":
        return KafkaServer().start()
    bucket = moto.create_bucket(f"edalab-{uuid.uuid4().hex[:10]}")
    return KafkaServer(storage_engine=f"s3://{bucket}/", env=moto.s3_env()).start()


def _check_parameters(storages, faults, settings, rate_per_s, before_s, down_s, after_s,
                      drain_timeout_s, producer, quick) -> dict:
    """Every parameter of :func:`broker_goes_down`, checked before anything starts."""
    quick = quick_mode(quick)
    p = dict(storages=tuple(_checks.choices(storages, "storages", STORAGES)),
             faults=tuple(_checks.choices(faults, "faults", FAULTS)),
             rate_per_s=_checks.number(rate_per_s, "rate_per_s", unit="orders per second",
                                       positive=True, sensible=(1, 200)),
             drain_timeout_s=_checks.number(drain_timeout_s, "drain_timeout_s", unit="seconds",
                                            positive=True, sensible=(2, 300)),
             quick=quick)
    p.update(_checks.phases(quick, dict(before_s=(1.0, 3.0), down_s=(1.5, 5.0), after_s=(1.5, 4.0)),
                            before_s=before_s, down_s=down_s, after_s=after_s))
    if len(set(p["storages"])) < len(p["storages"]) or len(set(p["faults"])) < len(p["faults"]):
        raise ConfigError(f"storages and faults must not repeat a name (got {list(p['storages'])}, "
                          f"{list(p['faults'])}).")
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
        raise ConfigError(f"settings must be a dict of KafkaProducer options such as "
                          f"{{'acks': 'all', 'retries': 5}}, not {settings!r}.")
    if "bootstrap_servers" in settings:
        raise ConfigError("settings must not set bootstrap_servers: the experiment starts its own brokers.")
    if not callable(producer):
        raise ConfigError(f"producer must be a role body producer(ctx, bootstrap, topic, schedule_s, "
                          f"settings), not {type(producer).__name__}.")
    p["settings"] = dict(settings)
    return p


def broker_goes_down(lab, *, storages: Sequence[str] = STORAGES, faults: Sequence[str] = FAULTS,
                     settings: Mapping = PATIENT, rate_per_s: float = 40.0, before_s: float | None = None,
                     down_s: float | None = None, after_s: float | None = None,
                     drain_timeout_s: float = 20.0, producer: Callable = send_orders,
                     quick: bool | None = None, run_dir: str | Path | None = None,
                     progress: bool = True) -> OutageResult:
    """Kill or freeze the broker mid-stream, bring it back, count what happened (notebook 08).

    One trial per storage x fault, all at once, each on its own broker and topic
    (created before any producer starts). Orders flow at ``rate_per_s``; after
    ``before_s`` the broker is SIGKILLed (restarted on the same port ``down_s``
    later; on ``memory`` the topic is created again, as an operator would) or
    SIGSTOPped (SIGCONT ``down_s`` later); orders go on for ``after_s`` more seconds,
    then billing gets up to ``drain_timeout_s`` to catch up. Finally a fresh reader
    reads each topic from the beginning: what the broker kept.

    Args:
        lab: from :func:`edalab.start`; only its Redis address is used (the brokers are
            this experiment's own).
        storages: a list of :data:`STORAGES`; faults: a list of :data:`FAULTS`.
        settings: the producer's send policy, ``KafkaProducer`` options (default
            :data:`PATIENT`; kafka-python's ``retries``, ``acks``, ``request_timeout_ms``,
            ``delivery_timeout_ms``, ``max_block_ms``, ``buffer_memory`` ...).
        rate_per_s: orders per second (steady).
        before_s, down_s, after_s: seconds before the fault, of the fault, and of orders
            after it. Defaults 3 / 5 / 4, quick 1 / 1.5 / 1.5.
        drain_timeout_s: longest wait for billing to catch up at the end.
        producer: the order service's body, ``producer(ctx, bootstrap, topic,
            schedule_s, settings)``, recording table ``sends`` as :func:`send_orders` does.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here instead of the runs folder.
        progress: show a progress bar.
    """
    p = _check_parameters(storages, faults, settings, rate_per_s, before_s, down_s, after_s,
                          drain_timeout_s, producer, quick)
    sc = Scenario("broker-outage", run_dir=run_dir)
    trials = [(storage, fault) for storage in p["storages"] for fault in p["faults"]]
    with contextlib.ExitStack() as cleanup:
        moto = cleanup.enter_context(MotoServer()) if "s3" in p["storages"] else None
        labs, topics = {}, {}
        for storage, fault in trials:
            broker = start_broker(storage, moto)
            labs[storage, fault] = own = Lab.on_servers(broker, redis_url=lab.redis_url)
            cleanup.callback(own.stop)
            topics[storage, fault] = own.create_topic(partitions=1)
        _run_trials(sc, trials, labs, topics, producer, p, progress)
        kept = {trial: _read_back(labs[trial], topics[trial]) for trial in trials}
    p["run_dir"] = str(sc.run_dir)
    return analyse_outage(sc.recorder, trials, kept, p)


def _name(storage: str, fault: str) -> str:
    return f"{storage}-{fault}"


def _run_trials(sc: Scenario, trials, labs, topics, producer, p, progress) -> None:
    """Roles for every trial, the faults on the timeline, the drain."""
    schedule_s = steady(p["rate_per_s"], p["before_s"] + p["down_s"] + p["after_s"])
    for trial in trials:
        name, own = _name(*trial), labs[trial]
        spec = own.transport("kafka", topic=topics[trial])
        sc.add(f"orders-{name}", producer, kwargs=dict(bootstrap=own.kafka_bootstrap, topic=topics[trial],
                                                       schedule_s=schedule_s, settings=p["settings"]))
        sc.add(f"billing-{name}", consume, kwargs=dict(spec=spec, group="billing"), ready_timeout_s=40.0,
               stop_timeout_s=5.0)
    with sc.run(progress="broker down" if progress else False,
                expect_events=len(schedule_s) * len(trials)) as run:
        for storage, fault in trials:
            own, name = labs[storage, fault], _name(storage, fault)
            server = own.server("kafka")
            if fault == "kill":
                run.at(p["before_s"]).call(server.kill, label=f"fault {name}")
                back = functools.partial(_restart, own, topics[storage, fault])
            else:
                run.at(p["before_s"]).call(server.pause, label=f"fault {name}")
                back = server.resume
            run.at(p["before_s"] + p["down_s"]).call(back, label=f"back {name}")
        for trial in trials:
            run.wait_finished(f"orders-{_name(*trial)}", timeout_s=p["before_s"] + p["down_s"]
                              + p["after_s"] + FLUSH_TIMEOUT_S + 15)
        run.until(functools.partial(_settled, sc, trials), timeout_s=p["drain_timeout_s"], step_s=0.2)


def _restart(own: Lab, topic: str) -> None:
    """Start the killed broker again on its address; create the topic if the restart lost it."""
    own.restart_server("kafka")
    own.create_topic(topic, partitions=1)


def _settled(sc: Scenario, trials) -> bool:
    """Billing has every acknowledged order; or, where a killed in-memory broker lost them,
    has received nothing new for 3 s since its last order or the broker's return.

    Only the in-memory broker's restart can lose acknowledged orders. Elsewhere (a frozen
    broker, durable storage) billing must get every one, however long its reconnect and
    group rejoin take (bounded by ``drain_timeout_s``): giving up early would count a
    slow recovery as a loss.
    """
    sends, received, life = sc.recorder.table("sends"), sc.recorder.received(), sc.recorder.lifecycle()
    for storage, fault in trials:
        name = _name(storage, fault)
        acked = set(sends.loc[(sends["role"] == f"orders-{name}") & (sends["what"] == "acked"), "event_id"]) \
            if len(sends) else set()
        got = received.loc[received["role"] == f"billing-{name}"]
        if acked <= set(got["event_id"]):
            continue
        if storage == "memory" and fault == "kill":
            back = life.loc[life["what"] == f"back {name}", "at_ns"]
            moments = [int(t) for t in back] + ([int(got["received_at_ns"].max())] if len(got) else [])
            quiet_since = max(moments, default=None)
            if quiet_since is not None and time.time_ns() - quiet_since > 3e9:
                continue   # what did not come by now was lost with the broker's memory
        return False
    return True


def _read_back(own: Lab, topic: str, timeout_s: float = 10.0) -> set[str]:
    """The ids of every event a brand-new reader finds in ``topic`` (what the broker kept)."""
    return read_all(own.transport("kafka", topic=topic), timeout_s)
