"""Notebook hygiene: what every lesson must have, checked on the committed files.

nbval runs the notebooks themselves (``pytest --nbval-lax notebooks``); these checks
keep the course's shape: outputs stripped, the same setup cell, a goal, a takeaway,
an assert on the experiment, an exercise check, and servers stopped at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_course_has_its_first_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:3] == ["00", "01", "02"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = cells(path)
    code = [source(c) for c in nb if c["cell_type"] == "code"]
    text = "\n".join(source(c) for c in nb if c["cell_type"] == "markdown")
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb if c["cell_type"] == "code"), \
        "outputs must be stripped (nbstripout)"
    assert "**Learning goal.**" in source(nb[0]), "the first cell states the learning goal"
    assert "## Takeaway" in source(nb[-1]), "the last cell is the takeaway"
    setup = next(c for c in code if "edalab.start(" in c)
    assert "edalab.check_environment()" in setup
    assert any("lab.stop()" in c for c in code[-3:]), "the notebook stops what it started"
    assert any(line.lstrip().startswith("assert ") for c in code for line in c.splitlines()), \
        "at least one assert on what the experiment showed"
    assert not any("import *" in c for c in code)
    if path.name[:2] != "00":
        assert "edalab.exercises" in "\n".join(code), "an exercise with a check function"
        assert "## Exercise" in text
