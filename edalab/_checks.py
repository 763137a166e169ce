"""Checking an experiment's parameters before anything starts (every experiment uses it).

A learner who types ``events=0``, ``methods="sse"`` or ``poll_intervals_s=[100]``
(milliseconds typed as seconds) must hear about it at once, not after a silent
default or a 104-second run. Each function returns the clean value or raises a
:class:`~edalab.ConfigError` that names the parameter, the allowed range and the
unit; a value that is allowed but far outside the sensible range gets a warning
that says the unit, before the long run starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from numbers import Real

from edalab._errors import ConfigError

__all__ = ["count", "number", "choices", "numbers", "phases", "EdalabWarning"]


class EdalabWarning(UserWarning):
    """A parameter that is allowed but probably not what was meant (a unit mix-up)."""


def count(value: object, name: str, *, minimum: int = 0, maximum: int | None = None,
          sensible_max: int | None = None, what: str = "") -> int:
    """A whole number in ``[minimum, maximum]``; warns above ``sensible_max``."""
    # value != value: NaN (int(NaN) would raise a bare ValueError); inf fails int() too
    if (isinstance(value, bool) or not isinstance(value, (int, Real)) or value != value
            or value in (float("inf"), float("-inf")) or int(value) != value):
        raise ConfigError(f"{name} must be a whole number{_of(what)}, not {value!r}.")
    value = int(value)
    _in_range(value, name, minimum, maximum, what)
    if sensible_max is not None and value > sensible_max:
        warnings.warn(f"{name}={value}{_of(what)} is far more than this experiment needs "
                      f"(up to {sensible_max} is typical): the run will take long.", EdalabWarning,
                      stacklevel=3)
    return value


def number(value: object, name: str, *, unit: str, minimum: float | None = None,
           maximum: float | None = None, positive: bool = False,
           sensible: tuple[float, float] | None = None) -> float:
    """A real number in range, with its ``unit`` named in every message.

    ``sensible`` is the (low, high) range a learner would normally use; outside it a
    warning says the unit, which catches milliseconds typed where seconds are meant.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or value != value:
        raise ConfigError(f"{name} must be a number in {unit}, not {value!r}.")
    value = float(value)
    if positive and value <= 0:
        raise ConfigError(f"{name} must be more than 0 {unit}, not {value:g}.")
    _in_range(value, name, minimum, maximum, unit)
    if sensible is not None and not sensible[0] <= value <= sensible[1]:
        warnings.warn(f"{name}={value:g} {unit} is outside the usual {sensible[0]:g}..{sensible[1]:g} "
                      f"{unit}: is the unit right? The value is in {unit}.", EdalabWarning, stacklevel=3)
    return value


def numbers(values: object, name: str, *, unit: str, **limits) -> list[float]:
    """A non-empty list of numbers (``[0.1, 0.5]``), each checked like :func:`number`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a list of numbers in {unit}, e.g. [0.1, 0.5], not {values!r}.")
    out = [number(v, f"{name}[{i}]", unit=unit, **limits) for i, v in enumerate(values)]
    if not out:
        raise ConfigError(f"{name} must list at least one value in {unit}.")
    return out


def choices(values: object, name: str, allowed: Sequence[str]) -> list[str]:
    """A non-empty list of names from ``allowed``; a single string is refused with the fix."""
    if isinstance(values, str):
        raise ConfigError(f"{name} must be a list of names, e.g. [{values!r}], not the string {values!r}. "
                          f"Allowed: {', '.join(allowed)}.")
    if not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a list of names from {', '.join(allowed)}, not {values!r}.")
    out = list(values)
    unknown = [v for v in out if v not in allowed]
    if unknown:
        raise ConfigError(f"{name}: unknown {unknown}; choose from {', '.join(allowed)}.")
    if not out:
        raise ConfigError(f"{name} must name at least one of {', '.join(allowed)}.")
    return out


def phases(quick: bool, defaults: dict[str, tuple[float, float]], **given: object) -> dict[str, float]:
    """The durations (seconds) of an outage experiment's phases, e.g. before/down/after.

    Each ``given`` value is checked like :func:`number` (more than 0 s, a warning outside
    0.5..120 s); one left as None takes its default, ``defaults[name] = (quick, full)``.
    Used by notebooks 04, 05 and 08.
    """
    return {name: number(defaults[name][0 if quick else 1] if value is None else value, name,
                         unit="seconds", positive=True, sensible=(0.5, 120))
            for name, value in given.items()}


def _of(what: str) -> str:
    return f" of {what}" if what else ""


def _in_range(value: float, name: str, minimum, maximum, unit: str) -> None:
    label = f" {unit}" if unit else ""
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}{label}, not {value:g}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}{label}, not {value:g}.")
