"""Notebook 10 (what goes in an event): both experiments once on real servers, the schema
check, parameter checks, the fold exercise on a right and a wrong fold, and the widget."""

from __future__ import annotations

import pytest

from edalab import ConfigError
from edalab._checks import EdalabWarning
from edalab.exercises import n10
from edalab.experiments._event_fold import ITEM_ADDED_SCHEMAS, check_compatibility, read_item_added_v1
from edalab.experiments._event_sourcing import rebuild_by_replay
from edalab.experiments.event_content import notification_vs_state
from conftest import press_run


@pytest.fixture(scope="module")
def content(lab, tmp_path_factory):
    """1 then 2 subscribers of each design, 1.5 s a step, then the API down (about 9 s)."""
    return notification_vs_state(lab, subscriber_counts=[1, 2], step_s=1.5, progress=False,
                                 run_dir=tmp_path_factory.mktemp("content"))


@pytest.fixture(scope="module")
def sourcing(lab, tmp_path_factory):
    """Histories of 200 and 2000 events, a live stream of 2 s (about 5 s)."""
    return rebuild_by_replay(lab, history_sizes=[200, 2000], repeats=2, live_s=2.0, progress=False,
                             run_dir=tmp_path_factory.mktemp("sourcing"))


def test_every_notified_subscriber_calls_the_source_back_per_event(content):
    table = content.summary.to_string()
    for n in (1, 2):
        notify, state = content.step("event-notification", n), content.step("state-transfer", n)
        # a subscriber joining a step early may miss the first events of its step on a busy machine
        assert 0.8 * n <= notify["callbacks_per_update"] <= n + 0.05, table
        assert state["callbacks"] == 0 and state["copies"] >= 0.8 * n * state["updates"], table
        assert notify["failed"] == 0, table
    load = content.source.set_index("subscribers")
    up = content.source[content.source["phase"] == "up"].set_index("subscribers")
    assert up.loc[2, "requests_per_s"] > 1.4 * up.loc[1, "requests_per_s"] > 0, load
    assert up.loc[2, "cpu_ms_per_s"] > up.loc[1, "cpu_ms_per_s"] > 0, load


def test_fat_events_are_bigger_but_a_callback_costs_more_bytes(content):
    notify, state = content.step("event-notification", 1), content.step("state-transfer", 1)
    assert state["event_bytes"] > 1.5 * notify["event_bytes"]
    assert notify["bytes_per_update"] > state["bytes_per_update"]          # thin event + the whole order again
    for row in (notify, state):
        assert 0 < row["latency_p50_ms"] <= row["latency_p90_ms"] < 2000   # a stale window, measured


def test_with_the_api_down_callbacks_fail_and_fat_copies_stay_current(content):
    notify = content.step("event-notification", 2, "source down")
    state = content.step("state-transfer", 2, "source down")
    assert notify["updates"] > 10 and notify["failed"] >= 0.9 * notify["copies"] > 0
    assert state["failed"] == 0 and state["copies"] >= 0.95 * 2 * state["updates"]
    assert content.source.iloc[-1]["requests_per_s"] == 0


def test_replay_rebuilds_the_order_and_a_snapshot_keeps_it_short(sourcing):
    s = sourcing.summary.to_string()
    assert sourcing.summary["same_state"].all(), s
    full, snap = sourcing.at("full-replay", 2000), sourcing.at("snapshot", 2000)
    assert full["events_read"] == 2000 and snap["events_read"] <= sourcing.params["snapshot_every"], s
    assert full["rebuild_p50_ms"] > 2 * snap["rebuild_p50_ms"], s
    assert full["rebuild_min_ms"] > 1.5 * sourcing.at("full-replay", 200)["rebuild_min_ms"], s


def test_read_model_keeps_up_with_v2_and_the_breaking_v3_is_refused(sourcing):
    model = sourcing.read_model_summary.set_index("schema_version")
    assert list(model.index) == [1, 2] and model["failed"].sum() == 0, model
    assert (model["latency_p50_ms"] < 1000).all(), model
    assert [r["version"] for r in sourcing.refused] == [3] and "quantity" in sourcing.refused[0]["problems"]
    same, orders = sourcing.consistent
    assert orders > 10 and same == orders


def test_the_compatibility_check_tells_adding_from_renaming():
    assert check_compatibility(ITEM_ADDED_SCHEMAS[1], ITEM_ADDED_SCHEMAS[2]) == []
    problems = check_compatibility(ITEM_ADDED_SCHEMAS[2], ITEM_ADDED_SCHEMAS[3])
    assert any("'quantity' is gone" in p for p in problems) and any("'portions'" in p for p in problems)
    no_default = {"fields": {**ITEM_ADDED_SCHEMAS[1]["fields"], "table": "int"}, "defaults": {}}
    assert "no default" in check_compatibility(ITEM_ADDED_SCHEMAS[1], no_default)[0]
    retyped = {"fields": {**ITEM_ADDED_SCHEMAS[1]["fields"], "quantity": "str"}, "defaults": {}}
    assert "changed type" in check_compatibility(ITEM_ADDED_SCHEMAS[1], retyped)[0]
    payload = {"order_id": "o", "item_id": "M01", "name": "x", "price_eur": 1.0}
    assert read_item_added_v1({**payload, "quantity": 2, "cook_time_s": 1.0}) == ("M01", 2)
    with pytest.raises(KeyError):
        read_item_added_v1({**payload, "portions": 2})


@pytest.mark.parametrize("kwargs, match", [
    (dict(subscriber_counts="2"), "subscriber_counts"), (dict(subscriber_counts=[0, 2]), "subscriber_counts"),
    (dict(subscriber_counts=[]), "subscriber_counts"), (dict(rate_per_s=0), "rate_per_s"),
    (dict(step_s=0.5), "step_s"), (dict(consumer="mine"), "consumer"),
    (dict(subscriber_counts=[1, 2, 4], rate_per_s=60, step_s=10), "orders.csv"),
])
def test_notification_vs_state_refuses_bad_parameters(lab, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        notification_vs_state(lab, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(history_sizes=1000), "history_sizes"), (dict(history_sizes=[1]), "history_sizes"),
    (dict(snapshot_every=0), "snapshot_every"), (dict(repeats=0), "repeats"), (dict(apply="fold"), "apply"),
    (dict(live_s=-1), "live_s"),
])
def test_rebuild_by_replay_refuses_bad_parameters(lab, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        rebuild_by_replay(lab, **kwargs)


def test_units_far_off_warn_before_anything_runs(lab):
    with pytest.warns(EdalabWarning, match="seconds"), pytest.raises(ConfigError):
        notification_vs_state(lab, step_s=500)


def test_the_fold_check_accepts_the_reference_and_refuses_typical_mistakes():
    assert n10.check_apply(n10.reference_apply) and n10.check_apply(n10._solution_apply())

    def replaces_quantity(state, event):
        items = dict(state["items"])
        if event.type == "item_added":
            items[event.payload["item_id"]] = event.payload["quantity"]
        elif event.type == "item_removed":
            items.pop(event.payload["item_id"], None)
        status = "paid" if event.type == "order_paid" else state["status"]
        return {"items": items, "status": status, "version": state["version"] + 1}

    def strict(state, event):
        if event.type not in ("item_added", "item_removed", "order_paid"):
            raise ValueError(f"unknown event type {event.type}")
        return n10.reference_apply(state, event)

    assert "adds its quantity" in n10.check_apply(replaces_quantity).message
    assert "Skip event types" in n10.check_apply(strict).message


@pytest.mark.parametrize("answer, words", [(None, "still None"), ("my_apply", "no quotes"), (42, "not int"),
                                           (lambda state: state, "raised TypeError"),
                                           (lambda state, event: None, "returned None")])
def test_fold_check_answers_bad_input_with_a_sentence(answer, words):
    feedback = n10.check_apply(answer)
    assert not feedback and words in feedback.message


@pytest.mark.parametrize("answer, ok, words", [(80, True, "80 GETs"), (20, False, "one subscriber"),
                                               ("80", False, "without quotes"), (-1, False, "below 0"),
                                               (None, False, "still None"), (0, False, "state transfer")])
def test_callback_rate_check(answer, ok, words):
    feedback = n10.check_callback_rate(answer, subscribers=4, rate_per_s=20)
    assert bool(feedback) is ok and words in feedback.message, feedback.message


def test_hint_and_solution_are_text():
    assert "item_removed" in n10.hint() and "def my_apply" in n10.solution()


def test_widget_runs_the_experiment_once_and_shows_charts_and_errors(lab):
    from edalab.widgets import event_content_widget

    box = event_content_widget(lab)
    box.controls["counts"].value, box.controls["step_s"].value = "1", 1.0
    box.controls["rate_per_s"].value = 10.0
    shown, errors = press_run(box)
    assert "Figure" in shown and "event-notification" in shown and "state-transfer" in shown, shown
    assert not errors, errors
    box.controls["counts"].value, box.controls["rate_per_s"].value, box.controls["step_s"].value = "1, 3, 6", 60, 10
    _, errors = press_run(box)
    assert "ConfigError" in errors and "orders.csv" in errors, errors
