"""Load on edalab itself: the heaviest notebook rate and ten times it, on every transport.

    python benchmarks/load.py [--seconds 10] [--json FILE]

Prints a Markdown table (the one in docs/reliability.md, section "Load"): per transport
and rate, events sent and the rate the producer role achieved, what the consumer's
client handed over, what the Recorder wrote, distinct events delivered, seconds from
the last send to the last delivery, and how much the owner's memory grew while it
followed the run. ``recorded == client_received`` is edalab's own promise (the
recorder never drops a receipt); ``delivered == sent`` is the transport's promise (pub/sub
makes none: a consumer that falls behind may lose events, and the table says whether it did).
The short version runs in CI: tests/load/test_load.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "load")]

import edalab  # noqa: E402
from load_scenarios import HEAVIEST_RATE_PER_S, load_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each producer sends")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with edalab.start(use_up=False) as lab:
        for rate in (HEAVIEST_RATE_PER_S, 10 * HEAVIEST_RATE_PER_S):
            for transport in ("kafka", "redis-stream", "nats-queue", "redis-pubsub"):
                row = load_run(lab, transport, rate, args.seconds, timeout_s=300)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end, {args.seconds:g} s per run\n")
    print("| transport | rate asked /s | sent | rate achieved /s | client received | recorded | delivered "
          "| drained s | owner memory +MB | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = r["recorded"] == r["client_received"] and (r["delivered"] == r["sent"] or r["transport"] == "redis-pubsub")
        print(f"| {r['transport']} | {r['rate_per_s']:.0f} | {r['sent']} | {r['achieved_rate_per_s']:.0f} "
              f"| {r['client_received']} | {r['recorded']} | {r['delivered']} | {r['drained_s']:.1f} "
              f"| {r['owner_rss_growth_mb']:.1f} | {'yes' if ok else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
