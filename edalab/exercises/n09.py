"""Exercises of notebook 09 (delivery guarantees, and Kafka or an MQ).

**Stamp each order once** (you write code). The loyalty service puts one stamp on a
customer's card (a Redis hash, one field per event key) for every order: :func:`stamps`.
Delivery is at-least-once, so after a crash some orders come again and get a second
stamp. Make the body idempotent; :func:`check_stamps` runs it through the harness on a
Redis stream, SIGKILLs it in the middle of a batch, starts it again and counts the
stamps on every card against the orders sent (:func:`measure_stamps`).

**Which guarantee?** (on paper) :func:`check_guarantee`.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from edalab.exercises import Feedback

__all__ = ["stamps", "solution_stamps", "STAMP_ONCE", "StampsRun", "measure_stamps", "judge_stamps",
           "check_stamps", "hint", "solution", "GUARANTEE_QUESTIONS", "check_guarantee"]

#: the atomic step of the solution: remember the id and stamp together, or neither
STAMP_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return 0
"""


def stamps(ctx, spec, redis_url, cards, group="loyalty", work_ms=10.0):
    """One stamp on the customer's card (field event.key of the Redis hash `cards`) per order."""
    import redis

    shop = redis.Redis.from_url(redis_url, socket_timeout=5)
    subscriber = spec.subscriber(group)
    seen = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)
    in_hand = subscriber.take_over_pending()     # Streams: what a killed predecessor never acked
    ctx.ready()
    while not ctx.stopping:
        batch, in_hand = in_hand or subscriber.receive(0.1), []
        for delivery in batch:
            time.sleep(work_ms / 1000)           # the work before the stamp
            shop.hincrby(cards, delivery.event.key, 1)          # the effect: one stamp
            seen.record(delivery._replace(received_at_ns=time.time_ns()))
        if batch:
            subscriber.commit()                  # the batch is done: hand it back
            ctx.note("committed")
    subscriber.close()


def solution_stamps(ctx, spec, redis_url, cards, group="loyalty", work_ms=10.0):
    """Stamp each order once: the id is remembered and the stamp given in one atomic step."""
    import redis

    shop = redis.Redis.from_url(redis_url, socket_timeout=5)
    stamp_once = shop.register_script(STAMP_ONCE)
    subscriber = spec.subscriber(group)
    seen = ctx.recorder.consumer_trace(ctx.name, group)
    subscriber.wait_ready(timeout_s=30)
    in_hand = subscriber.take_over_pending()
    ctx.ready()
    while not ctx.stopping:
        batch, in_hand = in_hand or subscriber.receive(0.1), []
        for delivery in batch:
            time.sleep(work_ms / 1000)
            stamp_once(keys=[cards + ":ids", cards], args=[delivery.event.id, delivery.event.key])
            seen.record(delivery._replace(received_at_ns=time.time_ns()))
        if batch:
            subscriber.commit()
            ctx.note("committed")
    subscriber.close()


@dataclass(frozen=True)
class StampsRun:
    """One run of :func:`measure_stamps`: orders sent, stamps given, what came twice."""

    orders: int
    stamps: int
    extra_stamps: int
    missing_stamps: int
    redelivered: int
    run_dir: str

    def __str__(self) -> str:
        return (f"{self.orders} orders, a SIGKILL mid-batch and a restart: {self.redelivered} orders "
                f"were handled twice; the cards hold {self.stamps} stamps ({self.extra_stamps} too many, "
                f"{self.missing_stamps} missing).")


def measure_stamps(lab, body: Callable, *, orders: int = 300, work_ms: float = 5.0,
                   progress: bool = True) -> StampsRun:
    """Run ``body`` on a fresh Redis stream with ``orders`` orders, kill it once it has
    handled 10 orders since a commit past the burst, restart it 0.3 s later, wait until it handled every order, and
    count the stamps per card against the orders per key. About 5 s."""
    from edalab import _checks
    from edalab._errors import ConfigError
    from edalab.experiments._delivery_kill import kill_after_commit, wait_settled
    from edalab.harness import Scenario
    from edalab.roles import produce
    from edalab.workloads import steady

    if not callable(body):
        raise ConfigError(f"body must be a function like stamps(ctx, spec, redis_url, cards, group, "
                          f"work_ms), not {type(body).__name__}.")
    orders = _checks.count(orders, "orders", minimum=50, sensible_max=2000, what=" orders")
    work_ms = _checks.number(work_ms, "work_ms", unit="ms", positive=True, sensible=(2, 50))
    spec = lab.transport("redis-stream", ack=False)
    cards = f"edalab:cards:{uuid.uuid4().hex[:10]}"
    sc = Scenario("n09-stamps")
    sc.add("loyalty", body, kwargs=dict(spec=spec, redis_url=lab.redis_url, cards=cards, group="loyalty",
                                        work_ms=work_ms), ready_timeout_s=40)
    sc.add("orders", produce, kwargs=dict(spec=spec, schedule_s=steady(1000.0, orders / 1000.0), keys=8,
                                          event_type="order.placed"))
    with sc.run(expect_events=orders, progress="your loyalty service" if progress else False) as run:
        killed = kill_after_commit(run, sc, ["loyalty"], handled=10, restart_after_s=0.3,
                                   since_s=orders / 1000.0 + 0.3)
        run.wait_finished("orders", timeout_s=30)
        wait_settled(run, sc, {"loyalty": orders}, killed, quiet_s=0.3, timeout_s=orders * work_ms / 1000 + 20)
    shop = lab.redis()
    try:
        given = {k.decode(): int(v) for k, v in shop.hgetall(cards).items()}
        shop.delete(cards, cards + ":ids")
    finally:
        shop.close()
    produced, received = sc.recorder.produced(), sc.recorder.received()
    expected = produced.groupby("key").size().to_dict()
    extra = sum(max(0, given.get(k, 0) - n) for k, n in expected.items())
    missing = sum(max(0, n - given.get(k, 0)) for k, n in expected.items())
    mine = received[received["event_id"].isin(produced["event_id"])]
    return StampsRun(len(produced), sum(given.values()), extra, missing,
                     len(mine) - mine["event_id"].nunique(), str(sc.run_dir))


def judge_stamps(run: StampsRun | None) -> Feedback:
    """Accept a run with orders handled twice and still exactly one stamp per order."""
    if not isinstance(run, StampsRun):
        return Feedback(False, "there is no measurement to judge: pass the result of "
                               "n09.measure_stamps(lab, my_stamps).")
    if run.missing_stamps:
        return Feedback(False, f"{run.missing_stamps} orders got no stamp. Does your body remember an "
                               f"order as done before it stamps it, in a separate step? A kill between "
                               f"the two loses the stamp: make them one atomic step (see the hint).")
    if run.extra_stamps:
        return Feedback(False, f"{run.extra_stamps} stamps too many: {run.redelivered} orders came again "
                               f"after the kill and were stamped again. Remember which order ids were "
                               f"stamped, and skip an id you have seen.")
    if not run.redelivered:
        return Feedback(False, "no order came twice in this run, so your dedupe was not put to the test. "
                               "Keep committing once per batch, as the given body does, and check again.")
    return Feedback(True, f"{run.redelivered} orders came twice after the kill and every card still has "
                          f"exactly one stamp per order ({run.stamps} stamps for {run.orders} orders): "
                          f"at-least-once delivery, effectively-once effect.")


def check_stamps(body: Callable | None, lab) -> Feedback:
    """Run your loyalty body with a kill (:func:`measure_stamps`) and judge the stamps."""
    if body is None:
        return Feedback(False, "write your loyalty body first (my_stamps), then pass it: "
                               "n09.check_stamps(my_stamps, lab).")
    if not callable(body):
        return Feedback(False, f"pass your function itself (my_stamps, without quotes or parentheses), "
                               f"not {body!r}.")
    params = list(inspect.signature(body).parameters)
    needed = ["ctx", "spec", "redis_url", "cards"]
    if params[:4] != needed:
        return Feedback(False, f"the body must start with the parameters {needed} (as n09.stamps does); "
                               f"yours has {params}.")
    from edalab._errors import RoleError

    try:
        run = measure_stamps(lab, body, progress=False)
    except RoleError as error:
        return Feedback(False, f"your body crashed while it ran: {error}")
    return judge_stamps(run)


def hint() -> str:
    """A nudge for the stamps exercise."""
    return ("Every order has a unique id (delivery.event.id). Keep the ids already stamped in Redis (a set, "
            "SADD returns 1 only the first time), and stamp only a new one. Careful: remembering the id and "
            "stamping are two writes; a kill between them either loses the stamp or gives it twice. Redis "
            "runs a Lua script as one step: shop.register_script(...) (n09.STAMP_ONCE is one).")


def solution() -> str:
    """The idempotent body and why it works."""
    return (inspect.getsource(solution_stamps) + "\nwith STAMP_ONCE =" + STAMP_ONCE +
            "\nThe id set and the stamp change in one atomic step, so a redelivered order finds its id "
            "and is skipped, and a kill can never separate the two. Delivery stays at-least-once; the "
            "effect is once. (A plain two-step SET NX then HINCRBY works almost always: a kill in the "
            "microseconds between the two loses that one stamp.)")


#: situations for :func:`check_guarantee`: what a consumer does -> the guarantee it gives
GUARANTEE_QUESTIONS = {
    "commits the offset as soon as it receives a batch, then processes it": "at-most-once",
    "processes a batch, then commits the offset": "at-least-once",
    "processes, then commits, and skips event ids already in its database (same transaction "
    "as the effect)": "effectively-once",
}


def check_guarantee(situation: str, answer) -> Feedback:
    """Name the guarantee a consumer gives: ``"at-most-once"``, ``"at-least-once"`` or ``"effectively-once"``."""
    if situation not in GUARANTEE_QUESTIONS:
        return Feedback(False, f"pick a situation from n09.GUARANTEE_QUESTIONS, e.g. "
                               f"{next(iter(GUARANTEE_QUESTIONS))!r}.")
    choices = ("at-most-once", "at-least-once", "effectively-once")
    if not isinstance(answer, str) or answer.strip().lower() not in choices:
        return Feedback(False, f"answer with one of {', '.join(choices)} (as text), not {answer!r}.")
    expected = GUARANTEE_QUESTIONS[situation]
    if answer.strip().lower() == expected:
        return Feedback(True, f"{expected}: a crash at the worst moment "
                              + {"at-most-once": "loses what was committed but not yet processed.",
                                 "at-least-once": "repeats what was processed but not yet committed.",
                                 "effectively-once": "repeats delivery, but the repeated effect is skipped."}
                              [expected])
    return Feedback(False, f"not {answer}. Ask: if the process dies right between the commit and the "
                           f"processing, is the event gone, done twice, or done twice but harmlessly?")
