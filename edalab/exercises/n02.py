"""Notebook 02's exercise: predict polling delay and cost before you measure it."""

from __future__ import annotations

from edalab.exercises import Feedback, read_number

__all__ = ["check_prediction", "hint", "solution"]


def check_prediction(poll_interval_s: float, rtt_ms: float, predicted_mean_ms: float,
                     predicted_requests_per_s: float, tolerance: float = 0.15) -> Feedback:
    """Check a prediction of polling's mean delay (ms) and requests per second per client.

    Correct when both are within ``tolerance`` (relative) of the model:
    mean delay = interval / 2 + RTT, requests = 1 / interval. Any input (None, text,
    a negative number) gets a sentence saying what to fix, never an exception.
    """
    interval_s = read_number(poll_interval_s, "the poll interval", unit="seconds", positive=True)
    rtt = read_number(rtt_ms, "the round trip", unit="ms", minimum=0)
    mean_ms = read_number(predicted_mean_ms, "your mean delay (my_mean_ms)", unit="ms", positive=True)
    rps = read_number(predicted_requests_per_s, "your requests per second (my_requests_per_s)",
                      unit="requests per second", positive=True)
    tol = read_number(tolerance, "the tolerance (a fraction such as 0.15)", positive=True)
    for value in (interval_s, rtt, mean_ms, rps, tol):
        if isinstance(value, Feedback):
            return value
    want_ms = interval_s * 1000 / 2 + rtt
    want_rps = 1 / interval_s
    problems = []
    if abs(mean_ms - want_ms) > tol * want_ms:
        unit_hint = f" (seconds? {mean_ms:g} s would be {mean_ms * 1000:g} ms)" if mean_ms < want_ms / 100 else ""
        problems.append(f"a mean delay of {mean_ms:g} ms is off{unit_hint}: think where in the interval "
                        f"an event lands, on average, and what travel time comes on top")
    if abs(rps - want_rps) > tol * want_rps:
        problems.append(f"{rps:g} requests per second is off: a poller asks on every tick, news or not")
    if problems:
        return Feedback(False, "; ".join(problems) + ".")
    return Feedback(True, f"about {want_ms:.1f} ms of delay for {want_rps:.1f} requests per second "
                          f"per client, whether or not anything happened.")


def hint() -> str:
    return ("Events land at random moments between two polls, so on average half an interval "
            "before the next one. Then the answer still has to travel back (one round trip).")


def solution() -> str:
    return ("mean delay ≈ poll_interval_s * 1000 / 2 + rtt_ms; requests per second = "
            "1 / poll_interval_s. E.g. check_prediction(0.3, rtt, 150 + rtt, 1 / 0.3).")
