"""Exercises of notebook 08 (the broker goes down).

**A send policy that loses nothing** (measured). Write the order service's
``KafkaProducer`` settings (a dict: ``acks``, ``retries``, ``request_timeout_ms``,
``delivery_timeout_ms``, ``max_block_ms`` ...). :func:`check_send_policy` runs them
through the harness: orders flow, the broker (Tansu on S3 storage, its own) is
SIGKILLed and restarted on the same address, and every order your code handed to
``send()`` must end up in the topic, acknowledged, with no error raised to the caller.

**Three brokers** (on paper). Each broker is up 99 % of the time, independently;
topics have three replicas and ``min.insync.replicas=2``, producers use ``acks=all``.
What fraction of the time are writes accepted? :func:`check_write_availability`.
"""

from __future__ import annotations

from collections.abc import Mapping

from edalab._errors import EdalabError
from edalab.exercises import Feedback, read_number

__all__ = ["SOLUTION_SETTINGS", "WRONG_SETTINGS", "check_send_policy", "check_write_availability",
           "hint", "solution", "BROKER_AVAILABILITY"]

#: a reference send policy (the course's PATIENT policy)
SOLUTION_SETTINGS = {"acks": "all", "retries": 2**31 - 1, "request_timeout_ms": 2000,
                     "delivery_timeout_ms": 60000, "max_block_ms": 10000, "linger_ms": 0,
                     "enable_idempotence": False}   # on Tansu; on Apache Kafka leave it on
#: the typical wrong one: fire and forget, no retries, give up after a second
WRONG_SETTINGS = {"acks": 0, "retries": 0, "request_timeout_ms": 500, "delivery_timeout_ms": 1000,
                  "max_block_ms": 500, "linger_ms": 0}
#: the paper exercise: each of three brokers is up this fraction of the time
BROKER_AVAILABILITY = 0.99


def check_send_policy(settings, lab, *, down_s: float = 1.5) -> Feedback:
    """Run ``settings`` as the order service's producer through a broker SIGKILL of
    ``down_s`` seconds on durable (S3) storage; accept only if nothing failed or was lost."""
    from edalab.experiments.broker_outage import broker_goes_down

    if settings is None:
        return Feedback(False, "put your settings in the cell first: a dict such as "
                               "{'acks': 'all', 'retries': ..., 'delivery_timeout_ms': ...}; it is still None.")
    if not isinstance(settings, Mapping):
        return Feedback(False, f"the send policy is a dict of KafkaProducer settings, not "
                               f"{type(settings).__name__} {settings!r}.")
    try:
        result = broker_goes_down(lab, storages=["s3"], faults=["kill"], settings=settings, before_s=0.5,
                                  down_s=down_s, after_s=0.5, drain_timeout_s=10.0, progress=False)
    except EdalabError as error:   # a setting kafka-python refused, a producer that crashed
        last = [line for line in str(error).splitlines() if line.strip()][-1]
        return Feedback(False, f"the run with your settings failed ({last.strip()}). "
                               f"Check the spelling of each setting (help(kafka.KafkaProducer)).")
    row = result.row("tansu-s3", "kill")
    counts = (f"{int(row['sent'])} sent, {int(row['acknowledged'])} acknowledged, {int(row['failed'])} "
              f"failed, {int(row['lost'])} lost, {int(row['kept'])} in the topic after the restart")
    problems = []
    if row["failed"]:
        problems.append(f"{int(row['failed'])} sends ended in an error your code got (retries ran out, "
                        f"or delivery_timeout_ms was shorter than the {down_s:g} s outage)")
    if row["unresolved"]:
        problems.append(f"{int(row['unresolved'])} sends never got an answer before the producer closed")
    missing = int(row["sent"] - row["kept"])
    if not problems and missing:
        problems.append(f"{missing} orders are not in the topic although no error was reported"
                        + (": with acks=0 the broker never confirms anything" if settings.get("acks") == 0
                           else ""))
    if row["lost"] and settings.get("enable_idempotence", True) and settings.get("acks") != 0:
        problems.append("kafka-python's idempotent producer (on by default) can lose a batch that was in "
                        "flight when the embedded Tansu was killed (docs/brokers.md); on this broker set "
                        "enable_idempotence=False and accept that a retry may store an event twice")
    if problems:
        return Feedback(False, f"{counts}. " + "; ".join(problems) + ".")
    return Feedback(True, f"{counts}. Your producer waited out the outage: the events sat in its buffer "
                          f"and were retried until the broker was back, and durable storage kept them.")


def check_write_availability(answer, availability: float = BROKER_AVAILABILITY) -> Feedback:
    """Check the fraction of the time writes are accepted (a fraction like 0.9997, or a
    percentage like 99.97; within 0.00002 of the fraction)."""
    from edalab.experiments._availability import at_least_up

    value = read_number(answer, "the fraction of the time writes are accepted", unit="0 to 1, or %",
                        positive=True)
    if isinstance(value, Feedback):
        return value
    fraction = value / 100 if value > 1 else value
    if fraction > 1:
        return Feedback(False, f"{value:g} is more than 100 %: give a fraction (0.99) or a percentage (99).")

    def near(expected: float) -> bool:
        return abs(fraction - expected) <= 2e-5

    expected = at_least_up(availability, 3, 2)
    if near(expected):
        return Feedback(True, f"{expected:.6f}: writes stop only when two of the three brokers are down at "
                              f"once, which is rarer than one broker being down by a factor of "
                              f"{(1 - availability) / (1 - expected):.0f}.")
    if near(availability**3):
        return Feedback(False, "That needs all three brokers up. With min.insync.replicas=2, how many must be up?")
    if near(availability):
        return Feedback(False, "That is one broker's availability: what do the two spare replicas add?")
    if near(1 - (1 - availability) ** 3):
        return Feedback(False, "That is the chance at least one broker is up (enough for reads). Writes "
                               "with acks=all need two in sync.")
    return Feedback(False, f"{value:g} is not it. Add the chance that all three are up and the chances "
                           f"that exactly one of the three is down.")


def hint() -> str:
    """A nudge for both exercises."""
    return ("Send policy: the broker is gone for a couple of seconds. Which setting decides how long an "
            "event may wait in the producer's buffer before the producer gives up (and raises)? Must the "
            "producer retry? And what does acks=0 promise you?\n"
            "Three brokers: writes need at least two brokers up. P(all three up) + P(exactly two up), "
            "with 3 ways to pick the one that is down.")


def solution() -> str:
    """The worked answers."""
    p = BROKER_AVAILABILITY
    return (f"Send policy: {SOLUTION_SETTINGS}: acks='all' (a send counts only once the broker stored it), "
            f"retries without limit, and a delivery_timeout_ms far longer than any outage you want to "
            f"ride out (request_timeout_ms short, so a dead connection is noticed and retried quickly). "
            f"Even so, events wait only in the producer's memory: if the producer process dies during the "
            f"outage they are gone; an outbox table (a later lesson) keeps them on disk.\n"
            f"Three brokers: p^3 + 3 p^2 (1 - p) = {p**3:.6f} + {3 * p**2 * (1 - p):.6f} = "
            f"{p**3 + 3 * p**2 * (1 - p):.6f}.")
