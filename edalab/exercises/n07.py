"""Notebook 07's exercise: add a service to the restaurant's graph and predict an order's availability.

The learner writes ``add_payments(graph)``, code that changes a :mod:`networkx`
graph from :func:`edalab.topology.service_graph`, and predicts the fraction of orders
accepted afterwards. :func:`check_new_service` runs that code on a fresh graph,
computes the availability with :mod:`edalab.topology` and compares.
"""

from __future__ import annotations

from collections.abc import Callable

from edalab import topology
from edalab._errors import ConfigError
from edalab.exercises import Feedback, read_number

__all__ = ["PAYMENTS_AVAILABILITY", "check_new_service", "check_single_point", "hint", "solution",
           "reference_add_payments"]

#: the availability the exercise gives the new payments service
PAYMENTS_AVAILABILITY = 0.99


def reference_add_payments(graph) -> None:
    """The reference: billing calls payments and waits (synchronous design)."""
    graph.add_node("payments", kind="service", availability=PAYMENTS_AVAILABILITY, latency_ms=60.0)
    graph.add_edge("billing", "payments", sync=True, what="POST /charges")


def check_new_service(add_service: Callable, predicted_availability: object, design: str = "sync") -> Feedback:
    """Run ``add_service(graph)`` on a fresh ``design`` graph; is ``predicted_availability`` what it gives?

    The task (notebook 07): billing must charge the card before it answers, so it
    calls a new ``payments`` service (availability 0.99) and waits. Predict the
    fraction of orders accepted, as a fraction (0.95, not 95).
    """
    if not callable(add_service):
        return Feedback(False, f"pass your function itself, add_service=add_payments (no brackets), "
                               f"not {type(add_service).__name__}.")
    try:
        graph = topology.service_graph(design)
    except ConfigError as error:
        return Feedback(False, str(error))
    before = topology.availability(graph)
    try:
        returned = add_service(graph)
    except Exception as error:  # noqa: BLE001 - the learner's code: say what it raised
        return Feedback(False, f"your function raised {type(error).__name__}: {error}. It receives the graph "
                               f"and should call graph.add_node(...) and graph.add_edge(...).")
    if returned is not None and hasattr(returned, "nodes"):
        graph = returned  # a function that builds and returns a new graph is fine too
    if "payments" not in graph:
        return Feedback(False, "the graph has no node 'payments' yet: graph.add_node('payments', "
                               "availability=0.99, latency_ms=60, kind='service').")
    try:
        accept = topology.accept_path(graph)
    except ConfigError as error:
        return Feedback(False, str(error))
    given = graph.nodes["payments"]["availability"]
    if abs(given - PAYMENTS_AVAILABILITY) > 1e-12:
        return Feedback(False, f"payments has availability={given!r}; the task gives it {PAYMENTS_AVAILABILITY} "
                               f"(a fraction: up 99 % of the time).")
    if graph.degree("payments") == 0:
        return Feedback(False, "payments is in the graph but nothing is connected to it: add the edge "
                               "from the service that calls it.")
    if design == "sync" and "payments" not in accept:
        wrong_way = graph.has_edge("payments", "billing")
        return Feedback(False, "payments is not on the accept path: no service waits for it, so it could "
                               "not refuse an order. " + ("Your edge points from payments to billing; an edge "
                               "goes from the caller to the service it calls." if wrong_way else
                               "Billing calls it and waits: an edge billing -> payments with sync=True."))
    expected = topology.availability(graph)
    answer = read_number(predicted_availability, "your predicted availability", unit="a fraction of orders",
                         minimum=0)
    if isinstance(answer, Feedback):
        return answer
    if answer > 1:
        return Feedback(False, f"{answer:g} is more than 1: give a fraction (0.95), not a percentage (95).")
    if abs(answer - expected) <= 5e-4:
        return Feedback(True, f"your graph gives {expected:.4f} (before payments {before:.4f}). Each service an "
                              f"order waits for multiplies in: {len(accept) - 1} services on the accept path now.")
    if abs(answer - before) <= 5e-4 and abs(expected - before) > 5e-4:
        return Feedback(False, f"{answer:g} is the availability before payments. Billing now waits for "
                               f"payments, so payments' availability multiplies in too.")
    if abs(answer - PAYMENTS_AVAILABILITY) <= 5e-4:
        return Feedback(False, "that is payments' own availability; an order needs every service on the "
                               "accept path up at once: multiply them all.")
    return Feedback(False, f"your graph gives {expected:.4f} with topology.availability(graph), not "
                           f"{answer:g}. Multiply the availabilities of the services on the accept path "
                           f"(topology.accept_path(graph)).")


def check_single_point(answer: object) -> Feedback:
    """Which node, when down, stops every consumer of the event design getting anything? (a name)"""
    if answer is None:
        return Feedback(False, "put the node's name in the cell first, as text, e.g. 'kitchen'; it is still None.")
    if not isinstance(answer, str):
        return Feedback(False, f"give the node's name as text in quotes, e.g. 'kitchen', not {answer!r}.")
    name = answer.strip().lower()
    graph = topology.service_graph("events")
    if name not in graph:
        return Feedback(False, f"there is no node {answer!r}; the nodes are {sorted(graph)}.")
    spof = topology.single_points_of_failure(graph).set_index("node")
    consumers = {b for a, b, s in graph.edges(data="sync") if not s}
    dominated = set(spof.loc[name, "dominates"]) if name in spof.index else set()
    if consumers <= dominated:
        also = "" if name == "broker" else " (the broker too: it sits between them)"
        return Feedback(True, f"every path to {', '.join(sorted(consumers))} goes through {name}{also}. "
                              f"Decoupling moved the single point of failure; it did not remove it.")
    return Feedback(False, f"with {name} down, {', '.join(sorted(consumers - dominated))} still get events "
                           f"through another path, or never depended on it. Look at the 'dominates' column.")


def hint() -> str:
    return ("The graph is a networkx.DiGraph: graph.add_node(name, availability=..., latency_ms=..., kind=...) "
            "and graph.add_edge(caller, callee, sync=True). An order is accepted when every node on the "
            "accept path is up, so its availability is the product of theirs: the old product times payments'.")


def solution() -> str:
    return ("def add_payments(graph):\n"
            "    graph.add_node('payments', kind='service', availability=0.99, latency_ms=60)\n"
            "    graph.add_edge('billing', 'payments', sync=True, what='POST /charges')\n\n"
            "predicted = edalab.topology.availability(edalab.topology.service_graph('sync')) * 0.99\n"
            "# In the event design billing consumes from the broker, so payments (called by billing)\n"
            "# is not on the accept path and orders are accepted as before.")
