"""Exercise checks: each notebook ends with an exercise whose answer a function checks.

Each notebook has its own module (``edalab.exercises.n02`` for notebook 02, ...) with
``check_*`` functions that return a :class:`Feedback`, plus ``hint()`` and
``solution()`` that return text (notebooks show them with ``print``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Feedback", "read_number"]


@dataclass(frozen=True)
class Feedback:
    """The verdict of an exercise check: ``ok`` and a message saying why."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return ("Correct: " if self.ok else "Not yet: ") + self.message

    def _repr_markdown_(self) -> str:
        return ("✅ **Correct.** " if self.ok else "❌ **Not yet.** ") + self.message


def read_number(value: object, what: str, *, unit: str = "", positive: bool = False,
                minimum: float | None = None) -> float | Feedback:
    """A learner's answer as a float, or a :class:`Feedback` saying what is wrong with it.

    Every check starts with it, so that ``None`` (not answered yet), a string, a
    negative or a zero gets a sentence a learner understands instead of a
    ``TypeError``::

        answer = read_number(my_answer, "the lag at restart", unit="orders", minimum=0)
        if isinstance(answer, Feedback):
            return answer
    """
    units = f" (in {unit})" if unit else ""
    if value is None:
        return Feedback(False, f"put your answer for {what}{units} in the cell first; it is still None.")
    if isinstance(value, bool):
        return Feedback(False, f"{what} should be a number{units}, not {value!r}.")
    if isinstance(value, str):
        return Feedback(False, f"{what} should be a number{units}, not the text {value!r}; "
                               f"write it without quotes.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return Feedback(False, f"{what} should be a number{units}, not {type(value).__name__}.")
    if number != number or number in (float("inf"), float("-inf")):
        return Feedback(False, f"{what} should be a finite number{units}, not {value!r}.")
    if positive and number <= 0:
        return Feedback(False, f"{what} must be more than zero{units}; {value!r} cannot be right.")
    if minimum is not None and number < minimum:
        return Feedback(False, f"{what} cannot be below {minimum:g}{units}; {value!r} cannot be right.")
    return number
