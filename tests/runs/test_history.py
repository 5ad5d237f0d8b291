"""The record history engine: problems opened, updated and resolved by runs; the change log;
the run's scope (`only`, runsync --only); pruning."""

import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from runs.history import ChangeLog
from runs.models import ChangeAction, RecordChange, RecordProblem, Run
from runs.pipeline import register, unregister
from runs.redact import clear_secret_cache
from runs.retention import prune_runs
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

#: What the `history-sample` pipeline processes: (identifier, error or None).
ROWS: list[tuple[str, str | None]] = []
#: Identifiers the pipeline retires (files a `retired` change for).
RETIRE: list[str] = []


@pytest.fixture(autouse=True)
def history_sample():
    @register("history-sample")
    def pipeline(run):
        with run.step("history-sync") as step:
            log = ChangeLog(step, record_type="thing", identifier_kind="knvb_id")
            for identifier, error in ROWS:
                if not run.in_scope(identifier):
                    continue
                with step.item({"knvb_id": identifier}):
                    if error:
                        raise ValueError(error)
                    log.created(identifier)
                    step.created()
            for identifier in RETIRE:
                log.retired(identifier, {"is_former": (False, True)})
            log.write()

    ROWS.clear()
    RETIRE.clear()
    yield
    unregister("history-sample")


def test_an_error_opens_a_problem_and_later_failing_runs_update_it():
    ROWS[:] = [("AAA1111", None), ("BBB2222", "no such team: JO11-1")]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert (problem.pipeline, problem.identifier, problem.identifier_kind) == ("history-sample", "BBB2222",
                                                                               "knvb_id")
    assert problem.step_name == "history-sync" and problem.failing_runs == 1
    assert "no such team: JO11-1" in problem.message
    assert problem.first_run == first and problem.is_open

    ROWS[:] = [("AAA1111", None), ("BBB2222", "no such team: JO11-2")]
    with time_machine.travel(start + timedelta(days=1), tick=False):
        second = run_pipeline("history-sample")
    problem.refresh_from_db()
    assert problem.failing_runs == 2 and problem.last_run == second
    assert "JO11-2" in problem.message
    assert problem.first_seen_at == start and problem.last_seen_at == start + timedelta(days=1)
    assert RecordProblem.objects.count() == 1  # updated, not a second one


def test_the_same_failure_again_and_a_changed_one_update_their_problems_alike():
    ROWS[:] = [("AAA1111", "no such team: JO11-1"), ("BBB2222", "no such team: JO11-1")]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = run_pipeline("history-sample")
    ROWS[:] = [("AAA1111", "no such team: JO11-1"), ("BBB2222", "no such team: JO12-9")]
    with time_machine.travel(start + timedelta(days=1), tick=False):
        second = run_pipeline("history-sample")
    same, changed = RecordProblem.objects.order_by("identifier")
    for problem in (same, changed):
        assert (problem.failing_runs, problem.first_run, problem.last_run) == (2, first, second)
        assert (problem.first_seen_at, problem.last_seen_at) == (start, start + timedelta(days=1))
        assert (problem.step_name, problem.identifier_kind, problem.is_open) == ("history-sync", "knvb_id", True)
    assert same.message.endswith("no such team: JO11-1") and changed.message.endswith("no such team: JO12-9")


def test_a_later_run_without_the_error_resolves_it_and_a_new_error_opens_a_new_one():
    ROWS[:] = [("BBB2222", "boom")]
    run_pipeline("history-sample")
    ROWS[:] = [("BBB2222", None)]
    fixed = run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert not problem.is_open and problem.resolution == "fixed" and problem.resolved_run == fixed
    ROWS[:] = [("BBB2222", "boom again")]
    run_pipeline("history-sample")
    assert RecordProblem.objects.filter(resolved_at__isnull=True).count() == 1
    assert RecordProblem.objects.count() == 2


def test_a_run_that_does_not_process_the_record_leaves_its_problem_as_it_was():
    ROWS[:] = [("AAA1111", None), ("BBB2222", "boom")]
    run_pipeline("history-sample")
    ROWS[:] = [("AAA1111", None)]  # BBB2222 is not in this export at all
    run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert problem.is_open and problem.failing_runs == 1


def test_a_record_that_leaves_resolves_its_problems_in_every_pipeline():
    RecordProblem.objects.create(pipeline="nikki", identifier="CCC3333", message="old")
    ROWS[:] = []
    RETIRE[:] = ["CCC3333"]
    run = run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert problem.resolution == "left" and problem.resolved_run == run
    change = RecordChange.objects.get()
    assert change.action == ChangeAction.RETIRED and change.changes == {"is_former": [False, True]}


#: Identifiers a problem cannot store as they are: masked (a configured secret, a URL's
#: credentials) or cut (over 255 characters).
ODD_IDENTIFIERS = {
    "secret": "list-s3cr3t-laposta-key",
    "url": "https://sync:hunter22@lists.example.org/club",
    "long": "AAA" + "9" * 300,
}


@pytest.fixture
def laposta_secret(settings):
    settings.LAPOSTA_API_KEY = "s3cr3t-laposta-key"
    clear_secret_cache()
    yield
    clear_secret_cache()


@pytest.mark.parametrize("kind", ODD_IDENTIFIERS)
def test_a_problem_on_an_identifier_stored_masked_or_cut_is_fixed_by_a_run_that_processes_it(kind, laposta_secret):
    identifier = ODD_IDENTIFIERS[kind]
    ROWS[:] = [(identifier, "boom"), ("BBB2222", "boom")]
    run_pipeline("history-sample")
    stored = RecordProblem.objects.exclude(identifier="BBB2222").get().identifier
    assert stored != identifier and "s3cr3t" not in stored and "hunter22" not in stored and len(stored) <= 255
    ROWS[:] = [(identifier, None), ("BBB2222", "boom")]
    fixed = run_pipeline("history-sample")
    problem = RecordProblem.objects.get(identifier=stored)
    assert problem.resolution == "fixed" and problem.resolved_run == fixed
    assert RecordProblem.objects.get(identifier="BBB2222").is_open
    ROWS[:] = [(identifier, "boom again")]  # failing again opens a new one: the fixed one stays fixed
    run_pipeline("history-sample")
    assert list(RecordProblem.objects.filter(identifier=stored).values_list("resolution", flat=True)
                .order_by("pk")) == ["fixed", ""]


@pytest.mark.parametrize("kind", ODD_IDENTIFIERS)
def test_a_record_stored_masked_or_cut_that_fails_again_keeps_its_problem_open(kind, laposta_secret):
    identifier = ODD_IDENTIFIERS[kind]
    ROWS[:] = [(identifier, "boom")]
    run_pipeline("history-sample")
    ROWS[:] = [(identifier, None), (identifier, "boom again")]  # processed once, failed once: not fixed
    run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert problem.is_open and problem.failing_runs == 2


@pytest.mark.parametrize("kind", ODD_IDENTIFIERS)
def test_a_record_stored_masked_or_cut_that_leaves_resolves_its_problem(kind, laposta_secret):
    identifier = ODD_IDENTIFIERS[kind]
    ROWS[:] = [(identifier, "boom")]
    run_pipeline("history-sample")
    ROWS[:] = []
    RETIRE[:] = [identifier]
    run = run_pipeline("history-sample")
    problem = RecordProblem.objects.get()
    assert problem.resolution == "left" and problem.resolved_run == run


def test_a_dry_run_changes_no_problem_and_files_no_change():
    ROWS[:] = [("BBB2222", "boom")]
    run_pipeline("history-sample", dry_run=True)
    assert not RecordProblem.objects.exists()
    assert not RecordChange.objects.exists()


def test_secrets_in_an_error_never_reach_the_problem():
    ROWS[:] = [("BBB2222", "request failed: https://api.example.org/?api_key=s3cr3t-value")]
    run_pipeline("history-sample")
    assert "s3cr3t-value" not in RecordProblem.objects.get().message


def test_errors_on_export_rows_without_an_identifier_open_no_problem():
    @register("row-errors")
    def pipeline(run):
        with run.step("download") as step:
            step.fail_item("row 12: unreadable", identifier="row 12", identifier_kind="row")
            step.fail_item("step-wide trouble")

    try:
        run_pipeline("row-errors")
    finally:
        unregister("row-errors")
    assert not RecordProblem.objects.exists()


def test_the_change_log_keeps_only_fields_that_differ_with_json_safe_values():
    run = Run.objects.create(pipeline="history-sample")

    class FakeRun:
        run_id, dry_run, name = run.pk, False, "history-sample"

    class FakeStep:
        name = "history-sync"

    FakeStep.run = FakeRun
    log = ChangeLog(FakeStep, record_type="member", identifier_kind="knvb_id")
    assert not log.updated("AAA1111", {"city": "Ede", "fee": Decimal("1.50")}, {"city": "Ede", "fee": Decimal("1.5")})
    assert log.updated("AAA1111", {"birth_date": date(2012, 2, 1), "is_former": True},
                       {"birth_date": date(2012, 2, 3), "is_former": False}, restored_when=("is_former", True))
    assert log.write() == 1
    change = RecordChange.objects.get()
    assert change.action == ChangeAction.RESTORED and change.run == run
    assert change.changes == {"birth_date": ["2012-02-01", "2012-02-03"], "is_former": [True, False]}


def test_only_scopes_the_run_and_is_recorded_on_it():
    ROWS[:] = [("AAA1111", None), ("BBB2222", None), ("CCC3333", None)]
    run = run_pipeline("history-sample", only=["bbb2222"])
    assert run.only == ["bbb2222"] and run.created == 1
    assert list(RecordChange.objects.values_list("identifier", flat=True)) == ["BBB2222"]


def test_runsync_only_runs_the_named_records_and_prints_the_scope():
    ROWS[:] = [("AAA1111", None), ("BBB2222", None), ("CCC3333", "boom")]
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_code:  # CCC3333 fails: partial
        call_command("runsync", "history-sample", "--only", "AAA1111, CCC3333", stdout=out)
    assert exit_code.value.code == 3
    run = Run.objects.get(pipeline="history-sample")
    assert run.only == ["AAA1111", "CCC3333"]
    assert "only AAA1111, CCC3333" in out.getvalue()
    assert sorted(RecordChange.objects.values_list("identifier", flat=True)) == ["AAA1111"]


@pytest.mark.parametrize("value", [",", " , ,"])
def test_runsync_only_without_identifiers_is_a_usage_error(value):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--only") as exc:
        call_command("runsync", "history-sample", "--only", value, stdout=io.StringIO())
    assert exc.value.returncode == 2
    assert not Run.objects.exists()


def test_pruning_removes_old_changes_and_keeps_a_pruned_runs_younger_changes(settings):
    now = timezone.now()
    old_run = Run.objects.create(pipeline="history-sample", status="success", started_at=now - timedelta(days=200))
    Run.objects.create(pipeline="history-sample", status="success", started_at=now)  # the latest stays
    RecordChange.objects.bulk_create([
        RecordChange(run=old_run, identifier="OLD", action="created", created_at=now - timedelta(days=400)),
        RecordChange(run=old_run, identifier="YOUNG", action="created", created_at=now - timedelta(days=200)),
    ])
    RecordProblem.objects.create(pipeline="x", identifier="GONE", message="m", resolved_at=now - timedelta(days=400))
    RecordProblem.objects.create(pipeline="x", identifier="OPEN", message="m", first_seen_at=now - timedelta(days=900))
    result = prune_runs(now=now, pause_s=0)
    assert result.runs == 1 and result.changes == 1 and result.problems == 1
    assert str(result).endswith("Removed 1 record change(s) and 1 resolved problem(s).")
    young = RecordChange.objects.get()
    assert young.identifier == "YOUNG" and young.run_id is None and young.pipeline == ""
    assert list(RecordProblem.objects.values_list("identifier", flat=True)) == ["OPEN"]
    settings.RECORD_CHANGES_KEEP_DAYS = 100
    assert prune_runs(now=now, pause_s=0).changes == 1
