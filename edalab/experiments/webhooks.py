""""You can just expose a POST endpoint": webhooks next to a broker, tested fairly (notebook 05).

The order service tells its subscribers about each order two ways at once: by
**webhook** (an HTTP POST to each subscriber's own HTTP server, a real uvicorn server
in its own process) and through a **broker** (Kafka or Redis Streams, via
``lab.transport``). Every role is its own OS process (:class:`edalab.Scenario`).

* :func:`webhook_outage`: the receiver is up (delivery delay: the broker's extra hop),
  then down for a few seconds (a timeline kill/start of the receiver): a webhook
  without retry loses what was sent meanwhile; with retries and an outbox (the sender
  stores, retries with backoff, :func:`retry_with_backoff` or your own policy) it
  arrives late, duplicates counted; through the broker it waits in the topic.
* :func:`adding_subscribers`: 1 -> 2 -> 5 subscribers: the webhook sender's time and
  CPU per event grow with N (sequential and concurrent calls), a slow subscriber slows
  it, the broker producer's cost stays flat; the config change each subscriber forces.

Role bodies live in :mod:`edalab.experiments._webhook_roles`, analysis in
:mod:`edalab.experiments._webhook_analysis`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from edalab import _checks
from edalab._config import quick_mode
from edalab._errors import ConfigError, ExperimentError
from edalab.experiments._webhook_analysis import FanOutResult, WebhookOutageResult, fan_out_table, outage_rows
from edalab.experiments._webhook_roles import (fan_out_sender, no_retry, retry_with_backoff, timed_publisher,
                                               webhook_receiver, webhook_sender)
from edalab.harness import Scenario
from edalab.roles import consume, produce
from edalab.workloads import steady

__all__ = ["BROKERS", "MODES", "webhook_outage", "adding_subscribers", "WebhookOutageResult", "FanOutResult",
           "webhook_sender",
           "no_retry", "retry_with_backoff", "check_retry_policy", "free_port"]

#: the brokers compared with the webhook (``lab.transport`` names)
BROKERS = ("kafka", "redis-stream")
#: how the fan-out webhook sender calls its N subscribers
MODES = ("sequential", "concurrent")


def free_port() -> int:
    """A free loopback TCP port, so that a restarted receiver comes back at the same URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_retry_policy(retry: object, name: str = "retry") -> Callable:
    """``retry(attempt) -> seconds to wait, or None to give up``, tried on attempts 1..100 first.

    A policy that raises or returns something else fails here, in the notebook, with a
    sentence, instead of crashing the sender's process mid-run.
    """
    if not callable(retry):
        raise ConfigError(f"{name} must be a function retry(attempt) -> seconds or None, "
                          f"not {type(retry).__name__}.")
    for attempt in range(1, 101):
        try:
            delay_s = retry(attempt)
        except Exception as exc:  # noqa: BLE001 - the learner's code: say what broke
            raise ConfigError(f"{name}({attempt}) raised {type(exc).__name__}: {exc}. It gets the "
                              f"attempt number (1, 2, ...) and returns seconds or None.") from None
        if delay_s is None:
            break
        if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)) or not 0 <= delay_s <= 60:
            raise ConfigError(f"{name}({attempt}) returned {delay_s!r}: return a number of seconds "
                              f"between 0 and 60 to wait before the next attempt, or None to give up.")
    return retry


def _check_outage(broker, rate_per_s, before_s, down_s, after_s, work_ms, attempt_timeout_s, retry,
                  quick) -> dict:
    quick = quick_mode(quick)
    p = dict(broker=_checks.choices([broker] if isinstance(broker, str) else broker, "broker", BROKERS)[0],
             rate_per_s=_checks.number(rate_per_s, "rate_per_s", unit="orders per second", positive=True,
                                       sensible=(1, 100)),
             work_ms=_checks.number(work_ms, "work_ms", unit="ms", minimum=0, sensible=(0, 200)),
             attempt_timeout_s=_checks.number(attempt_timeout_s, "attempt_timeout_s", unit="seconds",
                                              positive=True, sensible=(0.05, 30)),
             quick=quick)
    p.update(_checks.phases(quick, dict(before_s=(2.0, 4.0), down_s=(2.0, 5.0), after_s=(1.5, 3.0)),
                            before_s=before_s, down_s=down_s, after_s=after_s))
    if p["work_ms"] and 1000 / p["work_ms"] <= p["rate_per_s"]:
        raise ConfigError(f"With work_ms={p['work_ms']:g} a receiver handles at most "
                          f"{1000 / p['work_ms']:.0f} orders per second, not more than rate_per_s="
                          f"{p['rate_per_s']:g}: it would never catch up. Lower one of them.")
    p["retry"] = check_retry_policy(retry)
    return p


def webhook_outage(lab, *, broker: str = "kafka", rate_per_s: float = 20.0, before_s: float | None = None,
                   down_s: float | None = None, after_s: float | None = None, work_ms: float = 30.0,
                   retry: Callable = retry_with_backoff, attempt_timeout_s: float = 1.0,
                   quick: bool | None = None, run_dir: str | Path | None = None,
                   progress: bool = True) -> WebhookOutageResult:
    """Receiver up, then down for ``down_s``, then up: webhook, webhook with retry, broker (notebook 05).

    Three pairs run at once, each a sender and a receiver process: ``webhook`` (one
    POST per order, no retry), ``webhook-retry`` (the same sender with an outbox and
    ``retry(attempt)``) and the broker (``produce`` -> topic -> ``consume``). After
    ``before_s`` every receiver is killed (SIGKILL); ``down_s`` later each starts
    again (same port, same consumer group); orders go on ``after_s`` more, then the
    senders drain and the broker consumer catches up.

    Args:
        lab: from :func:`edalab.start`.
        broker: ``"kafka"`` or ``"redis-stream"``.
        rate_per_s: orders per second, the same on every method.
        before_s, down_s, after_s: seconds up, down, up again (default 4 / 5 / 3; quick 2 / 2 / 1.5).
        work_ms: each webhook receiver's work per order after recording it (ms), so that
            a kill can land mid-request (the source of duplicates).
        retry: ``retry(attempt) -> seconds or None`` for ``webhook-retry``.
        attempt_timeout_s: the webhook senders' timeout per POST.
        quick: the short CI version (default ``$EDALAB_QUICK``).
        run_dir: keep the traces here instead of the runs folder.
        progress: show a progress bar.
    """
    p = _check_outage(broker, rate_per_s, before_s, down_s, after_s, work_ms, attempt_timeout_s, retry, quick)
    spec = lab.transport(p["broker"], partitions=1) if p["broker"] == "kafka" else lab.transport(p["broker"])
    method_broker = spec.kind
    total_s = p["before_s"] + p["down_s"] + p["after_s"]
    schedule_s = steady(p["rate_per_s"], total_s)
    sc = Scenario("webhook-outage", run_dir=run_dir)
    pairs = {"webhook": ("sender-webhook", "receiver-webhook"),
             "webhook-retry": ("sender-retry", "receiver-retry"),
             method_broker: (f"orders-{method_broker}", f"receiver-{method_broker}")}
    for method, policy in (("webhook", no_retry), ("webhook-retry", p["retry"])):
        sender, receiver = pairs[method]
        port = free_port()
        sc.add(receiver, webhook_receiver, kwargs=dict(port=port, work_ms=p["work_ms"]))
        sc.add(sender, webhook_sender, kwargs=dict(url=f"http://127.0.0.1:{port}/hook", schedule_s=schedule_s,
                                                   retry=policy, attempt_timeout_s=p["attempt_timeout_s"]))
    sender, receiver = pairs[method_broker]
    # The only member of its group, killed and restarted: it takes over what it held unacknowledged.
    sc.add(receiver, consume, kwargs=dict(spec=spec, group="billing", take_over=True), ready_timeout_s=40.0)
    sc.add(sender, produce, kwargs=dict(spec=spec, schedule_s=schedule_s, event_type="order.placed"))
    receivers = [r for _, r in pairs.values()]
    with sc.run(expect_events=len(schedule_s), progress="receiver down" if progress else False) as run:
        for name in receivers:
            run.at(p["before_s"]).kill(name)
            run.at(p["before_s"] + p["down_s"]).start(name)
        for sender, _ in pairs.values():
            run.wait_finished(sender, timeout_s=total_s + 60)
        if not run.until_delivered(len(schedule_s), roles=[receiver], timeout_s=40):
            raise ExperimentError(f"The {method_broker} consumer did not get every order within 40 s of the "
                                  f"end. Its log ends:\n{sc[receiver].log_tail()}")
        run.sleep(0.3)  # the last answers of the webhook receivers
    summary, samples, events, attempts = outage_rows(sc.recorder, pairs)
    p.update(run_dir=str(sc.run_dir), methods=list(pairs), retry_name=getattr(p["retry"], "__name__", "retry"))
    return WebhookOutageResult(summary, samples, events, attempts, p)


def _check_fan_out(broker, counts, modes, slow_ms, rate_per_s, events_per_step, quick) -> dict:
    quick = quick_mode(quick)
    if isinstance(counts, (str, int)) or not isinstance(counts, Sequence):
        raise ConfigError(f"counts must be a list of subscriber counts, e.g. [1, 2, 5], not {counts!r}.")
    p = dict(broker=_checks.choices([broker] if isinstance(broker, str) else broker, "broker", BROKERS)[0],
             counts=sorted({_checks.count(n, "counts", minimum=1, maximum=10) for n in counts}),
             modes=tuple(_checks.choices(modes, "modes", MODES)),
             slow_ms=_checks.number(slow_ms, "slow_ms", unit="ms", minimum=0, sensible=(10, 2000)),
             rate_per_s=_checks.number(rate_per_s, "rate_per_s", unit="events per second", positive=True,
                                       sensible=(1, 100)),
             quick=quick)
    if not p["counts"]:
        raise ConfigError("counts must list at least one subscriber count, e.g. [1, 2, 5].")
    events_per_step = (10 if quick else 40) if events_per_step is None else events_per_step
    p["events_per_step"] = _checks.count(events_per_step, "events_per_step", minimum=1, sensible_max=500)
    return p


def adding_subscribers(lab, *, broker: str = "kafka", counts: Sequence[int] = (1, 2, 5),
                       modes: Sequence[str] = MODES, slow_ms: float = 200.0, rate_per_s: float = 20.0,
                       events_per_step: int | None = None, quick: bool | None = None,
                       run_dir: str | Path | None = None, progress: bool = True) -> FanOutResult:
    """Add subscribers one step at a time; time the webhook sender and the broker producer (notebook 05).

    Webhook side: ``max(counts)`` receivers plus one that takes ``slow_ms`` per request
    are up from the start; the sender's subscriber list grows step by step (each count
    in each of ``modes``), then a last step puts the slow one first. Broker side: one
    producer publishes (and waits for the broker's ack) while the owner starts one
    more consumer group per step. ``events_per_step`` events at ``rate_per_s`` per step
    (default 40; quick 10).
    """
    p = _check_fan_out(broker, counts, modes, slow_ms, rate_per_s, events_per_step, quick)
    most = max(p["counts"])
    spec = lab.transport(p["broker"])
    steps = [{"step": f"{mode} x{n}", "mode": mode, "subscribers": n, "slow": False}
             for mode in p["modes"] for n in p["counts"]]
    steps += [{"step": f"{mode} x{most} + slow", "mode": mode, "subscribers": most, "slow": True}
              for mode in p["modes"]]
    broker_steps = [{"step": f"broker x{n}", "subscribers": n} for n in p["counts"]]
    sc = Scenario("webhook-fan-out", run_dir=run_dir)
    urls = []
    for i in range(1, most + 1):
        port = free_port()
        sc.add(f"hook-{i}", webhook_receiver, kwargs=dict(port=port))
        urls.append(f"http://127.0.0.1:{port}/hook")
    port = free_port()
    sc.add("hook-slow", webhook_receiver, kwargs=dict(port=port, work_ms=p["slow_ms"]))
    urls.append(f"http://127.0.0.1:{port}/hook")
    sc.add("sender", fan_out_sender, kwargs=dict(urls=urls, steps=steps, rate_per_s=p["rate_per_s"],
                                                 events_per_step=p["events_per_step"]))
    sc.add("orders", timed_publisher, kwargs=dict(spec=spec, steps=broker_steps, rate_per_s=p["rate_per_s"],
                                                  events_per_step=p["events_per_step"]))
    step_s = p["events_per_step"] / p["rate_per_s"]
    started = 0
    consumer_starts = []
    for k, n in enumerate(p["counts"]):
        for i in range(started + 1, n + 1):
            sc.add(f"group-{i}", consume, kwargs=dict(spec=spec, group=f"group-{i}"), start=(k == 0),
                   ready_timeout_s=40.0)
            if k:
                consumer_starts.append((max(0.0, k * step_s - 0.5), f"group-{i}"))
        started = n
    with sc.run(progress="adding subscribers" if progress else False) as run:
        for at_s, name in consumer_starts:
            run.at(at_s).start(name)
        longest_s = len(steps) * step_s + p["events_per_step"] * 2 * p["slow_ms"] / 1000 * most
        run.wait_finished("orders", timeout_s=len(broker_steps) * step_s + 60)
        run.wait_finished("sender", timeout_s=longest_s + 60)
        run.sleep(0.5)
    # Delivery delay at every fast webhook receiver; on the broker at group-1, the one
    # group there from the start (a group started later may begin with a backlog).
    summary, sends = fan_out_table(sc.recorder, lambda method: [f"hook-{i}" for i in range(1, most + 1)]
                                   if method == "webhook" else ["group-1"])
    config = _config_changes(p["counts"], urls[:-1], spec.kind)
    p.update(run_dir=str(sc.run_dir), broker_kind=spec.kind, subscriber_urls=urls[:-1], slow_url=urls[-1])
    return FanOutResult(summary, sends, config, p)


def _config_changes(counts: list[int], urls: list[str], kind: str) -> list[dict]:
    """What each step changed: the sender's subscriber list vs one more consumer command."""
    changes, before = [], 0
    for n in counts:
        changes.append({"subscribers": n,
                        "webhook_sender_config": {"subscribers": urls[:n]},
                        "webhook_change": [f"+ {u}" for u in urls[before:n]] + ["(sender redeployed)"],
                        "broker_change": [f"start a consumer with group='group-{i}' on the {kind} topic"
                                          for i in range(before + 1, n + 1)] + ["(producer untouched)"]})
        before = n
    return changes
