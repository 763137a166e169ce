"""Notebook 09: delivery guarantees measured with a SIGKILL, poison orders and dead letters,
queue vs log, the idempotent-stamps exercise and the widget, on the real embedded servers."""

from __future__ import annotations

import time

import pytest

from edalab import ConfigError
from edalab._checks import EdalabWarning
from edalab.exercises import n09
from edalab.experiments import delivery_guarantees, retry_strategies
from edalab.experiments.dead_letters import mixed_orders
from conftest import press_run


@pytest.fixture(scope="module")
def guarantees(lab, tmp_path_factory):
    """Every policy on Kafka and Redis Streams at once, each billing killed mid-batch (about 10 s)."""
    return delivery_guarantees(lab, events=300, quick=True, progress=False,
                               run_dir=tmp_path_factory.mktemp("delivery"))


@pytest.mark.parametrize("method", ["kafka", "redis-stream"])
def test_each_policy_gives_its_guarantee(guarantees, method):
    most, least, once = (guarantees.row(method, p) for p in ("at-most-once", "at-least-once", "effectively-once"))
    assert most["lost"] > 0 and most["duplicate_effects"] == 0 and most["redelivered"] == 0, most
    assert least["lost"] == 0 and least["duplicate_effects"] > 0, least
    assert once["lost"] == 0 and once["duplicate_effects"] == 0 and once["redelivered"] > 0, once
    assert once["effects"] == once["produced"], once
    # What comes again is what was handled between the last commit and the kill, nothing more.
    for row in (least, once):
        assert abs(row["redelivered"] - row["handled_since_commit"]) <= 2, row


def test_samples_count_every_charge(guarantees):
    s = guarantees.samples
    for (method, policy), group in s.groupby(["method", "policy"]):
        row = guarantees.row(method, policy)
        assert len(group) == row["produced"] and group["charged"].sum() == row["effects"], row
        assert (group["charged"] == 0).sum() == row["lost"], row
    assert set(guarantees.table().index.get_level_values("policy")) == {"at-most-once", "at-least-once",
                                                                         "effectively-once"}


@pytest.mark.parametrize("bad, match", [
    (dict(methods="kafka"), "list of names"), (dict(policies=["exactly-once"]), "unknown"),
    (dict(events=0), "at least 20"), (dict(work_ms=0), "more than 0"), (dict(batch="50"), "whole number"),
    (dict(kill_after=60), "fewer than a batch"), (dict(kill_after=0), "at least 1"), (dict(billing="billing"), "billing must be"),
    (dict(policies=["at-least-once", "at-least-once"]), "repeat"),
])
def test_delivery_refuses_bad_parameters_before_starting(lab, bad, match):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match):
        delivery_guarantees(lab, **bad)
    assert time.monotonic() - started < 2


def test_delivery_warns_about_units(lab):
    with pytest.warns(EdalabWarning, match="work_ms"), pytest.raises(ConfigError, match="billing must be"):
        delivery_guarantees(lab, work_ms=500, billing=None)


@pytest.fixture(scope="module")
def retries(lab, tmp_path_factory):
    return retry_strategies(lab, orders=24, quick=True, progress=False, run_dir=tmp_path_factory.mktemp("dlq"))


def test_poison_orders_and_the_line_behind_them(retries):
    forever, dead, topic = (retries.row(m) for m in ("retry-forever", "dead-letter", "retry-topic"))
    assert forever["blocked"] > 0 and forever["dead_lettered"] == 0, forever
    for row in (dead, topic):
        assert row["blocked"] == 0 and row["cooked"] == row["orders"], row
        assert row["dead_lettered"] == row["poison"] == retries.params["poison"] > 0, row
    # In-place retries hold up the good orders behind a poison one; a retry topic does not.
    assert dead["latency_max_ms"] > 3 * topic["latency_max_ms"], (dead, topic)
    assert dead["latency_max_ms"] > retries.params["backoff_ms"] * 3, dead
    # A retry topic gives up per-key order; retrying in place keeps it.
    assert topic["out_of_order"] > 0 and dead["out_of_order"] == 0, (dead, topic)


def test_mixed_orders_put_the_same_key_after_a_transient_failure():
    orders = mixed_orders(24)
    kinds = [o["kind"] for o in orders]
    assert kinds.count("poison") == 2 and kinds.count("flaky") == 2
    for i, order in enumerate(orders[:-1]):
        if order["kind"] == "flaky":
            assert orders[i + 1]["key"] == order["key"]


@pytest.mark.parametrize("bad", [dict(methods="dead-letter"), dict(orders=0), dict(max_attempts=1),
                                 dict(backoff_ms=-5), dict(kitchen=None), dict(rate_per_s="20")])
def test_retry_strategies_refuse_bad_parameters(lab, bad):
    with pytest.raises(ConfigError):
        retry_strategies(lab, **bad)


def test_the_stamps_check_accepts_an_idempotent_body_and_refuses_the_naive_one(lab):
    accepted = n09.check_stamps(n09.solution_stamps, lab)
    assert accepted, accepted
    refused = n09.check_stamps(n09.stamps, lab)
    assert not refused and "too many" in refused.message, refused


def test_the_exercise_checks_answer_bad_input_understandably(lab):
    assert not n09.check_stamps(None, lab) and "first" in n09.check_stamps(None, lab).message
    assert "without quotes" in n09.check_stamps("my_stamps", lab).message
    assert "parameters" in n09.check_stamps(lambda ctx: None, lab).message
    assert not n09.judge_stamps(None)
    lossy = n09.StampsRun(orders=100, stamps=95, extra_stamps=0, missing_stamps=5, redelivered=5, run_dir="")
    assert not n09.judge_stamps(lossy) and "atomic" in n09.judge_stamps(lossy).message
    untested = n09.StampsRun(orders=100, stamps=100, extra_stamps=0, missing_stamps=0, redelivered=0, run_dir="")
    assert not n09.judge_stamps(untested)
    situation = next(iter(n09.GUARANTEE_QUESTIONS))
    assert n09.check_guarantee(situation, "at-most-once")
    for wrong in (None, 3, "exactly-once", "at-least-once"):
        assert not n09.check_guarantee(situation, wrong)
    assert not n09.check_guarantee("nonsense", "at-most-once")
    assert "SADD" in n09.hint() and "STAMP_ONCE" in n09.solution()


def test_the_queue_forgets_what_was_acked_and_dead_letters_poison(lab):
    """The NATS side of queue_vs_log (the Kafka side is notebook 04's log, and notebook 09 asserts it)."""
    if not getattr(lab, "nats_url", None):
        pytest.fail("the lab has no NATS server; notebook 09's queue part needs lab.transport('nats-queue')")
    from edalab.experiments import queue_vs_log

    r = queue_vs_log(lab, methods=["nats-queue"], events=120, kill_at_s=0.3, quick=True, progress=False)
    queue = r.row("nats-queue")
    assert queue["delivered"] == queue["produced"] - queue["poison"], queue
    assert queue["dead_lettered"] == queue["poison"] > 0, queue
    assert queue["read_by_new_group"] == 0 and "refused" in r.new_group["nats-queue"], r.new_group
    assert queue["left_in_broker"] == queue["poison"], queue  # acked ones are gone, dead ones kept
    assert queue["handled_twice"] <= 1, queue  # acked one by one: at most the one between work and ack
    # What the killed worker held came back to the other after ack_wait_s, not before.
    if queue["held_at_kill"]:
        assert queue["takeover_s"] > 0.8 * r.params["ack_wait_s"], queue


def test_widget_runs_the_experiment_once_and_shows_charts_and_errors(lab):
    from edalab.widgets import delivery_widget

    box = delivery_widget(lab)
    box.controls["methods"].value = ("redis-stream",)
    box.controls["policies"].value = ("at-least-once",)
    box.controls["events"].value = 100
    shown, errors = press_run(box)
    assert "Figure" in shown and "at-least-once" in shown, (shown, errors)
    assert not errors, errors
    box.controls["kill_after"].value = 60
    _, errors = press_run(box)
    assert "ConfigError" in errors and "fewer than a batch" in errors, errors
