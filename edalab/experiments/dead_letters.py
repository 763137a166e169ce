"""Retries, backoff and a dead-letter topic: what a poison order does to the line (notebook 09).

Orders arrive on a one-partition Kafka topic (one line, in order). Among the good
ones are the bad payloads of ``data/poison_orders.jsonl`` (:func:`edalab.workloads.poison_orders`:
they fail on every attempt) and a few orders whose first attempts fail with a
timeout (a transient failure a retry fixes). The kitchen (:func:`~edalab.experiments._delivery_roles.kitchen`)
retries with exponential backoff, and then, by strategy (the ``method`` column):

* ``retry-forever``: never gives up; nothing behind a poison order is cooked again
  (head-of-line blocking, for good);
* ``dead-letter``: after ``max_attempts`` attempts in place the order goes to a
  dead-letter topic and the line moves on; the orders behind waited for the retries;
* ``retry-topic``: a failed order goes to a retry topic at once, a second role (the
  retrier) retries it there after the backoff and dead-letters it after
  ``max_attempts``; the line never waits, but an order that succeeds on a retry is
  cooked after later orders of the same key: per-key order is gone.

:func:`retry_strategies` runs the three at once on the same orders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError
from edalab._lazy import lazy_module
from edalab.experiments._survival import read_all
from edalab.experiments._delivery_roles import STRATEGIES, kitchen, retrier, send_orders
from edalab.harness import Scenario
from edalab.workloads import menu, order_trace, poison_orders
from edalab.experiments._result import MethodRows

pd = lazy_module("pandas")

__all__ = ["STRATEGIES", "RetryResult", "retry_strategies", "mixed_orders"]


def mixed_orders(good: int, poison_every: int = 12, flaky_every: int = 12) -> list[dict]:
    """Good orders of ``data/orders.csv`` with a poison order after every ``poison_every``
    good ones (the bad payloads in turn) and a transient failure (its first two
    attempts fail) half-way between; the order after a transient one is for the same
    table (the same key), so a reordering shows. Each: ``key``, ``payload``, ``kind``."""
    trace = order_trace().head(good)
    bad = poison_orders()
    orders: list[dict] = []
    for i, row in enumerate(trace.itertuples(index=False)):
        body = {"order_id": int(row.order_id), "table": int(row.table), "item_id": row.item_id,
                "quantity": int(row.quantity)}
        flaky = i % flaky_every == flaky_every // 2
        if orders and orders[-1]["kind"] == "flaky":      # same table as the transient one before
            body["table"] = json.loads(orders[-1]["payload"]["body"])["table"]
        orders.append({"key": f"table-{body['table']}", "kind": "flaky" if flaky else "good",
                       "payload": {"body": json.dumps(body), "fail_first": 2 if flaky else 0}})
        if (i + 1) % poison_every == 0:
            case = bad[((i + 1) // poison_every - 1) % len(bad)]
            orders.append({"key": f"table-{_table_of(case['payload'])}", "kind": "poison",
                           "payload": {"body": case["payload"], "case": case["case"]}})
    return orders


def _table_of(text: str) -> int:
    try:
        return int(json.loads(text).get("table", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


@dataclass
class RetryResult(MethodRows):
    """What :func:`retry_strategies` measured.

    Attributes:
        summary: one row per ``method`` (strategy): ``orders``, ``poison``, ``cooked``
            (good and transient orders cooked), ``blocked`` (good orders never cooked),
            ``dead_lettered`` (read back from the dead-letter topic), ``attempts``,
            ``latency_p50_ms`` / ``latency_max_ms`` (from sent to cooked, good orders),
            ``out_of_order`` (orders cooked after a later order of the same key).
        samples: one row per method and order: ``seq``, ``kind``, ``key``, ``sent_s``,
            ``cooked_s`` (NaN if never), ``latency_ms``, ``attempts``, ``dead_lettered``.
        params: the checked parameters, with ``run_dir``.
    """

    summary: pd.DataFrame
    samples: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return self.summary.set_index("method").round({"latency_p50_ms": 0, "latency_max_ms": 0})


def retry_strategies(lab, *, methods: Sequence[str] = STRATEGIES, orders: int | None = None,
                     rate_per_s: float = 20.0, max_attempts: int = 4, backoff_ms: float = 100.0,
                     kitchen: Callable = kitchen, quick: bool | None = None,
                     run_dir: str | Path | None = None, progress: bool = True) -> RetryResult:
    """Send good, poison and transient orders; let each strategy's kitchen deal with them.

    Args:
        lab: from :func:`edalab.start`.
        methods: a list of :data:`STRATEGIES`.
        orders: good orders sent (default 96, quick 24); a poison order follows every 12th.
        rate_per_s: orders per second (steady).
        max_attempts: attempts before an order is dead-lettered (not for ``retry-forever``).
        backoff_ms: wait before the first retry; doubled for each next one.
        kitchen: the consumer body (default :func:`~edalab.experiments._delivery_roles.kitchen`),
            ``kitchen(ctx, spec, dead_spec, retry_spec, menu_ids, strategy, max_attempts,
            backoff_ms, max_backoff_ms, group)``; it must record what it cooked in
            ``ctx.recorder.consumer_trace`` and each attempt in the ``attempts`` table.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here instead of the runs folder.
        progress: show a progress bar.
    """
    quick = quick_mode(quick)
    methods = tuple(_checks.choices(methods, "methods", STRATEGIES))
    good = _checks.count((24 if quick else 96) if orders is None else orders, "orders", minimum=12,
                         sensible_max=1000, what=" good orders")
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                sensible=(1, 200))
    max_attempts = _checks.count(max_attempts, "max_attempts", minimum=3, maximum=20, what=" attempts")
    backoff_ms = _checks.number(backoff_ms, "backoff_ms", unit="ms", positive=True, sensible=(10, 2000))
    if len(set(methods)) < len(methods):
        raise ConfigError(f"methods must not repeat a name (got {list(methods)}).")
    if not callable(kitchen):
        raise ConfigError(f"kitchen must be a role body, not {type(kitchen).__name__}.")
    mix = mixed_orders(good)
    p = dict(methods=methods, orders=good, rate_per_s=rate_per_s, max_attempts=max_attempts,
             backoff_ms=backoff_ms, quick=quick, poison=sum(o["kind"] == "poison" for o in mix))
    menu_ids = tuple(menu()["item_id"])
    sc = Scenario("dead-letters", run_dir=run_dir)
    p["run_dir"] = str(sc.run_dir)
    dead_specs, mains = {}, []
    body = dict(menu_ids=menu_ids, max_attempts=max_attempts, backoff_ms=backoff_ms)
    for method in methods:
        main, dead, retry = (lab.transport("kafka", partitions=1) for _ in range(3))
        mains.append(main)
        dead_specs[method] = dead
        sc.add(f"kitchen-{method}", kitchen, kwargs=dict(spec=main, dead_spec=dead, retry_spec=retry,
                                                         strategy=method, group=f"kitchen-{method}", **body),
               ready_timeout_s=40.0)
        if method == "retry-topic":
            sc.add("retrier", retrier, kwargs=dict(retry_spec=retry, dead_spec=dead, group=f"kitchen-{method}",
                                                   **body), ready_timeout_s=40.0)
    sc.add("orders", send_orders, kwargs=dict(specs=mains, orders=[{k: o[k] for k in ("key", "payload")}
                                                                   for o in mix], rate_per_s=rate_per_s))
    kinds = {seq: o["kind"] for seq, o in enumerate(mix)}
    retries_s = sum(min(1.0, backoff_ms / 1000 * 2 ** k) for k in range(max_attempts))
    # The same events go to every strategy: the bar counts distinct orders cooked by anyone.
    with sc.run(expect_events=len(mix) - p["poison"], progress="poison orders" if progress else False) as run:
        run.wait_finished("orders", timeout_s=len(mix) / rate_per_s + 30)
        run.until(lambda: _settled(sc, methods, kinds), timeout_s=p["poison"] * retries_s + 20, step_s=0.2)
        run.sleep(0.2)
    dead_ids = {method: read_all(spec, 5.0, expect=p["poison"]) for method, spec in dead_specs.items()}
    summary, samples = _analyse(sc, methods, kinds, dead_ids)
    return RetryResult(summary, samples, p)


def _settled(sc: Scenario, methods, kinds: dict) -> bool:
    """Every strategy that gives up has cooked every cookable order and parked every poison one."""
    attempts = sc.recorder.table("attempts")
    if not len(attempts):
        return False
    for method in methods:
        if method == "retry-forever":
            continue
        mine = attempts[attempts["role"].isin([f"kitchen-{method}", "retrier"] if method == "retry-topic"
                                              else [f"kitchen-{method}"])]
        done = set(mine.loc[mine["outcome"].isin(["cooked", "dead-lettered"]), "seq"])
        if len(done) < len(kinds):
            return False
    return True


def _analyse(sc: Scenario, methods, kinds: dict, dead_ids: dict):
    """Pure: traces, the attempts table and the dead-letter topics -> summary and samples."""
    produced, received = sc.recorder.produced(), sc.recorder.received()
    attempts = sc.recorder.table("attempts")
    life = sc.recorder.lifecycle()
    gate_ns = int(life.loc[life["role"] == "gate", "at_ns"].iloc[0])
    rows, samples = [], []
    for method in methods:
        roles = [f"kitchen-{method}"] + (["retrier"] if method == "retry-topic" else [])
        cooked = received[received["role"].isin(roles)].drop_duplicates("event_id")
        tries = attempts[attempts["role"].isin(roles)]
        s = produced[["event_id", "seq", "key", "produced_at_ns"]].copy()
        s["method"], s["kind"] = method, s["seq"].map(kinds)
        s["sent_s"] = (s["produced_at_ns"] - gate_ns) / 1e9
        done_ns = s["event_id"].map(cooked.set_index("event_id")["received_at_ns"])
        s["cooked_s"] = (done_ns - gate_ns) / 1e9
        s["latency_ms"] = (done_ns - s["produced_at_ns"]) / 1e6
        s["attempts"] = s["event_id"].map(tries[tries["outcome"] != "dead-lettered"].groupby("event_id").size()
                                          ).fillna(0).astype(int)
        s["dead_lettered"] = s["event_id"].isin(dead_ids[method])
        good = s[s["kind"] == "good"]
        rows.append({"method": method, "orders": int((s["kind"] != "poison").sum()),
                     "poison": int((s["kind"] == "poison").sum()),
                     "cooked": int(s.loc[s["kind"] != "poison", "cooked_s"].notna().sum()),
                     "blocked": int(good["cooked_s"].isna().sum()),
                     "dead_lettered": int(s["dead_lettered"].sum()), "attempts": int(s["attempts"].sum()),
                     "latency_p50_ms": good["latency_ms"].median(), "latency_max_ms": good["latency_ms"].max(),
                     "out_of_order": _out_of_order(s)})
        samples.append(s.drop(columns=["produced_at_ns"]))
    return pd.DataFrame(rows), pd.concat(samples, ignore_index=True)


def _out_of_order(s: pd.DataFrame) -> int:
    """Orders cooked after an order of the same key that was sent later."""
    done = s.dropna(subset=["cooked_s"]).sort_values("cooked_s")
    late = 0
    for _key, group in done.groupby("key"):
        seqs = group["seq"].to_numpy()
        late += int(sum(seqs[i] > seqs[i + 1:].min() for i in range(len(seqs) - 1)))
    return late
