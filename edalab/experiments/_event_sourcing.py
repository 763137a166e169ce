"""Event sourcing and a CQRS read model, on a real Kafka-protocol broker and Redis (notebook 10).

:func:`rebuild_by_replay` runs three roles, each its own process:

* ``writer`` (:func:`~edalab.experiments._event_roles.history_writer`): one table's tab,
  an order whose events (dishes added and removed, paid) are the only record of it,
  written into one topic per history size, with a snapshot every ``snapshot_every``
  events in Redis; then a live stream of the evening's orders from ``data/``, whose
  ``item_added`` schema moves v1 -> v2 (a field added) -> v3 (a field renamed, refused
  by the writer's compatibility check);
* ``rebuilder``: rebuilds the tab by replaying its topic (``spec.replayer``) from the
  beginning and from the snapshot, timed, for each size;
* ``read-model``: the query side, a consumer written for schema v1 that folds each live
  event into the order's JSON in Redis; its lag (produced -> applied) is measured.

Afterwards the read model in Redis is compared with a replay of the live topic.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.experiments._event_fold import apply_order_event, rebuild
from edalab.experiments._event_roles import history_writer, read_model, rebuilder
from edalab.experiments._result import MethodRows
from edalab.harness import Scenario

__all__ = ["rebuild_by_replay", "RebuildResult", "order_history", "live_orders", "REBUILD_METHODS"]

#: how the tab is rebuilt (the ``method`` column)
REBUILD_METHODS = ("full-replay", "snapshot")


def _dishes():
    from edalab.workloads import menu, order_trace

    dishes = menu().set_index("item_id")
    for row in order_trace().itertuples():
        dish = dishes.loc[row.item_id]
        yield row, {"item_id": row.item_id, "name": dish["name"], "quantity": int(row.quantity),
                    "price_eur": float(dish["price_eur"]), "cook_time_s": float(row.cook_time_s)}


def order_history(events: int) -> list[list]:
    """One long table's tab of ``events`` events, [type, payload] pairs, from the orders in ``data/``.

    Dishes are added in the order of the evening (again from the start when the evening
    runs out), every fourth event removes the dish added before it, the last one pays.
    """
    dishes = [d for _, d in _dishes()]
    out, last = [], None
    for i in range(events - 1):
        if i % 4 == 3 and last is not None:
            out.append(["item_removed", {"order_id": "order-tab", "item_id": last}])
            last = None
        else:
            dish = dishes[i % len(dishes)]
            out.append(["item_added", {"order_id": "order-tab", **dish}])
            last = dish["item_id"]
    out.append(["order_paid", {"order_id": "order-tab"}])
    return out[:events]


def live_orders(events: int) -> list[list]:
    """The evening's orders as ``events`` live events: each order adds its dish, every third adds
    one more portion of it, every fifth removes it again, and each is paid; in time order."""
    moments = []
    for row, dish in _dishes():
        key, t = f"order-{row.order_id}", row.placed_at_s
        moments.append((t, 0, ["item_added", {"order_id": key, **dish}]))
        if row.order_id % 3 == 0:
            moments.append((t + 0.3, 1, ["item_added", {"order_id": key, **dish, "quantity": 1}]))
        if row.order_id % 5 == 0:
            moments.append((t + 0.5, 2, ["item_removed", {"order_id": key, "item_id": dish["item_id"]}]))
        moments.append((t + 0.5 + dish["cook_time_s"], 3, ["order_paid", {"order_id": key}]))
    return [m[2] for m in sorted(moments, key=lambda m: (m[0], m[1]))][:events]


@dataclass
class RebuildResult(MethodRows):
    """What :func:`rebuild_by_replay` measured (notebook 10).

    Attributes:
        summary: one row per ``method`` and history size ``events``: ``events_read``,
            ``rebuild_p50_ms`` and ``rebuild_min_ms`` over the repeats, ``same_state`` (every
            rebuild gave the order the writer folded).
        rebuilds: one row per rebuild.
        read_model: one row per live event the read model applied: ``latency_ms``
            (produced -> in Redis), ``schema_version``, ``ok``, ``error``.
        read_model_summary: one row per schema version: events, failed, ``latency_p50_ms``,
            ``latency_p90_ms``, ``latency_max_ms``.
        consistent: orders whose read model equals the replay of the live topic, and the total.
        refused: schema versions the writer's check refused, with the reasons.
        expected: the tab as the writer folded it, per size.
        params: the settings used.
    """

    summary: pd.DataFrame
    rebuilds: pd.DataFrame
    read_model: pd.DataFrame
    read_model_summary: pd.DataFrame
    consistent: tuple
    refused: list
    expected: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def at(self, method: str, events: int) -> dict:
        """The summary row of ``method`` for the history of ``events`` events."""
        rows = self.summary[(self.summary["method"] == method) & (self.summary["events"] == events)]
        if rows.empty:
            raise ConfigError(f"No {method!r} rebuild of {events} events in this result.")
        return rows.iloc[0].to_dict()


def rebuild_by_replay(lab, *, history_sizes: Sequence[int] | None = None, snapshot_every: int = 400,
                      repeats: int | None = None, live_rate_per_s: float = 40.0, live_s: float | None = None,
                      apply: Callable = apply_order_event, quick: bool | None = None,
                      run_dir: str | Path | None = None, progress: bool = True) -> RebuildResult:
    """Rebuild an order by replaying its topic, with and without a snapshot; a CQRS read model's lag (notebook 10).

    Args:
        lab: from :func:`edalab.start`.
        history_sizes: events in the tab's history, one topic each (default 200, 2000, 8000;
            quick 200, 1000, 3000).
        snapshot_every: the writer stores a snapshot after every this many events.
        repeats: rebuilds of each kind and size (the median is reported; default 3, quick 2).
        live_rate_per_s: live order events per second for the read model.
        live_s: seconds of live events (default 6; quick 3).
        apply: the fold ``apply(state, event) -> state`` the rebuilder and the read model use.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here (default: a fresh folder under the runs folder).
        progress: show a progress bar.
    """
    quick = quick_mode(quick)
    sizes = ((200, 1000, 3000) if quick else (200, 2000, 8000)) if history_sizes is None else history_sizes
    if isinstance(sizes, (str, int)) or not isinstance(sizes, Sequence):
        raise ConfigError(f"history_sizes must be a list of event counts, e.g. [200, 2000], not {sizes!r}.")
    sizes = sorted({_checks.count(n, "history_sizes", minimum=2, maximum=50000, sensible_max=20000)
                    for n in sizes})
    if not sizes:
        raise ConfigError("history_sizes must list at least one event count, e.g. [200, 2000].")
    snapshot_every = _checks.count(snapshot_every, "snapshot_every", minimum=1)
    repeats = _checks.count((2 if quick else 3) if repeats is None else repeats, "repeats", minimum=1,
                            sensible_max=10)
    live_rate_per_s = _checks.number(live_rate_per_s, "live_rate_per_s", unit="events per second",
                                     positive=True, sensible=(2, 200))
    live_s = _checks.number((3.0 if quick else 6.0) if live_s is None else live_s, "live_s", unit="seconds",
                            positive=True, sensible=(1, 60))
    if not callable(apply):
        raise ConfigError(f"apply must be a function apply(state, event) -> state, not {type(apply).__name__}.")
    history = order_history(sizes[-1])
    live = live_orders(int(live_rate_per_s * live_s))
    tag = uuid.uuid4().hex[:8]
    prefix = f"es-{tag}"
    histories = {n: lab.transport("kafka", partitions=1) for n in sizes}
    live_spec = lab.transport("kafka", partitions=1)
    sc = Scenario("event-sourcing", run_dir=run_dir)
    sc.add("writer", history_writer, ready_timeout_s=120.0,
           kwargs=dict(histories=histories, history=history, snapshot_every=snapshot_every,
                       redis_url=lab.redis_url, prefix=prefix, live_spec=live_spec, live_events=live,
                       rate_per_s=live_rate_per_s, versions=[1, 2, 3]))
    sc.add("rebuilder", rebuilder, kwargs=dict(histories=histories, redis_url=lab.redis_url, prefix=prefix,
                                               repeats=repeats, apply=apply))
    sc.add("read-model", read_model, ready_timeout_s=40.0,
           kwargs=dict(spec=live_spec, group=f"read-{tag}", redis_url=lab.redis_url, prefix=prefix, apply=apply))
    with sc.run(expect_events=len(live), progress="replay and read model" if progress else False) as run:
        run.wait_finished("writer", timeout_s=live_s + 60)
        run.wait_finished("rebuilder", timeout_s=120)
        if not run.until_delivered(len(live), roles=["read-model"], timeout_s=30):
            raise ExperimentError(f"The read model did not get every live event within 30 s. Its log ends:\n"
                                  f"{sc['read-model'].log_tail()}")
        run.sleep(0.2)                                   # its last write to Redis
    expected = {n: rebuild(_as_events(history[:n])) for n in sizes}
    summary, rebuilds = _rebuild_table(sc.recorder.table("rebuilds"), expected)
    model = sc.recorder.table("read_model")
    model = model.assign(latency_ms=(model["applied_ns"] - model["produced_ns"]) / 1e6)
    notes = sc.recorder.notes("writer")
    refused = [] if notes.empty else notes[notes["what"] == "schema_refused"][["version", "problems"]].to_dict("records")
    consistent = _compare_read_model(lab, live_spec, len(live), prefix, apply)
    params = dict(history_sizes=sizes, snapshot_every=snapshot_every, repeats=repeats, quick=quick,
                  live_rate_per_s=live_rate_per_s, live_s=live_s, run_dir=str(sc.run_dir),
                  apply=getattr(apply, "__name__", "apply"))
    return RebuildResult(summary, rebuilds, model, _model_table(model), consistent, refused, expected, params)


def _as_events(pairs: list[list]) -> list:
    from edalab._events import Event

    return [Event(id=str(i), type=kind, key=payload["order_id"], payload=payload) for i, (kind, payload) in
            enumerate(pairs)]


def _rebuild_table(rebuilds: pd.DataFrame, expected: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pure: median rebuild time per method and size, and whether every rebuild got the right order."""
    rebuilds = rebuilds.assign(same_state=[json.loads(s) == expected[int(n)]
                                           for s, n in zip(rebuilds["state"], rebuilds["events"])])
    summary = (rebuilds.groupby(["method", "events"], sort=False)
               .agg(events_read=("events_read", "max"), rebuild_p50_ms=("ms", "median"),
                    rebuild_min_ms=("ms", "min"), same_state=("same_state", "all"))
               .reset_index())
    return summary, rebuilds


def _model_table(model: pd.DataFrame) -> pd.DataFrame:
    """Pure: the read model's events, failures and lag per schema version."""
    return (model.groupby("schema_version")
            .agg(events=("ok", "size"), failed=("ok", lambda ok: int((ok == 0).sum())),
                 latency_p50_ms=("latency_ms", "median"), latency_p90_ms=("latency_ms", lambda x: x.quantile(0.9)),
                 latency_max_ms=("latency_ms", "max"))
            .reset_index())


def _compare_read_model(lab, spec, events: int, prefix: str, apply: Callable) -> tuple[int, int]:
    """(orders whose JSON in Redis equals the fold of their events replayed from the topic, orders)."""
    reader = spec.replayer("beginning")
    got = []
    try:
        for _ in range(300):
            if len(got) >= events:
                break
            got += [d.event for d in reader.receive(0.1)]
    finally:
        reader.close()
    by_order: dict[str, list] = {}
    for event in got:
        by_order.setdefault(event.key, []).append(event)
    client = lab.redis()
    try:
        same = sum(json.loads(client.get(f"{prefix}:read:{key}") or "null") == rebuild(evs, apply)
                   for key, evs in by_order.items())
    finally:
        client.close()
    return same, len(by_order)
