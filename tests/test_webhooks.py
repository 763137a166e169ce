"""Notebook 05 (webhooks next to a broker): the experiments on real servers, their
parameter checks, the retry-policy exercise and the widget."""

from __future__ import annotations

import pytest

from edalab import ConfigError
from edalab._checks import EdalabWarning
from edalab.exercises import n05
from edalab.experiments import webhooks
from edalab.experiments.webhooks import adding_subscribers, webhook_outage
from conftest import press_run


@pytest.fixture(scope="module")
def outage(lab, tmp_path_factory):
    """Receivers killed for 2 s mid-stream, Redis Streams as the broker (about 12 s)."""
    return webhook_outage(lab, broker="redis-stream", before_s=1.5, down_s=2.0, after_s=1.0, progress=False,
                          run_dir=tmp_path_factory.mktemp("outage"))


def test_plain_webhook_loses_what_was_sent_while_the_receiver_was_down(outage):
    row = outage.row("webhook")
    assert row["sent_while_down"] > 10
    # all of them, give or take those sent in the milliseconds while the new server was starting
    assert row["lost_while_down"] >= row["sent_while_down"] - 2
    # besides those, at most the request in flight at the kill and one on a stale connection
    assert row["lost"] - row["lost_while_down"] <= 2
    assert row["failed_attempts"] == row["lost"]


@pytest.mark.parametrize("method", ["webhook-retry", "redis-stream"])
def test_retry_with_outbox_and_broker_deliver_everything_late(outage, method):
    row = outage.row(method)
    assert row["lost"] == 0 and row["delivered"] == row["produced"]
    assert row["delivered_late"] == row["sent_while_down"] > 10
    # those waited, on average, a good part of the time away
    assert row["latency_late_mean_ms"] > 0.3 * row["away_s"] * 1000
    assert row["latency_late_mean_ms"] > 10 * row["latency_p50_ms"]


def test_retry_counts_attempts_and_duplicates(outage):
    row = outage.row("webhook-retry")
    assert row["attempts"] == row["produced"] + row["failed_attempts"]
    assert 0 < row["failed_attempts"] < 60  # backoff, no storm
    assert row["duplicated"] <= 2
    assert set(outage.samples["phase"]) <= {"before", "down", "after"}
    # "while up": sent and received before the kill, never an order sent while down
    assert outage.samples["while_up"].any() and not (outage.samples["while_up"] & (outage.samples["phase"] != "before")).any()


def test_adding_subscribers_grows_the_webhook_senders_work(lab, tmp_path):
    fan = adding_subscribers(lab, broker="redis-stream", counts=[1, 4], slow_ms=150, events_per_step=10,
                             progress=False, run_dir=tmp_path)
    table = fan.summary.to_string()
    seq1, seq4 = fan.step("webhook", "sequential", 1), fan.step("webhook", "sequential", 4)
    # four POSTs in a row cost the sender more CPU than one. (Their wall time is not checked: a few ms
    # beside a parallel test suite, it measured 5.2 ms for four against 5.7 for one once; the slow
    # subscriber below shows the waiting.)
    assert seq4["cpu_p50_ms"] > 1.4 * seq1["cpu_p50_ms"], table
    conc1, conc4 = fan.step("webhook", "concurrent", 1), fan.step("webhook", "concurrent", 4)
    assert conc4["cpu_p50_ms"] > 1.5 * conc1["cpu_p50_ms"], table
    slow = fan.step("webhook", "sequential", 4, slow=True)
    assert slow["send_p50_ms"] > 140 and slow["latency_p50_ms"] > 100, table
    assert fan.step("webhook", "concurrent", 4, slow=True)["latency_p50_ms"] < 100, table
    b1, b4 = fan.step("broker", "broker", 1), fan.step("broker", "broker", 4)
    assert b4["send_p50_ms"] < 2.5 * b1["send_p50_ms"] + 5, table
    assert b4["cpu_p50_ms"] < 2 * b1["cpu_p50_ms"] + 1, table
    assert [c["subscribers"] for c in fan.config] == [1, 4]
    assert len(fan.config[1]["webhook_sender_config"]["subscribers"]) == 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate_per_s=0), "rate_per_s"), (dict(down_s=-1), "down_s"), (dict(broker="rabbit"), "broker"),
    (dict(work_ms=50, rate_per_s=30), "catch up"), (dict(retry="backoff"), "retry"),
    (dict(retry=lambda attempt: -1), "returned -1"), (dict(retry=lambda attempt: 1 / 0), "ZeroDivision"),
])
def test_outage_refuses_bad_parameters(lab, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        webhook_outage(lab, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(counts="5"), "counts"), (dict(counts=[0, 2]), "counts"), (dict(counts=[]), "counts"),
    (dict(modes="sequential"), "modes"), (dict(events_per_step=0), "events_per_step"),
])
def test_adding_subscribers_refuses_bad_parameters(lab, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        adding_subscribers(lab, **kwargs)


def test_units_far_off_warn_before_anything_runs(lab):
    with pytest.warns(EdalabWarning, match="seconds"), pytest.raises(ConfigError):
        webhook_outage(lab, down_s=5000, work_ms=50, rate_per_s=30)


def test_exercise_refuses_a_storm_and_judges_reference_and_no_retry_alongside():
    check = n05.check_retry_policy(lambda attempt: 0, progress=False)
    assert not check and "storm" in check.yours.message, check.table
    assert check.reference and not check.no_retry, check.table
    assert "no retry:" in str(check)
    assert n05.check_retry_policy(n05.solution_retry, progress=False)


@pytest.mark.parametrize("answer, words", [(None, "still None"), ("my_retry", "without quotes"),
                                           (lambda attempt: "1s", "returned '1s'"),
                                           (lambda: 1, "raised TypeError")])
def test_exercise_check_answers_bad_input_with_a_sentence(answer, words):
    feedback = n05.check_retry_policy(answer, progress=False)
    assert not feedback and words in feedback.message


def test_hint_and_solution_are_text():
    assert "backoff" in n05.hint() or "double" in n05.hint()
    assert "def my_retry" in n05.solution() and webhooks.retry_with_backoff(1) == n05.solution_retry(1)


def test_widget_runs_the_experiment_once_and_shows_charts_and_errors(lab):
    from edalab.widgets import webhook_outage_widget

    box = webhook_outage_widget(lab)
    box.controls["down_s"].value, box.controls["rate_per_s"].value = 1.0, 10.0
    shown, errors = press_run(box)
    assert "Figure" in shown and "webhook-retry" in shown and "redis-stream" in shown, shown
    assert not errors, errors
    box.controls["work_ms"].value, box.controls["rate_per_s"].value = 60.0, 30.0
    _, errors = press_run(box)
    assert "ConfigError" in errors and "work_ms" in errors, errors
