"""Exercise of notebook 01 (the waiter analogy): predict the cost of polling.

A customer asks "is my order ready?" every ``poll_interval_s`` seconds, starting one
interval after ordering; the dish cooks between half and one and a half times
``cook_time_mean_s``. How many calls does one order cost on average?
"""

from __future__ import annotations

from edalab.exercises import Feedback, read_number

__all__ = ["POLL_INTERVAL_S", "COOK_TIME_MEAN_S", "TOLERANCE", "question", "expected_calls",
           "check_calls_per_order", "hint", "solution"]

#: The exercise's numbers (different from the notebook's run, so the answer is a prediction).
POLL_INTERVAL_S = 0.25
COOK_TIME_MEAN_S = 3.0
#: Relative tolerance: the +1/2 call of the exact answer is a detail, not the point.
TOLERANCE = 0.15


def question(poll_interval_s: float = POLL_INTERVAL_S, cook_time_mean_s: float = COOK_TIME_MEAN_S) -> str:
    """The exercise as text (notebook 01 prints it)."""
    return (f"A customer asks 'is my order ready?' every {poll_interval_s * 1000:g} ms, starting "
            f"{poll_interval_s * 1000:g} ms after ordering. The dish takes {cook_time_mean_s:g} s to cook on "
            f"average (anywhere between {0.5 * cook_time_mean_s:g} s and {1.5 * cook_time_mean_s:g} s). "
            f"How many calls does one order cost, on average? "
            f"Check with check_calls_per_order(your_answer).")


def expected_calls(poll_interval_s: float = POLL_INTERVAL_S,
                   cook_time_mean_s: float = COOK_TIME_MEAN_S) -> float:
    """The exact mean, from :func:`edalab.experiments.waiter.expected_calls_per_order`."""
    from edalab.experiments.waiter import expected_calls_per_order

    return expected_calls_per_order(poll_interval_s, cook_time_mean_s)


def check_calls_per_order(answer, poll_interval_s: float = POLL_INTERVAL_S,
                          cook_time_mean_s: float = COOK_TIME_MEAN_S) -> Feedback:
    """Accept an answer within :data:`TOLERANCE` (relative) of the expected calls per order.

    ``None`` (not answered yet), text such as ``"12.5"``, zero and negatives get a
    Feedback that says what to fix; only a number near the expected mean passes.
    """
    value = read_number(answer, "the calls per order", unit="calls", positive=True)
    if isinstance(value, Feedback):
        return value
    settings = [read_number(poll_interval_s, "poll_interval_s", unit="seconds", positive=True),
                read_number(cook_time_mean_s, "cook_time_mean_s", unit="seconds", positive=True)]
    for setting in settings:
        if isinstance(setting, Feedback):
            return setting
    poll_interval_s, cook_time_mean_s = settings
    expected = expected_calls(poll_interval_s, cook_time_mean_s)
    ratio = cook_time_mean_s / poll_interval_s
    if abs(value - expected) <= TOLERANCE * expected:
        return Feedback(True, f"{value:g} calls; the exact mean is {expected:.2f}: cook time / interval "
                              f"= {ratio:g}, plus about half a call because the ask that hears 'yes' "
                              f"comes after the food is ready. Being told costs one subscription "
                              f"shared by every order instead.")
    if value <= 1.5:
        return Feedback(False, f"{value:g} is about what being told costs (one subscription shared by every "
                               f"order). Here the customer asks again every interval until the food is ready.")
    if abs(value - ratio / 2) <= TOLERANCE * ratio / 2:
        return Feedback(False, f"{value:g} is about half of it. Half an interval is the average *delay* after "
                               f"the food is ready; the calls cover the whole cook time.")
    direction = "too many" if value > expected else "too few"
    return Feedback(False, f"{value:g} is {direction}. How many intervals fit into the average cook time?")


def hint() -> str:
    """A nudge, without the answer."""
    return ("The customer asks once per interval for as long as the dish cooks, and the last ask is the "
            "first one after the food is ready. Count how many intervals fit into the mean cook time, "
            "then think about that last, partial interval.")


def solution() -> str:
    """The answer and how to get it."""
    ratio = COOK_TIME_MEAN_S / POLL_INTERVAL_S
    return (f"A dish that cooks c seconds costs ceil(c / interval) calls: the asks at interval, "
            f"2 x interval, ... up to the first one after the food is ready. On average that is "
            f"mean cook time / interval + about 1/2 = {COOK_TIME_MEAN_S:g} / {POLL_INTERVAL_S:g} + 0.5 = "
            f"{ratio + 0.5:g} calls (exactly {expected_calls():.2f} for cook times spread evenly between "
            f"{0.5 * COOK_TIME_MEAN_S:g} and {1.5 * COOK_TIME_MEAN_S:g} s). Halve the interval and the calls "
            f"double; multiply by the number of customers waiting at once to get the kitchen's load.")
