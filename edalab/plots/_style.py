"""The course's chart style and small helpers shared by every chart module."""

from __future__ import annotations

import matplotlib

__all__ = ["use_course_style", "axes", "METHOD_COLORS"]

#: one colour per way of delivering events, the same in every chart of the course
METHOD_COLORS = {"rest-poll": "tab:red", "long-poll": "tab:orange", "sse": "tab:olive",
                 "webhook": "tab:brown", "redis-pubsub": "tab:green", "redis-stream": "tab:cyan",
                 "kafka": "tab:blue"}


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


def axes(ax=None):
    """The given Axes, or a new figure's Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    return ax
