"""Honest trace recording across role processes (used by every measuring notebook, 02-05).

Producers and consumers run as separate OS processes that may be SIGKILLed at any
moment. Each role appends to its own trace file in one shared *run directory*;
afterwards :class:`Recorder` reads every file and turns them into raw samples
(:meth:`Recorder.samples`) and one summary row per consumer group
(:func:`summarize`). Lost, duplicated and out-of-order events are always
*counted from the traces*, never assumed to be zero.

Files in a run directory (one writer per file, so no locking between processes)::

    produced-<role>.csv   one row per event a producer published   (ProducerTrace)
    received-<role>.csv   one row per event a consumer received    (ConsumerTrace)
    counters-<role>.json  a consumer's request/byte counters        (ConsumerTrace.write_counters)
    stats-<role>.json     per-role numbers from the process manager (Recorder.write_role_stats)
    notes-<role>.jsonl    what a role said happened: commits, claims... (Recorder.note)
    lifecycle.jsonl       what the owner did to roles: start, ready, kill... (Recorder.lifecycle)
    table-<name>-<role>.csv  any other table a role keeps, e.g. lag readings (Recorder.table_writer)

No experiment writes a file of its own next to these: everything goes through the
Recorder, so one place knows what a run directory holds and how to read it back.
:class:`DeliveryWatcher` follows the traces while a run goes on, reading only what
is new, so waiting for "N events delivered" stays cheap at 100k events.

CSV rows are flushed to the operating system after every row, so a SIGKILL loses
at most the row being written; a reader drops an unterminated last line. JSON files
are replaced atomically (write a temporary file, then ``os.replace``), so a reader
sees the old or the new version, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edalab._lazy import lazy_module

# Role processes only write traces; pandas is imported when a trace is read.
np = lazy_module("numpy")
pd = lazy_module("pandas")

from edalab._errors import ConfigError, ExperimentError
from edalab._events import Event
from edalab.transports._base import Counters, Delivery

__all__ = [
    "PRODUCED_COLUMNS",
    "RECEIVED_COLUMNS",
    "SUMMARY_COLUMNS",
    "ConsumerTrace",
    "DeliveryWatcher",
    "ProducerTrace",
    "Recorder",
    "TraceWriter",
    "summarize",
]

PRODUCED_COLUMNS: tuple[str, ...] = (
    "role", "event_id", "type", "key", "seq", "producer", "produced_at_ns",
)
RECEIVED_COLUMNS: tuple[str, ...] = (
    "role", "group", "event_id", "key", "seq", "producer", "produced_at_ns", "received_at_ns",
)
_INT_COLUMNS = frozenset({"seq", "produced_at_ns", "received_at_ns"})
_COUNTER_FIELDS: tuple[str, ...] = ("requests", "empty_responses", "bytes_received")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "members",
    "produced",
    "delivered",
    "lost",
    "unexpected",
    "duplicated",
    "out_of_order",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    *_COUNTER_FIELDS,
    "requests_per_event",
    "empty_per_event",
    "cpu_s",
)

# Role names become file names; keep them to characters every file system accepts.
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# How far back to look at once for the last complete line of a trace file.
_TAIL_CHUNK_BYTES = 64 * 1024


def _check_role(role: str) -> str:
    if not isinstance(role, str) or not _ROLE_NAME.match(role):
        raise ConfigError(
            f"role name {role!r} cannot be used in a trace file name; use letters, digits, "
            "'_', '.' or '-' (starting with a letter or digit), e.g. 'consumer-1'."
        )
    return role


# --------------------------------------------------------------------------- writing


def _complete_length(path: Path) -> int:
    """Byte length of ``path`` up to and including its last newline (0 if it has none)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK_BYTES)
            f.seek(start)
            chunk = f.read(pos - start)
            newline_at = chunk.rfind(b"\n")
            if newline_at >= 0:
                return start + newline_at + 1
            pos = start
        return 0


class TraceWriter:
    """Append-only CSV writer for one role's trace file (notebooks 02-05).

    Every :meth:`write` is flushed to the operating system before it returns, so a
    process killed with SIGKILL loses at most the row it was writing. Reopening a
    file left behind by a killed process first cuts off its unterminated last
    line, so the next row starts on a line of its own; the header is written only
    when the file is new (or was killed before its header was complete).

    Args:
        path: the CSV file; its directory must exist.
        fieldnames: the columns, in order; every row must have exactly these keys.

    Raises:
        ConfigError: the file exists with different columns (use a fresh run directory).
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str]) -> None:
        self.path = Path(path)
        self.fieldnames = tuple(fieldnames)
        header = ",".join(self.fieldnames) + "\n"
        if self.path.exists():
            complete_bytes = _complete_length(self.path)
            if complete_bytes != self.path.stat().st_size:
                # A killed writer left half a row; a new row appended to it would
                # corrupt both, so drop the half row (it was never complete).
                os.truncate(self.path, complete_bytes)
            if complete_bytes:
                with open(self.path, encoding="utf-8", newline="") as f:
                    existing = f.readline()
                if existing != header:
                    raise ConfigError(
                        f"trace file {self.path} has columns {existing.strip()!r}, expected "
                        f"{header.strip()!r}; record each run into a fresh run directory."
                    )
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._lock = threading.Lock()
        self._csv = csv.writer(self._file, lineterminator="\n")
        if self._file.tell() == 0:
            self._file.write(header)
            self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (a dict with exactly the writer's fieldnames) and flush it."""
        if row.keys() != set(self.fieldnames):
            missing = sorted(set(self.fieldnames) - row.keys())
            extra = sorted(row.keys() - set(self.fieldnames))
            raise ConfigError(
                f"row for {self.path.name} has missing columns {missing} and unknown "
                f"columns {extra}; pass exactly {list(self.fieldnames)}."
            )
        # One string per row, so the row reaches the OS in as few writes as possible.
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([row[name] for name in self.fieldnames])
        with self._lock:
            try:
                self._file.write(buffer.getvalue())
                self._file.flush()
            except OSError as exc:  # ENOSPC (disk full), EFBIG (a size limit), EIO...
                raise ExperimentError(
                    f"Could not write the run's trace {self.path} ({exc.strerror or exc}). The disk "
                    f"holding the run folder is full or limited: free some space, or move the runs "
                    f"elsewhere with EDALAB_RUNS_DIR (or run_dir=)."
                ) from exc

    def close(self) -> None:
        """Close the file (rows are already with the OS; closing loses nothing)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_json_atomically(path: Path, values: dict[str, Any]) -> None:
    # The temporary file starts with "." and ends in ".tmp" so that a reader's
    # glob never picks up one a killed writer left behind.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f, sort_keys=True)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class ProducerTrace:
    """One producer role's trace: call :meth:`record` after ``publish`` returned.

    Recording after publishing means an event counts as produced only once the
    transport accepted it, so a lost event is the transport's loss, not the
    producer's. Created by :meth:`Recorder.producer_trace`.
    """

    def __init__(self, path: Path, role: str) -> None:
        self.role = role
        self.path = path
        self._writer = TraceWriter(path, PRODUCED_COLUMNS)

    def record(self, event: Event) -> None:
        """Append one produced event (times in ns since the epoch, as in the event)."""
        self._writer.write(
            {
                "role": self.role,
                "event_id": event.id,
                "type": event.type,
                "key": event.key,
                "seq": event.seq,
                "producer": event.producer,
                "produced_at_ns": event.produced_at_ns,
            }
        )

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ProducerTrace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConsumerTrace:
    """One consumer role's trace and counters; created by :meth:`Recorder.consumer_trace`.

    ``group`` names the consumer group: members of one competing-consumer group
    share it and are summarised together; a consumer on its own is its own group.
    """

    def __init__(self, path: Path, counters_path: Path, role: str, group: str) -> None:
        self.role = role
        self.group = group
        self.path = path
        self.counters_path = counters_path
        self._writer = TraceWriter(path, RECEIVED_COLUMNS)

    def record(self, delivery: Delivery) -> None:
        """Append one receipt (every receipt, including redeliveries)."""
        event = delivery.event
        self._writer.write(
            {
                "role": self.role,
                "group": self.group,
                "event_id": event.id,
                "key": event.key,
                "seq": event.seq,
                "producer": event.producer,
                "produced_at_ns": event.produced_at_ns,
                "received_at_ns": delivery.received_at_ns,
            }
        )

    def write_counters(self, counters: Counters, **extra: Any) -> None:
        """Replace ``counters-<role>.json`` with the subscriber's counters so far.

        Call it periodically, not only at the end: a killed consumer keeps its last
        written counters. ``extra`` adds numbers such as ``cpu_s`` (CPU seconds).
        """
        clash = sorted({"role", "group", *_COUNTER_FIELDS} & extra.keys())
        if clash:
            raise ConfigError(f"extra counters {clash} would overwrite built-in fields; rename them.")
        values = {"role": self.role, "group": self.group, **counters.to_dict(), **extra}
        _write_json_atomically(self.counters_path, values)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ConsumerTrace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- reading


def _empty_table(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {name: pd.Series(dtype="int64" if name in _INT_COLUMNS else "str") for name in columns}
    )


def _read_trace(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Rows of one trace file, without an unterminated last line (a killed writer's)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _empty_table(columns)
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return _empty_table(columns)
    table = pd.read_csv(
        io.BytesIO(data),
        dtype=str,
        keep_default_na=False,  # an event id or key "NA" is a string, not a missing value
        na_filter=False,
        on_bad_lines="skip",
        encoding="utf-8",
    )
    absent = [name for name in columns if name not in table.columns]
    if absent:
        raise ConfigError(
            f"trace file {path} lacks columns {absent}; it was not written by this "
            "version of edalab. Record into a fresh run directory."
        )
    table = table[list(columns)]
    bad = pd.Series(False, index=table.index)
    for name in columns:
        if name in _INT_COLUMNS:
            numbers = pd.to_numeric(table[name], errors="coerce")
            bad |= numbers.isna()
            table[name] = numbers
    if bad.any():
        # Only a torn write should produce these; say so instead of hiding it.
        warnings.warn(
            f"{path}: skipped {int(bad.sum())} unreadable row(s); the file was damaged "
            "in the middle, not just cut off at the end.",
            stacklevel=3,
        )
        table = table[~bad]
    return table.astype({name: "int64" for name in columns if name in _INT_COLUMNS}).reset_index(
        drop=True
    )


def _read_traces(paths: Iterable[Path], columns: Sequence[str]) -> pd.DataFrame:
    tables = [_read_trace(p, columns) for p in sorted(paths)]
    tables = [t for t in tables if len(t)]
    if not tables:
        return _empty_table(columns)
    return pd.concat(tables, ignore_index=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _mark_receipts(produced: pd.DataFrame, received: pd.DataFrame) -> pd.DataFrame:
    """``received`` plus ``latency_ms``, ``duplicate`` (per role) and ``unexpected``."""
    samples = received.copy()
    if "group" not in samples.columns:
        samples["group"] = samples["role"]
    samples["latency_ms"] = (samples["received_at_ns"] - samples["produced_at_ns"]) / 1e6
    # Row order within a role is the order that role received events in.
    samples["duplicate"] = samples.duplicated(subset=["role", "event_id"], keep="first")
    samples["unexpected"] = ~samples["event_id"].isin(produced["event_id"])
    return samples


# --------------------------------------------------------------------------- summarising


def _sum_over_members(
    counters: pd.DataFrame | None, members: Sequence[str], column: str
) -> float:
    """Sum of ``column`` over ``members``; NaN unless every member reported a value.

    A sum over part of a group would look like a measurement and undercount it.
    """
    if not members or counters is None or column not in counters.columns:
        return float("nan")
    values = counters.set_index("role")[column].reindex(list(members))
    values = pd.to_numeric(values, errors="coerce")
    if values.isna().any():
        return float("nan")
    return float(values.sum())


def summarize(
    produced: pd.DataFrame,
    received: pd.DataFrame,
    counters: pd.DataFrame | None = None,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per consumer group: what was lost, duplicated, reordered and how late.

    Used by :meth:`Recorder.summary` (notebooks 02-05); a pure function so it can
    be checked on hand-made tables.

    Args:
        produced: one row per produced event, with at least ``event_id``.
        received: one row per receipt, with ``role``, ``group`` (defaults to
            ``role``), ``event_id``, ``key``, ``seq``, ``producer``,
            ``produced_at_ns``, ``received_at_ns``. **Rows of one role must be in
            the order that role received them** (trace files are).
        counters: one row per role with ``role``, optionally ``group`` and any of
            ``requests``, ``empty_responses``, ``bytes_received``, ``cpu_s``.
        groups: groups to report even if they received nothing (they lost everything).

    Returns:
        A DataFrame indexed by ``group`` with :data:`SUMMARY_COLUMNS`:

        - ``members``: roles seen in the group (in ``received`` or ``counters``).
        - ``produced``: distinct produced event ids.
        - ``delivered``: distinct produced events that at least one member received.
        - ``lost``: produced events no member received (``delivered + lost == produced``).
        - ``unexpected``: distinct event ids received but never recorded as
          produced (e.g. left in a topic by an earlier run). They are excluded
          from every other column.
        - ``duplicated``: receipts beyond the first per event within the group,
          including one event received by two members of a competing group.
        - ``out_of_order``: for each member, walk its first receipts of each event
          in the order it received them; count a receipt when its ``seq`` is lower
          than the highest ``seq`` that member already received for the same
          ``(key, producer)``. Summed over members. (A member's own redeliveries
          are duplicates, not reorderings; two members of a competing group are
          not compared with each other.)
        - ``latency_p50_ms``, ``latency_p90_ms``, ``latency_p99_ms``,
          ``latency_mean_ms``: ``(received_at_ns - produced_at_ns) / 1e6`` over the
          group's first receipt of each event (the earliest ``received_at_ns``);
          percentiles by numpy's default ``"linear"`` method (Hyndman-Fan type 7).
          NaN when nothing was delivered.
        - ``requests``, ``empty_responses``, ``bytes_received``, ``cpu_s``: summed
          over members; NaN unless every member reported the value.
        - ``requests_per_event``, ``empty_per_event``: per delivered event; NaN
          when ``delivered == 0``.
    """
    received = _mark_receipts(produced, received)
    produced_ids = pd.unique(produced["event_id"])
    produced_count = len(produced_ids)

    if counters is not None:
        counters = counters.copy()
        role_to_group = received.drop_duplicates("role").set_index("role")["group"]
        if "group" not in counters.columns:
            counters["group"] = np.nan
        # A member killed before its first receipt still has a group in its counters;
        # a stats-only row takes its group from what the role received.
        counters["group"] = counters["group"].where(
            counters["group"].notna(), counters["role"].map(role_to_group)
        )

    seen_groups = set(received["group"])
    if counters is not None:
        seen_groups |= set(counters["group"].dropna())
    ordered_groups = list(dict.fromkeys([*(groups or []), *sorted(seen_groups)]))

    expected = received[~received["unexpected"]]
    first_per_member = expected[~expected["duplicate"]].copy()
    highest_before = first_per_member.groupby(
        ["group", "role", "key", "producer"], sort=False
    )["seq"].transform(lambda seq: seq.cummax().shift())
    first_per_member["out_of_order"] = first_per_member["seq"] < highest_before

    rows = []
    for group in ordered_groups:
        receipts = expected[expected["group"] == group]
        members = list(dict.fromkeys(received.loc[received["group"] == group, "role"]))
        if counters is not None:
            members += [r for r in counters.loc[counters["group"] == group, "role"] if r not in members]
        delivered = int(receipts["event_id"].nunique())
        first_in_group = receipts.sort_values("received_at_ns", kind="stable").drop_duplicates(
            "event_id"
        )
        latencies_ms = first_in_group["latency_ms"].to_numpy(dtype=float)
        if len(latencies_ms):
            p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
            mean = float(latencies_ms.mean())
        else:
            p50 = p90 = p99 = mean = float("nan")
        row: dict[str, Any] = {
            "group": group,
            "members": len(members),
            "produced": produced_count,
            "delivered": delivered,
            "lost": produced_count - delivered,
            "unexpected": int(
                received.loc[(received["group"] == group) & received["unexpected"], "event_id"].nunique()
            ),
            "duplicated": len(receipts) - delivered,
            "out_of_order": int(first_per_member.loc[first_per_member["group"] == group, "out_of_order"].sum()),
            "latency_p50_ms": float(p50),
            "latency_p90_ms": float(p90),
            "latency_p99_ms": float(p99),
            "latency_mean_ms": mean,
        }
        for name in (*_COUNTER_FIELDS, "cpu_s"):
            row[name] = _sum_over_members(counters, members, name)
        per_event = (lambda total: total / delivered) if delivered else (lambda total: float("nan"))
        row["requests_per_event"] = per_event(row["requests"])
        row["empty_per_event"] = per_event(row["empty_responses"])
        rows.append(row)

    if not rows:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS), index=pd.Index([], name="group"))
    return pd.DataFrame(rows).set_index("group")[list(SUMMARY_COLUMNS)]


# --------------------------------------------------------------------------- the recorder


class Recorder:
    """The traces of one run, kept in ``run_dir`` (created if needed); notebooks 02-05.

    Every role process makes its own ``Recorder(run_dir)`` and opens its own trace;
    the parent reads everything back with :meth:`produced`, :meth:`received`,
    :meth:`counters`, :meth:`samples` and :meth:`summary`. Reading is safe while
    roles are still writing and after they were killed: unterminated last lines
    and roles that never started (no file) are simply absent.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, not a folder, no space: say so, not a deep traceback
            raise ConfigError(
                f"The run directory {str(run_dir)!r} cannot be created ({type(exc).__name__}: "
                f"{exc.strerror or exc}). Pass run_dir= a writable folder, or leave it out to "
                f"use the default runs folder.") from None

    # -- writing (in the role processes)

    def producer_trace(self, role: str) -> ProducerTrace:
        """Open (append to) ``produced-<role>.csv``."""
        _check_role(role)
        return ProducerTrace(self.run_dir / f"produced-{role}.csv", role)

    def consumer_trace(self, role: str, group: str | None = None) -> ConsumerTrace:
        """Open (append to) ``received-<role>.csv``; ``group`` defaults to ``role``."""
        _check_role(role)
        return ConsumerTrace(
            self.run_dir / f"received-{role}.csv",
            self.run_dir / f"counters-{role}.json",
            role,
            role if group is None else group,
        )

    def write_role_stats(self, role: str, **values: Any) -> None:
        """Merge ``values`` (e.g. ``cpu_s`` in CPU seconds) into ``stats-<role>.json``.

        Meant for whoever manages the role processes and measures them from outside.
        Values given here take precedence over a consumer's own counters extras of
        the same name in :meth:`counters`, because an outside measurement still
        covers a role that was killed before it reported.
        """
        _check_role(role)
        if "role" in values:
            raise ConfigError("'role' is the file's key; pass the role as the first argument only.")
        path = self.run_dir / f"stats-{role}.json"
        merged = {**(_read_json(path) or {}), **values, "role": role}
        _write_json_atomically(path, merged)

    def role_stats(self, role: str) -> dict[str, Any]:
        """What ``stats-<role>.json`` holds (empty when the role wrote none)."""
        _check_role(role)
        return _read_json(self.run_dir / f"stats-{role}.json") or {}

    # -- reading (in the parent, afterwards or live)

    def produced(self) -> pd.DataFrame:
        """All produced events: columns ``role, event_id, type, key, seq, producer, produced_at_ns``."""
        return _read_traces(self.run_dir.glob("produced-*.csv"), PRODUCED_COLUMNS)

    def received(self) -> pd.DataFrame:
        """All receipts, each role's in the order received: ``role, group, event_id, key,
        seq, producer, produced_at_ns, received_at_ns`` (times in ns since the epoch)."""
        return _read_traces(self.run_dir.glob("received-*.csv"), RECEIVED_COLUMNS)

    def counters(self) -> pd.DataFrame:
        """One row per role with counters or stats: ``role, group, requests,
        empty_responses, bytes_received`` plus any extras (e.g. ``cpu_s``); NaN where
        a role reported nothing."""
        by_role: dict[str, dict[str, Any]] = {}
        for path in sorted(self.run_dir.glob("counters-*.json")):
            values = _read_json(path)
            if values is not None:
                by_role.setdefault(values["role"], {}).update(values)
        for path in sorted(self.run_dir.glob("stats-*.json")):
            values = _read_json(path)
            if values is not None:
                by_role.setdefault(values["role"], {}).update(values)
        base = ["role", "group", *_COUNTER_FIELDS]
        table = pd.DataFrame(list(by_role.values()))
        for name in base:
            if name not in table.columns:
                table[name] = pd.Series(dtype=float) if name in _COUNTER_FIELDS else pd.Series(dtype=object)
        extras = sorted(c for c in table.columns if c not in base)
        return table[base + extras].sort_values("role", ignore_index=True)

    def samples(self) -> pd.DataFrame:
        """One row per receipt (duplicates included): the :meth:`received` columns plus
        ``latency_ms`` (float, ms), ``duplicate`` (True for a role's 2nd+ receipt of an
        event) and ``unexpected`` (True when the event was never recorded as produced)."""
        return _mark_receipts(self.produced(), self.received())

    def summary(self, groups: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-group summary of this run; see :func:`summarize` for every column.

        Receipts of events that no producer trace records are ``unexpected``, not
        ``delivered``; when there are any, a warning says why, since the usual cause is
        a producer that published without recording (not through ``ctx.recorder.producer_trace``).
        """
        table = summarize(self.produced(), self.received(), self.counters(), groups)
        unexpected = int(table["unexpected"].sum()) if len(table) else 0
        if unexpected:
            from edalab._checks import EdalabWarning

            produced = int(table["produced"].iloc[0])
            warnings.warn(
                f"{unexpected} received event(s) in {self.run_dir} were never recorded as produced "
                f"(produced: {produced}), so they count as 'unexpected', not 'delivered'. Either a "
                f"producer published without recording its events (record each one with "
                f"ctx.recorder.producer_trace(ctx.name).record(event) after publishing, as "
                f"edalab.roles.produce does), or the topic held events from an earlier run "
                f"(use a fresh topic: lab.transport(...) makes one).", EdalabWarning, stacklevel=2)
        return table


    # -- notes, lifecycle and other tables: every other file a run writes

    def note(self, role: str, what: str, **values: Any) -> None:
        """Append one line ``{"what", "at_ns", **values}`` to ``notes-<role>.jsonl``.

        Written by the role itself (``ctx.note`` in a role body): a commit, a claim of
        pending work, a retry. Flushed at once, so a SIGKILL loses at most that line.
        """
        _check_role(role)
        _append_jsonl(self.run_dir / f"notes-{role}.jsonl", {"what": what, "at_ns": time.time_ns(), **values})

    def notes(self, role: str | None = None) -> pd.DataFrame:
        """Every note (or one role's): columns ``role, what, at_ns`` plus the values given."""
        pattern = f"notes-{_check_role(role)}.jsonl" if role else "notes-*.jsonl"
        rows = [{"role": path.name[len("notes-"):-len(".jsonl")], **line}
                for path in sorted(self.run_dir.glob(pattern)) for line in _read_jsonl(path)]
        return _rows_table(rows, ["role", "what", "at_ns"])

    def log_lifecycle(self, role: str, what: str, **values: Any) -> None:
        """The owner's record of what it did to a role (``started``, ``ready``, ``killed``...).

        Only the process that owns the roles writes ``lifecycle.jsonl`` (the
        :class:`edalab.Scenario`), so the file has one writer like every other.
        """
        _check_role(role)
        _append_jsonl(self.run_dir / "lifecycle.jsonl",
                      {"role": role, "what": what, "at_ns": time.time_ns(), **values})

    def lifecycle(self) -> pd.DataFrame:
        """What the owner did to each role, in order: ``role, what, at_ns`` (+ values)."""
        return _rows_table(_read_jsonl(self.run_dir / "lifecycle.jsonl"), ["role", "what", "at_ns"])

    def table_writer(self, role: str, name: str, columns: Sequence[str]) -> TraceWriter:
        """A crash-safe CSV writer for ``table-<name>-<role>.csv`` (one writer per role)."""
        _check_role(role)
        _check_role(name)
        return TraceWriter(self.run_dir / f"table-{name}-{role}.csv", ["role", *columns])

    def table(self, name: str) -> pd.DataFrame:
        """Every role's rows of table ``name``, with a ``role`` column; numbers parsed."""
        _check_role(name)
        tables = []
        for path in sorted(self.run_dir.glob(f"table-{name}-*.csv")):
            data = path.read_bytes()
            data = data[: data.rfind(b"\n") + 1]
            if data.count(b"\n") > 1:
                tables.append(pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""]))
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["role"])

    def watch(self) -> "DeliveryWatcher":
        """A :class:`DeliveryWatcher` on this run directory (reads only what is new)."""
        return DeliveryWatcher(self.run_dir)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    # One write call per line with O_APPEND: a line is never interleaved or half there
    # unless the writer was killed inside this call (the reader skips such a line).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # the last piece is unterminated
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _rows_table(rows: list[dict[str, Any]], first: Sequence[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for name in first:
        if name not in table.columns:
            table[name] = pd.Series(dtype="int64" if name == "at_ns" else object)
    rest = [c for c in table.columns if c not in first]
    return table[[*first, *rest]]


class DeliveryWatcher:
    """Counts distinct events produced and delivered while a run goes on (notebooks 01-12).

    Each :meth:`update` reads only the bytes appended to the trace files since the
    last call (complete lines only), so polling it every few milliseconds costs
    nothing like re-reading whole traces, even at 100k events. Used by
    :meth:`edalab.Run.until_delivered` and the run's progress bar.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._offsets: dict[Path, int] = {}
        self._produced: set[str] = set()
        self._by_role: dict[str, set[str]] = {}
        self._group_of: dict[str, str] = {}

    def _new_rows(self, path: Path) -> Iterator[list[str]]:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return []
        data = data[: data.rfind(b"\n") + 1]
        if not data:
            return iter(())
        self._offsets[path] = offset + len(data)
        # Parsed lazily, row by row: a burst of 100k new rows never exists as 100k lists.
        rows = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
        if offset == 0:
            next(rows, None)  # the header
        return rows

    def update(self) -> "DeliveryWatcher":
        """Read what was appended since the last call."""
        event_at = PRODUCED_COLUMNS.index("event_id")
        for path in self.run_dir.glob("produced-*.csv"):
            # interned: the id a producer and a consumer both hold is one string in memory
            self._produced.update(sys.intern(row[event_at]) for row in self._new_rows(path)
                                  if len(row) > event_at)
        role_at, group_at, id_at = (RECEIVED_COLUMNS.index(c) for c in ("role", "group", "event_id"))
        for path in self.run_dir.glob("received-*.csv"):
            for row in self._new_rows(path):
                if len(row) == len(RECEIVED_COLUMNS):
                    self._by_role.setdefault(row[role_at], set()).add(sys.intern(row[id_at]))
                    self._group_of[row[role_at]] = row[group_at]
        return self

    @property
    def produced(self) -> int:
        """Distinct events the producers recorded so far."""
        return len(self._produced)

    def delivered(self, *, group: str | None = None, roles: Sequence[str] | None = None) -> int:
        """Distinct events received by ``roles`` (or the members of ``group``, or anyone).

        Receipts of events no producer recorded (leftovers of an earlier run) are
        counted too; the summary tells them apart as ``unexpected``.
        """
        chosen = [r for r in self._by_role
                  if (roles is None or r in roles) and (group is None or self._group_of[r] == group)]
        if len(chosen) == 1:
            return len(self._by_role[chosen[0]])
        return len(set().union(*(self._by_role[r] for r in chosen))) if chosen else 0

    def delivered_each(self, roles: Sequence[str]) -> int:
        """The fewest distinct events any one of ``roles`` received (for "everyone got N")."""
        return min((len(self._by_role.get(r, ())) for r in roles), default=0)
