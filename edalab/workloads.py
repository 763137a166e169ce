"""Every schedule an experiment sends, and the restaurant's data in ``data/``.

The course's running example is a small restaurant: customers order, the kitchen
cooks, a waiter says when the food is ready, billing and stock listen. This module
is the one place that says *when* things happen in an experiment:

* send-time schedules, in seconds from the start of a run: :func:`poisson` (random
  arrivals), :func:`steady` (evenly spaced), :func:`bursts` (rush hours);
* :func:`restaurant_orders`: the evening's orders of notebook 01 (placed, cooked, ready);
* the committed data set: :func:`menu` (``data/menu.csv``), :func:`order_trace`
  (``data/orders.csv``, made by :func:`restaurant_trace`) and :func:`poison_orders`
  (``data/poison_orders.jsonl``, payloads a consumer must survive).

Every argument is checked; a wrong one raises :class:`~edalab.ConfigError` naming
the parameter, its allowed range and its unit. Zero means zero (``poisson(0, ...)``
is ``[]``), never a silent default.

``data/`` ships with the course's repository, not with the package: edalab finds it
next to the ``edalab/`` folder of an editable install (``pip install -e .`` in the
checkout, which ``scripts/setup`` does), or wherever ``EDALAB_DATA_DIR`` points.

Regenerate ``data/orders.csv`` (the exact command, seed included, is in
``data/README.md``)::

    python -m edalab.workloads --orders 120 --rate-per-s 2 --seed 2026 --out data/orders.csv
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edalab._errors import ConfigError

if TYPE_CHECKING:  # pandas is imported when a table is asked for: role processes never pay for it
    import pandas as pd

__all__ = [
    "MAX_EVENTS",
    "data_dir",
    "poisson",
    "steady",
    "bursts",
    "restaurant_orders",
    "restaurant_trace",
    "write_order_trace",
    "menu",
    "order_trace",
    "poison_orders",
    "MENU_COLUMNS",
    "ORDER_COLUMNS",
    "TABLES",
]

#: Most events one schedule may hold: far above any experiment (they send hundreds),
#: low enough that a slip of the unit (ms given as s) fails at once instead of filling memory.
MAX_EVENTS = 1_000_000
#: Columns of ``data/menu.csv``.
MENU_COLUMNS = ("item_id", "name", "category", "price_eur", "cook_time_mean_s")
#: Columns of ``data/orders.csv``.
ORDER_COLUMNS = ("order_id", "placed_at_s", "table", "item_id", "quantity", "cook_time_s")
#: Tables in the restaurant (numbered 1 .. TABLES).
TABLES = 8
#: How many portions of a dish one order line asks for, and how often (weights).
_QUANTITIES = ((1, 6), (2, 3), (3, 1))


# --------------------------------------------------------------------------------------
# Argument checks: one message shape everywhere (parameter, allowed range, unit, value)
# --------------------------------------------------------------------------------------


def _count(name: str, value: Any, unit: str = "events", low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number of {unit} in [{low}, {MAX_EVENTS}], "
                          f"not {value!r} ({type(value).__name__}).")
    if not low <= value <= MAX_EVENTS:
        raise ConfigError(f"{name} must be in [{low}, {MAX_EVENTS}] {unit}; got {value}.")
    return int(value)


def _number(name: str, value: Any, unit: str, *, positive: bool) -> float:
    """A finite real number, > 0 (``positive``) or >= 0."""
    allowed = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number {allowed} ({unit}), not {value!r}.")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be {allowed} ({unit}); got {value}.")
    return float(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"seed must be a whole number >= 0 (same seed, same schedule), not {value!r}.")
    return int(value)


def _total(name: str, events: int) -> int:
    if events > MAX_EVENTS:
        raise ConfigError(f"{name} would make {events} events, more than {MAX_EVENTS}: "
                          f"check the units (rates are per second, times in seconds).")
    return events


# --------------------------------------------------------------------------------------
# Send-time schedules (seconds from the start of a run)
# --------------------------------------------------------------------------------------


def poisson(count: int, rate_per_s: float, seed: int = 0) -> list[float]:
    """Send times (seconds from start) of ``count`` events arriving at random, ``rate_per_s`` on average.

    The gaps are exponential (a Poisson process), so the first event comes one random
    gap after the start. Random arrivals matter: the polling model (delay ≈ interval/2 +
    round trip) assumes events land at random moments relative to the polls, which a
    steady stream in step with the poller would not. Used by notebook 02 (polling vs
    push), notebook 03 (fan-out, competing consumers) and, through
    :func:`restaurant_orders`, notebook 01.

    Args:
        count: events, >= 0 (0 gives ``[]``).
        rate_per_s: mean events per second, > 0.
        seed: same seed, same times.
    """
    count = _count("count", count)
    rate_per_s = _number("rate_per_s", rate_per_s, "events per second", positive=True)
    seed = _seed(seed)
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0 / rate_per_s, size=count)).tolist()


def steady(rate_per_s: float, duration_s: float) -> list[float]:
    """Send times (seconds from start) of events evenly spaced at ``rate_per_s`` for ``duration_s``.

    One event every ``1 / rate_per_s`` seconds, the first at 0, every time in
    ``[0, duration_s)``: ``steady(4, 1.0) == [0.0, 0.25, 0.5, 0.75]``. Steady rather than
    random: "down for D seconds at R events a second" then means exactly R x D events
    waiting (notebook 04), and a pause in delivery stands out against an even stream
    (notebook 03's rebalance).

    Args:
        rate_per_s: events per second, > 0.
        duration_s: seconds, >= 0 (0 gives ``[]``).
    """
    rate_per_s = _number("rate_per_s", rate_per_s, "events per second", positive=True)
    duration_s = _number("duration_s", duration_s, "seconds", positive=False)
    # Rounded first: 30/s for 0.1 s is 3.0000000000000004 in floating point, and means 3 events.
    events = math.ceil(round(rate_per_s * duration_s, 9))
    _total("rate_per_s x duration_s", events)
    return [i / rate_per_s for i in range(events)]


def bursts(burst_size: int, bursts: int, gap_s: float, rate_in_burst_per_s: float) -> list[float]:
    """Send times (seconds from start) of ``bursts`` rushes of ``burst_size`` events each.

    Inside a burst events are evenly spaced at ``rate_in_burst_per_s``; a burst takes
    ``burst_size / rate_in_burst_per_s`` seconds, then the line is quiet for ``gap_s``
    before the next one starts. So burst ``k`` starts at
    ``k x (burst_size / rate_in_burst_per_s + gap_s)``. The shape matters for anything
    that queues: a listener that keeps up with the *mean* rate still falls behind
    during a rush and catches up in the gap (the Friday-evening rush of the restaurant);
    a broker absorbs the peak, a synchronous call chain passes it on. No notebook uses
    it yet; it is here for the lessons on load peaks and back-pressure.

    Args:
        burst_size: events per burst, >= 0 (0 gives ``[]``).
        bursts: how many bursts, >= 0 (0 gives ``[]``).
        gap_s: quiet seconds between the end of one burst and the start of the next, >= 0.
        rate_in_burst_per_s: events per second inside a burst, > 0.
    """
    burst_size = _count("burst_size", burst_size, "events per burst")
    n_bursts = _count("bursts", bursts, "bursts")
    gap_s = _number("gap_s", gap_s, "seconds", positive=False)
    rate = _number("rate_in_burst_per_s", rate_in_burst_per_s, "events per second", positive=True)
    _total("burst_size x bursts", burst_size * n_bursts)
    period_s = burst_size / rate + gap_s
    return [k * period_s + j / rate for k in range(n_bursts) for j in range(burst_size)]


def restaurant_orders(count: int, order_rate_per_s: float, cook_time_mean_s: float,
                      seed: int = 1, prefix: str = "order") -> list[dict[str, Any]]:
    """The evening's orders: when each is placed and how long it cooks (notebook 01).

    Orders arrive at random (:func:`poisson` with ``seed``, ``order_rate_per_s`` on
    average); each cooks for a time drawn uniformly between half and one and a half
    times ``cook_time_mean_s`` (from a second generator seeded ``seed + 1000``). The
    spread of cook times matters: a poller's calls per order is ``ceil(cook /
    interval)``, so its mean depends on the whole spread, not only on the mean (see
    ``waiter.expected_calls_per_order``). ``count=0``
    gives ``[]`` (no orders), never a default.

    Args:
        count: orders, >= 0.
        order_rate_per_s: orders placed per second on average, > 0.
        cook_time_mean_s: mean cooking time, seconds, > 0.
        seed: same seed, same orders.
        prefix: event keys are ``"<prefix>-<n>"`` (``n`` three digits from 000).

    Returns:
        one dict per order: ``order`` (0, 1, ...), ``key``, ``placed_at_s``, ``cook_s``
        and ``ready_at_s`` (seconds after opening).
    """
    count = _count("count", count, "orders")
    _number("order_rate_per_s", order_rate_per_s, "orders per second", positive=True)
    cook_time_mean_s = _number("cook_time_mean_s", cook_time_mean_s, "seconds", positive=True)
    seed = _seed(seed)
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError(f"prefix must be a non-empty string (keys are '<prefix>-000', ...), not {prefix!r}.")
    placed_s = poisson(count, order_rate_per_s, seed)
    import numpy as np

    rng = np.random.default_rng(seed + 1000)
    cook_s = rng.uniform(0.5 * cook_time_mean_s, 1.5 * cook_time_mean_s, size=count)
    return [dict(order=i, key=f"{prefix}-{i:03d}", placed_at_s=float(p), cook_s=float(c),
                 ready_at_s=float(p + c)) for i, (p, c) in enumerate(zip(placed_s, cook_s))]


# --------------------------------------------------------------------------------------
# The data set in data/
# --------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The folder with the restaurant's data: ``$EDALAB_DATA_DIR``, else the checkout's ``data/``.

    The default is ``data/`` next to the ``edalab/`` package folder, which is the
    repository's own ``data/`` when edalab is installed from the checkout with
    ``pip install -e .`` (what ``scripts/setup`` does).
    """
    override = os.environ.get("EDALAB_DATA_DIR", "").strip()
    folder = Path(override).expanduser() if override else Path(__file__).resolve().parent.parent / "data"
    if not (folder / "menu.csv").is_file():
        if override:
            raise ConfigError(f"EDALAB_DATA_DIR={override!r} has no menu.csv. Point it at the course's "
                              f"data/ folder (menu.csv, orders.csv, poison_orders.jsonl) or unset it.")
        raise ConfigError(f"edalab cannot find the course's data/ folder (looked for {folder / 'menu.csv'}). "
                          f"It comes with the repository, not with the package: install edalab from a "
                          f"checkout (`pip install -e .` there, or scripts/setup), or set EDALAB_DATA_DIR "
                          f"to a copy of the repository's data/ folder.")
    return folder


def _read_csv(name: str, columns: tuple[str, ...], folder: Path | None) -> "pd.DataFrame":
    import pandas as pd

    path = (Path(folder) if folder is not None else data_dir()) / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing. Restore it from the repository (git checkout -- data/), "
                          f"or regenerate it as data/README.md says.")
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{path} lacks the columns {missing}; data/README.md lists what each file holds.")
    return table


def menu(folder: str | Path | None = None) -> "pd.DataFrame":
    """The restaurant's dishes (``data/menu.csv``) as a DataFrame, one row per dish.

    Columns: ``item_id`` (``S01``, ``M01``, ...), ``name``, ``category`` (starter, main,
    dessert, drink), ``price_eur`` (euros), ``cook_time_mean_s`` (seconds: the course
    cooks in seconds, like notebook 01, so experiments finish while you watch).

    Args:
        folder: another data folder (default :func:`data_dir`).
    """
    return _read_csv("menu.csv", MENU_COLUMNS, None if folder is None else Path(folder))


def order_trace(folder: str | Path | None = None) -> "pd.DataFrame":
    """The committed order trace (``data/orders.csv``) as a DataFrame, one row per order.

    Columns: ``order_id`` (1, 2, ...), ``placed_at_s`` (seconds after opening),
    ``table`` (1 .. :data:`TABLES`), ``item_id`` (a dish of :func:`menu`), ``quantity``
    (portions, 1 .. 3) and ``cook_time_s`` (seconds). Made by :func:`restaurant_trace`;
    data/README.md has the command and seed that reproduce it byte for byte.

    Args:
        folder: another data folder (default :func:`data_dir`).
    """
    return _read_csv("orders.csv", ORDER_COLUMNS, None if folder is None else Path(folder))


def poison_orders(folder: str | Path | None = None) -> list[dict[str, str]]:
    """Bad order payloads (``data/poison_orders.jsonl``) a consumer must survive.

    One dict per line: ``case`` (a short name, e.g. ``"negative_quantity"``), ``why``
    (what is wrong with it) and ``payload`` (the exact text a producer would send as
    the message value, UTF-8; one of them is deliberately not JSON). A good payload is
    a row of :func:`order_trace` as JSON: ``{"order_id", "table", "item_id", "quantity"}``.

    Args:
        folder: another data folder (default :func:`data_dir`).
    """
    path = (Path(folder) if folder is not None else data_dir()) / "poison_orders.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} is missing. Restore it from the repository (git checkout -- data/).")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} line {number} is not JSON ({exc}); each line wraps one bad "
                                  f"payload as a string, see data/README.md.") from None
    return rows


def restaurant_trace(orders: int, rate_per_s: float, seed: int,
                     dishes: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Generate an order trace like ``data/orders.csv``: same arguments, same table.

    Orders arrive at random (exponential gaps, ``rate_per_s`` on average); each picks
    a table, a dish of the menu (each equally likely), a quantity (1 portion 60 %, 2 30 %,
    3 10 %) and a cook time uniform between half and one and a half times the dish's
    ``cook_time_mean_s``. Times are rounded to the millisecond.

    Only Python's ``random.Random(seed).random()`` drives it: Python guarantees that
    sequence for a seed across versions, which NumPy does not promise for its
    generators, so the committed file stays reproducible byte for byte.

    Args:
        orders: orders, >= 0.
        rate_per_s: orders per second on average, > 0.
        seed: same seed (and menu), same trace.
        dishes: the menu to draw from (default :func:`menu`).
    """
    import pandas as pd

    orders = _count("orders", orders, "orders")
    rate_per_s = _number("rate_per_s", rate_per_s, "orders per second", positive=True)
    rng = random.Random(_seed(seed))
    dishes = menu() if dishes is None else dishes
    items = list(zip(dishes["item_id"], dishes["cook_time_mean_s"]))
    if not items:
        raise ConfigError("The menu has no dishes; an order trace needs at least one.")
    weights_total = sum(w for _, w in _QUANTITIES)

    def pick(choices: list, u: float):
        return choices[min(int(u * len(choices)), len(choices) - 1)]

    def quantity(u: float) -> int:
        edge = 0.0
        for value, weight in _QUANTITIES:
            edge += weight / weights_total
            if u < edge:
                return value
        return _QUANTITIES[-1][0]

    tables = list(range(1, TABLES + 1))
    rows, at_s = [], 0.0
    for order_id in range(1, orders + 1):
        at_s += -math.log(1.0 - rng.random()) / rate_per_s  # 1 - u is in (0, 1]: no log(0)
        item_id, cook_mean_s = pick(items, rng.random())
        rows.append(dict(order_id=order_id, placed_at_s=round(at_s, 3),
                         table=pick(tables, rng.random()), item_id=item_id,
                         quantity=quantity(rng.random()),
                         cook_time_s=round(float(cook_mean_s) * (0.5 + rng.random()), 3)))
    return pd.DataFrame(rows, columns=list(ORDER_COLUMNS))


def write_order_trace(path: str | Path, trace: "pd.DataFrame") -> Path:
    """Write a trace from :func:`restaurant_trace` as CSV: ``\\n`` line ends, times with 3 decimals.

    The fixed text format is what makes "same seed, same file" hold byte for byte.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trace.to_csv(path, index=False, float_format="%.3f", lineterminator="\n")
    return path


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edalab.workloads",
        description="Write the restaurant's order trace (data/orders.csv) from a seed. "
                    "data/README.md has the exact command that made the committed file.")
    parser.add_argument("--orders", type=int, required=True, help="number of orders (>= 0)")
    parser.add_argument("--rate-per-s", type=float, required=True, help="mean orders per second (> 0)")
    parser.add_argument("--seed", type=int, required=True, help="same seed, same file")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument("--menu", help="menu.csv to draw dishes from (default: data/menu.csv)")
    args = parser.parse_args(argv)
    try:
        dishes = _read_csv(Path(args.menu).name, MENU_COLUMNS, Path(args.menu).parent) if args.menu else None
        trace = restaurant_trace(args.orders, args.rate_per_s, args.seed, dishes)
    except ConfigError as exc:
        print(f"edalab.workloads: {exc}", file=sys.stderr)
        return 2
    if args.out:
        print(f"Wrote {len(trace)} orders to {write_order_trace(args.out, trace)}", file=sys.stderr)
    else:
        trace.to_csv(sys.stdout, index=False, float_format="%.3f", lineterminator="\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
