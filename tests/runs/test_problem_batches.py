"""Problems follow the run's errors batch by batch (the writer upserts them with the RunErrors):
visible while the run goes on, counted once per run however many batches fail a record,
the latest message kept, and a failed upsert never costs the run its errors."""

import logging
import threading

import pytest
from django.db import connection

from runs.errorrows import Redactions
from runs.models import RecordProblem, Run, RunError
from runs.pipeline import register, unregister
from runs.redact import MASK, clear_secret_cache, needs_redaction, redact
from runs.runner import run_pipeline
from runs.writer import ERROR_BATCH

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pipeline():
    """Register a pipeline whose body is the given function; unregister it afterwards."""
    names = []

    def make(name, body):
        register(name)(body)
        names.append(name)

    yield make
    for name in names:
        unregister(name)


def test_a_problem_is_open_while_the_run_that_failed_the_record_is_still_going(pipeline, settings):
    settings.RUNS_FLUSH_INTERVAL_S = 0.01
    seen_while_running: list[tuple] = []
    release = threading.Event()

    def body(run):
        with run.step("sync") as step:
            step.fail_item(ValueError("no such team: JO11-1"), identifier="AAA1111", identifier_kind="knvb_id")
            for _ in range(500):  # wait (at most 5 s) for the writer's next heartbeat to write it
                if RecordProblem.objects.filter(identifier="AAA1111").exists():
                    break
                release.wait(0.01)
            seen_while_running.extend(RecordProblem.objects.values_list(
                "identifier", "failing_runs", "resolved_at", "last_run__status"))

    pipeline("live-problems", body)
    run = run_pipeline("live-problems")
    assert seen_while_running == [("AAA1111", 1, None, "running")]
    problem = RecordProblem.objects.get()
    assert (problem.last_run_id, problem.first_run_id, problem.failing_runs) == (run.pk, run.pk, 1)


def written(identifier: str, message: str) -> bool:
    """Wait (at most 5 s) until the writer has written the problem of `identifier` with `message`."""
    pause = threading.Event()
    for _ in range(500):
        if RecordProblem.objects.filter(identifier=identifier, message=message).exists():
            return True
        pause.wait(0.01)
    return False


def test_a_record_failing_in_several_batches_of_one_run_counts_one_failing_run_with_the_latest_message(
        pipeline, settings):
    settings.RUNS_FLUSH_INTERVAL_S = 0.01
    filler = 20

    def body(run):
        with run.step("sync") as step:
            step.fail_item("first message", identifier="AAA1111", identifier_kind="knvb_id")
            step.fail_item("first message", identifier="AAA1111", identifier_kind="")  # the same batch
            for i in range(filler):
                step.fail_item("filler", identifier=f"F{i}", identifier_kind="knvb_id")
            assert written("AAA1111", "first message")
            step.fail_item("second message", identifier="AAA1111", identifier_kind="")  # a later batch

    pipeline("batches", body)
    first = run_pipeline("batches")
    problem = RecordProblem.objects.get(identifier="AAA1111")
    assert (problem.failing_runs, problem.message, problem.identifier_kind) == (1, "second message", "knvb_id")
    assert RecordProblem.objects.count() == filler + 1
    assert RunError.objects.filter(run=first).count() == filler + 3

    second = run_pipeline("batches")
    problem.refresh_from_db()
    assert (problem.failing_runs, problem.first_run_id, problem.last_run_id) == (2, first.pk, second.pk)
    assert RecordProblem.objects.filter(failing_runs=2).count() == filler + 1
    assert RecordProblem.objects.count() == filler + 1  # updated, none opened twice


def test_one_batch_with_many_errors_on_one_record_keeps_its_latest_message_and_known_kind(pipeline):
    def body(run):
        with run.step("sync") as step:
            for i in range(ERROR_BATCH * 2):
                step.fail_item(f"message {i}", identifier=f"R{i % 7}", identifier_kind="knvb_id" if i < 7 else "")

    pipeline("one-batch", body)
    run_pipeline("one-batch")
    problems = {p.identifier: p for p in RecordProblem.objects.all()}
    assert sorted(problems) == [f"R{i}" for i in range(7)]
    last = {f"R{i % 7}": f"message {i}" for i in range(ERROR_BATCH * 2)}
    assert {k: (p.message, p.identifier_kind, p.failing_runs) for k, p in problems.items()} == {
        k: (m, "knvb_id", 1) for k, m in last.items()}


def test_a_resolved_problem_stays_resolved_and_a_new_failure_opens_another(pipeline):
    failing = {"AAA1111": True}

    def body(run):
        with run.step("sync") as step, step.item({"knvb_id": "AAA1111"}):
            if failing["AAA1111"]:
                raise ValueError("boom")

    pipeline("reopen", body)
    run_pipeline("reopen")
    failing["AAA1111"] = False
    fixed = run_pipeline("reopen")
    failing["AAA1111"] = True
    again = run_pipeline("reopen")
    old, new = RecordProblem.objects.order_by("pk")
    assert (old.resolution, old.resolved_run_id, old.failing_runs) == ("fixed", fixed.pk, 1)
    assert (new.resolved_at, new.first_run_id, new.failing_runs) == (None, again.pk, 1)
    # The item's error itself: its step, its message and its traceback.
    error = RunError.objects.get(run=again)
    assert (error.step.name, error.step_name, error.step.run_id, error.message) == ("sync", "sync", again.pk, "boom")
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert error.traceback.rstrip().endswith("ValueError: boom")


def test_when_problems_cannot_be_written_the_run_keeps_its_errors(pipeline, caplog):
    table = RecordProblem._meta.db_table

    def body(run):
        with run.step("sync") as step:
            for i in range(3):
                with step.item({"knvb_id": f"AAA{i}"}):
                    raise ValueError("boom")

    pipeline("no-problems", body)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        with caplog.at_level(logging.ERROR, logger="runs.tracker"):
            run = run_pipeline("no-problems")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.error_count, run.failed) == ("partial", 3, 3)
    assert RunError.objects.filter(run=run).count() == 3
    assert "cannot update the open problems" in caplog.text
    assert not RecordProblem.objects.exists()


def test_a_dry_run_opens_no_problem_even_across_batches(pipeline, caplog):
    def body(run):
        with run.step("sync") as step:
            for i in range(ERROR_BATCH + 1):
                step.fail_item("boom", identifier=f"A{i}", identifier_kind="knvb_id")

    pipeline("dry-batches", body)
    with caplog.at_level(logging.WARNING, logger="runs"):
        run = run_pipeline("dry-batches", dry_run=True)
    assert not [r for r in caplog.records if r.name.startswith("runs.tracker")]  # tracking never stumbled
    assert RunError.objects.filter(run=run).count() == ERROR_BATCH + 1
    assert not RecordProblem.objects.exists()


# --- one redaction check per batch ------------------------------------------------


@pytest.mark.parametrize("text", [
    "plain text", "e-mailadres: jan@example.org", "https://user:pw@host/x", "api_key=abc", "x" * 10,
    "Authorization: Bearer abc", "token", "TOKEN: x", "a=b", "scheme://host", "user@host",
])
def test_needs_redaction_is_false_only_where_redact_changes_nothing(text):
    assert needs_redaction(text) or redact(text) == text
    if redact(text) != text:
        assert needs_redaction(text)


def _prepared(errors, *, redactions=None):
    """An ErrorRows batch of queued errors (identifier, message) as the writer prepares it: its
    rows' (identifier, message) and its problems."""
    from runs.errorrows import _ERROR_COLUMNS, ErrorRows

    rows = ErrorRows(pipeline="batch", redactions=redactions or Redactions(), problems=True)
    rows.pending.extend(("error", None, "sync", identifier, "knvb_id", message, "", True, "", 1_764_403_200.0)
                        for identifier, message in errors)
    rows.prepare(1, {})
    width, at = len(_ERROR_COLUMNS), _ERROR_COLUMNS.index
    return (list(zip(rows.prepared[at("identifier")::width], rows.prepared[at("message")::width], strict=True)),
            rows.problems)


def test_a_batch_with_one_secret_among_clean_texts_still_redacts_that_one(settings):
    settings.LAPOSTA_API_KEY = "s3cr3t-laposta-key"
    clear_secret_cache()
    try:
        clean = [(f"AAA{i:04d}", f"member {i} has no team") for i in range(50)]
        secret = ("AAA9999", "request failed: key s3cr3t-laposta-key refused")
        redactions = Redactions()
        rows, problems = _prepared([*clean, secret, ("s3cr3t-laposta-key", "no team")], redactions=redactions)
        assert rows[:50] == clean  # the joined check found a secret: each text on its own, the clean ones kept
        assert rows[50] == ("AAA9999", f"request failed: key {MASK} refused")
        assert rows[51] == (MASK, "no team")
        assert problems[MASK] == ("knvb_id", "sync", "no team") and "s3cr3t-laposta-key" not in problems
        assert redactions.messages[secret[1]] == rows[50][1]  # each distinct text redacted once per run
        assert _prepared(clean) == (clean, {i: ("knvb_id", "sync", m) for i, m in clean})
    finally:
        clear_secret_cache()


@pytest.mark.parametrize("secret", [False, True])
def test_a_long_message_is_cut_alike_in_a_clean_batch_and_one_redacted_text_by_text(secret):
    long = "y" * (RunError.MESSAGE_MAX + 50)
    other = ("AAA2", "Authorization: Bearer abc" if secret else "clean")
    rows, problems = _prepared([("AAA1", long), other])
    assert rows[0][1] == redact(long)[: RunError.MESSAGE_MAX - 1] + "…"
    assert problems["AAA1"][2] == rows[0][1]
    assert rows[1][1] == redact(other[1])


# --- multi-row statements -------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 16, 63, 64, 65, 192, 193, 600, 1023, 1024, 1025, 1100, 2100])
def test_every_row_of_a_batch_is_written_once_whatever_its_size(rows):
    from django.db import transaction
    from django.utils import timezone

    from runs.bulksql import execute_rows
    from runs.errorrows import _ERROR_COLUMNS, _insert_sql

    run = Run.objects.create(pipeline="sizes")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [v for i in range(rows) for v in (run.pk, None, "sizes", "s", f"ID{i}", "", f"m{i}", "", now)]
    with transaction.atomic():
        execute_rows(_insert_sql, params, width=len(_ERROR_COLUMNS))
    assert sorted(RunError.objects.filter(run=run).values_list("message", flat=True)) == sorted(
        f"m{i}" for i in range(rows))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own parameter limit")
def test_a_batch_fits_an_older_sqlites_limit_of_999_parameters():
    """Django 5.2 supports SQLite 3.31, which binds at most 999 parameters a statement:
    1,024-row statements of errors (9 values) or problems (4, plus 5 shared) would fail."""
    import sqlite3

    from django.db import transaction
    from django.utils import timezone

    from runs.bulksql import execute_rows
    from runs.errorrows import _ERROR_COLUMNS, _insert_sql
    from runs.history import upsert_problems

    run = Run.objects.create(pipeline="limit")
    connection.ensure_connection()
    raw = connection.connection
    old = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        params = [v for i in range(1500) for v in (run.pk, None, "limit", "s", f"ID{i}", "", f"m{i}", "", now)]
        with transaction.atomic():
            execute_rows(_insert_sql, params, width=len(_ERROR_COLUMNS))
            upsert_problems({f"ID{i}": ("knvb_id", "s", f"m{i}") for i in range(1500)}, pipeline="limit",
                            run_id=run.pk, now=timezone.now())
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, old)
    assert RunError.objects.filter(run=run).count() == 1500
    assert RecordProblem.objects.filter(pipeline="limit").count() == 1500


@pytest.mark.parametrize(("rows", "sizes"), [
    (0, []), (1, [16]), (16, [16]), (17, [16, 16]), (48, [16, 16, 16]), (49, [256]), (256, [256]),
    (257, [256, 16]), (600, [256, 256, 256]),
])
def test_a_batch_takes_few_statements_of_two_fixed_sizes(rows, sizes):
    from runs.bulksql import _chunks

    assert _chunks(rows, 256, 16) == sizes


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 1_764_403_200_000, 1_764_403_200_007, 1_764_403_259_999])
def test_an_error_time_is_stored_as_django_would_store_it(ms):
    from datetime import UTC, datetime

    from runs.errorrows import _Stamps

    expected = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(ms / 1000, tz=UTC))
    assert _Stamps()(ms) == expected


@pytest.mark.parametrize("rows", [1, 16, 17, 257, 600])
def test_every_problem_of_a_batch_is_upserted_once_with_what_the_batch_shares(rows):
    """The pipeline, the time and the run are bound once per statement, the rest per row."""
    from django.db import transaction
    from django.utils import timezone

    from runs.history import upsert_problems

    run = Run.objects.create(pipeline="sizes")
    now = timezone.now()
    with transaction.atomic():
        upsert_problems({f"ID{i}": ("knvb_id", "sync", f"m{i}") for i in range(rows)}, pipeline="sizes",
                        run_id=run.pk, now=now)
    problems = RecordProblem.objects.filter(pipeline="sizes")
    assert sorted(problems.values_list("identifier", "message")) == sorted((f"ID{i}", f"m{i}") for i in range(rows))
    assert set(problems.values_list("identifier_kind", "step_name", "first_run", "last_run", "failing_runs",
                                    "first_seen_at", "last_seen_at")) == {
        ("knvb_id", "sync", run.pk, run.pk, 1, now, now)}


# --- an item's traceback: frames on the pipeline's thread, its exception line redacted by the writer ---


def test_an_items_traceback_is_stored_whole_frames_and_exception_line(pipeline):
    def body(run):
        with run.step("sync") as step:
            for i in range(3):
                with step.item({"knvb_id": f"AAA{i}"}):
                    raise LookupError(f"no team for member {i}")

    pipeline("tb-lines", body)
    run = run_pipeline("tb-lines")
    tracebacks = list(RunError.objects.filter(run=run).order_by("identifier").values_list("traceback", flat=True))
    assert [t.splitlines()[-1] for t in tracebacks] == [f"LookupError: no team for member {i}" for i in range(3)]
    for text in tracebacks:
        assert text.startswith("Traceback (most recent call last):\n")
        assert 'File "tests/runs/test_problem_batches.py", line' in text and ", in body\n" in text


def test_a_secret_in_one_exception_line_is_masked_and_the_batchs_other_lines_are_kept(pipeline, settings):
    settings.LAPOSTA_API_KEY = "s3cr3t-laposta-key"
    clear_secret_cache()
    failures = [f"member {i} has no team" for i in range(20)]
    failures[7] = "request refused: key s3cr3t-laposta-key"
    failures[12] = "login failed, password=hunter22"

    def body(run):
        with run.step("sync") as step:
            for i, text in enumerate(failures):
                with step.item({"knvb_id": f"AAA{i:02d}"}):
                    raise RuntimeError(text)

    try:
        pipeline("tb-secrets", body)
        run = run_pipeline("tb-secrets")
    finally:
        clear_secret_cache()
    lines = [t.splitlines()[-1] for t in
             RunError.objects.filter(run=run).order_by("identifier").values_list("traceback", flat=True)]
    assert lines[7] == f"RuntimeError: request refused: key {MASK}"
    assert lines[12] == f"RuntimeError: login failed, password={MASK}"
    assert [line for i, line in enumerate(lines) if i not in (7, 12)] == [
        f"RuntimeError: member {i} has no team" for i in range(20) if i not in (7, 12)]


def test_an_exception_that_cannot_be_printed_is_recorded_and_the_run_goes_on(pipeline):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("broken __str__")

    def body(run):
        with run.step("sync") as step:
            with step.item({"knvb_id": "AAA0001"}):
                raise Unprintable()
            with step.item({"knvb_id": "AAA0002"}):
                step.updated()

    pipeline("tb-unprintable", body)
    run = run_pipeline("tb-unprintable")
    assert (run.status, run.updated, run.error_count) == ("partial", 1, 1)
    error = RunError.objects.get(run=run)
    assert error.message == "<exception str() failed>"
    assert error.traceback.endswith("Unprintable: <exception str() failed>\n")


def test_a_chained_exception_keeps_its_cause_redacted_in_the_stored_traceback(pipeline):
    def body(run):
        with run.step("sync") as step, step.item({"knvb_id": "AAA0001"}):
            try:
                raise KeyError("password=hunter22")
            except KeyError as exc:
                raise ValueError("the member's account is broken") from exc

    pipeline("tb-chain", body)
    run = run_pipeline("tb-chain")
    text = RunError.objects.get(run=run).traceback
    assert "KeyError: 'password=" in text and "hunter22" not in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.endswith("ValueError: the member's account is broken\n")


def test_an_item_failed_with_a_message_keeps_its_step_and_has_no_traceback(pipeline):
    def body(run):
        with run.step("sync") as step:
            step.fail_item("no e-mail address", identifier="AAA0001", identifier_kind="knvb_id")

    pipeline("message-item", body)
    run = run_pipeline("message-item")
    error = RunError.objects.get(run=run)
    assert (error.step.name, error.step_name, error.message, error.traceback) == (
        "sync", "sync", "no e-mail address", "")


def test_an_exception_without_text_is_named_by_its_class(pipeline):
    def body(run):
        with run.step("sync") as step, step.item({"knvb_id": "AAA0001"}):
            raise KeyError()

    pipeline("textless-item", body)
    run = run_pipeline("textless-item")
    error = RunError.objects.get(run=run)
    assert error.message == "KeyError"
    assert error.traceback.endswith("\nKeyError\n")
