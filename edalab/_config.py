"""Where settings come from: argument, then ``EDALAB_*`` environment variable, then default.

The environment variables (all optional):

=============================== ==========================================================
EDALAB_KAFKA_BOOTSTRAP           use a Kafka elsewhere (``host:port[,host:port]``)
EDALAB_REDIS_URL                 use a Redis elsewhere (``redis://host:port/0``)
EDALAB_NATS_URL                  use a NATS with JetStream elsewhere (``nats://host:port``)
EDALAB_TANSU_BIN                 another Tansu binary for the embedded broker
EDALAB_REDIS_SERVER              another redis-server / valkey-server binary
EDALAB_NATS_SERVER               another nats-server binary for the embedded message queue
EDALAB_START_TIMEOUT_S           how long embedded servers may take to answer (20)
EDALAB_KAFKA_SESSION_TIMEOUT_MS  consumer-group session timeout for servers elsewhere
EDALAB_KAFKA_HEARTBEAT_MS        consumer heartbeat interval for servers elsewhere
EDALAB_STATE_DIR                 where ``edalab up`` keeps its state (~/.cache/edalab)
EDALAB_RUNS_DIR                  where experiments keep their run folders (<state dir>/runs)
EDALAB_KEEP_RUNS                 how many automatic run folders to keep (20)
EDALAB_DATA_DIR                  the restaurant's data (default: data/ of this checkout)
EDALAB_QUICK                     1: experiments run their short CI version
=============================== ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from edalab._errors import ConfigError

T = TypeVar("T")

__all__ = ["setting", "state_dir", "runs_dir", "new_run_dir", "quick_mode"]


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


def runs_dir() -> Path:
    """The one folder where experiments keep their traces: ``$EDALAB_RUNS_DIR`` or
    ``<state dir>/runs`` (``~/.cache/edalab/runs``). Printed by ``edalab doctor``."""
    return Path(setting(None, "EDALAB_RUNS_DIR", str(state_dir() / "runs")))


def new_run_dir(name: str) -> Path:
    """A fresh folder ``<runs_dir>/<name>-<time>-<random>`` for one run, created now.

    Automatic run folders are pruned to the newest ``EDALAB_KEEP_RUNS`` (20), so
    runs do not pile up; pass ``run_dir=`` to an experiment to keep one for good
    (folders elsewhere are never touched).
    """
    import shutil
    import time
    import uuid

    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    keep = setting(None, "EDALAB_KEEP_RUNS", 20, positive_int)
    path = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    (path / ".edalab-run").touch()  # marks folders that pruning may remove
    runs = sorted((p for p in root.iterdir() if p.is_dir() and (p / ".edalab-run").exists()),
                  key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep)]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def quick_mode(quick: bool | None = None) -> bool:
    """Whether experiments run their short version (CI sets EDALAB_QUICK=1)."""
    return setting(quick, "EDALAB_QUICK", False, lambda s: s.lower() in ("1", "true", "yes"))
