"""The `discipline` pipeline: cases linked to members by relatiecode."""

from decimal import Decimal

import pytest

from pipelines.models import DisciplineCase
from runs.models import RunError, RunStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file, rewrite

pytestmark = pytest.mark.django_db(transaction=True)


def test_cases_are_linked_and_an_unknown_member_is_an_error_for_that_case(export_dir):
    run_pipeline("people")
    run = run_pipeline("discipline")
    assert run.status == RunStatus.PARTIAL
    assert [s.name for s in run.steps.order_by("position")] == ["discipline-download", "discipline-sync"]
    assert DisciplineCase.objects.count() == 6
    assert all(case.fee in {Decimal("12.50"), Decimal("25.00"), Decimal("37.50"), Decimal("55.00")}
               for case in DisciplineCase.objects.all())
    error = RunError.objects.get(run=run)
    assert (error.identifier, error.identifier_kind) == ("T-39999", "dossier_id")
    assert "ZZZ99Z9" in error.message

    again = run_pipeline("discipline")
    assert again.steps.get(name="discipline-sync").skipped == 6


def test_a_changed_sanction_updates_the_case(export_dir):
    run_pipeline("people")
    run_pipeline("discipline")
    case = DisciplineCase.objects.order_by("dossier_id").first()
    others = list(DisciplineCase.objects.exclude(pk=case.pk).order_by("pk").values_list("dossier_id", "sanction"))
    path = export_file(export_dir, "Tuchtzaken")
    # Only this case's row: other cases may carry the same sanction.
    line = next(x for x in path.read_bytes().decode("utf-8-sig").split("\r\n") if f'"{case.dossier_id}"' in x)
    rewrite(path, line, line.replace(f'"{case.sanction}"', '"Taakstraf"'))
    run = run_pipeline("discipline")
    sync = run.steps.get(name="discipline-sync")
    assert (sync.created, sync.updated, sync.skipped) == (0, 1, 5)
    case.refresh_from_db()
    assert case.sanction == "Taakstraf"
    assert list(DisciplineCase.objects.exclude(pk=case.pk).order_by("pk").values_list(
        "dossier_id", "sanction")) == others
