"""edalab.workloads: schedules, argument checks, and the committed data/ folder."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edalab
from edalab import ConfigError, workloads

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


# What the scattered schedules computed before edalab.workloads (roles.poisson_schedule_s,
# downtime.steady_schedule_s, waiter.restaurant_orders), written out so the new module can
# be checked to be a drop-in replacement even after the old functions are gone.
def old_poisson_schedule_s(count, rate_per_s, seed=0):
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_per_s, size=count)).tolist()


def old_steady_schedule_s(rate_per_s, duration_s):
    return (np.arange(int(rate_per_s * duration_s)) / rate_per_s).tolist()


def old_restaurant_orders(count, order_rate_per_s, cook_time_mean_s, seed=1, prefix="order"):
    placed_s = old_poisson_schedule_s(count, order_rate_per_s, seed)
    cook_s = np.random.default_rng(seed + 1000).uniform(0.5 * cook_time_mean_s, 1.5 * cook_time_mean_s,
                                                        size=count)
    return [dict(order=i, key=f"{prefix}-{i:03d}", placed_at_s=float(p), cook_s=float(c),
                 ready_at_s=float(p + c)) for i, (p, c) in enumerate(zip(placed_s, cook_s))]


# ------------------------------------------------------------------ schedules


def test_poisson_is_the_old_schedule_and_has_the_asked_rate():
    assert workloads.poisson(50, 7.0, seed=4) == old_poisson_schedule_s(50, 7.0, 4)
    times = workloads.poisson(20_000, 40.0, seed=1)
    gaps = np.diff([0.0, *times])
    assert (gaps > 0).all()
    assert gaps.mean() == pytest.approx(1 / 40.0, rel=0.05)
    assert gaps.std() == pytest.approx(1 / 40.0, rel=0.05)  # exponential: std == mean
    assert workloads.poisson(20, 5.0, seed=2) != workloads.poisson(20, 5.0, seed=3)
    assert workloads.poisson(0, 5.0) == []


def test_steady_is_evenly_spaced_in_a_half_open_window():
    assert workloads.steady(4, 1.0) == [0.0, 0.25, 0.5, 0.75]
    for rate_per_s, duration_s in ((4, 1.0), (20, 6.5), (30, 0.1), (3, 2.0)):
        assert workloads.steady(rate_per_s, duration_s) == old_steady_schedule_s(rate_per_s, duration_s)
        assert len(workloads.steady(rate_per_s, duration_s)) == round(rate_per_s * duration_s)
    times = workloads.steady(3, 1.5)  # 4.5 slots: an event at 0, 1/3, 2/3, 1, 4/3 (all < 1.5)
    assert len(times) == 5 and max(times) < 1.5
    assert workloads.steady(10, 0) == []


def test_bursts_have_the_asked_shape():
    assert workloads.bursts(3, 2, gap_s=1.0, rate_in_burst_per_s=10) == pytest.approx(
        [0.0, 0.1, 0.2, 1.3, 1.4, 1.5])
    times = np.array(workloads.bursts(25, 4, gap_s=2.0, rate_in_burst_per_s=50))
    gaps = np.diff(times)
    assert len(times) == 100
    # inside a burst: 1/rate; between bursts: the quiet gap plus one in-burst spacing
    assert np.allclose(np.sort(gaps)[:96], 1 / 50) and np.allclose(np.sort(gaps)[96:], 2.0 + 1 / 50)
    assert workloads.bursts(0, 4, 1.0, 10) == [] and workloads.bursts(5, 0, 1.0, 10) == []
    assert workloads.bursts(2, 2, 0, 4) == [0.0, 0.25, 0.5, 0.75]  # no gap: a steady stream


def test_restaurant_orders_are_the_waiters():
    for args in ((20, 5.0, 2.0, 3, "x"), (40, 4.0, 1.0, 1, "order")):
        assert workloads.restaurant_orders(*args) == old_restaurant_orders(*args)
    orders = workloads.restaurant_orders(200, 4.0, 2.0, seed=5)
    assert all(1.0 <= o["cook_s"] <= 3.0 for o in orders)
    assert all(o["ready_at_s"] == pytest.approx(o["placed_at_s"] + o["cook_s"]) for o in orders)
    assert workloads.restaurant_orders(0, 4.0, 2.0) == []


@pytest.mark.parametrize("call, words", [
    (lambda: workloads.poisson(-1, 5.0), ["count", "[0, 1000000]", "events"]),
    (lambda: workloads.poisson(2.5, 5.0), ["count", "whole number", "events"]),
    (lambda: workloads.poisson(True, 5.0), ["count", "whole number"]),
    (lambda: workloads.poisson(5, 0), ["rate_per_s", "> 0", "events per second"]),
    (lambda: workloads.poisson(5, float("nan")), ["rate_per_s", "finite", "events per second"]),
    (lambda: workloads.poisson(5, 2.0, seed=-1), ["seed", ">= 0"]),
    (lambda: workloads.poisson(10**7, 2.0), ["count", "1000000"]),
    (lambda: workloads.steady(0, 1.0), ["rate_per_s", "> 0", "events per second"]),
    (lambda: workloads.steady(5, -1.0), ["duration_s", ">= 0", "seconds"]),
    (lambda: workloads.steady(1e6, 1e6), ["rate_per_s x duration_s", "units"]),
    (lambda: workloads.steady("5", 1.0), ["rate_per_s", "number"]),
    (lambda: workloads.bursts(-1, 2, 1.0, 10), ["burst_size", "events per burst"]),
    (lambda: workloads.bursts(3, -2, 1.0, 10), ["bursts", "bursts"]),
    (lambda: workloads.bursts(3, 2, -1.0, 10), ["gap_s", ">= 0", "seconds"]),
    (lambda: workloads.bursts(3, 2, 1.0, 0), ["rate_in_burst_per_s", "> 0", "events per second"]),
    (lambda: workloads.restaurant_orders(-3, 4.0, 2.0), ["count", "orders"]),
    (lambda: workloads.restaurant_orders(3, 0, 2.0), ["order_rate_per_s", "> 0", "orders per second"]),
    (lambda: workloads.restaurant_orders(3, 4.0, 0), ["cook_time_mean_s", "> 0", "seconds"]),
    (lambda: workloads.restaurant_orders(3, 4.0, 2.0, prefix=""), ["prefix", "non-empty"]),
    (lambda: workloads.restaurant_trace(5, -2.0, seed=1), ["rate_per_s", "orders per second"]),
])
def test_bad_arguments_name_the_parameter_range_and_unit(call, words):
    with pytest.raises(ConfigError) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_workloads_is_a_lazy_submodule():
    assert "workloads" in edalab.__all__ and edalab.workloads is workloads


# ------------------------------------------------------------------ data/


def documented_command() -> list[str]:
    """The regeneration command exactly as data/README.md gives it."""
    text = (DATA / "README.md").read_text()
    lines = re.findall(r"^\.venv/bin/python -m edalab\.workloads .*$", text, flags=re.M)
    assert len(lines) == 1, "data/README.md must give exactly one regeneration command"
    return shlex.split(lines[0])


def test_documented_command_reproduces_orders_csv_byte_for_byte(tmp_path):
    cmd = documented_command()
    assert "--seed" in cmd and cmd[cmd.index("--out") + 1] == "data/orders.csv"
    cmd[cmd.index("--out") + 1] = str(tmp_path / "orders.csv")
    out = subprocess.run([sys.executable, *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "orders.csv").read_bytes() == (DATA / "orders.csv").read_bytes()
    seed = int(cmd[cmd.index("--seed") + 1])
    other = workloads.restaurant_trace(120, 2.0, seed=seed + 1)
    assert not other.equals(workloads.order_trace()), "a different seed must give a different trace"


def test_orders_only_use_dishes_of_the_menu_and_stay_in_range():
    dishes = workloads.menu()
    orders = workloads.order_trace()
    assert list(dishes.columns) == list(workloads.MENU_COLUMNS)
    assert list(orders.columns) == list(workloads.ORDER_COLUMNS)
    assert 10 <= len(dishes) <= 15 and dishes["item_id"].is_unique
    assert set(dishes["category"]) == {"starter", "main", "dessert", "drink"}
    assert (dishes["price_eur"] > 0).all() and dishes["cook_time_mean_s"].between(0.1, 5.0).all()
    assert set(orders["item_id"]) <= set(dishes["item_id"])
    assert orders["order_id"].tolist() == list(range(1, len(orders) + 1))
    assert orders["placed_at_s"].is_monotonic_increasing and (orders["placed_at_s"] > 0).all()
    assert orders["table"].between(1, workloads.TABLES).all() and orders["quantity"].between(1, 3).all()
    mean_s = orders["item_id"].map(dishes.set_index("item_id")["cook_time_mean_s"])
    assert (orders["cook_time_s"] >= 0.5 * mean_s - 0.001).all()
    assert (orders["cook_time_s"] <= 1.5 * mean_s + 0.001).all()


def order_problem(raw: str, item_ids: set[str]) -> str | None:
    """What is wrong with one order payload (None: nothing), the way a consumer would check."""
    try:
        order = json.loads(raw)
    except json.JSONDecodeError:
        return "not_json"
    for field in ("order_id", "table", "item_id", "quantity"):
        if field not in order:
            return "missing_field"
    if not all(isinstance(order[f], int) and not isinstance(order[f], bool)
               for f in ("order_id", "table", "quantity")) or not isinstance(order["item_id"], str):
        return "wrong_type"
    if order["item_id"] not in item_ids:
        return "unknown_item"
    if order["quantity"] < 1:
        return "negative_quantity"
    return None


def test_each_poison_payload_is_bad_for_the_reason_it_gives_and_good_orders_pass():
    item_ids = set(workloads.menu()["item_id"])
    poison = workloads.poison_orders()
    assert {p["case"] for p in poison} == {"wrong_type", "missing_field", "unknown_item",
                                            "negative_quantity", "not_json"}
    for p in poison:
        assert p["why"].strip() and isinstance(p["payload"], str)
        assert order_problem(p["payload"], item_ids) == p["case"], p
    good = workloads.order_trace()[["order_id", "table", "item_id", "quantity"]]
    for row in good.to_dict("records"):
        assert order_problem(json.dumps({k: (v if isinstance(v, str) else int(v)) for k, v in row.items()}),
                             item_ids) is None


def test_data_dir_follows_edalab_data_dir_and_says_what_to_do_when_missing(tmp_path, monkeypatch):
    assert workloads.data_dir() == DATA  # the checkout's data/, as installed with pip install -e .
    copy = tmp_path / "copy"
    shutil.copytree(DATA, copy)
    (copy / "menu.csv").write_text((DATA / "menu.csv").read_text().replace("Tomato soup", "Pea soup"))
    monkeypatch.setenv("EDALAB_DATA_DIR", str(copy))
    assert workloads.data_dir() == copy and "Pea soup" in set(workloads.menu()["name"])
    monkeypatch.setenv("EDALAB_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="EDALAB_DATA_DIR"):
        workloads.menu()
    monkeypatch.delenv("EDALAB_DATA_DIR")
    monkeypatch.setattr(workloads, "__file__", str(tmp_path / "site-packages" / "edalab" / "workloads.py"))
    with pytest.raises(ConfigError, match=r"pip install -e \.") as info:
        workloads.data_dir()
    assert "EDALAB_DATA_DIR" in str(info.value)
