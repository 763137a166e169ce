"""Notebook 12's exercise: add a loyalty-points service to the event-driven restaurant.

The learner writes a role body ``loyalty(ctx, spec, group, redis_url, ledger)``: it
consumes ``order.placed`` in its own consumer group and credits one point per whole
euro of each order into a Redis hash ``ledger`` (field: the order id, value: its
points). Nothing else changes: not the orders service that publishes, not kitchen,
stock or billing.

:func:`check_loyalty` runs it for real, as a role next to the live event-driven
restaurant (:func:`edalab.experiments.add_event_restaurant`), together with the
reference and a typical wrong body, in one run. Mid-evening it kills every loyalty
service (SIGKILL) and starts it again: the check's topic commits only when the body
calls ``subscriber.commit()``, so Kafka delivers again what the killed process had
received. :func:`judge_ledger` then counts, per order id, how many times it was
credited: exactly once for every order is the only pass.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edalab.exercises import Feedback

__all__ = ["check_loyalty", "LoyaltyCheck", "judge_ledger", "reference_loyalty", "credits_every_delivery",
           "in_memory_dedupe", "expected_points", "hint", "solution"]


def reference_loyalty(ctx, spec, group, redis_url, ledger):
    """Credit one point per whole euro of each order, once per order (HSETNX)."""
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    subscriber = spec.subscriber(group)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                order = delivery.event.payload
                # Sets the field only if it is not there yet: a redelivered order changes nothing.
                r.hsetnx(ledger, order["order_id"], int(order["amount_eur"]))
        subscriber.commit()
    finally:
        subscriber.close()


def credits_every_delivery(ctx, spec, group, redis_url, ledger):
    """The first version everyone writes: add the points for every delivery (HINCRBY)."""
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    subscriber = spec.subscriber(group)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                order = delivery.event.payload
                r.hincrby(ledger, order["order_id"], int(order["amount_eur"]))
        subscriber.commit()
    finally:
        subscriber.close()


def in_memory_dedupe(ctx, spec, group, redis_url, ledger):
    """Remembers the orders it credited, in a set in memory: forgotten when the process dies."""
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    subscriber = spec.subscriber(group)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    seen = set()
    try:
        while not ctx.stopping:
            for delivery in subscriber.receive(0.1):
                order = delivery.event.payload
                if order["order_id"] not in seen:
                    seen.add(order["order_id"])
                    r.hincrby(ledger, order["order_id"], int(order["amount_eur"]))
        subscriber.commit()
    finally:
        subscriber.close()


def expected_points(rows: list[dict]) -> dict[int, int]:
    """Order id -> the points it earns: one per whole euro of ``amount_eur``."""
    return {int(r["order_id"]): int(r["amount_eur"]) for r in rows}


def judge_ledger(ledger: Mapping[Any, Any], expected: Mapping[int, int]):
    """(Feedback, table) for one ledger: per order id, points expected, credited, times credited.

    ``times`` is credited / expected: 1 is right, 2 is an order credited twice, 0 a
    missed one; a fraction means the points were computed another way.
    """
    import pandas as pd

    got = {int(k): int(v) for k, v in ledger.items()}
    table = pd.DataFrame([dict(order_id=oid, points_expected=pts, points_credited=got.get(oid, 0),
                               times=got.get(oid, 0) / pts if pts else math.nan)
                          for oid, pts in sorted(expected.items())])
    missed = sorted(oid for oid in expected if oid not in got)
    twice = table.loc[table["times"] >= 2, "order_id"].tolist()
    wrong = table.loc[(table["times"] > 0) & (table["times"] != table["times"].round()), "order_id"].tolist()
    unknown = sorted(set(got) - set(expected))
    n = len(expected)
    once = int((table["times"] == 1).sum())
    counts = f"{once} of {n} orders credited exactly once"
    if twice:
        return Feedback(False, f"{counts}; {len(twice)} credited twice or more (order ids {_ids(twice)}). The "
                               f"check killed your service and Kafka delivered again what it had not committed: "
                               f"crediting must be idempotent, and the memory of what was credited must survive a "
                               f"crash (keep it in Redis, with the points)."), table
    if missed:
        return Feedback(False, f"{counts}; {len(missed)} never credited (order ids {_ids(missed)}). Every "
                               f"order.placed must earn its points, also those delivered again after a restart."), table
    if wrong or unknown:
        return Feedback(False, f"{counts}; points that are not one per whole euro for {_ids(wrong)}"
                               f"{', and unknown order ids ' + _ids(unknown) if unknown else ''}: credit "
                               f"int(order['amount_eur']) under the order's order_id."), table
    return Feedback(True, f"{counts}, also after a SIGKILL and Kafka's redelivery, and nothing else in the "
                          f"restaurant changed."), table


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:6])) + (" ..." if len(ids) > 6 else "")


@dataclass
class LoyaltyCheck:
    """The verdict on your loyalty service, and on the others judged in the same run.

    True when yours passed. ``others``: name -> Feedback (the reference is
    ``others["reference"]``, also :attr:`reference`); ``tables``: name -> the per-order
    table of :func:`judge_ledger`.
    """

    yours: Feedback
    others: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    @property
    def reference(self) -> Feedback:
        return self.others["reference"]

    def __bool__(self) -> bool:
        return self.yours.ok

    def __str__(self) -> str:
        lines = [str(self.yours)] + [f"  (same run, {name}: {fb.message.split(';')[0].split(',')[0]}"
                                     f"{'' if fb.ok else ': refused'})" for name, fb in self.others.items()]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.yours._repr_markdown_()


def check_loyalty(lab, my_loyalty: object, *, others: Mapping[str, Callable] | None = None, orders: int = 16,
                  speed: float = 3.0, progress: bool = True) -> Feedback | LoyaltyCheck:
    """Run ``my_loyalty`` as a role against the event-driven restaurant; was every order credited once?

    Next to yours, in the same run: the reference, the in-memory dedupe and any
    ``others`` (name -> body). Each gets its own group and its own ledger. About ten
    seconds: ``orders`` orders of ``data/orders.csv`` played ``speed`` times faster;
    every loyalty service is killed a third of the way in and started again.
    """
    from edalab import _checks
    from edalab._errors import EdalabError
    from edalab.experiments.restaurant import add_event_restaurant, evening
    from edalab.harness import Scenario

    if my_loyalty is None:
        return Feedback(False, "define loyalty(ctx, spec, group, redis_url, ledger) in the cell above first; "
                               "it is still None.")
    if isinstance(my_loyalty, str) or not callable(my_loyalty):
        return Feedback(False, f"pass the function itself (loyalty, without quotes or brackets), not "
                               f"{type(my_loyalty).__name__}.")
    bodies = {"yours": my_loyalty, "reference": reference_loyalty, "in-memory dedupe": in_memory_dedupe}
    for name, body in (others or {}).items():
        if name in bodies or not callable(body):
            return Feedback(False, f"others must map new names to role bodies; {name!r} is taken or not a function.")
        bodies[name] = body
    rows = evening(orders, speed)
    evening_s = rows[-1]["placed_s"]
    kill_at_s = _checks.number(evening_s / 3, "kill_at_s", unit="seconds", minimum=0)
    sc = Scenario("n12-loyalty")
    placed = add_event_restaurant(sc, lab, rows, suffix="")
    spec = lab.transport("kafka", topic=placed.topic, partitions=1, commit_each_receive=False)
    tag = uuid.uuid4().hex[:8]
    ledgers = {name: f"edalab:loyalty:{tag}:{k}" for k, name in enumerate(bodies)}
    roles = {name: f"loyalty-{k}" for k, name in enumerate(bodies)}
    for name, body in bodies.items():
        sc.add(roles[name], body, kwargs=dict(spec=spec, group=roles[name],
                                              redis_url=lab.redis_url, ledger=ledgers[name]))
    client = lab.redis()
    expected = expected_points(rows)
    try:
        with sc.run(progress="loyalty points" if progress else False) as run:
            for role in roles.values():
                run.at(kill_at_s).kill(role)
                run.at(kill_at_s + 0.3).start(role)
            run.wait_finished("guest", timeout_s=evening_s + 30)

            def credited(names) -> bool:
                back = sc.recorder.lifecycle()
                back = back[back["role"].isin(list(roles.values())) & (back["what"] == "ready")]
                restarted = (back.groupby("role").size() >= 2).sum() == len(roles)
                return restarted and all(client.hlen(ledgers[n]) >= len(expected) for n in names)

            # The reference tells when the evening is over; a body that misses orders never gets there.
            run.until(lambda: credited(["reference"]), timeout_s=30, step_s=0.2)
            run.until(lambda: credited(ledgers), timeout_s=1.5, step_s=0.1)
            run.sleep(0.5)  # redeliveries still on their way land now
        judged = {name: judge_ledger(client.hgetall(key), expected) for name, key in ledgers.items()}
    except EdalabError as error:
        return Feedback(False, f"the run did not finish: {error}")
    finally:
        client.delete(*ledgers.values())
    return LoyaltyCheck(judged["yours"][0], {n: fb for n, (fb, _) in judged.items() if n != "yours"},
                        {n: t for n, (_, t) in judged.items()})


def hint() -> str:
    return ("The check kills your service mid-evening and starts it again; Kafka then delivers every order "
            "it had received since its last commit a second time. Adding points for every delivery (HINCRBY) "
            "counts those orders twice, and a set in memory is empty after the restart. Make the write itself "
            "idempotent, in Redis: HSETNX ledger <order_id> <points> sets the field only if it is not there yet.")


def solution() -> str:
    return ("def loyalty(ctx, spec, group, redis_url, ledger):\n"
            "    import redis\n"
            "    r = redis.Redis.from_url(redis_url, socket_timeout=5)\n"
            "    subscriber = spec.subscriber(group)\n"
            "    subscriber.wait_ready(timeout_s=30)\n"
            "    ctx.ready()\n"
            "    try:\n"
            "        while not ctx.stopping:\n"
            "            for delivery in subscriber.receive(0.1):\n"
            "                order = delivery.event.payload\n"
            "                # once per order id, however often the broker delivers it\n"
            "                r.hsetnx(ledger, order['order_id'], int(order['amount_eur']))\n"
            "        subscriber.commit()\n"
            "    finally:\n"
            "        subscriber.close()")
