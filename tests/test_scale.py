"""Notebook 11: the many-clients run on a real HTTP server, the scale model calibrated on it, the exercise."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import pytest
from conftest import press_run

from edalab import scale
from edalab._checks import EdalabWarning
from edalab._errors import ConfigError
from edalab.exercises import n11
from edalab.experiments.many_clients import many_clients_sweep


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small sweep (real server, real clients), shared by the checks below."""
    return many_clients_sweep(clients=[20, 80], methods=["rest-poll", "sse"], poll_intervals_s=[0.2, 0.3], processes=1,
                              window_s=1.5, quick=True, progress=False,
                              run_dir=tmp_path_factory.mktemp("many-clients"))


def test_the_run_measures_requests_connections_and_delay(run):
    m = run.measured()
    poll, sse = m[m["method"] == "rest-poll"], m[m["method"] == "sse"]
    ratio = poll["requests_per_s"] / (poll["clients"] / poll["poll_interval_s"])
    assert ratio.between(0.7, 1.3).all(), ratio
    assert (sse["open_connections"] >= 0.9 * sse["clients"]).all()
    assert sse["latency_mean_ms"].max() < poll["latency_mean_ms"].min()
    assert (m["errors"] == 0).all()
    # a window without any update (random moments) has no stale time to measure: NaN, not 0
    stale = poll["stale_fraction"].dropna()
    assert len(stale) >= 2 and stale.between(0, 1).all(), poll


def test_the_model_agrees_with_its_own_run_on_polling(run):
    """Four polling steps, two numbers fitted: CPU and requests/s predicted within a margin a busy
    2-core machine holds (the benchmark reports the exact error)."""
    calibration = scale.calibrate(run)
    table = scale.agreement(run, calibration)
    polling = table[table["method"] == "rest-poll"]
    assert len(polling) == 4
    assert polling[["rel_error_server_cpu_per_s", "rel_error_requests_per_s"]].abs().max().max() <= 0.35, polling
    assert {"rel_error_server_cpu_per_s", "rel_error_requests_per_s", "rel_error_latency_mean_ms"} <= set(table)
    # a model whose per-request cost is off by half is refused by the same comparison
    a, b, x_top = calibration.cpu_curves["rest-poll"]
    wrong = dataclasses.replace(calibration, cpu_curves={**calibration.cpu_curves, "rest-poll": (a * 2.0, b, x_top)})
    assert scale.max_rel_error(run, wrong, methods=["rest-poll"]) > 0.35


def test_a_poll_costs_by_its_interval_only_within_the_measured_intervals(run):
    """REST polling's cost per request scales as interval**c, fitted on the run's two intervals;
    outside them the model keeps the nearest measured cost (no trend the run did not show)."""
    calibration = scale.calibrate(run)
    assert calibration.poll_intervals_s == (0.2, 0.3)
    c = dataclasses.replace(calibration, poll_interval_exponent=0.5)

    def per_request_ms(cal, interval_s):
        p = scale.predict(cal, "rest-poll", [20 * interval_s], poll_interval_s=interval_s, one_server=True).iloc[0]
        return (p["server_cpu_per_s"] - scale._idle(cal, cal.update_rate_per_s)) / p["requests_per_s"] * 1000

    assert per_request_ms(c, 0.3) == pytest.approx(per_request_ms(c, 0.2) * 1.5 ** 0.5, rel=1e-6)
    assert per_request_ms(c, 60.0) == pytest.approx(per_request_ms(c, 0.3), rel=1e-6)
    assert per_request_ms(c, 0.05) == pytest.approx(per_request_ms(c, 0.2), rel=1e-6)


def test_the_model_scales_to_a_million_clients_fast(run):
    calibration = scale.calibrate(run)
    started = time.perf_counter()
    sim = scale.simulate(calibration, "rest-poll", 1_000_000, poll_interval_s=1.0, update_rate_per_s=10)
    assert time.perf_counter() - started < 10
    assert 400 < sim["latency_mean_ms"] < 700            # half the interval plus an answer
    big = scale.predict(calibration, "rest-poll", [1e3, 1e6], poll_interval_s=1.0)
    assert big["servers"].iloc[1] > big["servers"].iloc[0]
    with pytest.raises(ConfigError):
        scale.predict(calibration, "carrier-pigeon", [10])
    with pytest.raises(ConfigError):
        scale.predict(calibration, "sse", [-5])


def test_parameters_are_checked_before_anything_starts():
    with pytest.raises(ConfigError):
        many_clients_sweep(clients=0)
    with pytest.raises(ConfigError):
        many_clients_sweep(methods="sse")
    with pytest.raises(ConfigError):
        many_clients_sweep(clients=[10], poll_intervals_s=[0])
    with pytest.raises(ConfigError):
        many_clients_sweep(clients=[10], push_window_s=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdalabWarning)
        with pytest.raises(EdalabWarning):
            many_clients_sweep(clients=[10], poll_intervals_s=[20.0])  # 20 ms typed as seconds


def test_push_waits_behind_the_fan_out_before_and_long_polls_share_answers(run):
    """The convex part of push's delay and long polling's coalesced answers come from the CPU
    per answer (no fitted number): fan-out S = clients x CPU per answer, an M/D/1 wait behind
    it, and (1 - e^-λS) / (λS) answers per client and update."""
    calibration = scale.calibrate(run)
    # 0.2 ms of server CPU per answer, a flat 5 ms delay line: the fan-out of 200 clients is 40 ms
    lp = dataclasses.replace(calibration, cpu_curves={**calibration.cpu_curves, "long-poll": (2e-4, 1.0, 1e9)},
                             push_delay_ms={**calibration.push_delay_ms, "long-poll": (5.0, 0.0)}, response_ms=0.1)
    n = [10, 50, 200]
    rare = scale.predict(lp, "long-poll", n, update_rate_per_s=0.01, one_server=True)
    fast = scale.predict(lp, "long-poll", n, update_rate_per_s=20, one_server=True)
    # rare updates: one answer per client and update, and no wait (the delay line alone)
    assert (rare["requests_per_s"] / (rare["clients"] * 0.01)).between(0.99, 1.0).all(), rare
    assert (rare["latency_mean_ms"] - 5.0).abs().max() < 0.05, rare
    # 20 updates/s: fewer answers than clients x rate, the more clients the fewer; never more than one
    # per fan-out; the wait grows much faster than N (λS = 0.04, 0.2, 0.8) but stays under half a fan-out
    share = fast["requests_per_s"] / (fast["clients"] * 20)
    assert share.is_monotonic_decreasing and share.iloc[-1] < 0.8 and share.iloc[0] > 0.97, fast
    assert (fast["requests_per_s"] <= fast["clients"] / (fast["clients"] * 2e-4)).all(), fast
    wait_ms = fast["latency_mean_ms"] - 5.0
    assert wait_ms.iloc[2] > 8 * wait_ms.iloc[1] > 0, fast          # 4 x the clients, over 8 x the wait
    grows = 0.8 * math.exp(0.8)
    assert wait_ms.iloc[2] == pytest.approx(1000 * grows / (1 + grows) * 0.04 / 2, rel=0.01)
    assert wait_ms.iloc[0] == pytest.approx(1000 * 20 * 0.002 ** 2 / 2, rel=0.05)     # rare: λS²/2
    # a server that waits for a core (stretch 3) takes three times as long per fan-out and waits longer
    slow = scale.predict(lp, "long-poll", n, update_rate_per_s=20, one_server=True, stretch=3.0)
    assert (slow["latency_mean_ms"] > 2.5 * fast["latency_mean_ms"]).all(), slow


def test_the_exercise_runs_the_learners_choice_through_the_model(run):
    calibration = scale.calibrate(run)
    assert n11.check_chooser(n11.reference_choose, calibration)
    assert not n11.check_chooser(lambda c, b: {"method": "sse"}, calibration)
    assert not n11.check_chooser(lambda c, b: {"method": "rest-poll", "poll_interval_s": 1.0}, calibration)
    # on any plausible calibration (a loaded machine's, a faster one's) push answers one budget and
    # polling the other, so neither "always push" nor "always poll every second" passes
    for poll_cost, push_cost, push_delay in ((1, 1, 1), (0.3, 1, 1), (4, 1, 1), (1, 0.01, 1), (1, 20, 1), (1, 1, 3)):
        curves = {m: (a * (poll_cost if m == "rest-poll" else push_cost), b, x)
                  for m, (a, b, x) in calibration.cpu_curves.items()}
        other = dataclasses.replace(calibration, cpu_curves=curves, push_delay_ms={
            m: (d0 * push_delay, k * push_delay) for m, (d0, k) in calibration.push_delay_ms.items()})
        rare, fast = n11.example_budgets(other)
        assert n11.reference_choose(other, rare)["method"] == "sse", (poll_cost, push_cost, push_delay)
        assert n11.reference_choose(other, fast)["method"] == "rest-poll", (poll_cost, push_cost, push_delay)
        assert not n11.check_chooser(lambda c, b: {"method": "sse"}, other)
        assert not n11.check_chooser(lambda c, b: {"method": "rest-poll", "poll_interval_s": 1.0}, other)
    assert not n11.check_chooser(None, calibration)
    assert not n11.check_chooser(lambda c, b: 1 / 0, calibration)
    budget = n11.example_budgets(calibration)[0]
    assert "without quotes" in n11.check_choice(calibration, budget, {"method": "rest-poll", "poll_interval_s": "2"}).message
    assert not n11.check_choice(calibration, budget, {"method": "rest-poll", "poll_interval_s": -1})
    assert not n11.check_choice(calibration, budget, "sse")


def test_partitions_cap_a_group(lab, tmp_path):
    from edalab.experiments import partitions_x_consumers

    result = partitions_x_consumers(lab, trials=[(1, 2), (2, 2)], events=40, work_ms=20, quick=True,
                                    run_dir=tmp_path, progress=False)
    s = result.summary.set_index("partitions")
    assert s.loc[1, "members_with_events"] == 1               # the second member holds no partition
    # two members sleeping work_ms per event side by side; the ratio measured x1.38 once at load 6
    assert s.loc[2, "events_per_s"] > 1.25 * s.loc[1, "events_per_s"], s
    assert "embedded" in result.which_kafka() or "Kafka" in result.which_kafka()
    with pytest.raises(ConfigError):
        partitions_x_consumers(lab, trials=[4, 2])
    with pytest.raises(ConfigError):
        partitions_x_consumers(lab, trials=[(0, 2)])


def test_widget_runs_the_sweep_once_and_shows_errors(lab):
    from edalab.widgets import many_clients_widget

    box = many_clients_widget(lab)
    box.controls["clients"].value = (20,)
    box.controls["methods"].value = ("sse",)
    shown, errors = press_run(box)
    assert "Figure" in shown and "sse" in shown, shown
    assert not errors, errors
    box.controls["methods"].value = ()
    _, errors = press_run(box)
    assert "ConfigError" in errors and "methods" in errors, errors
