"""The course's claims, and the verdict each notebook's run gave on this machine.

Every lesson tests one claim made for event-driven architecture. At its end the
notebook records what its own run showed with :func:`record_verdict`; notebook 12's
closing table (:func:`verdicts`) collects those records, so the table carries this
machine's numbers, not numbers copied into prose. A lesson not run yet shows as
"not run yet" rather than a made-up verdict.

Records live in one JSON file under edalab's state folder (``~/.cache/edalab``,
moved by ``EDALAB_STATE_DIR``), one entry per notebook, the newest run winning.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edalab._config import quick_mode, state_dir
from edalab._errors import ConfigError

__all__ = ["CLAIMS", "VERDICTS", "Claim", "record_verdict", "verdicts", "verdicts_file"]


@dataclass(frozen=True)
class Claim:
    """One claim of the course: the lesson that tests it and the words people use."""

    notebook: str
    title: str
    claim: str


#: The claims, in course order (the notebooks' own "The claim." lines, shortened).
CLAIMS: tuple[Claim, ...] = (
    Claim("01", "request/response vs events",
          "A waiter who keeps asking the kitchen wastes calls; events tell you when it happens."),
    Claim("02", "polling vs push", "Push beats polling: fewer wasted calls and less delay."),
    Claim("03", "fan-out and competing consumers",
          "Many services can subscribe to the same event without the producer knowing them."),
    Claim("04", "when the listener is down",
          "Messages pile up in the topic while a listener is down and are delivered later."),
    Claim("05", "just expose a POST endpoint",
          "You can just expose a POST endpoint and send events that way."),
    Claim("06", "when REST is right",
          "Use REST when you need an answer now; logging and metrics are fire-and-forget."),
    Claim("07", "microservices topology",
          "Events decouple services: they fail, scale and deploy independently."),
    Claim("08", "the broker goes down",
          "The broker is a single point of failure: if the Kafka cluster goes down..."),
    Claim("09", "delivery guarantees; Kafka or an MQ",
          "Messaging frameworks like Kafka or an MQ deliver every event, once."),
    Claim("10", "what goes in an event",
          "An event can carry the full payload or just say that something happened."),
    Claim("11", "beyond one machine", "Events scale; polling does not."),
    Claim("12", "capstone: the restaurant both ways",
          "It is basically Kafka and pub/sub: add a service without touching the others."),
)

#: The words a verdict may use, from "the run supports the claim" to "it refutes it".
VERDICTS = ("holds", "holds, with limits", "oversold", "does not hold")


def verdicts_file() -> Path:
    """Where records are kept: ``<state dir>/verdicts.json``."""
    return state_dir() / "verdicts.json"


def _claim(notebook: str) -> Claim:
    for claim in CLAIMS:
        if claim.notebook == notebook:
            return claim
    known = ", ".join(c.notebook for c in CLAIMS)
    raise ConfigError(f"notebook must be one of {known} (a two-digit string), not {notebook!r}.")


def record_verdict(notebook: str, verdict: str, evidence: str) -> dict:
    """Record what this run of ``notebook`` showed about its claim; returns the record.

    Args:
        notebook: the lesson's number as two digits, e.g. ``"02"``.
        verdict: one of :data:`VERDICTS`, decided from the run's result (not typed in
            by hand: compute it from the numbers, so a different run can differ).
        evidence: one sentence with the run's numbers, printed from the result,
            e.g. ``f"push p50 {p:.1f} ms vs polling every 1 s {q:.0f} ms"``.

    Raises:
        ConfigError: unknown notebook, a verdict outside :data:`VERDICTS`, or empty
            evidence.
    """
    claim = _claim(notebook)
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict must be one of {', '.join(map(repr, VERDICTS))}, not {verdict!r}.")
    if not isinstance(evidence, str) or not evidence.strip():
        raise ConfigError("evidence must be a sentence with the run's numbers, not empty.")
    record = {"notebook": notebook, "title": claim.title, "claim": claim.claim, "verdict": verdict,
              "evidence": evidence.strip(), "quick": quick_mode(),
              "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = verdicts_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    records = _read(path)
    records[notebook] = record
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(records, indent=1))
    tmp.replace(path)  # atomic: two notebooks finishing at once never leave half a file
    return record


def _read(path: Path) -> dict:
    try:
        records = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return records if isinstance(records, dict) else {}


def verdicts():
    """A table with one row per claim: notebook, title, claim, verdict, evidence, quick,
    recorded_at. Claims whose notebook has not recorded a verdict yet say "not run yet"."""
    import pandas as pd

    records = _read(verdicts_file())
    rows = []
    for claim in CLAIMS:
        rec = records.get(claim.notebook)
        if rec is None:
            rec = {"notebook": claim.notebook, "title": claim.title, "claim": claim.claim,
                   "verdict": "not run yet", "evidence": "", "quick": None, "recorded_at": ""}
        rows.append(rec)
    return pd.DataFrame(rows, columns=["notebook", "title", "claim", "verdict", "evidence", "quick",
                                       "recorded_at"])
