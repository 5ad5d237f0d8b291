from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_q.models import Task

from runs.alerts import check_alerts
from runs.models import AlertState, Notification, Run, RunError, RunStep
from runs.retention import protected_run_ids, prune_runs

pytestmark = pytest.mark.django_db

# UTC: "90 days" is absolute time, not wall-clock time across a DST change.
NOW = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.RUNS_KEEP_DAYS = 90
    settings.RUN_ERRORS_KEEP_DAYS = 30
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_run(pipeline, *, age, status="success", errors=0, steps=1, parent=None):
    started = NOW - age
    run = Run.objects.create(
        pipeline=pipeline, status=status, started_at=started, parent=parent,
        finished_at=None if status == "running" else started + timedelta(minutes=1),
        error_count=errors,
    )
    step_objs = [RunStep.objects.create(run=run, position=i, name=f"step-{i}", started_at=started)
                 for i in range(steps)]
    RunError.objects.bulk_create(
        RunError(run=run, step=step_objs[0] if step_objs else None, identifier=f"ID{i}", message="bad",
                 created_at=started)
        for i in range(errors)
    )
    return run


def ids(qs):
    return set(qs.values_list("pk", flat=True))


def test_runs_past_retention_go_with_their_steps_and_errors_and_the_boundary_is_exact():
    just_past = make_run("clean", age=timedelta(days=90, seconds=1), errors=2, steps=2)
    just_inside = make_run("clean", age=timedelta(days=90) - timedelta(seconds=1))
    latest = make_run("clean", age=timedelta(days=1))
    result = prune_runs()
    assert ids(Run.objects.all()) == {just_inside.pk, latest.pk}
    assert not RunStep.objects.filter(run_id=just_past.pk).exists()
    assert not RunError.objects.filter(run_id=just_past.pk).exists()
    assert (result.runs, result.steps, result.errors) == (1, 2, 2)


def test_errors_past_their_retention_go_but_the_run_keeps_its_error_count():
    old = make_run("clean", age=timedelta(days=30, seconds=1), errors=3)
    young = make_run("clean", age=timedelta(days=30) - timedelta(seconds=1), errors=2)
    make_run("clean", age=timedelta(hours=1))
    result = prune_runs()
    assert result.errors == 3 and result.runs == 0
    assert not RunError.objects.filter(run=old).exists()
    assert RunError.objects.filter(run=young).count() == 2
    old.refresh_from_db()
    assert old.error_count == 3


def test_a_running_run_and_the_latest_run_of_each_pipeline_are_never_deleted():
    running = make_run("slow", age=timedelta(days=400), status="running")
    only = make_run("boom", age=timedelta(days=400), status="failed", errors=2)
    older = make_run("boom", age=timedelta(days=500), status="failed")
    prune_runs()
    assert Run.objects.filter(pk__in=[running.pk, only.pk]).count() == 2
    assert not Run.objects.filter(pk=older.pk).exists()
    # The latest run keeps its errors too: it is the one people look at.
    assert RunError.objects.filter(run=only).count() == 2


def test_the_parent_of_a_protected_child_is_kept_and_old_families_go_together():
    parent = make_run("family", age=timedelta(days=200))
    child = make_run("people-like", age=timedelta(days=200), parent=parent)  # the latest of its pipeline
    old_family = make_run("family", age=timedelta(days=300))
    old_child = make_run("clean", age=timedelta(days=300), parent=old_family, errors=1)
    make_run("clean", age=timedelta(days=1))
    make_run("family", age=timedelta(days=1))
    assert {parent.pk, child.pk} <= protected_run_ids()
    prune_runs()
    assert Run.objects.filter(pk__in=[parent.pk, child.pk]).count() == 2
    assert not Run.objects.filter(pk__in=[old_family.pk, old_child.pk]).exists()


def test_deletes_in_batches_and_clears_references_from_alert_history():
    old = [make_run("boom", age=timedelta(days=100 + i), status="failed", errors=3) for i in range(7)]
    check_alerts()  # records old[0], then the latest run, as alert state
    make_run("boom", age=timedelta(days=1), status="failed")
    state = AlertState.objects.get(subject="run:boom")
    assert state.last_run_id == old[0].pk
    notification = Notification.objects.get(pipeline="boom")
    result = prune_runs(batch_size=2, errors_keep_days=365)
    assert result.runs == 7 and result.errors == 21
    state.refresh_from_db()
    notification.refresh_from_db()
    assert state.last_run_id is None and notification.run_id is None


def test_old_task_results_and_sent_notifications_are_pruned():
    old, young = NOW - timedelta(days=91), NOW - timedelta(days=1)
    for pk, when in (("a" * 32, old), ("b" * 32, young)):
        Task.objects.create(id=pk, name=pk, func="math.floor", started=when, stopped=when, success=True)
    Notification.objects.create(event="failed", subject="old", status="sent", created_at=old)
    Notification.objects.create(event="failed", subject="old but pending", status="pending", created_at=old)
    Notification.objects.create(event="failed", subject="young", status="sent", created_at=young)
    result = prune_runs()
    assert result.tasks == 1 and list(Task.objects.values_list("id", flat=True)) == ["b" * 32]
    assert result.notifications == 1
    assert set(Notification.objects.values_list("subject", flat=True)) == {"old but pending", "young"}


def test_the_command_prints_what_it_removed():
    make_run("clean", age=timedelta(days=120), errors=1)
    make_run("clean", age=timedelta(days=1))
    out = StringIO()
    call_command("pruneruns", stdout=out)
    assert out.getvalue().strip() == (
        "Removed 1 run(s) with 1 step(s), 1 error(s), 0 task result(s) and 0 notification(s)."
    )
    with pytest.raises(CommandError):
        call_command("pruneruns", "--keep-days", "0")


@pytest.mark.parametrize("value", ["99999999999", "0", "-3", "ten"])
def test_out_of_range_days_are_a_usage_error_not_a_traceback(subprocess_env, value):
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "pruneruns", "--keep-days", value],
                            env=subprocess_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --keep-days: must be" in result.stderr and repr(value) in result.stderr


# --- prunruns: the old name, kept for installed cron jobs ------------------------------------


def test_prunruns_is_a_deprecated_alias_that_says_so_once_and_prunes_the_same():
    make_run("clean", age=timedelta(days=120), errors=1)
    make_run("clean", age=timedelta(days=1))
    out, err = StringIO(), StringIO()
    call_command("prunruns", "--errors-keep-days", "30", stdout=out, stderr=err)
    assert out.getvalue().strip() == (
        "Removed 1 run(s) with 1 step(s), 1 error(s), 0 task result(s) and 0 notification(s)."
    )
    assert len(err.getvalue().splitlines()) == 1
    assert "prunruns is deprecated" in err.getvalue() and "manage.py pruneruns" in err.getvalue()
    assert Run.objects.count() == 1
    with pytest.raises(CommandError):  # the same options, checked the same way
        call_command("prunruns", "--keep-days", "0", stderr=StringIO())


def test_a_cron_line_with_prunruns_still_works(subprocess_env):
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "prunruns", "--keep-days", "90"],
                            env=subprocess_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Removed 0 run(s)")
    assert result.stderr.splitlines() == [
        "prunruns is deprecated and will be removed; run `manage.py pruneruns` instead (same options)."
    ]
