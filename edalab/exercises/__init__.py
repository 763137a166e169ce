"""Exercise checks: each notebook ends with an exercise whose answer a function checks.

Each notebook has its own module (``edalab.exercises.n02`` for notebook 02, ...) with
``check_*`` functions that return a :class:`Feedback`, plus ``hint()`` and
``solution()`` that return text (notebooks show them with ``print``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Feedback"]


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
