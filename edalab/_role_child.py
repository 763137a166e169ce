"""Inside a role process: load the body sent by :class:`edalab.Role` and run it.

Started as ``python -c "from edalab._role_child import main; main()"`` rather than
``python -m edalab.roles``: ``edalab`` imports ``edalab.roles``, and running an
already imported module as ``__main__`` makes Python warn in every role's log.
Not imported by ``edalab/__init__``: only role processes load it.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback


def main() -> None:
    """Read ``(header, payload)`` from stdin, run ``body(ctx, **kwargs)``, record its CPU."""
    header, payload = pickle.loads(sys.stdin.buffer.read())
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Jupyter's "interrupt" is for the kernel only
    # The owner's import path, so a body defined in any module the owner could import
    # (its working directory, a notebook's folder) can be imported here as well.
    sys.path[:0] = [p for p in header["sys_path"] if p not in sys.path]
    import cloudpickle

    from edalab._recorder import Recorder
    from edalab.roles import RoleContext

    name = header["name"]
    try:
        body, kwargs = cloudpickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - reported in the log the owner shows
        print(f"Role {name!r}: its body could not be loaded in the role process: "
              f"{type(exc).__name__}: {exc}. Define the body in the notebook or script that starts "
              f"the role, or in a module importable from there.", flush=True)
        sys.exit(3)
    recorder = Recorder(header["run_dir"])
    ctx = RoleContext(name, recorder, header["ready_fd"], stop_event, gated=header["gated"])
    code = 0
    try:
        body(ctx, **kwargs)
    except Exception:  # noqa: BLE001 - the traceback goes to the role's log
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        t = os.times()
        recorder.write_role_stats(name, own_cpu_s=t.user + t.system - ctx.cpu_at_ready_s,
                                  exited_at_ns=time.time_ns())
    sys.exit(code)
