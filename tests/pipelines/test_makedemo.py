"""Demo data: deterministic, the advertised size, and the `makedemo` command."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pipelines.demodata import write_demo
from pipelines.readers import open_table, read_members
from pipelines.sources import DEMO_DIR, ExportSource


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_people(tmp_path):
    write_demo(tmp_path / "a", members=80, seed=3)
    write_demo(tmp_path / "b", members=80, seed=3)
    write_demo(tmp_path / "c", members=80, seed=4)
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")
    assert _contents(tmp_path / "a") != _contents(tmp_path / "c")


def test_makedemo_writes_exports_of_any_size(tmp_path, capsys):
    call_command("makedemo", "--members", "120", "--seed", "5", "--out", str(tmp_path))
    assert "Wrote demo exports" in capsys.readouterr().out
    table = ExportSource(str(tmp_path)).table("members")
    result = read_members(table)
    assert len(result.records) == 120  # the bad rows are extra rows
    assert len(result.errors) == 4
    for kind in ("teams", "functions", "discipline", "nikki"):
        ExportSource(str(tmp_path)).table(kind)


def test_makedemo_refuses_nonsense(tmp_path):
    with pytest.raises(CommandError):
        call_command("makedemo", "--members", "0", "--out", str(tmp_path))


def test_the_bundled_demo_is_what_makedemo_writes(tmp_path):
    write_demo(tmp_path, members=500, seed=2026)
    assert _contents(tmp_path) == _contents(DEMO_DIR)
    members = read_members(open_table("x.csv", next(DEMO_DIR.glob("Leden*.csv")).read_bytes()))
    assert 490 <= len(members.records) <= 500
    assert len({t.team_id for t in read_teams_of(DEMO_DIR)}) == 30


def read_teams_of(directory: Path):
    from pipelines.readers import read_teams

    return read_teams(ExportSource(str(directory)).table("teams")).records
