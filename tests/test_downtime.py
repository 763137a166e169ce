"""The listener-down experiment (notebook 04) on the real embedded servers."""

from __future__ import annotations

import pytest

from edalab import ConfigError
from edalab.exercises import n04
from edalab.experiments.downtime import listener_down, replay, steady_schedule_s


@pytest.fixture(scope="module")
def killed(lab, tmp_path_factory):
    """One short SIGKILL outage on all three transports (about 10 s)."""
    return listener_down(lab, stop_modes=("kill",), before_s=1.0, down_s=1.5, after_s=1.5,
                         progress=False, run_dir=tmp_path_factory.mktemp("downtime"))


def test_pubsub_loses_what_was_sent_while_away(killed):
    row = killed.row("redis-pubsub", "kill")
    assert row["lost"] > 0
    assert abs(row["lost"] - row["sent_while_down"]) <= 2
    assert row["lost_other"] <= 2


@pytest.mark.parametrize("transport", ["kafka", "redis-stream"])
def test_logs_keep_everything_and_redeliver_uncommitted(killed, transport):
    row = killed.row(transport, "kill")
    assert row["lost"] == 0
    assert row["delivered_late"] == row["sent_while_down"] > 0
    # Each order sent while away waited at least until billing listened again.
    assert row["late_latency_mean_ms"] > 0.5 * row["away_s"] * 1000
    late = killed.samples[(killed.samples["transport"] == transport) & killed.samples["sent_while_down"]]
    assert late["after_restart"].all()
    # At-least-once: what was billed after the last commit comes again, nothing more.
    assert row["duplicated"] > 0  # killed half a commit interval after a commit
    assert abs(row["duplicated"] - row["uncommitted_at_stop"]) <= 2
    assert abs(row["lag_at_restart"] - killed.params["rate_per_s"] * row["away_s"]) <= 3


def test_lag_series_rises_while_away(killed):
    lag = killed.trial_lag("kafka", "kill")
    o = killed.outage("kafka", "kill")
    up_s = (o["up_at_ns"] - o["first_event_ns"]) / 1e9
    assert lag.loc[lag["t_s"] <= up_s, "lag"].max() >= killed.row("kafka", "kill")["lag_at_restart"] - 2
    assert lag["lag"].iloc[-1] == 0


def test_replay_from_offset(lab, killed, tmp_path):
    result = replay(lab, killed, start=5, stop_mode="kill", run_dir=tmp_path)
    for transport in ("kafka", "redis-stream"):
        row = result.summary.loc[transport]
        assert row["replayed"] == row["expected"] == row["produced"] - 5
        assert row["first_seq"] == 5 and row["in_order"]
    assert result.summary.loc["redis-pubsub", "replayed"] == 0


def test_bad_settings_are_refused(lab):
    with pytest.raises(ConfigError):
        listener_down(lab, transports=("carrier-pigeon",))
    with pytest.raises(ConfigError, match="never catch up"):
        listener_down(lab, rate_per_s=100, work_ms=20)


def test_steady_schedule():
    assert steady_schedule_s(4, 1.0) == [0.0, 0.25, 0.5, 0.75]


def test_exercise_checks():
    s = n04.SCENARIO
    lag = s["rate_per_s"] * s["down_s"]
    assert n04.check_lag_at_restart(lag)
    assert not n04.check_lag_at_restart(s["down_s"])
    assert not n04.check_lag_at_restart("many")
    assert n04.check_catch_up_s(lag / (s["capacity_per_s"] - s["rate_per_s"]))
    assert not n04.check_catch_up_s(lag / s["capacity_per_s"])
    assert n04.hint() and n04.solution()
