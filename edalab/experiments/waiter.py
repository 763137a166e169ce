"""The waiter analogy: asking "is my order ready?" vs being told (notebook 01).

A small restaurant takes orders at random moments; the kitchen cooks each one for a
random time. The customer wants to know when the food is ready. Two designs, both
on real servers, each role in its own process:

* **REST polling** (``"rest-poll"``): the kitchen's status lives in the HTTP event
  service (:func:`edalab.transports.http.serve_event_service`). The cook posts
  ``order.placed`` and later ``order.ready`` to it; the customers ask
  ``GET /orders/{key}`` every ``poll_interval_s`` seconds until the answer is
  ``order.ready``. One process (:func:`customers_poll`) plays all the customers:
  one request per open order per interval, which is what many customers asking
  would cost the kitchen.
* **Events** (``"redis-pubsub"``, ``"kafka"``): the cook publishes ``order.ready``
  to a broker (a Redis pub/sub channel, or a Kafka topic) and one waiter
  (:func:`waiter_listen`) hears every order as it happens.

Per order the experiment measures the calls the listening side made, and the delay
between "the food is ready" (the cook created the ``order.ready`` event) and "the
customer knows" (the answer or event reached the customers' process). Calls of an
event design are counted for the whole waiter and shared out equally over the
orders: one subscription, or one stream of broker fetches, serves every order.

The kitchen and the listener start on the same wall-clock moment ``t0`` (the
owner writes it to a ``go.json`` file once both are ready), so start-up never
counts as delay and both follow the same order schedule.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab._events import Event, new_event
from edalab._recorder import Recorder, TraceWriter, _read_traces
from edalab.roles import Role, RoleContext, poisson_schedule_s
from edalab.transports._base import Counters, Delivery

__all__ = [
    "DESIGNS",
    "WaiterResult",
    "waiter_analogy",
    "restaurant_orders",
    "expected_calls_per_order",
    "kitchen",
    "customers_poll",
    "waiter_listen",
]

#: The designs :func:`waiter_analogy` can run: REST polling and two event transports.
DESIGNS = ("rest-poll", "redis-pubsub", "kafka")
ORDER_PLACED = "order.placed"
ORDER_READY = "order.ready"
#: Event the kitchen sends before the restaurant opens, so connections and metadata
#: are set up before the first order is timed; listeners ignore it.
KITCHEN_OPEN = "kitchen.open"

QUICK = dict(orders=10, cook_time_mean_s=1.0, poll_intervals_s=(0.2,))
FULL = dict(orders=40, cook_time_mean_s=2.0, poll_intervals_s=(0.2, 1.0))

KITCHEN_COLUMNS = ("key", "order", "placed_at_ns", "ready_at_ns", "stored_at_ns")
ASK_COLUMNS = ("key", "order", "asked_at_ns", "answered_at_ns", "status")
#: Seconds between writing go.json and the opening moment t0: time for every role
#: (they look for the file every few ms) to read it before the first order.
_GO_LEAD_S = 0.3
_GO_FILE_CHECK_S = 0.005


# --------------------------------------------------------------------------------------
# The order schedule and the polling arithmetic
# --------------------------------------------------------------------------------------


def restaurant_orders(count: int, order_rate_per_s: float, cook_time_mean_s: float,
                      seed: int = 1, prefix: str = "order") -> list[dict[str, Any]]:
    """The evening's orders: when each is placed and how long it cooks (notebook 01).

    Orders arrive at random (Poisson, ``order_rate_per_s`` on average); each cooks for a
    time drawn uniformly between half and one and a half times ``cook_time_mean_s``.

    Returns:
        one dict per order: ``order`` (0, 1, ...), ``key`` (``"<prefix>-<n>"``),
        ``placed_at_s``, ``cook_s`` and ``ready_at_s`` (seconds after opening).
    """
    if count < 1 or not order_rate_per_s > 0 or not cook_time_mean_s > 0:
        raise ConfigError("count, order_rate_per_s and cook_time_mean_s must be positive.")
    placed_s = poisson_schedule_s(count, order_rate_per_s, seed)
    rng = np.random.default_rng(seed + 1000)
    cook_s = rng.uniform(0.5 * cook_time_mean_s, 1.5 * cook_time_mean_s, size=count)
    return [dict(order=i, key=f"{prefix}-{i:03d}", placed_at_s=float(p), cook_s=float(c),
                 ready_at_s=float(p + c)) for i, (p, c) in enumerate(zip(placed_s, cook_s))]


def expected_calls_per_order(poll_interval_s: float, cook_time_mean_s: float) -> float:
    """Mean "is it ready?" calls per order for the schedule of :func:`restaurant_orders`.

    A customer asks ``poll_interval_s`` after ordering, then every ``poll_interval_s``,
    and the first ask after the food is ready hears "yes": ``ceil(cook / interval)``
    calls. With cook times uniform in [0.5, 1.5] x ``cook_time_mean_s`` this averages
    to about ``cook_time_mean_s / poll_interval_s + 0.5`` (computed exactly here).
    The round trip (about a millisecond) is left out.
    """
    if not poll_interval_s > 0 or not cook_time_mean_s > 0:
        raise ConfigError("poll_interval_s and cook_time_mean_s must be positive.")
    low, high = 0.5 * cook_time_mean_s / poll_interval_s, 1.5 * cook_time_mean_s / poll_interval_s
    # E[ceil(x)] for x uniform on [low, high]: integrate the step function piece by piece.
    edges = np.unique(np.concatenate([[low, high], np.arange(math.floor(low) + 1, math.ceil(high))]))
    widths = np.diff(edges)
    return float(np.sum(np.ceil(edges[:-1] + widths / 2) * widths) / (high - low))


# --------------------------------------------------------------------------------------
# Roles (module-level functions, so they run in their own processes)
# --------------------------------------------------------------------------------------


def _wait_for_go(ctx: RoleContext, go_path: str, timeout_s: float = 60.0) -> tuple[float, int] | None:
    """Wait for the owner's go.json; return t0 as (monotonic seconds, wall-clock ns).

    None when the role was asked to stop first.
    """
    deadline = time.monotonic() + timeout_s
    path = Path(go_path)
    while not path.exists():
        if ctx.sleep(_GO_FILE_CHECK_S):
            return None
        if time.monotonic() > deadline:
            raise ExperimentError(f"No go signal ({go_path}) within {timeout_s:g} s.")
    t0_ns = int(json.loads(path.read_text())["t0_ns"])
    return time.monotonic() + (t0_ns - time.time_ns()) / 1e9, t0_ns


def _write_go(go_path: Path, t0_ns: int) -> None:
    tmp = go_path.with_name(f".{go_path.name}.tmp")
    tmp.write_text(json.dumps({"t0_ns": t0_ns}))
    os.replace(tmp, go_path)  # atomic: a role sees no file or the whole file


def kitchen(ctx: RoleContext, spec, orders: list[dict], go_path: str,
            announce_placed: bool = False) -> None:
    """Role: the cook. At each order's ``ready_at_s`` publish ``order.ready`` (notebook 01).

    With ``announce_placed`` (the REST design) it also posts ``order.placed`` when an
    order comes in, so the status endpoint knows the order ("still cooking").
    Each ``order.ready`` is flushed on its own, so ``stored_at_ns`` in
    ``kitchen-<role>.csv`` is when the transport confirmed it (broker ack, HTTP 202).
    """
    publisher = spec.publisher()
    produced = ctx.recorder.producer_trace(ctx.name)
    log = TraceWriter(Path(ctx.recorder.run_dir) / f"kitchen-{ctx.name}.csv", KITCHEN_COLUMNS)
    try:
        publisher.publish(new_event(KITCHEN_OPEN, "kitchen", producer=ctx.name, seq=-1))
        publisher.flush(timeout_s=10.0)
        ctx.ready()
        go = _wait_for_go(ctx, go_path)
        if go is None:
            return
        t0, _ = go
        steps = sorted([(o["placed_at_s"], 0, o) for o in orders] + [(o["ready_at_s"], 1, o) for o in orders],
                       key=lambda step: (step[0], step[1]))
        placed_at_ns: dict[str, int] = {}
        for at_s, is_ready, order in steps:
            if ctx.sleep(t0 + at_s - time.monotonic()):
                break
            key, number = order["key"], order["order"]
            if not is_ready:
                placed_at_ns[key] = time.time_ns()
                if announce_placed:
                    publisher.publish(new_event(ORDER_PLACED, key, {"order": number},
                                                producer=ctx.name, seq=number))
                continue
            event = new_event(ORDER_READY, key, {"order": number, "cook_s": order["cook_s"]},
                              producer=ctx.name, seq=number)
            publisher.publish(event)
            publisher.flush(timeout_s=10.0)
            stored_at_ns = time.time_ns()
            produced.record(event)
            log.write(dict(key=key, order=number, placed_at_ns=placed_at_ns.get(key, 0),
                           ready_at_ns=event.produced_at_ns, stored_at_ns=stored_at_ns))
    finally:
        publisher.close()
        produced.close()
        log.close()


def customers_poll(ctx: RoleContext, base_url: str, orders: list[dict], poll_interval_s: float,
                   go_path: str, request_timeout_s: float = 5.0, give_up_after_s: float = 20.0) -> None:
    """Role: every customer asks ``GET /orders/{key}`` every ``poll_interval_s`` (notebook 01).

    Order n's customer asks first ``poll_interval_s`` after ordering, then on a fixed
    schedule (placed + k x interval; an ask that falls behind skips missed slots
    rather than catching up) until the answer is ``order.ready``. Every ask goes to
    ``asks-<role>.csv``; the "yes" answers are the receipts in the recorder's trace.
    Gives up ``give_up_after_s`` after the last order should have been ready.
    """
    import httpx

    client = httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(request_timeout_s))
    trace = ctx.recorder.consumer_trace(ctx.name)
    asks = TraceWriter(Path(ctx.recorder.run_dir) / f"asks-{ctx.name}.csv", ASK_COLUMNS)
    counters = Counters()
    heard = 0
    try:
        client.get("/health").raise_for_status()  # open the keep-alive connection before timing
        ctx.ready()
        go = _wait_for_go(ctx, go_path)
        if go is None:
            return
        t0, _ = go
        give_up_at = t0 + max(o["ready_at_s"] for o in orders) + give_up_after_s
        due = [(o["placed_at_s"] + poll_interval_s, o["order"], o["key"]) for o in orders]
        heapq.heapify(due)
        while due and not ctx.stopping and time.monotonic() < give_up_at:
            due_s, number, key = heapq.heappop(due)
            if ctx.sleep(t0 + due_s - time.monotonic()):
                break
            asked_at_ns = time.time_ns()
            response = client.get(f"/orders/{key}")
            answered_at_ns = time.time_ns()
            counters.requests += 1
            answer = response.json()  # 404 {"status": "unknown"} before the kitchen knows the order
            status = answer.get("status", "unknown")
            asks.write(dict(key=key, order=number, asked_at_ns=asked_at_ns,
                            answered_at_ns=answered_at_ns, status=status))
            if status == ORDER_READY:
                event = Event(**answer["event"])
                trace.record(Delivery(event, answered_at_ns))
                counters.bytes_received += len(event.to_bytes())
                heard += 1
                continue
            counters.empty_responses += 1
            next_s = due_s + poll_interval_s
            late_s = time.monotonic() - t0 - next_s
            if late_s > 0:
                next_s += math.ceil(late_s / poll_interval_s) * poll_interval_s
            heapq.heappush(due, (next_s, number, key))
    finally:
        trace.write_counters(counters, received=heard, setup_requests=0)
        trace.close()
        asks.close()
        client.close()


def waiter_listen(ctx: RoleContext, spec, orders_expected: int, go_path: str, group: str = "waiter",
                  receive_timeout_s: float = 0.2, give_up_after_s: float = 60.0) -> None:
    """Role: the waiter subscribes once and hears each ``order.ready`` (notebook 01).

    Joins (Kafka: waits for its partition assignment) before saying ready. The
    counters written at the end cover only the time from opening (t0) until every
    order was heard; what subscribing cost before opening is in ``setup_requests``.
    """
    subscriber = spec.subscriber(group)
    trace = ctx.recorder.consumer_trace(ctx.name)
    heard: set[str] = set()
    at_open = Counters()
    try:
        if hasattr(subscriber, "wait_for_assignment"):
            subscriber.wait_for_assignment(timeout_s=30.0)
        ctx.ready()
        go = _wait_for_go(ctx, go_path)
        if go is None:
            return
        at_open = Counters(**subscriber.counters.to_dict())
        give_up_at = time.monotonic() + give_up_after_s
        while len(heard) < orders_expected and not ctx.stopping and time.monotonic() < give_up_at:
            for delivery in subscriber.receive(receive_timeout_s):
                if delivery.event.type == ORDER_READY:
                    trace.record(delivery)
                    heard.add(delivery.event.key)
    finally:
        now = subscriber.counters
        window = Counters(requests=now.requests - at_open.requests,
                          empty_responses=now.empty_responses - at_open.empty_responses,
                          bytes_received=now.bytes_received - at_open.bytes_received)
        trace.write_counters(window, received=len(heard), setup_requests=at_open.requests)
        trace.close()
        if hasattr(subscriber, "commit"):
            # The waiter has handled everything it got. Committing first also means the
            # Kafka subscriber's close() has nothing left to commit: a commit from its
            # rebalance callback during close() fails in kafka-python 3.0.
            subscriber.commit()
        subscriber.close()


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------


@dataclass
class WaiterResult:
    """What :func:`waiter_analogy` measured (notebook 01).

    Attributes:
        samples: one row per order and design: ``design``, ``poll_interval_s`` (NaN for
            events), ``label``, ``order``, ``key``, ``cook_s``, ``placed_at_s``,
            ``ready_at_s``, ``known_at_s`` (seconds after opening; NaN if never known),
            ``calls`` (REST: that order's asks; events: every request the waiter made,
            subscribing included, shared equally over the orders) and ``delay_ms``
            (ready -> customer knows).
        summary: one row per design (and interval): ``orders``, ``heard``, ``lost``,
            ``calls_per_order``, ``model_calls_per_order`` (REST: ceil(cook/interval)
            averaged over this run's cook times), ``delay_mean_ms``, ``delay_p50_ms``,
            ``delay_p90_ms``, ``delay_max_ms``, ``requests_total`` =
            ``setup_requests`` (before opening: SUBSCRIBE, first fetches) +
            ``requests_open`` (while the restaurant was open), ``empty_responses``
            (while open), ``open_s`` (opening until the last order was known).
            Kafka's requests are fetches; its group heartbeats and offset commits
            are not counted.
        asks: every REST ask: ``label``, ``order``, ``asked_at_s``, ``answered_at_s``,
            ``status``, ``ready`` (bool).
        kitchen: per design and order: ``label``, ``order``, ``placed_at_s``,
            ``ready_at_s``, ``stored_at_s`` (the transport confirmed the event).
        params: the settings of the run.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    asks: pd.DataFrame
    kitchen: pd.DataFrame
    params: dict = field(default_factory=dict)

    def row(self, design: str, poll_interval_s: float | None = None) -> pd.Series:
        """The summary row of ``design`` (REST: the given interval, else the shortest)."""
        rows = self.summary[self.summary["design"] == design]
        if design == "rest-poll":
            if poll_interval_s is not None:
                rows = rows[np.isclose(rows["poll_interval_s"], poll_interval_s)]
            rows = rows.sort_values("poll_interval_s")
        if not len(rows):
            raise ConfigError(f"No {design!r} row in this result; it ran {list(self.summary['label'])}.")
        return rows.iloc[0]

    @property
    def labels(self) -> list[str]:
        """The labels of the trials, in the order they ran."""
        return list(self.summary["label"])


def _label(design: str, poll_interval_s: float) -> str:
    return f"rest-poll {poll_interval_s * 1000:g} ms" if design == "rest-poll" else design


def _read_log(path_pattern: str, run_dir: Path, columns: Sequence[str]) -> pd.DataFrame:
    table = _read_traces(run_dir.glob(path_pattern), columns)
    for name in columns:
        if name.endswith("_ns") or name == "order":
            table[name] = pd.to_numeric(table[name], errors="coerce")
    return table


def _run_one(trial_dir: Path, listener: tuple[str, Any, dict], kitchen_spec, orders: list[dict],
             announce_placed: bool, settle_s: float) -> tuple[Recorder, int]:
    """Start listener and kitchen, open the restaurant, wait until all is heard; return t0."""
    recorder = Recorder(trial_dir)
    go_path = trial_dir / "go.json"
    name, target, kwargs = listener
    roles = [Role(name, target, recorder, go_path=str(go_path), **kwargs),
             Role("kitchen", kitchen, recorder, spec=kitchen_spec, orders=orders, go_path=str(go_path),
                  announce_placed=announce_placed)]
    try:
        for role in roles:
            role.start(wait=False)
        for role in roles:
            role.wait_ready()
        t0_ns = time.time_ns() + int(_GO_LEAD_S * 1e9)
        _write_go(go_path, t0_ns)
        last_ready_s = max(o["ready_at_s"] for o in orders)
        for role in roles:
            remaining_s = (t0_ns - time.time_ns()) / 1e9 + last_ready_s + settle_s
            if not role.join(max(remaining_s, 1.0)):
                break  # the listener gave up or hangs: stop it below and count what it heard
        for role in roles:
            if role.exitcode not in (None, 0, -15):
                raise ExperimentError(f"Role {role.name!r} failed (exit code {role.exitcode}). "
                                      f"Its log ends:\n{role.log_tail()}")
    finally:
        for role in roles:
            role.stop()
    return recorder, t0_ns


def _tables(label: str, design: str, interval: float, orders: list[dict], recorder: Recorder,
            t0_ns: int) -> tuple[pd.DataFrame, dict, pd.DataFrame, pd.DataFrame]:
    run_dir = Path(recorder.run_dir)
    received = recorder.received()
    known = (received.sort_values("received_at_ns").drop_duplicates("key").set_index("key")["received_at_ns"]
             if len(received) else pd.Series(dtype="int64"))
    kitchen_log = _read_log("kitchen-*.csv", run_dir, KITCHEN_COLUMNS).set_index("key")
    counters = recorder.counters()
    listener = counters[counters["role"] != "kitchen"].iloc[0] if len(counters) else None
    n = len(orders)
    asks = _read_log("asks-*.csv", run_dir, ASK_COLUMNS)
    calls_by_key = asks.groupby("key").size() if len(asks) else pd.Series(dtype="int64")
    requests = float(listener["requests"]) if listener is not None else float("nan")
    setup = listener.get("setup_requests", np.nan) if listener is not None else np.nan
    setup = 0.0 if pd.isna(setup) else float(setup)
    requests_total = requests + setup

    rows = []
    for o in orders:
        key = o["key"]
        ready_ns = kitchen_log["ready_at_ns"].get(key, np.nan)
        known_ns = known.get(key, np.nan)
        calls = float(calls_by_key.get(key, 0)) if design == "rest-poll" else requests_total / n
        rows.append(dict(design=design, poll_interval_s=interval, label=label, order=o["order"], key=key,
                         cook_s=o["cook_s"], placed_at_s=o["placed_at_s"],
                         ready_at_s=(ready_ns - t0_ns) / 1e9, known_at_s=(known_ns - t0_ns) / 1e9,
                         calls=calls, delay_ms=(known_ns - ready_ns) / 1e6))
    samples = pd.DataFrame(rows)

    delays = samples["delay_ms"].dropna().to_numpy()
    pct = (lambda q: float(np.percentile(delays, q))) if len(delays) else (lambda q: float("nan"))
    heard = int(samples["known_at_s"].notna().sum())
    model = (float(np.mean(np.ceil(samples["cook_s"] / interval))) if design == "rest-poll"
             else float("nan"))
    summary = dict(design=design, poll_interval_s=interval, label=label, orders=n, heard=heard,
                   lost=n - heard, calls_per_order=float(samples["calls"].mean()),
                   model_calls_per_order=model, delay_mean_ms=float(delays.mean()) if len(delays) else np.nan,
                   delay_p50_ms=pct(50), delay_p90_ms=pct(90),
                   delay_max_ms=float(delays.max()) if len(delays) else np.nan,
                   requests_total=requests_total, requests_open=requests, setup_requests=setup,
                   empty_responses=float(listener["empty_responses"]) if listener is not None else np.nan,
                   open_s=float(np.nanmax(samples["known_at_s"])) if heard else np.nan)

    asks_table = pd.DataFrame(dict(label=label, order=asks["order"].astype(int),
                                   asked_at_s=(asks["asked_at_ns"] - t0_ns) / 1e9,
                                   answered_at_s=(asks["answered_at_ns"] - t0_ns) / 1e9,
                                   status=asks["status"], ready=asks["status"] == ORDER_READY))
    kitchen_table = pd.DataFrame(dict(label=label, order=kitchen_log["order"].astype(int),
                                      placed_at_s=(kitchen_log["placed_at_ns"] - t0_ns) / 1e9,
                                      ready_at_s=(kitchen_log["ready_at_ns"] - t0_ns) / 1e9,
                                      stored_at_s=(kitchen_log["stored_at_ns"] - t0_ns) / 1e9))
    kitchen_table = kitchen_table.reset_index(drop=True)
    return samples, summary, asks_table, kitchen_table


def waiter_analogy(lab, *, orders: int | None = None, poll_intervals_s: Sequence[float] | None = None,
                   cook_time_mean_s: float | None = None, order_rate_per_s: float = 4.0,
                   designs: Sequence[str] | None = None, quick: bool | None = None, seed: int = 1,
                   run_dir: str | Path | None = None, progress: bool = True) -> WaiterResult:
    """Run the restaurant both ways on ``lab``'s servers (notebook 01).

    Every design serves the same orders (same placement times and cook times).

    Args:
        lab: from :func:`edalab.start`.
        orders: orders per design (default 40; quick 10).
        poll_intervals_s: how often REST customers ask, seconds (default 0.2 and 1.0;
            quick 0.2).
        cook_time_mean_s: mean cooking time, seconds; each order cooks between half and
            one and a half times this (default 2.0; quick 1.0).
        order_rate_per_s: orders placed per second on average (random arrivals).
        designs: any of :data:`DESIGNS` (default: all).
        quick: the short CI version (default ``$EDALAB_QUICK``).
        seed: same seed, same orders.
        run_dir: where role traces go (a temporary folder by default).
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    from edalab._servers import free_port
    from edalab.transports.http import EventServiceSpec, serve_event_service

    quick = quick_mode(quick)
    defaults = QUICK if quick else FULL
    count = orders or defaults["orders"]
    intervals = tuple(poll_intervals_s or defaults["poll_intervals_s"])
    cook_mean_s = cook_time_mean_s or defaults["cook_time_mean_s"]
    designs = tuple(designs or DESIGNS)
    unknown = set(designs) - set(DESIGNS)
    if unknown:
        raise ConfigError(f"Unknown designs {sorted(unknown)}; choose from {list(DESIGNS)}.")
    if any(not i > 0 for i in intervals) or count < 1 or not cook_mean_s > 0 or not order_rate_per_s > 0:
        raise ConfigError("orders, poll intervals, cook_time_mean_s and order_rate_per_s must be positive.")
    root = Path(run_dir or tempfile.mkdtemp(prefix="edalab-waiter-"))
    tag = uuid.uuid4().hex[:8]

    trials = [(d, i) for d in designs for i in (intervals if d == "rest-poll" else (float("nan"),))]
    base_url = f"http://127.0.0.1:{free_port()}"
    service = Role("event-service", serve_event_service, Recorder(root / "service"), base_url=base_url)
    samples, summaries, asks, kitchens = [], [], [], []
    try:
        if "rest-poll" in designs:
            service.start()
        bar = tqdm(trials, desc="waiter analogy", disable=not progress, leave=False)
        for design, interval in bar:
            label = _label(design, interval)
            bar.set_postfix_str(label)
            trial_name = label.replace(" ", "-")
            # Keys are unique per trial: REST trials share one service, whose status
            # endpoint must not answer from an earlier trial's orders.
            schedule = restaurant_orders(count, order_rate_per_s, cook_mean_s, seed,
                                         prefix=f"{trial_name}-order")
            if design == "rest-poll":
                spec = EventServiceSpec(base_url, mode="poll", poll_interval_s=interval)
                listener = ("customers", customers_poll,
                            dict(base_url=base_url, orders=schedule, poll_interval_s=interval))
                settle_s = max(5.0, 3 * interval)
            else:
                if design == "redis-pubsub":
                    from edalab.transports.redis import RedisPubSubSpec

                    spec = RedisPubSubSpec.for_lab(lab, f"waiter-{tag}")
                else:
                    from edalab.transports.kafka import KafkaSpec

                    spec = KafkaSpec.for_lab(lab, lab.create_topic(f"waiter-{tag}"))
                listener = ("waiter", waiter_listen, dict(spec=spec, orders_expected=count))
                settle_s = 5.0
            recorder, t0_ns = _run_one(root / trial_name, listener, spec, schedule,
                                       announce_placed=design == "rest-poll", settle_s=settle_s)
            trial = _tables(label, design, interval, schedule, recorder, t0_ns)
            samples.append(trial[0])
            summaries.append(trial[1])
            asks.append(trial[2])
            kitchens.append(trial[3])
        bar.close()
    finally:
        service.stop()
    params = dict(orders=count, poll_intervals_s=intervals, cook_time_mean_s=cook_mean_s,
                  order_rate_per_s=order_rate_per_s, designs=designs, quick=quick, seed=seed,
                  run_dir=str(root), embedded_kafka=lab.kafka_embedded,
                  kafka_fetch_max_wait_ms=lab.kafka_defaults.fetch_max_wait_ms)
    return WaiterResult(samples=pd.concat(samples, ignore_index=True),
                        summary=pd.DataFrame(summaries), asks=pd.concat(asks, ignore_index=True),
                        kitchen=pd.concat(kitchens, ignore_index=True), params=params)
