"""runs.states: one state per pipeline, at a cost that does not grow with the pipelines."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from runs.models import PipelineSettings, Run, RunStatus, RunStep, StepStatus
from runs.overview import CARD_WINDOW, overview_cards
from runs.pipeline import all_pipelines, register, unregister
from runs.states import pipeline_states

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 10, 14, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def schedules_since_this_morning():
    """No Schedule rows (the registered crons apply), every schedule counting since 13:00
    today: the outcome does not depend on when the test database was made."""
    Schedule.objects.all().delete()
    PipelineSettings.objects.all().delete()
    PipelineSettings.objects.bulk_create([PipelineSettings(pipeline=p.name, schedule_since=T0 - timedelta(hours=1))
                                          for p in all_pipelines()])


def make_run(pipeline, status, *, minutes_ago, **fields):
    started = T0 - timedelta(minutes=minutes_ago)
    return Run.objects.create(pipeline=pipeline, status=status, started_at=started, **fields,
                              finished_at=None if status == RunStatus.RUNNING else started + timedelta(seconds=30))


@pytest.fixture
def extra_pipelines():
    """Registers `n` more scheduled pipelines, each with some history; forgets them afterwards."""
    names = []

    def add(n):
        for _ in range(n):
            name = f"extra-{len(names)}"
            register(name, schedule="0 8 * * *")(lambda run: None)
            names.append(name)
            make_run(name, RunStatus.FAILED, minutes_ago=90)
            make_run(name, RunStatus.SKIPPED, minutes_ago=60)
            make_run(name, RunStatus.RUNNING, minutes_ago=30)

    yield add
    for name in names:
        unregister(name)


def count_queries(func):
    with CaptureQueriesContext(connection) as queries:
        result = func()
    return len(queries), result


def test_the_query_count_does_not_grow_with_the_pipelines(frozen, extra_pipelines):
    extra_pipelines(1)
    few, states = count_queries(pipeline_states)
    assert len(states) == len(all_pipelines())
    extra_pipelines(20)
    many, states = count_queries(pipeline_states)
    assert len(states) == len(all_pipelines()) > 20
    assert many == few == 4


def test_the_overview_cards_cost_the_same_with_more_pipelines_and_running_runs(frozen, extra_pipelines):
    extra_pipelines(1)
    few, cards = count_queries(overview_cards)
    extra_pipelines(15)
    many, cards = count_queries(overview_cards)
    assert many == few == 5  # the states' four, plus the steps of every running run at once
    assert len(cards) == len(all_pipelines())


def test_each_pipeline_gets_its_health_word(frozen):
    make_run("soft", RunStatus.PARTIAL, minutes_ago=60)
    make_run("boom", RunStatus.FAILED, minutes_ago=60)
    make_run("boom", RunStatus.RUNNING, minutes_ago=5)
    make_run("boom", RunStatus.CANCELLED, minutes_ago=3)  # says nothing about health
    make_run("clean", RunStatus.SUCCESS, minutes_ago=60)
    make_run("clean", RunStatus.RUNNING, minutes_ago=5)
    make_run("clean", RunStatus.SKIPPED, minutes_ago=2)
    make_run("rollback", RunStatus.ABANDONED, minutes_ago=60)
    states = pipeline_states()
    assert states["soft"].state == "partial"
    assert states["boom"].state == "failed"
    assert states["clean"].state == "running"
    assert states["rollback"].state == "failed"
    assert states["interrupt"].state == "never_run"
    # `sample` (0 8 * * *) never ran, but its schedule started counting after today's 08:00 slot.
    assert states["sample"].state == "never_run" and states["sample"].schedule.waiting


def test_overdue_wins_over_every_other_state(frozen, settings):
    settings.RUNS_OVERDUE_GRACE_S = 4 * 3600
    PipelineSettings.objects.filter(pipeline="sample").update(schedule_since=T0 - timedelta(days=3))
    make_run("sample", RunStatus.SUCCESS, minutes_ago=60 * 30)  # yesterday's 08:00 run, not today's
    state = pipeline_states()["sample"]
    assert state.state == "overdue"
    assert state.schedule.overdue and state.schedule.last_started_at == T0 - timedelta(minutes=60 * 30)


def test_the_window_bounds_the_runs_and_the_last_start_counts_every_status(frozen):
    for minutes in range(40, 0, -1):
        make_run("clean", RunStatus.SUCCESS, minutes_ago=minutes + 10)
    skipped = make_run("clean", RunStatus.SKIPPED, minutes_ago=1)
    state = pipeline_states(window=3)["clean"]
    assert [r.pk for r in state.runs][0] == skipped.pk and len(state.runs) == 3
    assert state.last == state.runs[0] and state.running is None
    assert state.schedule.last_started_at == skipped.started_at
    assert state.state == "ok"  # the skip is not an outcome; the last success is


def test_the_overview_card_has_the_running_runs_steps(frozen):
    running = make_run("clean", RunStatus.RUNNING, minutes_ago=2)
    RunStep.objects.create(run=running, position=2, name="second", status=StepStatus.RUNNING, started_at=T0)
    RunStep.objects.create(run=running, position=1, name="first", status=StepStatus.SUCCESS, started_at=T0)
    cards = {card.name: card for card in overview_cards()}
    assert cards["clean"].running == running
    assert [s.name for s in cards["clean"].running_steps] == ["first", "second"]
    assert cards["clean"].badge == "running" and cards["clean"].last_finished is None
    assert cards["soft"].running_steps == [] and cards["soft"].badge == "never"
    assert cards["sample"].badge == "waiting"


def test_a_card_summarises_its_window_of_runs(frozen):
    for minutes in range(CARD_WINDOW + 5):
        make_run("clean", RunStatus.FAILED if minutes % 3 == 0 else RunStatus.SUCCESS, minutes_ago=minutes + 1)
    make_run("clean", RunStatus.SKIPPED, minutes_ago=0, summary={"held_by": 1})  # another run held the lock
    card = {card.name: card for card in overview_cards()}["clean"]
    assert len(card.runs) == CARD_WINDOW
    # 29 finished runs (the skip did not try): minutes 0..28 minus the multiples of 3 succeeded.
    assert card.success_rate == (19, 29) and card.success_percent == 66
    assert card.colour == RunStatus.SKIPPED and card.badge == RunStatus.SKIPPED


@pytest.mark.django_db(transaction=True)  # PostgreSQL: a failed query must not abort the test's transaction
def test_unreadable_schedule_tables_leave_the_schedule_out_unless_strict(frozen):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_q_schedule RENAME TO django_q_schedule_gone")
    try:
        states = pipeline_states()
        assert states["sample"].schedule is None and states["sample"].state == "never_run"
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the database raises
            pipeline_states(strict=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE django_q_schedule_gone RENAME TO django_q_schedule")
