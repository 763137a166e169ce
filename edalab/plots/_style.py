"""The course's chart style and the colours every chart shares (notebooks 00-12)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

__all__ = ["method_color", "use_course_style", "axes", "METHOD_COLORS", "METHOD_LINESTYLES", "METHOD_MARKERS",
           "poll_interval_colors", "legend_outside"]

#: one colour per way of delivering events, the same in every chart of the course.
#: Red belongs to REST polling alone: its poll intervals are shades of red
#: (:func:`poll_interval_colors`), so no other method may use a red, pink or brown.
METHOD_COLORS = {
    "rest-poll": "tab:red", "long-poll": "tab:orange", "sse": "tab:olive", "webhook": "tab:purple",
    "redis-pubsub": "tab:green", "redis-stream": "tab:cyan", "kafka": "tab:blue",
    "webhook-retry": "tab:gray",  # 05: a webhook sender with an outbox and retries
    # 06
    "rest": "dimgray", "redis-list": "teal", "http-sync": "darkslategray", "kafka-acks0": "lightskyblue",
    "kafka-acks1": "cornflowerblue", "kafka-acksall": "navy", "kafka-acksall-wait": "slateblue",
    "rest-offset": "goldenrod", "rest-cursor": "darkolivegreen",
    "rest-chain": "black",  # 07: services calling each other over HTTP, in a chain
    # 08: the servers themselves, near their protocol's colour
    "tansu-memory": "tab:blue", "tansu-s3": "navy", "valkey": "tab:cyan", "valkey-aof": "teal",
    "event-notification": "darkmagenta", "state-transfer": "seagreen", "full-replay": "slategray", "snapshot": "darkgoldenrod",  # 10
    "at-most-once": "darkorange", "at-least-once": "mediumpurple", "effectively-once": "darkgreen", "retry-forever": "lightslategray", "dead-letter": "darkcyan", "retry-topic": "yellowgreen", "nats-queue": "mediumseagreen",  # 09
}

#: line style per method, so lines that lie on top of each other (Redis pub/sub and
#: Redis Streams deliver within a few hundred microseconds of each other) stay apart
METHOD_LINESTYLES = {"rest-poll": "-", "long-poll": "--", "sse": "-.", "webhook": ":",
                     "redis-pubsub": "-", "redis-stream": "--", "kafka": "-.",
                     "webhook-retry": "--", "rest-chain": "-"}

#: marker per method, for the same reason (and for readers who do not tell colours apart)
METHOD_MARKERS = {"rest-poll": "o", "long-poll": "s", "sse": "^", "webhook": "v",
                  "redis-pubsub": "D", "redis-stream": "x", "kafka": "P",
                  "webhook-retry": "<", "rest-chain": "s"}

def method_color(method: str) -> str:
    """The course colour of ``method``; a neutral grey for names the palette does not know."""
    return METHOD_COLORS.get(method, "0.35")


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
