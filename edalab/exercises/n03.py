"""Notebook 03's exercises: add a subscriber without touching the producer; idle members.

:func:`check_new_subscriber` runs the learner's stock service as a process next to
the kitchen and the existing waiter and billing services (through
:func:`edalab.experiments.fan_out`) and checks that it got every event and counted
the portions of each dish right. :func:`check_idle_members` checks how many members
of one consumer group get no partition.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from edalab._errors import EdalabError
from edalab.exercises import Feedback, read_number

__all__ = ["check_new_subscriber", "check_idle_members", "idle_members_answer", "reference_stock",
           "stock_in_billing_group", "hint", "solution", "subscriber_hint", "subscriber_solution"]

#: the services that already read the kitchen's events when the stock service is added
EXISTING_SERVICES = ("waiter", "billing")


def reference_stock(ctx, spec, group: str = "stock") -> None:
    """A right answer: the stock service in a group of its own, counting portions per dish."""
    subscriber = spec.subscriber(group)  # a group of its own: it gets every event
    trace = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)
    ctx.ready()
    portions = {}
    while not ctx.stopping:
        for delivery in subscriber.receive(0.1):
            trace.record(delivery)
            order = delivery.event.payload
            portions[order["dish"]] = portions.get(order["dish"], 0) + order["quantity"]
    ctx.note("portions", counts=portions)
    subscriber.commit()
    subscriber.close()
    trace.close()


#: A typical mistake: the same body copied from billing, group name included, so it
#: *competes* with billing for the orders instead of getting every one of them.
stock_in_billing_group = functools.partial(reference_stock, group="billing")


def check_new_subscriber(lab, body: Callable, *, events: int = 30, name: str = "stock") -> Feedback:
    """Run ``body(ctx, spec)`` as the new service ``name`` next to the kitchen, waiter and
    billing (unchanged), and check it got every event and its ``portions`` note.

    Args:
        lab: from :func:`edalab.start`.
        body: your stock service, ``def stock(ctx, spec): ...``.
        events: how many events the kitchen sends (about half a second at 60 a second).
        name: the new service's role name.
    """
    from edalab import experiments

    if body is None:
        return Feedback(False, "write your stock service as a function stock(ctx, spec) in the cell "
                               "above, then pass it: check_new_subscriber(lab, stock).")
    if not callable(body):
        return Feedback(False, f"pass the function itself (stock, without brackets), not a "
                               f"{type(body).__name__}.")
    try:
        inspect.signature(body).bind(None, None)
    except (TypeError, ValueError):
        return Feedback(False, "your function must take two arguments, (ctx, spec): the role's "
                               "context and the kitchen's transport spec.")
    try:
        result = experiments.fan_out(lab, services=EXISTING_SERVICES, transports=["kafka"], events=events,
                                     rate_per_s=60, extra_services={name: body}, quick=True,
                                     progress=False)
    except EdalabError as exc:
        return Feedback(False, f"your {name} service did not run to the end: {exc}")
    return judge_new_subscriber(result, name)


def judge_new_subscriber(result, name: str = "stock") -> Feedback:
    """The verdict on a :class:`~edalab.experiments.fanout.FanOutResult` with the new
    service ``name`` (a pure function of the result)."""
    produced = int(result.params["events"])
    mine = result.samples[result.samples["role"] == name]
    got = int(mine["event_id"].nunique())
    groups = sorted(set(mine["group"]))
    if got < produced:
        shared = [g for g in groups if g in EXISTING_SERVICES]
        if shared:
            return Feedback(False, f"your {name} service received {got} of {produced} events. It joined "
                                   f"group {shared[0]!r}, the {shared[0]} service's group, so the two "
                                   f"competed and split the events. Give it a group of its own, e.g. "
                                   f"spec.subscriber({name!r}).")
        if got == 0:
            return Feedback(False, f"your {name} service recorded no deliveries: keep the line "
                                   f"trace.record(delivery) inside the receive loop.")
        return Feedback(False, f"your {name} service received {got} of {produced} events. Did it "
                               f"wait for its group to join (subscriber.wait_ready) and read until "
                               f"ctx.stopping?")
    others = result.summary[result.summary["service"].isin(EXISTING_SERVICES)]
    if not (others["delivered"] == produced).all():
        return Feedback(False, f"the existing services lost events while yours ran: "
                               f"{dict(zip(others['service'], others['delivered']))} of {produced}.")
    notes = result.notes
    counted = notes[(notes["role"] == name) & (notes["what"] == "portions")] if len(notes) else notes
    if not len(counted) or "counts" not in counted.columns:
        return Feedback(False, f"your {name} service got all {produced} events but noted no portions: "
                               f"end its body with ctx.note('portions', counts=portions).")
    counts = counted["counts"].iloc[-1]
    want = result.orders.groupby("dish")["quantity"].sum().astype(int).to_dict()
    if not isinstance(counts, dict):
        return Feedback(False, f"counts should be a dict of dish name -> portions, not {type(counts).__name__}.")
    wrong = {dish: (counts.get(dish), n) for dish, n in want.items() if counts.get(dish) != n}
    extra = sorted(set(counts) - set(want))
    if wrong or extra:
        dish, (yours, right) = next(iter(wrong.items())) if wrong else (extra[0], (counts[extra[0]], 0))
        hint_text = (" It looks like you counted orders, not portions: add order['quantity']."
                     if yours == int((result.orders["dish"] == dish).sum()) else "")
        return Feedback(False, f"your {name} service got every event, but its counts are off: "
                               f"{dish!r} {yours!r} instead of {right} ({len(wrong) + len(extra)} dish(es) "
                               f"wrong).{hint_text}")
    return Feedback(True, f"your {name} service got all {produced} events in a group of its own and "
                          f"counted {sum(want.values())} portions of {len(want)} dishes right. The "
                          f"kitchen did not change: it still publishes once, and does not know "
                          f"{name} exists.")


def subscriber_hint() -> str:
    return ("Start from the service body shown above. Two things make the difference: which consumer "
            "group the subscriber joins (a group gets every event once; what do two services in one "
            "group get?), and adding order['quantity'] to portions[order['dish']].")


def subscriber_solution() -> str:
    return inspect.getsource(reference_stock)


def idle_members_answer(partitions: int, members: int) -> int:
    """The answer the checker expects: members left without a partition."""
    return max(0, members - partitions)


def _one(answer, partitions: int, members: int) -> str | None:
    """None when ``answer`` is right for (partitions, members), else what is wrong."""
    value = read_number(answer, f"the number of idle members for {partitions} partitions and {members} "
                                f"members", unit="members", minimum=0)
    if isinstance(value, Feedback):
        return value.message
    if value != int(value):
        return f"give a whole number of members, not {answer!r}."
    want = idle_members_answer(partitions, members)
    if int(value) == want:
        return None
    if want == 0:
        return (f"with {partitions} partitions and {members} members nobody is idle: a member "
                f"can read several partitions.")
    if value == 0:
        return (f"with {partitions} partitions and {members} members, {members - partitions} "
                f"member(s) more than partitions: can two members of one group share a partition?")
    return (f"{int(value)} is not right for {partitions} partitions and {members} members; each "
            f"partition goes to exactly one member of the group.")


def check_idle_members(answer, partitions: int = 6, members: int = 8) -> Feedback:
    """Check how many members of one consumer group get no partition.

    Args:
        answer: your number for ``partitions`` and ``members``, or a function
            ``f(partitions, members) -> int``, which is then checked on many cases.
        partitions: partitions of the topic.
        members: members of the consumer group.
    """
    if isinstance(partitions, bool) or isinstance(members, bool) or not isinstance(partitions, int) \
            or not isinstance(members, int) or partitions < 1 or members < 1:
        return Feedback(False, "partitions and members must be whole numbers of at least 1.")
    if callable(answer):
        cases = [(partitions, members)] + [(p, m) for p in (1, 3, 6, 12) for m in (1, 2, 3, 5, 8, 13)]
        for p, m in cases:
            try:
                got = answer(p, m)
            except Exception as exc:  # noqa: BLE001 - the learner's function may fail any way
                return Feedback(False, f"your function raised {type(exc).__name__}: {exc} "
                                       f"for {p} partitions and {m} members.")
            problem = _one(got, p, m)
            if problem:
                return Feedback(False, f"for {p} partitions and {m} members your function says {got!r}: "
                                       f"{problem}")
        return Feedback(True, "right in every case: idle members = max(0, members - partitions). "
                              "A group can use at most as many members as the topic has partitions.")
    problem = _one(answer, partitions, members)
    if problem:
        return Feedback(False, problem)
    want = idle_members_answer(partitions, members)
    return Feedback(True, f"{want} of {members} members idle with {partitions} partitions: each "
                          f"partition has exactly one owner in the group, so "
                          f"{min(partitions, members)} members work and the rest wait as spares.")


def hint() -> str:
    return ("Kafka hands each partition to exactly one member of a group, so that a key's events "
            "are read in order by one reader. A member may own several partitions. What does that "
            "mean when there are more members than partitions?")


def solution() -> str:
    return ("idle = max(0, members - partitions). With 6 partitions and 8 members, 2 members are "
            "idle: check_idle_members(2), or check_idle_members(lambda p, m: max(0, m - p)). "
            "The idle members are not useless: they are hot spares that take over a partition in "
            "the next rebalance when a busy member leaves. But to get more work done in parallel "
            "you need more partitions, and you choose that number when you create the topic.")
