"""The `functions` pipeline: commissies and their members (work history)."""

import pytest

from pipelines.models import Commissie, CommissieMembership
from runs.models import RunError, RunStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file

pytestmark = pytest.mark.django_db(transaction=True)


def step(run, name):
    return run.steps.get(name=name)


def test_ten_commissies_and_their_functions(export_dir):
    run_pipeline("people")
    run = run_pipeline("functions")
    assert run.status == RunStatus.SUCCESS
    assert [s.name for s in run.steps.order_by("position")] == [
        "functions-download", "commissie-sync", "commissie-work-history-sync"]
    assert Commissie.objects.count() == 10
    assert CommissieMembership.objects.filter(is_current=True).count() == step(
        run, "commissie-work-history-sync").created
    again = run_pipeline("functions")
    assert again.created == again.updated == 0


def test_an_ended_function_is_kept_as_history(export_dir):
    run_pipeline("people")
    run_pipeline("functions")
    path = export_file(export_dir, "Functies")
    lines = path.read_text().split("\n")
    gone = lines.pop(1)
    path.write_text("\n".join(lines))
    run = run_pipeline("functions")
    assert step(run, "commissie-work-history-sync").updated == 1
    ended = CommissieMembership.objects.get(is_current=False)
    assert ended.member.knvb_id in gone and ended.until is not None


def test_one_bad_commissie_does_not_stop_the_batch(tmp_path, settings, export_dir):
    # Two codes with one name: the second cannot be stored (names are unique).
    path = export_file(export_dir, "Functies")
    text = path.read_text()
    path.write_text(text + '"Bestuur","C999","Lid","AAA11A1","Iemand",,\n')
    run_pipeline("people")
    run = run_pipeline("functions")
    assert run.status == RunStatus.PARTIAL
    assert Commissie.objects.count() == 10
    error = RunError.objects.get(run=run, step_name="commissie-sync")
    assert error.identifier == "Bestuur" and error.identifier_kind == "commissie"
