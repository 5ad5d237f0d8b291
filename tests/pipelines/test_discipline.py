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
    rewrite(export_file(export_dir, "Tuchtzaken"), f'"{case.dossier_id}"', f'"{case.dossier_id}"')
    rewrite(export_file(export_dir, "Tuchtzaken"), case.sanction, "Taakstraf", )
    run = run_pipeline("discipline")
    assert run.steps.get(name="discipline-sync").updated >= 1
    case.refresh_from_db()
    assert case.sanction == "Taakstraf"
