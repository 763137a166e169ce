"""Charts for the course: each function draws one result object (notebooks 00-12).

Chart functions take a result and an optional matplotlib ``Axes``, draw, and return
the ``Axes``; they never run experiments.
"""

from __future__ import annotations

import matplotlib

__all__ = ["use_course_style"]


def use_course_style() -> None:
    """Readable defaults for every chart of the course."""
    matplotlib.rcParams.update({
        "figure.figsize": (7.5, 4.0),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 10,
    })
