"""Exercise of notebook 05: write the webhook sender's retry policy.

The learner writes ``my_retry(attempt) -> seconds to wait, or None to give up`` (attempt
is 1 after the first failed POST, 2 after the second ...). :func:`check_retry_policy`
runs it for real: a webhook sender with an outbox (the course's
:func:`~edalab.experiments.webhooks.webhook_sender`) calls a receiver that is killed
for a while and started again (:func:`measure_retry_policies`, through the harness),
and :func:`judge_retry` counts delivered, lost and duplicated orders and the failed
attempts. A policy passes when nothing is lost and it did not hammer the receiver
while it was down (a retry storm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edalab.exercises import Feedback

__all__ = ["check_retry_policy", "RetryCheck", "measure_retry_policies", "judge_retry", "solution_retry",
           "no_retry", "hint", "solution", "STORM_ATTEMPTS_PER_S"]

#: more failed attempts than this per second the receiver was away is a retry storm
STORM_ATTEMPTS_PER_S = 25.0


def no_retry(attempt):
    """The typical first webhook: one POST, and if it fails, nothing."""
    return None


def solution_retry(attempt):
    """Exponential backoff: 0.05 s, 0.1 s, 0.2 s ... capped at 1 s; give up after 30 attempts."""
    if attempt > 30:
        return None
    return min(0.05 * 2 ** (attempt - 1), 1.0)


@dataclass(frozen=True)
class RetryCheck:
    """The verdict on your policy, and on the reference and "no retry" judged in the same run.

    True when yours passed; printing it shows your feedback and the others' counts.
    ``table``: the run's counts, one row per policy.
    """

    yours: Feedback
    reference: Feedback
    no_retry: Feedback
    table: Any

    def __bool__(self) -> bool:
        return self.yours.ok

    def __str__(self) -> str:
        return (f"{self.yours}\n  (same run, the course's backoff: {self.reference.message.split('. ')[0]}; "
                f"no retry: {self.no_retry.message.split('. ')[0]})")

    def _repr_markdown_(self) -> str:
        return self.yours._repr_markdown_()


def measure_retry_policies(policies: Mapping[str, Callable], *, down_s: float = 1.5, rate_per_s: float = 20.0,
                           work_ms: float = 10.0, progress: bool = True):
    """Run one sender per policy against its own receiver; kill every receiver 1 s after
    the gate, start it again ``down_s`` later, send orders 1 s more; then count.

    Returns the summary table (one row per policy name, the columns of
    :class:`~edalab.experiments.webhooks.WebhookOutageResult.summary`). About 8 s.
    The receivers' ``work_ms`` per order is short so that the backlog drains quickly.
    """
    from edalab import _checks
    from edalab._errors import ConfigError
    from edalab.experiments._webhook_analysis import outage_rows
    from edalab.experiments._webhook_roles import webhook_receiver, webhook_sender
    from edalab.experiments.webhooks import check_retry_policy as valid_policy, free_port
    from edalab.harness import Scenario
    from edalab.workloads import steady

    if not isinstance(policies, Mapping) or not policies:
        raise ConfigError("policies must be a dict of name -> retry(attempt) function, e.g. "
                          "{'yours': my_retry}.")
    down_s = _checks.number(down_s, "down_s", unit="seconds", positive=True, sensible=(0.5, 30))
    rate_per_s = _checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                sensible=(1, 100))
    work_ms = _checks.number(work_ms, "work_ms", unit="ms", minimum=0, sensible=(0, 1000 / rate_per_s))
    before_s, after_s = 1.0, 1.0
    schedule_s = steady(rate_per_s, before_s + down_s + after_s)
    sc = Scenario("n05-retry")
    pairs = {}
    for k, (name, policy) in enumerate(policies.items()):
        valid_policy(policy, name=f"the policy {name!r}")
        port = free_port()
        pairs[name] = (f"sender-{k}", f"receiver-{k}")
        sc.add(f"receiver-{k}", webhook_receiver, kwargs=dict(port=port, work_ms=work_ms))
        sc.add(f"sender-{k}", webhook_sender, kwargs=dict(url=f"http://127.0.0.1:{port}/hook", retry=policy,
                                                          schedule_s=schedule_s, drain_timeout_s=15.0))
    with sc.run(progress="your retry policy" if progress else False) as run:
        for sender, receiver in pairs.values():
            run.at(before_s).kill(receiver)
            run.at(before_s + down_s).start(receiver)
        for sender, _ in pairs.values():
            run.wait_finished(sender, timeout_s=before_s + down_s + after_s + 30)
        run.sleep(0.2)
    summary = outage_rows(sc.recorder, pairs)[0]
    summary.attrs["down_s"] = down_s
    return summary


def judge_retry(run, name: str) -> Feedback:
    """Feedback on policy ``name`` of a :func:`measure_retry_policies` run."""
    row = run.loc[name]
    counts = (f"{int(row['delivered'])} of {int(row['produced'])} orders delivered, {int(row['lost'])} lost, "
              f"{int(row['duplicated'])} duplicate(s), {int(row['failed_attempts'])} failed POSTs while the "
              f"receiver was away for {row['away_s']:.1f} s")
    if row["lost"]:
        return Feedback(False, f"{counts}. An order is lost when the policy gives up (returns None) "
                               f"before the receiver is back, or waits so long that the check ended "
                               f"first: keep retrying for longer than an outage lasts, with waits of "
                               f"at most a few seconds.")
    storm = STORM_ATTEMPTS_PER_S * max(row["away_s"], 0.1)
    if row["failed_attempts"] > storm:
        return Feedback(False, f"{counts}. Nothing was lost, but that is a retry storm (more than "
                               f"{storm:.0f} failed POSTs): a receiver that comes back is flooded. Wait "
                               f"longer between attempts, and longer each time (backoff).")
    return Feedback(True, f"{counts}. The outbox kept every order until the receiver was back; "
                          f"duplicates come from requests the receiver handled but never answered, "
                          f"so a webhook receiver must be idempotent too.")


def check_retry_policy(my_retry: object, *, progress: bool = True) -> Feedback | RetryCheck:
    """Run ``my_retry`` through the harness against a receiver that is down for a while,
    next to the reference policy and "no retry" (one run, about ten seconds)."""
    from edalab._errors import ConfigError
    from edalab.experiments.webhooks import check_retry_policy as valid_policy

    if my_retry is None:
        return Feedback(False, "define my_retry(attempt) in the cell above first; it is still None.")
    if isinstance(my_retry, str) or not callable(my_retry):
        return Feedback(False, f"pass the function itself (my_retry, without quotes or brackets), not "
                               f"{type(my_retry).__name__}.")
    try:
        valid_policy(my_retry, name="my_retry")
    except ConfigError as error:
        return Feedback(False, str(error))
    table = measure_retry_policies({"yours": my_retry, "reference": solution_retry, "no retry": no_retry},
                                   progress=progress)
    return RetryCheck(judge_retry(table, "yours"), judge_retry(table, "reference"),
                      judge_retry(table, "no retry"), table)


def hint() -> str:
    return ("A failed POST means the receiver is not there (yet). Returning None gives the order up "
            "for good, so keep returning a delay for longer than an outage lasts (tens of seconds). "
            "Returning 0 retries at once, hundreds of times a second: wait longer each time, e.g. "
            "double the wait from 0.05 s up to 1 s.")


def solution() -> str:
    return ("def my_retry(attempt):\n"
            "    if attempt > 30:          # about 25 s of trying: then give up (lost)\n"
            "        return None\n"
            "    return min(0.05 * 2 ** (attempt - 1), 1.0)   # 0.05, 0.1, 0.2 ... 1 s")
