"""The `nikki` pipeline: contributions per member per year."""

from decimal import Decimal

import pytest

from pipelines.models import Contribution, Member
from runs.models import RunError, RunStatus, StepStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file, rewrite

pytestmark = pytest.mark.django_db(transaction=True)


def sync_step(run):
    return run.steps.get(name="rondo-club-sync")


def test_two_years_of_contributions_are_synced_with_lines_summed(export_dir):
    run_pipeline("people")
    run = run_pipeline("nikki")
    assert run.status == RunStatus.SUCCESS
    assert [s.name for s in run.steps.order_by("position")] == ["nikki-download", "rondo-club-sync"]
    assert Contribution.objects.count() == 2 * Member.objects.count()
    assert set(Contribution.objects.values_list("year", flat=True)) == {2025, 2026}
    # Member 0 pays in two lines each year (demodata): summed, the worst status wins.
    summed = Contribution.objects.get(nikki_id="N25000000")
    # Two lines of € 47,50 (one paid, one open for € 95,00): the full fee, not half; the open status wins.
    assert (summed.year, summed.total, summed.balance, summed.status) == (
        2025, Decimal("95.00"), Decimal("95.00"), "Open")
    assert run.steps.get(name="nikki-download").read > sync_step(run).created

    again = run_pipeline("nikki")
    assert (sync_step(again).created, sync_step(again).updated, sync_step(again).skipped) == (
        0, 0, Contribution.objects.count())


def test_a_changed_balance_is_updated(export_dir):
    run_pipeline("people")
    run_pipeline("nikki")
    path = export_file(export_dir, "Nikki")
    text = path.read_bytes().decode("utf-8-sig")
    line = next(x for x in text.split("\r\n")[1:] if '"Open"' in x)
    code = line.split(";")[3].strip('"')
    year = int(line.split(";")[0].strip('"'))
    fields = line.split(";")
    fields[7] = '"€ 1.234,56"'
    rewrite(path, line, ";".join(fields))
    before = Contribution.objects.get(member__knvb_id=code, year=year)
    run = run_pipeline("nikki")
    assert (sync_step(run).created, sync_step(run).updated) == (0, 1)
    contribution = Contribution.objects.get(member__knvb_id=code, year=year)
    # The changed line's balance replaces € 95,00; the member's other line (€ 0,00) is still added.
    assert (code, year) == ("CNN13C8", 2025)
    assert contribution.balance == Decimal("1234.56") and contribution.total == before.total == Decimal("95.00")


def test_a_contribution_of_an_unknown_member_is_an_error_and_the_rest_go_on(export_dir):
    run = run_pipeline("nikki")  # the registry is empty: every member is unknown
    assert run.status == RunStatus.PARTIAL
    step = sync_step(run)
    assert step.status == StepStatus.PARTIAL and step.failed == step.total
    error = RunError.objects.filter(run=run).first()
    assert "no member with relatiecode" in error.message and error.identifier_kind == "knvb_id"


def test_an_unreadable_amount_is_a_row_error(export_dir):
    run_pipeline("people")
    path = export_file(export_dir, "Nikki")
    text = path.read_bytes().decode("utf-8-sig")
    line = text.split("\r\n")[5]
    fields = line.split(";")
    fields[7] = '"ongeveer tien"'
    rewrite(path, line, ";".join(fields))
    run = run_pipeline("nikki")
    error = RunError.objects.get(run=run)
    assert error.step_name == "nikki-download" and "row 6" in error.message
    assert "'ongeveer tien' is not an amount" in error.message


def test_dry_run_writes_nothing(export_dir):
    run_pipeline("people")
    run = run_pipeline("nikki", dry_run=True)
    assert sync_step(run).created == 2 * Member.objects.count()
    assert not Contribution.objects.exists()
