"""Where settings come from: argument, then ``EDALAB_*`` environment variable, then default.

The environment variables (all optional):

=============================== ==========================================================
EDALAB_KAFKA_BOOTSTRAP           use a Kafka elsewhere (``host:port[,host:port]``)
EDALAB_REDIS_URL                 use a Redis elsewhere (``redis://host:port/0``)
EDALAB_TANSU_BIN                 another Tansu binary for the embedded broker
EDALAB_REDIS_SERVER              another redis-server / valkey-server binary
EDALAB_START_TIMEOUT_S           how long embedded servers may take to answer (20)
EDALAB_KAFKA_SESSION_TIMEOUT_MS  consumer-group session timeout for servers elsewhere
EDALAB_KAFKA_HEARTBEAT_MS        consumer heartbeat interval for servers elsewhere
EDALAB_STATE_DIR                 where ``edalab up`` keeps its state (~/.cache/edalab)
EDALAB_QUICK                     1: experiments run their short CI version
=============================== ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from edalab._errors import ConfigError

T = TypeVar("T")

__all__ = ["setting", "state_dir", "quick_mode"]


def setting(value: T | None, env: str, default: T, parse: Callable[[str], T] = str) -> T:
    """Resolve one setting: the argument if given, else ``$env`` parsed, else ``default``."""
    if value is not None:
        return value
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{env}={raw!r} is not valid ({exc}). Fix or unset it.") from None


def positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def state_dir() -> Path:
    """Folder for ``edalab up``'s state file and server logs."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edalab"
    return Path(setting(None, "EDALAB_STATE_DIR", str(default)))


def quick_mode(quick: bool | None = None) -> bool:
    """Whether experiments run their short version (CI sets EDALAB_QUICK=1)."""
    return setting(quick, "EDALAB_QUICK", False, lambda s: s.lower() in ("1", "true", "yes"))
