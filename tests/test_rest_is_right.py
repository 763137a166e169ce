"""Notebook 06 (when REST is right): request/reply, fire-and-forget logging, paging, on real servers."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from edalab import ConfigError
from edalab._checks import EdalabWarning
from edalab.exercises import n06
from edalab.experiments import authorization_check, log_per_request, paging_under_inserts
from edalab.experiments.paging import cursor_pager, offset_pager, paging_table, records_api_app
from edalab.experiments.request_reply import broker_authorize, code_lines, rest_authorize
from edalab.transports.http import BackgroundServer
from conftest import press_run


def test_records_api_offsets_move_with_inserts_and_cursors_do_not():
    with BackgroundServer(records_api_app(10)) as api, httpx.Client(base_url=api.url, timeout=5) as client:
        def ids(**params):
            return [item["id"] for item in client.get("/records", params=params).json()["items"]]

        assert ids(offset=0, limit=3) == [10, 9, 8]
        assert client.post("/records").json()["id"] == 11
        assert ids(offset=3, limit=3) == [8, 7, 6]     # 8 again: the list moved down by one
        assert ids(before=8, limit=3) == [7, 6, 5]     # the cursor did not move
        assert ids(before=1, limit=3) == []


def test_paging_table_counts_missed_repeated_and_new_items():
    seen = pd.DataFrame({"role": ["a"] * 5 + ["b"] * 2, "n": range(7), "id": [3, 2, 2, 1, 4, 3, 1],
                         "request": [1, 1, 2, 2, 3, 1, 1], "t_s": [0.1] * 7})
    table = paging_table(seen, records=3, methods=["a", "b"]).set_index("method")
    assert table.loc["a", ["missed", "repeated", "new_seen", "requests"]].tolist() == [0, 1, 1, 3]
    assert table.loc["b", ["missed", "repeated", "items_read"]].tolist() == [1, 0, 2]


def test_code_lines_count_code_not_docstrings_or_comments():
    assert code_lines(rest_authorize) == 3
    assert code_lines(broker_authorize) >= 3 * code_lines(rest_authorize)


def test_paging_under_inserts_offsets_repeat_cursors_and_topics_do_not(lab, tmp_path):
    result = paging_under_inserts(lab, records=150, limit=10, insert_rate_per_s=60, page_pause_s=0.03,
                                  run_dir=tmp_path)
    offset, cursor, topic = result.row("rest-offset"), result.row("rest-cursor"), result.row("kafka")
    assert offset["repeated"] > 0 and offset["missed"] == 0, offset
    assert cursor["repeated"] == cursor["missed"] == 0 and topic["repeated"] == topic["missed"] == 0
    assert cursor["requests"] >= 150 // 10 and topic["requests"] <= cursor["requests"]
    still = paging_under_inserts(lab, records=60, limit=10, insert_rate_per_s=0, page_pause_s=0,
                                 topic_reader=False, run_dir=tmp_path / "still")
    assert still.summary[["missed", "repeated"]].to_numpy().sum() == 0  # no inserts: offsets are fine


def test_authorization_check_rest_errors_at_once_broker_times_out(lab, tmp_path):
    result = authorization_check(lab, rate_per_s=30, timeout_s=0.3, up_s=1.5, down_s=1.0, after_s=1.0,
                                 run_dir=tmp_path)
    rest, broker = result.row("rest"), result.row("redis-list")
    assert rest["calls_up"] > 10 and broker["calls_up"] > 10
    assert rest["down_errors"] >= 0.8 * rest["calls_down"] and rest["down_fail_ms"] < 100
    assert broker["down_timeouts"] >= 1 and broker["down_fail_ms"] >= 270
    assert broker["stale_served"] >= 1 and rest["stale_served"] == 0
    assert rest["back_ok"] > 0 and broker["back_ok"] > 0
    assert set(result.samples["phase"]) == {"up", "down", "back"}


def test_log_per_request_sync_http_fails_pubsub_loses_silently_logs_keep(lab, tmp_path):
    result = log_per_request(lab, methods=["http-sync", "kafka-acks1", "redis-stream", "redis-pubsub"],
                             rate_per_s=40, duration_s=3.0, kill_at_s=1.0, back_at_s=1.8, run_dir=tmp_path)
    http, kafka = result.row("http-sync"), result.row("kafka-acks1")
    stream, pubsub = result.row("redis-stream"), result.row("redis-pubsub")
    assert http["app_errors"] > 0 and http["lost_silently"] == 0
    assert kafka["lost"] == 0 and stream["lost"] == 0 and kafka["delivered"] == kafka["emitted"] > 0
    assert pubsub["lost_silently"] > 0 and pubsub["app_errors"] == 0
    assert http["latency_p50_ms"] > 3 * kafka["latency_p50_ms"]


@pytest.mark.parametrize("call, match", [
    (lambda lab: authorization_check(lab, rate_per_s=0), "rate_per_s"),
    (lambda lab: authorization_check(lab, timeout_s="1"), "timeout_s"),
    (lambda lab: authorization_check(lab, rest_client=None), "rest_client"),
    (lambda lab: log_per_request(lab, app="emit_logs"), "app"),
    (lambda lab: log_per_request(lab, methods="kafka-acks0"), "methods"),
    (lambda lab: log_per_request(lab, methods=["kafka-acks2"]), "kafka-acks2"),
    (lambda lab: log_per_request(lab, duration_s=4, kill_at_s=5), "kill_at_s"),
    (lambda lab: log_per_request(lab, duration_s=4, kill_at_s=2, back_at_s=1), "back_at_s"),
    (lambda lab: paging_under_inserts(lab, records=0), "records"),
    (lambda lab: paging_under_inserts(lab, limit=2.5), "limit"),
    (lambda lab: paging_under_inserts(lab, pagers=[offset_pager]), "pagers"),
])
def test_bad_settings_are_refused_before_anything_runs(lab, call, match):
    with pytest.raises(ConfigError, match=match):
        call(lab)


def test_unit_mix_ups_warn_before_the_run(lab):
    with pytest.warns(EdalabWarning, match="seconds"), pytest.raises(ConfigError, match="after_s"):
        authorization_check(lab, timeout_s=500, after_s=0)
    with pytest.warns(EdalabWarning, match="requests per second"), pytest.raises(ConfigError, match="duration_s"):
        log_per_request(lab, rate_per_s=5000, duration_s=0)
    with pytest.warns(EdalabWarning, match="seconds"), pytest.raises(ConfigError, match="pagers"):
        paging_under_inserts(lab, page_pause_s=50, pagers={})


@pytest.mark.parametrize("answer", [None, "3", -3, True, float("nan")])
def test_check_repeats_explains_unusable_answers(answer):
    feedback = n06.check_repeats(answer)
    assert not feedback and feedback.message


def test_check_repeats_accepts_the_answer_and_explains_typical_mistakes():
    assert n06.check_repeats(3, inserts=3, limit=20)
    assert n06.check_repeats(20, inserts=30, limit=20)
    assert "now" in n06.check_repeats(0, inserts=3, limit=20).message
    assert not n06.check_repeats(20, inserts=3, limit=20)
    assert n06.hint() and "k items" in n06.solution()


def test_check_pager_refuses_what_is_not_a_pager(lab):
    assert "None" in n06.check_pager(None, lab).message
    assert "function" in n06.check_pager("cursor", lab).message


def test_check_pager_runs_the_learners_code_accepts_cursor_refuses_offset(lab):
    right = n06.check_pager(n06.solution_pager, lab)
    wrong = n06.check_pager(offset_pager, lab)
    assert right, right.message
    assert not wrong and "twice" in wrong.message
    assert n06.check_pager(cursor_pager, lab)


def test_check_pager_reports_a_crashing_pager(lab):
    def broken(get_page, limit):
        yield get_page(page=1, limit=limit)["no such key"]

    feedback = n06.check_pager(broken, lab)
    assert not feedback and "failed" in feedback.message


def test_judge_pager_wants_few_requests_too():
    row = {"repeated": 0, "missed": 0, "requests": 200, "new_seen": 0}
    assert not n06.judge_pager(row, records=200, limit=10)
    assert n06.judge_pager({**row, "requests": 21}, records=200, limit=10)


def test_widget_runs_paging_once_and_shows_chart_and_errors(lab):
    from edalab.widgets import paging_widget

    box = paging_widget(lab)
    c = box.controls
    c["records"].value, c["limit"].value, c["insert_rate_per_s"].value, c["page_pause_s"].value = 50, 10, 20, 0.02
    shown, errors = press_run(box)
    assert "Figure" in shown and "rest-offset" in shown and "kafka" in shown, shown
    assert not errors, errors
