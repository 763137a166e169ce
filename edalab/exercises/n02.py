"""Notebook 02's exercise: predict polling delay and cost before you measure it."""

from __future__ import annotations

from edalab.exercises import Feedback

__all__ = ["check_prediction", "hint", "solution"]


def check_prediction(poll_interval_s: float, rtt_ms: float, predicted_mean_ms: float,
                     predicted_requests_per_s: float, tolerance: float = 0.15) -> Feedback:
    """Check a prediction of polling's mean delay (ms) and requests per second per client.

    Correct when both are within ``tolerance`` (relative) of the model:
    mean delay = interval / 2 + RTT, requests = 1 / interval.
    """
    if poll_interval_s <= 0:
        return Feedback(False, "the poll interval must be positive.")
    want_ms = poll_interval_s * 1000 / 2 + rtt_ms
    want_rps = 1 / poll_interval_s
    problems = []
    if abs(predicted_mean_ms - want_ms) > tolerance * want_ms:
        problems.append(f"mean delay {predicted_mean_ms:g} ms is off (think: where in the interval "
                        f"does an event land, on average?)")
    if abs(predicted_requests_per_s - want_rps) > tolerance * want_rps:
        problems.append(f"{predicted_requests_per_s:g} requests/s is off (a poller asks on every "
                        f"tick, news or not)")
    if problems:
        return Feedback(False, "; ".join(problems) + ".")
    return Feedback(True, f"about {want_ms:.1f} ms of delay for {want_rps:.1f} requests per second "
                          f"per client, whether or not anything happened.")


def hint() -> str:
    return ("Events land at random moments between two polls, so on average half an interval "
            "before the next one. Then the answer still has to travel back.")


def solution() -> str:
    return ("mean delay ≈ poll_interval_s * 1000 / 2 + rtt_ms; requests per second = "
            "1 / poll_interval_s. E.g. check_prediction(0.3, rtt, 150 + rtt, 1 / 0.3).")
