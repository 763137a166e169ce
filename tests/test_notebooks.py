"""Notebook hygiene: what every lesson must have, checked on the committed files.

nbval runs the notebooks themselves (``pytest --nbval-lax notebooks``); these checks
keep the course's shape: outputs stripped, the same setup cell, a goal, a takeaway,
an assert on the experiment, an exercise check, and servers stopped at the end.
"""

from __future__ import annotations

import json
import re
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


# What a run shows is printed from its result or asserted, never typed into prose: a
# measured number in a markdown cell goes stale the moment the machine changes.
MEASURED_NUMBER = re.compile(r"\b\d+\.\d+\s*(?:ms|µs|us|s|x|×|%)(?![\w])|\b\d+(?:\.\d+)?\s?%")
LESSON_REF = re.compile(r"\b(?:[Nn]otebooks?|[Ll]essons?)\s+(\d\d)\b|\b(\d\d)_[a-z_]+\.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_carries_no_measured_numbers(path):
    """Numbers a run measured come from the run: markdown has no decimals with units or
    percentages, and the takeaway no digits at all (but for lesson numbers)."""
    nb = cells(path)
    for cell in nb:
        if cell["cell_type"] != "markdown":
            continue
        text = source(cell)
        found = MEASURED_NUMBER.findall(text)
        assert not found, f"{path.name}: measured-looking numbers {found} in prose: print them from the result"
    takeaway = LESSON_REF.sub("", source(nb[-1]).split("## Takeaway", 1)[1])
    assert not re.search(r"\d", takeaway), \
        f"{path.name}: the takeaway states numbers; print them from the result in the cell before it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_only_to_lessons_that_exist(path):
    existing = {p.name[:2] for p in NOTEBOOKS}
    for cell in cells(path):
        if cell["cell_type"] != "markdown":
            continue
        text = source(cell)
        for match in LESSON_REF.finditer(text):
            number = match.group(1) or match.group(2)
            nearby = text[max(0, match.start() - 60): match.end() + 60].lower()
            assert number in existing or "coming" in nearby, \
                f"{path.name} points to lesson {number}, which does not exist yet: say 'a later lesson' or '(coming)'"
