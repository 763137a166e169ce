"""Charts for notebook 07: the services as a graph, orders around a kill, lag with 1 vs 2 consumers."""

from __future__ import annotations

from edalab.plots._style import method_color, METHOD_MARKERS, axes, legend_outside

__all__ = ["service_graph_chart", "chain_outcomes", "chain_timeline", "scaling_lag"]

_KIND_COLORS = {"client": "0.85", "service": "#cfe2f3", "broker": "#ffe599"}


def service_graph_chart(graph, ax=None, *, entry: str = "guest", title: str | None = None):
    """Draw one design (a graph from :mod:`edalab.topology`): the accept path thick, async edges dashed.

    Nodes on the accept path (an order is refused while any of them is down) have a
    dark border; the broker is a yellow node like any other service.
    """
    import networkx as nx

    from edalab import topology

    ax = axes(ax)
    accept = topology.accept_path(graph, entry)
    layers = {n: len(nx.shortest_path(graph, entry, n)) - 1 if nx.has_path(graph, entry, n) else 0 for n in graph}
    for n, layer in layers.items():
        graph.nodes[n]["_layer"] = layer
    pos = nx.multipartite_layout(graph, subset_key="_layer")
    for n in graph:
        del graph.nodes[n]["_layer"]
    sync = [(a, b) for a, b, s in graph.edges(data="sync") if s]
    later = [(a, b) for a, b, s in graph.edges(data="sync") if not s]
    nx.draw_networkx_edges(graph, pos, edgelist=sync, ax=ax, width=2.0, arrowsize=14, node_size=1800)
    nx.draw_networkx_edges(graph, pos, edgelist=later, ax=ax, width=1.2, style="dashed", edge_color="0.45",
                           arrowsize=12, node_size=1800)
    colors = [_KIND_COLORS.get(graph.nodes[n].get("kind", "service"), "#cfe2f3") for n in graph]
    borders = ["black" if n in accept else "0.6" for n in graph]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, edgecolors=borders,
                           linewidths=[2.2 if n in accept else 0.8 for n in graph], node_size=1800)
    labels = {n: f"{n}\n{graph.nodes[n]['availability']:.4g}" if n != entry else n for n in graph}
    nx.draw_networkx_labels(graph, pos, labels=labels, ax=ax, font_size=7)
    ax.set_title(title or f"{graph.graph.get('design', '')}: solid = waits for the answer, "
                          f"dashed = later; bold border = accept path", fontsize=9)
    ax.set_axis_off()
    return ax


def chain_outcomes(result, ax=None):
    """Bars per method: orders accepted, failed and delayed, next to topology's predicted accepted count."""
    import numpy as np

    ax = axes(ax)
    s = result.summary
    x = np.arange(len(s))
    parts = (("accepted", "tab:green"), ("failed", "tab:red"), ("delayed", "tab:orange"))
    for k, (column, color) in enumerate(parts):
        ax.bar(x + (k - 1.5) * 0.2, s[column], width=0.2, color=color, label=column)
    ax.bar(x + 1.5 * 0.2, s["predicted_fraction"] * s["orders"], width=0.2, color="white", edgecolor="black",
           hatch="//", label="accepted, predicted by topology")
    ax.set_xticks(x, s["method"])
    ax.set_ylabel("orders")
    ax.set_title("Billing killed, then started again: what the guests saw", fontsize=10)
    legend_outside(ax)
    return ax


def chain_timeline(result, ax=None):
    """Each order at the time it was placed: accepted (dot) or failed (x), one row per method;
    the shaded span is billing's downtime, and the line how long billing took to finish it."""
    ax = axes(ax)
    s = result.samples
    for k, method in enumerate(result.summary["method"]):
        mine = s[s["method"] == method]
        color = method_color(method)
        down = result.down_s[method]
        ax.axvspan(*down, ymin=k / 2 + 0.02, ymax=(k + 1) / 2 - 0.02, color="0.85", zorder=0)
        ok, bad = mine[mine["accepted"]], mine[~mine["accepted"]]
        ax.scatter(ok["sent_s"], [k] * len(ok), s=10, color=color, marker=METHOD_MARKERS.get(method, "o"),
                   label=f"{method}: accepted")
        ax.scatter(bad["sent_s"], [k] * len(bad), s=18, color="tab:red", marker="x", label=f"{method}: failed")
    ax.set_yticks(range(len(result.summary)), result.summary["method"])
    ax.set_ylim(-0.5, len(result.summary) - 0.5)
    ax.set_xlabel("order placed at (s after the start; grey: billing down)")
    twin = ax.twinx()
    for method in result.summary["method"]:
        mine = s[(s["method"] == method) & s["accepted"]]
        twin.plot(mine["sent_s"], mine["done_ms"] / 1000, color=method_color(method), lw=1,
                  alpha=0.7, label=f"{method}: placed -> billed")
    twin.set_ylabel("placed -> billed (s)")
    twin.grid(False)
    handles, labels = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles + more[0], labels + more[1], loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8)
    return ax


def scaling_lag(result, ax=None):
    """Orders due but not yet done over time: in the topic for each number of billing instances,
    in the guest for the synchronous chain (orders it wanted to place and had no answer for)."""
    ax = axes(ax)
    styles = ["-", "--", ":", "-."]
    for k, ((method, n), lag) in enumerate(result.samples.groupby(["method", "instances"], sort=False)):
        where = "waiting in the guest" if method == "rest-chain" else f"{n} billing instance(s)"
        ax.plot(lag["t_s"], lag["lag"], styles[k % len(styles)], color=method_color(method),
                lw=1.2 + 0.5 * k, label=f"{method}, {where}")
    ax.axvline(result.params["duration_s"], color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("seconds after the start (dotted: last order due)")
    ax.set_ylabel("orders due, not yet billed")
    ax.set_title("A slow billing: behind HTTP, and consuming events once and twice in one group", fontsize=10)
    legend_outside(ax)
    return ax
