"""The course's chart style and the colours every chart shares (notebooks 00-12)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

__all__ = ["use_course_style", "axes", "METHOD_COLORS", "METHOD_LINESTYLES", "METHOD_MARKERS",
           "poll_interval_colors", "legend_outside"]

#: one colour per way of delivering events, the same in every chart of the course.
#: Red belongs to REST polling alone: its poll intervals are shades of red
#: (:func:`poll_interval_colors`), so no other method may use a red, pink or brown.
METHOD_COLORS = {"rest-poll": "tab:red", "long-poll": "tab:orange", "sse": "tab:olive",
                 "webhook": "tab:purple", "redis-pubsub": "tab:green", "redis-stream": "tab:cyan",
                 "kafka": "tab:blue"}
METHOD_COLORS["webhook-retry"] = "tab:gray"  # notebook 05: a webhook sender with an outbox and retries
METHOD_COLORS["rest-chain"] = "black"  # notebook 07: services calling each other over HTTP, in a chain
METHOD_COLORS.update({"rest": "dimgray", "redis-list": "teal", "http-sync": "darkslategray", "kafka-acks0": "lightskyblue", "kafka-acks1": "cornflowerblue", "kafka-acksall": "navy", "kafka-acksall-wait": "slateblue", "rest-offset": "goldenrod", "rest-cursor": "darkolivegreen"})  # notebook 06

#: line style per method, so lines that lie on top of each other (Redis pub/sub and
#: Redis Streams deliver within a few hundred microseconds of each other) stay apart
METHOD_LINESTYLES = {"rest-poll": "-", "long-poll": "--", "sse": "-.", "webhook": ":",
                     "redis-pubsub": "-", "redis-stream": "--", "kafka": "-."}
METHOD_LINESTYLES["webhook-retry"] = "--"  # notebook 05
METHOD_LINESTYLES["rest-chain"] = "-"  # notebook 07

#: marker per method, for the same reason (and for readers who do not tell colours apart)
METHOD_MARKERS = {"rest-poll": "o", "long-poll": "s", "sse": "^", "webhook": "v",
                  "redis-pubsub": "D", "redis-stream": "x", "kafka": "P"}
METHOD_MARKERS["webhook-retry"] = "<"  # notebook 05
METHOD_MARKERS["rest-chain"] = "s"  # notebook 07


def poll_interval_colors(intervals_s: Sequence[float]) -> dict[float, tuple]:
    """One shade of polling's red per poll interval (seconds): the shortest darkest."""
    from matplotlib import colormaps

    ordered = sorted(set(float(i) for i in intervals_s))
    reds = colormaps["Reds"]
    if len(ordered) == 1:
        return {ordered[0]: matplotlib.colors.to_rgba(METHOD_COLORS["rest-poll"])}
    return {interval: reds(0.95 - 0.5 * k / (len(ordered) - 1)) for k, interval in enumerate(ordered)}


def legend_outside(ax, **kwargs):
    """A legend to the right of the axes, where it cannot cover a data point."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     fontsize=8, **kwargs)


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
