"""Exercises of notebook 06 (when REST is right).

**Predict** (on paper): with offset paging over a newest-first list, how many items of
the next page did you already see, if ``inserts`` records were added at the front
since the last page? :func:`check_repeats`.

**Write a pager** (measured): a pager that misses nothing and repeats nothing while
records are added at the front. :func:`check_pager` runs your pager as its own process
against the real records API while an inserter adds records
(:func:`edalab.experiments.paging_under_inserts`) and counts what it missed and repeated.
"""

from __future__ import annotations

from edalab.exercises import Feedback, read_number
from edalab.experiments.paging import cursor_pager

__all__ = ["check_repeats", "hint", "solution", "check_pager", "judge_pager", "solution_pager",
           "pager_hint", "pager_solution", "PAGER_RUN"]

#: the check's run: records at the start, page size, inserts per second, seconds per page
PAGER_RUN = {"records": 200, "limit": 10, "insert_rate_per_s": 60.0, "page_pause_s": 0.03}


def check_repeats(answer, inserts: int = 3, limit: int = 20) -> Feedback:
    """Check the number of already-seen items on the next offset page after ``inserts`` inserts."""
    value = read_number(answer, "the items you see again", unit="items", minimum=0)
    if isinstance(value, Feedback):
        return value
    expected = min(inserts, limit)
    if value == expected:
        return Feedback(True, f"{expected}: every record added at the front pushes the list down by one, "
                              f"so the next offset starts {expected} item(s) earlier than where you stopped.")
    if value == 0:
        return Feedback(False, "Offsets count positions in the list as it is *now*. The items you read "
                               "moved down when records were added in front of them.")
    if value == limit:
        return Feedback(False, "Not the whole page: only as many items as were added in front.")
    return Feedback(False, f"{value:g} is not it. Draw the list, add {inserts} items at the top, and see "
                           f"where offset {limit} lands now.")


def hint() -> str:
    return ("An offset is a position in the list at the moment of the request. Adding a record at the "
            "front moves every record one position down.")


def solution() -> str:
    return ("With k inserts at the front (k < limit), the items you read last are now at positions "
            "offset .. offset + k - 1 of the next request: you see k items again. With deletes instead "
            "of inserts, the list moves up and you miss k items.")


#: The reference answer is the cursor pager notebook 06 runs in its experiment.
solution_pager = cursor_pager


def judge_pager(row: dict, records: int, limit: int) -> Feedback:
    """The verdict on one measured reader (a row of :class:`~edalab.experiments.PagingResult`)."""
    if row["repeated"] or row["missed"]:
        return Feedback(False, f"your pager saw {row['repeated']} item(s) twice and missed {row['missed']} "
                               f"of the {records} records while records were added at the front. An offset "
                               f"moves with the list; what stays put when records are added?")
    if row["requests"] > records // limit + 3:
        return Feedback(False, f"nothing missed or repeated, but {row['requests']} requests for {records} "
                               f"records in pages of {limit}: ask for whole pages.")
    return Feedback(True, f"all {records} records exactly once in {row['requests']} requests while records "
                          f"were added at the front: a cursor does not move when the list grows in front.")


def check_pager(pager, lab, **settings) -> Feedback:
    """Run ``pager(get_page, limit)`` as its own process against the records API with inserts
    (:data:`PAGER_RUN`, overridable) and judge what it read."""
    if pager is None:
        return Feedback(False, "write your pager in the cell first; it is still None.")
    if not callable(pager):
        return Feedback(False, f"pass the pager function itself (my_pager), not a {type(pager).__name__}.")
    from edalab._errors import EdalabError
    from edalab.experiments.paging import paging_under_inserts

    run = {**PAGER_RUN, **settings}
    try:
        result = paging_under_inserts(lab, pagers={"yours": pager}, topic_reader=False, quick=True, **run)
    except EdalabError as error:
        last = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        return Feedback(False, f"your pager failed when it ran: {last}")
    return judge_pager(result.row("yours"), run["records"], run["limit"])


def pager_hint() -> str:
    return ("get_page(before=some_id, limit=n) returns the n newest records older than some_id. Which id "
            "do you know after each page?")


def pager_solution() -> str:
    import inspect

    return inspect.getsource(solution_pager)
