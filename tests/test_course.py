"""edalab.course: each notebook's verdict is recorded from its run and read back for notebook 12."""

import pytest

import edalab
from edalab import course


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDALAB_STATE_DIR", str(tmp_path))


def test_every_claim_starts_not_run_and_a_record_replaces_it():
    table = edalab.course.verdicts()
    assert list(table.notebook) == [f"{n:02d}" for n in range(1, 13)]
    assert set(table.verdict) == {"not run yet"}
    course.record_verdict("02", "holds", "push p50 0.5 ms vs polling 250 ms")
    course.record_verdict("02", "oversold", "second run")
    table = course.verdicts().set_index("notebook")
    assert table.loc["02", "verdict"] == "oversold" and table.loc["02", "evidence"] == "second run"
    assert table.loc["03", "verdict"] == "not run yet"


@pytest.mark.parametrize("args, says", [
    (("2", "holds", "x"), "two-digit"),
    (("13", "holds", "x"), "two-digit"),
    (("02", "true", "x"), "verdict must be one of"),
    (("02", "holds", "  "), "evidence"),
])
def test_bad_records_are_refused_with_what_is_allowed(args, says):
    with pytest.raises(edalab.ConfigError, match=says):
        course.record_verdict(*args)


def test_a_damaged_file_reads_as_no_records(tmp_path):
    course.verdicts_file().write_text("{not json")
    assert set(course.verdicts().verdict) == {"not run yet"}
