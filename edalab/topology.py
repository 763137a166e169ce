"""The restaurant's services as a graph: availability, latency, single points of failure (notebook 07).

Two designs of the same restaurant, read from ``data/services.csv`` and
``data/service_edges.csv`` (see data/README.md):

* ``"sync"``: services call each other over HTTP and wait for the answer;
* ``"events"``: the orders service publishes an event to the broker, a node of its
  own, and the other services consume it later.

An edge ``a -> b`` has ``sync=True`` when ``a`` waits for ``b`` before it answers
(an HTTP call, a publish that waits for the broker's acknowledgement) and
``sync=False`` when ``b`` does its part later (the broker delivering an event). That
one attribute is the whole difference the arithmetic needs:

* an order is *accepted* when every node on its **accept path** answers: the entry
  and everything reachable from it over ``sync`` edges. Its availability is the
  product of their availabilities (failures assumed independent);
* the guest waits for the **critical path** over ``sync`` edges (a service that calls
  several others is assumed to call them at the same time: the longest branch
  counts); the order is *done* after the critical path over all edges;
* a node that every path from the entry to a service goes through (a dominator,
  :func:`networkx.immediate_dominators`) is a single point of failure for it, and
  so is an articulation point of the undirected graph for the graph's connectivity.

Everything here is arithmetic on a :class:`networkx.DiGraph`; nothing runs. The
notebook checks it against a real run (:func:`edalab.experiments.service_chain`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import networkx as nx

from edalab._errors import ConfigError

__all__ = ["DESIGNS", "ENTRY", "load_services", "load_edges", "service_graph", "chain", "accept_path",
           "availability", "latency_ms", "done_latency_ms", "single_points_of_failure", "describe"]

#: the two designs in ``service_edges.csv``
DESIGNS = ("sync", "events")
#: the node every order starts from: the guest's app, always available
ENTRY = "guest"

_SERVICE_COLUMNS = ("service", "kind", "availability", "latency_ms", "description")
_EDGE_COLUMNS = ("design", "source", "target", "sync", "what")


def load_services(folder: str | Path | None = None):
    """``services.csv`` as a DataFrame: one row per service (availability as a fraction, latency in ms)."""
    from edalab.workloads import _read_csv

    frame = _read_csv("services.csv", _SERVICE_COLUMNS, folder)
    bad = frame[(frame["availability"] <= 0) | (frame["availability"] > 1) | (frame["latency_ms"] < 0)]
    if len(bad):
        raise ConfigError(f"services.csv: availability must be in (0, 1] and latency_ms >= 0; "
                          f"fix the rows for {list(bad['service'])}.")
    return frame


def load_edges(folder: str | Path | None = None):
    """``service_edges.csv`` as a DataFrame: ``design, source, target, sync, what``."""
    from edalab.workloads import _read_csv

    frame = _read_csv("service_edges.csv", _EDGE_COLUMNS, folder)
    frame["sync"] = frame["sync"].astype(str).str.lower().map({"yes": True, "true": True, "no": False,
                                                                "false": False})
    if frame["sync"].isna().any():
        raise ConfigError("service_edges.csv: the column sync must be yes or no on every row.")
    return frame


def service_graph(design: str = "sync", folder: str | Path | None = None) -> nx.DiGraph:
    """The restaurant as a directed graph for ``design`` (``"sync"`` or ``"events"``).

    Nodes carry ``kind`` (client, service, broker), ``availability`` (fraction of time
    up) and ``latency_ms`` (its own work per order); edges carry ``sync`` and ``what``.
    Only the services some edge of the design uses are nodes (the sync design has no broker).
    """
    if design not in DESIGNS:
        raise ConfigError(f"design must be one of {DESIGNS}, not {design!r}.")
    services = load_services(folder).set_index("service")
    edges = load_edges(folder)
    edges = edges[edges["design"] == design]
    unknown = (set(edges["source"]) | set(edges["target"])) - set(services.index)
    if unknown:
        raise ConfigError(f"service_edges.csv names {sorted(unknown)}, which services.csv does not list; "
                          f"add them there.")
    graph = nx.DiGraph(design=design)
    for row in edges.itertuples():
        for name in (row.source, row.target):
            if name not in graph:
                s = services.loc[name]
                graph.add_node(name, kind=s["kind"], availability=float(s["availability"]),
                               latency_ms=float(s["latency_ms"]), description=s["description"])
        graph.add_edge(row.source, row.target, sync=bool(row.sync), what=row.what)
    return graph


def chain(services: Iterable[str], design: str = "sync", *, availability: Mapping[str, float] | None = None,
          latency_ms: Mapping[str, float] | None = None, broker: str = "broker") -> nx.DiGraph:
    """A small chain ``guest -> s1 -> s2 -> ...`` (the real run's shape).

    ``"sync"``: each service calls the next and waits. ``"events"``: the guest calls the
    first service, which publishes to ``broker``; the broker delivers to the others.
    ``availability`` / ``latency_ms`` map service names to values (default 1.0 and 0 ms).
    """
    if design not in DESIGNS:
        raise ConfigError(f"design must be one of {DESIGNS}, not {design!r}.")
    if isinstance(services, str):
        raise ConfigError(f"services must be a list of names, e.g. [{services!r}], not a string.")
    names = list(services)
    if not names:
        raise ConfigError("chain() needs at least one service.")
    availability, latency_ms = dict(availability or {}), dict(latency_ms or {})
    graph = nx.DiGraph(design=design)
    graph.add_node(ENTRY, kind="client", availability=1.0, latency_ms=0.0)
    for name in names + ([broker] if design == "events" and len(names) > 1 else []):
        graph.add_node(name, kind="broker" if name == broker else "service",
                       availability=float(availability.get(name, 1.0)), latency_ms=float(latency_ms.get(name, 0.0)))
    graph.add_edge(ENTRY, names[0], sync=True, what="order")
    if design == "sync":
        for a, b in zip(names, names[1:]):
            graph.add_edge(a, b, sync=True, what="call")
    elif len(names) > 1:
        graph.add_edge(names[0], broker, sync=True, what="publish")
        for name in names[1:]:
            graph.add_edge(broker, name, sync=False, what="deliver")
    return graph


def _check(graph: nx.DiGraph, entry: str) -> None:
    if not isinstance(graph, nx.DiGraph):
        raise ConfigError(f"expected a networkx.DiGraph (from service_graph or chain), not {type(graph).__name__}.")
    if entry not in graph:
        raise ConfigError(f"the graph has no entry node {entry!r}; orders start there.")
    for node, data in graph.nodes(data=True):
        a = data.get("availability")
        if not isinstance(a, (int, float)) or not 0 < a <= 1:
            raise ConfigError(f"node {node!r} needs availability=<fraction in (0, 1]>, e.g. "
                              f"graph.add_node({node!r}, availability=0.99, latency_ms=20); it has {a!r}.")
    for a, b, data in graph.edges(data=True):
        if not isinstance(data.get("sync"), bool):
            raise ConfigError(f"edge {a!r} -> {b!r} needs sync=True (the caller waits) or sync=False "
                              f"(delivered later), e.g. graph.add_edge({a!r}, {b!r}, sync=True).")


def _sync_part(graph: nx.DiGraph) -> nx.DiGraph:
    return graph.edge_subgraph([(a, b) for a, b, s in graph.edges(data="sync") if s]).copy()


def accept_path(graph: nx.DiGraph, entry: str = ENTRY) -> set[str]:
    """The nodes an order needs up to be accepted: ``entry`` and all it reaches over sync edges."""
    _check(graph, entry)
    sync = _sync_part(graph)
    return {entry} | (nx.descendants(sync, entry) if entry in sync else set())


def availability(graph: nx.DiGraph, entry: str = ENTRY) -> float:
    """Fraction of orders accepted: the product of availabilities on the accept path."""
    return math.prod(graph.nodes[n]["availability"] for n in accept_path(graph, entry))


def _longest_ms(graph: nx.DiGraph, entry: str) -> float:
    if not nx.is_directed_acyclic_graph(graph):
        raise ConfigError(f"the graph has a cycle ({nx.find_cycle(graph)}): a critical path needs "
                          f"calls that never come back around.")
    reach = {entry} | nx.descendants(graph, entry)
    best: dict[str, float] = {}
    for node in nx.topological_sort(graph.subgraph(reach)):
        before = [best[p] for p in graph.predecessors(node) if p in best]
        best[node] = (max(before) if before else 0.0) + graph.nodes[node].get("latency_ms", 0.0)
    return max(best.values())


def latency_ms(graph: nx.DiGraph, entry: str = ENTRY) -> float:
    """What the guest waits for, in ms: the critical path over sync edges (parallel calls: longest branch)."""
    _check(graph, entry)
    sync = _sync_part(graph)
    return _longest_ms(sync, entry) if entry in sync else graph.nodes[entry].get("latency_ms", 0.0)


def done_latency_ms(graph: nx.DiGraph, entry: str = ENTRY) -> float:
    """When every service has done its part, in ms: the critical path over all edges (no queueing)."""
    _check(graph, entry)
    return _longest_ms(graph, entry)


def single_points_of_failure(graph: nx.DiGraph, entry: str = ENTRY):
    """One row per node: what breaks if it alone is down.

    Columns: ``node``, ``kind``, ``on_accept_path`` (orders are refused while it is
    down), ``dominates`` (services that every path from the entry reaches only through
    it: they get nothing while it is down), ``articulation`` (removing it splits the
    undirected graph). The entry itself is left out: it is the guest.
    """
    import pandas as pd

    _check(graph, entry)
    idom = nx.immediate_dominators(graph, entry)
    dominated: dict[str, list[str]] = {n: [] for n in graph}
    for node in idom:
        d = idom[node]
        while d != entry and d != node:  # walk up the dominator tree: every ancestor dominates node
            dominated[d].append(node)
            d = idom[d]
    cut = set(nx.articulation_points(graph.to_undirected()))
    accept = accept_path(graph, entry)
    rows = [{"node": n, "kind": graph.nodes[n].get("kind", "service"), "on_accept_path": n in accept,
             "dominates": sorted(dominated[n]), "articulation": n in cut}
            for n in graph if n != entry]
    return pd.DataFrame(rows).sort_values(["on_accept_path", "node"], ascending=[False, True],
                                          ignore_index=True)


def describe(graph: nx.DiGraph, entry: str = ENTRY) -> dict[str, object]:
    """The numbers of one design in one dict: accept path, availability, latencies (notebook 07)."""
    return {"design": graph.graph.get("design", "?"), "services": graph.number_of_nodes() - 1,
            "accept_path": sorted(accept_path(graph, entry) - {entry}),
            "availability": availability(graph, entry), "latency_ms": latency_ms(graph, entry),
            "done_latency_ms": done_latency_ms(graph, entry)}
