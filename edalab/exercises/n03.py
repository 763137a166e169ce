"""Notebook 03's exercise: how many members of a consumer group sit idle?"""

from __future__ import annotations

from collections.abc import Callable

from edalab.exercises import Feedback

__all__ = ["check_idle_members", "hint", "idle_members_answer", "solution"]


def idle_members_answer(partitions: int, members: int) -> int:
    """The answer the checker expects: members left without a partition."""
    return max(0, members - partitions)


def _one(answer, partitions: int, members: int) -> str | None:
    """None when ``answer`` is right for (partitions, members), else what is wrong."""
    want = idle_members_answer(partitions, members)
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        return f"give a whole number of members, not {answer!r}."
    answer = int(answer)
    if answer == want:
        return None
    if answer < 0:
        return "a number of members cannot be negative."
    if want == 0:
        return (f"with {partitions} partitions and {members} members nobody is idle: a member "
                f"can read several partitions.")
    if want > 0 and answer == 0:
        return (f"with {partitions} partitions and {members} members, {members - partitions} "
                f"member(s) more than partitions: can two members of one group share a partition?")
    return (f"{answer} is not right for {partitions} partitions and {members} members; each "
            f"partition goes to exactly one member of the group.")


def check_idle_members(answer: int | Callable[[int, int], int], partitions: int = 6,
                       members: int = 8) -> Feedback:
    """Check how many members of one consumer group get no partition.

    Args:
        answer: your number for ``partitions`` and ``members``, or a function
            ``f(partitions, members) -> int``, which is then checked on many cases.
        partitions: partitions of the topic.
        members: members of the consumer group.
    """
    if not isinstance(partitions, int) or not isinstance(members, int) or partitions < 1 or members < 1:
        return Feedback(False, "partitions and members must be positive whole numbers.")
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
