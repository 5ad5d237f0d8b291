"""Cron slots across DST, overdue detection, schedule states and syncschedules."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from runs.models import PipelineSettings, Run
from runs.scheduling import (
    MAINTENANCE_TASKS,
    last_expected_slot,
    next_run,
    overdue_pipelines,
    pipeline_schedule_states,
    sync_schedules,
)

AMS = ZoneInfo("Europe/Amsterdam")
HOUR = 3600


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def local(*args, fold=0):
    return datetime(*args, tzinfo=AMS, fold=fold)


@pytest.fixture
def q_sync(settings, monkeypatch):
    # django-q2 reads Q_CLUSTER once, into Conf, when it is imported.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def no_schedules(db):
    # post_migrate (also sent after each transactional test's flush) syncs them,
    # and records when each pipeline's schedule started (overdue counts from
    # then): without a schedule, every slot counts, whenever the database was made.
    Schedule.objects.all().delete()
    PipelineSettings.objects.update(schedule_since=None)


def started(pipeline, at, status="success"):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=at, finished_at=at + timedelta(seconds=5))


# --- cron arithmetic -------------------------------------------------------------


def test_next_run_is_the_next_local_slot_and_aware():
    now = local(2026, 5, 1, 9, 30)
    result = next_run("0 8,11,14,17 * * *", now=now)
    assert result == local(2026, 5, 1, 11, 0) and result.utcoffset() == timedelta(0)
    assert next_run("0 8,11,14,17 * * *", now=local(2026, 5, 1, 17, 0)) == local(2026, 5, 2, 8, 0)


def test_last_expected_slot_includes_a_slot_exactly_now():
    assert last_expected_slot("0 8 * * *", now=local(2026, 5, 1, 8, 0)) == local(2026, 5, 1, 8, 0)
    assert last_expected_slot("0 8 * * *", now=local(2026, 5, 1, 7, 59)) == local(2026, 4, 30, 8, 0)
    assert last_expected_slot(None, now=local(2026, 5, 1, 8, 0)) is None


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="^an aware datetime is required$"):
        next_run("0 8 * * *", now=datetime(2026, 5, 1, 8, 0))


def test_a_daily_slot_keeps_its_local_time_across_the_march_change():
    # Last Sunday of March 2026: 02:00 CET -> 03:00 CEST.
    before = last_expected_slot("0 8 * * *", now=utc(2026, 3, 28, 12, 0))
    assert before == utc(2026, 3, 28, 7, 0)
    assert next_run("0 8 * * *", now=utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 6, 0)
    assert last_expected_slot("0 8 * * *", now=utc(2026, 3, 29, 6, 30)) == utc(2026, 3, 29, 6, 0)


def test_a_daily_slot_keeps_its_local_time_across_the_october_change():
    # Last Sunday of October 2026: 03:00 CEST -> 02:00 CET.
    assert next_run("0 8 * * *", now=utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 7, 0)
    assert last_expected_slot("0 8 * * *", now=utc(2026, 10, 25, 7, 0)) == utc(2026, 10, 25, 7, 0)
    assert last_expected_slot("0 8 * * *", now=utc(2026, 10, 25, 6, 59)) == utc(2026, 10, 24, 6, 0)


def test_a_slot_in_the_spring_gap_fires_when_the_gap_ends():
    # 02:30 does not exist on 29 March 2026; like cron, it fires at 03:00 CEST.
    assert next_run("30 2 * * *", now=utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 0)
    assert next_run("30 2 * * *", now=utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 30, 0, 30)


def test_a_slot_in_the_repeated_autumn_hour_is_both_instants():
    first = next_run("30 2 * * *", now=utc(2026, 10, 24, 12, 0))
    second = next_run("30 2 * * *", now=first)
    assert (first, second) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    assert [f"{timezone.localtime(t):%H:%M%z}" for t in (first, second)] == ["02:30+0200", "02:30+0100"]
    assert last_expected_slot("30 2 * * *", now=utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 1, 30)


def test_hourly_slots_are_one_real_hour_apart_through_both_changes():
    for start in (utc(2026, 3, 28, 22, 0), utc(2026, 10, 24, 21, 0)):
        slot = start
        for _ in range(8):
            following = next_run("0 * * * *", now=slot)
            assert following - slot == timedelta(hours=1) and following.tzinfo == UTC
            slot = following


@time_machine.travel(utc(2026, 3, 29, 0, 10), tick=False)
def test_django_q_computes_the_same_next_run_as_we_do():
    # django-q2 reads cron in Q_CLUSTER's time zone, which defaults to TIME_ZONE.
    assert Conf.TIME_ZONE == "Europe/Amsterdam"
    for cron in ("0 8 * * *", "30 2 * * *", "*/5 * * * *", "0 8,11,14,17 * * 1-5"):
        schedule = Schedule(schedule_type=Schedule.CRON, cron=cron)
        assert schedule.calculate_next_run() == next_run(cron, now=utc(2026, 3, 29, 0, 10))


# --- overdue -----------------------------------------------------------------------


@pytest.fixture
def four_hours_grace(settings):
    settings.RUNS_OVERDUE_GRACE_S = 4 * HOUR


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_overdue_waits_for_the_grace_after_the_slot_in_local_time_across_the_march_change():
    started("sample", local(2026, 3, 28, 8, 0, 20))  # the Saturday slot ran
    # Sunday 29 March (CEST): the 08:00 slot is 06:00 UTC, its grace ends 10:00 UTC.
    with time_machine.travel(utc(2026, 3, 29, 9, 59), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert not state.overdue
        assert state.last_slot == utc(2026, 3, 29, 6, 0)
        assert state.next_run == utc(2026, 3, 30, 6, 0)
    with time_machine.travel(utc(2026, 3, 29, 10, 1), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.overdue and state.due_slot == utc(2026, 3, 29, 6, 0)
        assert "sample" in [s.name for s in overdue_pipelines()]
    # An explicit `now` is the one used, whatever the clock says.
    with time_machine.travel(utc(2026, 3, 29, 9, 0), tick=False):
        assert "sample" in [s.name for s in overdue_pipelines(now=utc(2026, 3, 29, 10, 1))]
        assert "sample" not in [s.name for s in overdue_pipelines()]


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_overdue_across_the_october_change():
    started("sample", local(2026, 10, 24, 8, 0, 20))
    # Sunday 25 October (CET): the 08:00 slot is 07:00 UTC, its grace ends 11:00 UTC.
    with time_machine.travel(utc(2026, 10, 25, 10, 59), tick=False):
        assert not pipeline_schedule_states()["sample"].overdue
    with time_machine.travel(utc(2026, 10, 25, 11, 0, 30), tick=False):
        assert pipeline_schedule_states()["sample"].overdue
    started("sample", utc(2026, 10, 25, 11, 2))  # a late run clears it
    with time_machine.travel(utc(2026, 10, 25, 11, 5), tick=False):
        assert not pipeline_schedule_states()["sample"].overdue


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_slots_closer_than_the_grace_still_make_a_pipeline_overdue():
    with time_machine.travel(local(2026, 5, 1, 12, 0), tick=False):  # the schedule exists since then
        call_command("syncschedules", verbosity=0)
    Schedule.objects.filter(name="pipeline:sample").update(cron="0 8,11,14,17 * * *")
    started("sample", local(2026, 5, 4, 8, 0, 10))
    with time_machine.travel(local(2026, 5, 4, 14, 30), tick=False):
        assert not pipeline_schedule_states()["sample"].overdue  # 11:00 + 4 h not reached
    with time_machine.travel(local(2026, 5, 4, 15, 0, 1), tick=False):
        assert pipeline_schedule_states()["sample"].overdue  # nothing since the 11:00 slot


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_a_pipeline_that_never_ran_is_overdue_once_a_slot_and_the_grace_passed():
    with time_machine.travel(local(2026, 5, 4, 9, 0), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.last_started_at is None and state.overdue  # the 3 May 08:00 slot
    with time_machine.travel(local(2026, 5, 4, 9, 0), tick=False):
        clean = pipeline_schedule_states()["clean"]  # no schedule at all
        assert (clean.cron, clean.enabled, clean.next_run, clean.overdue) == (None, False, None, False)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_a_skipped_or_failed_run_still_counts_as_having_run():
    started("sample", local(2026, 5, 4, 8, 0, 5), status="failed")
    with time_machine.travel(local(2026, 5, 4, 20, 0), tick=False):
        assert not pipeline_schedule_states()["sample"].overdue


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_the_grace_period_is_configurable(settings):
    settings.RUNS_OVERDUE_GRACE_S = 600
    started("sample", local(2026, 5, 3, 8, 0, 5))
    with time_machine.travel(local(2026, 5, 4, 8, 9), tick=False):
        assert not pipeline_schedule_states()["sample"].overdue
    with time_machine.travel(local(2026, 5, 4, 8, 11), tick=False):
        assert pipeline_schedule_states()["sample"].overdue


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_an_admin_edited_cron_wins_and_a_disabled_schedule_is_never_overdue():
    call_command("syncschedules", verbosity=0)
    row = Schedule.objects.get(name="pipeline:sample")
    row.cron = "0 9 * * *"
    row.save()
    with time_machine.travel(local(2026, 5, 4, 8, 30), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.cron == "0 9 * * *" and state.default_cron == "0 8 * * *"
        assert state.last_slot == local(2026, 5, 3, 9, 0)
    Schedule.objects.filter(pk=row.pk).update(repeats=0)
    with time_machine.travel(local(2026, 5, 4, 20, 0), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert (state.enabled, state.overdue, state.next_run) == (False, False, None)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules")
def test_next_run_is_the_schedules_own_while_it_lies_ahead():
    call_command("syncschedules", verbosity=0)
    ahead = timedelta(minutes=3)
    with time_machine.travel(local(2026, 5, 4, 7, 0), tick=False):
        Schedule.objects.filter(name="pipeline:sample").update(next_run=local(2026, 5, 4, 7, 0) + ahead)
        assert pipeline_schedule_states()["sample"].next_run == local(2026, 5, 4, 7, 3)
        Schedule.objects.filter(name="pipeline:sample").update(next_run=local(2026, 5, 1, 7, 0))
        assert pipeline_schedule_states()["sample"].next_run == local(2026, 5, 4, 8, 0)


@pytest.mark.django_db
def test_states_take_a_constant_number_of_queries(django_assert_max_num_queries):
    for i in range(3):
        started("sample", local(2026, 5, 1 + i, 8, 0))
        started("clean", local(2026, 5, 1 + i, 9, 0))
    with django_assert_max_num_queries(3):
        states = pipeline_schedule_states()
    assert states["clean"].last_started_at == local(2026, 5, 3, 9, 0)
    assert states["sample"].last_started_at == local(2026, 5, 3, 8, 0)


# --- syncschedules -----------------------------------------------------------------


def _rows():
    return {s.name: (s.func, s.args, s.schedule_type, s.cron, s.repeats, s.next_run)
            for s in Schedule.objects.order_by("name")}


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules")
def test_syncschedules_creates_one_cron_schedule_per_scheduled_pipeline_and_maintenance_task(capsys):
    call_command("syncschedules")
    rows = _rows()
    assert rows["pipeline:sample"][:5] == ("runs.tasks.run_pipeline_task", "'sample'", Schedule.CRON,
                                           "0 8 * * *", -1)
    assert "pipeline:clean" not in rows  # no default schedule
    for task in MAINTENANCE_TASKS:
        assert rows[f"maintenance:{task.name}"][:4] == (task.func, None, Schedule.CRON, task.cron)
    assert rows["maintenance:reap-stale-runs"][3] == "*/5 * * * *"
    assert "created: pipeline:sample" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules")
def test_syncschedules_is_idempotent(capsys):
    call_command("syncschedules")
    first = _rows()
    capsys.readouterr()
    call_command("syncschedules")
    assert _rows() == first
    out = capsys.readouterr().out
    assert "0 created, 0 updated" in out and "created:" not in out and "updated:" not in out


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules")
def test_syncschedules_keeps_an_admin_edited_or_disabled_schedule_until_reset(capsys):
    call_command("syncschedules", verbosity=0)
    Schedule.objects.filter(name="pipeline:sample").update(cron="15 6 * * 1-5")
    Schedule.objects.filter(name="maintenance:reap-stale-runs").update(repeats=0)
    edited = _rows()
    call_command("syncschedules")
    assert _rows() == edited
    out = capsys.readouterr().out
    assert "kept: pipeline:sample (cron '15 6 * * 1-5' differs from the default '0 8 * * *'" in out
    assert "kept: maintenance:reap-stale-runs (disabled" in out

    with time_machine.travel(local(2026, 5, 4, 7, 0), tick=False):
        call_command("syncschedules", "--reset")
    rows = _rows()
    assert rows["pipeline:sample"][3:] == ("0 8 * * *", -1, local(2026, 5, 4, 8, 0))
    assert rows["maintenance:reap-stale-runs"][4] == -1
    assert "reset: pipeline:sample" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules")
def test_syncschedules_repairs_what_the_code_owns_and_removes_orphans():
    call_command("syncschedules", verbosity=0)
    Schedule.objects.filter(name="pipeline:sample").update(func="runs.tasks.old_name", next_run=None)
    Schedule.objects.create(name="pipeline:gone", func="runs.tasks.run_pipeline_task", args="'gone'",
                            schedule_type=Schedule.CRON, cron="0 1 * * *")
    Schedule.objects.create(name="pipeline:clean", func="runs.tasks.run_pipeline_task", args="'clean'",
                            schedule_type=Schedule.CRON, cron="0 1 * * *")
    Schedule.objects.create(name="someone else's", func="math.floor", args="1.5")
    report = sync_schedules()
    assert report.updated == ["pipeline:sample"] and report.removed == ["pipeline:gone"]
    assert ("pipeline:clean", "no default schedule; created by hand") in report.kept
    sample = Schedule.objects.get(name="pipeline:sample")
    assert sample.func == "runs.tasks.run_pipeline_task" and sample.next_run is not None
    assert Schedule.objects.filter(name="someone else's").exists()


@pytest.mark.django_db(transaction=True)
def test_migrate_syncs_the_schedules():
    # pytest-django's flush after the previous test sends post_migrate too;
    # run the real thing to be sure it is wired.
    Schedule.objects.all().delete()
    call_command("migrate", verbosity=0)
    assert Schedule.objects.filter(name="maintenance:reap-stale-runs").exists()


@pytest.mark.django_db(transaction=True)
def test_a_due_schedule_runs_the_pipeline_once_as_scheduled_even_after_downtime(monkeypatch):
    from django_q.brokers import get_broker
    from django_q.scheduler import scheduler
    from django_q.tasks import _sync

    Schedule.objects.all().delete()
    sync_schedules()
    # The cluster was down for three days: catch_up is off, so one task, not three.
    assert Conf.CATCH_UP is False
    Schedule.objects.filter(name="pipeline:sample").update(next_run=datetime.now(UTC) - timedelta(days=3))
    Schedule.objects.exclude(name="pipeline:sample").delete()
    scheduler()  # what the cluster's guard does every 30 s
    row = Schedule.objects.get(name="pipeline:sample")
    assert row.next_run > datetime.now(UTC)
    broker = get_broker()
    queued = broker.dequeue()
    assert len(queued) == 1
    # Execute it the way a worker does, in this process (sync keeps our connection).
    monkeypatch.setattr(Conf, "SYNC", True)
    _sync(queued[0][1])
    broker.acknowledge(queued[0][0])
    run = Run.objects.get(pipeline="sample")
    assert run.mode == "scheduled" and run.task_id == row.task


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_runsync_list_shows_the_next_run_and_overdue_pipelines():
    import io

    started("clean", local(2026, 5, 4, 9, 0))
    out = io.StringIO()
    with time_machine.travel(local(2026, 5, 1, 12, 0), tick=False):
        call_command("syncschedules", verbosity=0)
    with time_machine.travel(local(2026, 5, 4, 13, 0), tick=False):
        Schedule.objects.filter(name="pipeline:sample").update(repeats=0)
        call_command("runsync", "--list", stdout=out)
        Schedule.objects.filter(name="pipeline:sample").update(repeats=-1)
        call_command("runsync", "--list", stdout=out)
    first, second = out.getvalue().split("\nsample")[1:3]
    assert first.split("\n")[0].rstrip().endswith("disabled")
    assert "next 2026-05-05 08:00  OVERDUE (no run since the 2026-05-04 08:00 slot)" in second.split("\n")[0]


# --- overdue: the grace is a real duration, and a run at the slot counts ------------


def test_the_grace_is_real_time_when_it_spans_the_march_change():
    from runs.scheduling import due_slot, is_overdue

    grace = timedelta(hours=4)
    # 29 March 2026: the 01:00 CET slot is 00:00 UTC; at 02:00 CET the clocks jump to 03:00 CEST.
    # Four real hours later is 04:00 UTC = 06:00 CEST (wall-clock arithmetic would say 05:00 CEST).
    ran = utc(2026, 3, 28, 0, 0, 30)
    at_0545_cest = utc(2026, 3, 29, 3, 45)
    assert due_slot("0 1 * * *", now=at_0545_cest, grace=grace) == utc(2026, 3, 28, 0, 0)
    assert not is_overdue("0 1 * * *", ran, now=at_0545_cest, grace=grace)
    assert not is_overdue("0 1 * * *", ran, now=utc(2026, 3, 29, 3, 59, 59), grace=grace)
    assert due_slot("0 1 * * *", now=utc(2026, 3, 29, 4, 0), grace=grace) == utc(2026, 3, 29, 0, 0)
    assert is_overdue("0 1 * * *", ran, now=utc(2026, 3, 29, 4, 0, 1), grace=grace)


def test_the_grace_is_real_time_when_it_spans_the_october_change():
    from runs.scheduling import is_overdue

    grace = timedelta(hours=4)
    # 25 October 2026: the 01:00 CEST slot is 23:00 UTC the day before; at 03:00 CEST the clocks
    # go back to 02:00 CET. Four real hours later is 03:00 UTC = 04:00 CET (not 05:00 CET).
    ran = utc(2026, 10, 23, 23, 0, 30)
    assert not is_overdue("0 1 * * *", ran, now=utc(2026, 10, 25, 2, 59), grace=grace)
    assert is_overdue("0 1 * * *", ran, now=utc(2026, 10, 25, 3, 0, 1), grace=grace)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_the_states_apply_the_grace_in_real_time_across_the_march_change():
    # The schedule exists from before the slots in question (only later slots count as overdue).
    with time_machine.travel(utc(2026, 3, 1), tick=False):
        call_command("syncschedules", verbosity=0)
    Schedule.objects.filter(name="pipeline:sample").update(cron="0 1 * * *")
    started("sample", utc(2026, 3, 28, 0, 0, 30))
    with time_machine.travel(utc(2026, 3, 29, 3, 45), tick=False):  # 05:45 CEST
        assert not pipeline_schedule_states()["sample"].overdue
    with time_machine.travel(utc(2026, 3, 29, 4, 0, 1), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.overdue and state.due_slot == utc(2026, 3, 29, 0, 0)


def test_a_run_that_started_exactly_at_the_slot_is_not_overdue():
    from runs.scheduling import is_overdue

    slot = utc(2026, 5, 4, 6, 0)  # 08:00 CEST
    later = utc(2026, 5, 4, 9, 0)
    grace = timedelta(hours=2)  # not the default: the argument must be the one applied
    assert not is_overdue("0 8 * * *", slot, now=later, grace=grace)
    assert is_overdue("0 8 * * *", slot - timedelta(microseconds=1), now=later, grace=grace)
    assert is_overdue("0 8 * * *", None, now=later, grace=grace)
    yesterday = slot - timedelta(days=1)
    assert is_overdue("0 8 * * *", yesterday, now=later, grace=grace)
    assert not is_overdue("0 8 * * *", yesterday, now=later, grace=timedelta(hours=4))  # today's not due yet
    assert not is_overdue(None, None, now=later)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_schedules", "four_hours_grace")
def test_the_states_count_a_run_that_started_exactly_at_the_slot():
    started("sample", local(2026, 5, 4, 8, 0))
    with time_machine.travel(local(2026, 5, 4, 14, 0), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.due_slot == local(2026, 5, 4, 8, 0) and not state.overdue
    Run.objects.all().delete()
    started("sample", local(2026, 5, 4, 7, 59, 59))
    with time_machine.travel(local(2026, 5, 4, 14, 0), tick=False):
        assert pipeline_schedule_states()["sample"].overdue


def test_without_a_grace_argument_the_setting_applies_and_four_hours_without_it(settings):
    from runs.scheduling import due_slot, is_overdue, overdue_grace

    settings.RUNS_OVERDUE_GRACE_S = 600
    assert overdue_grace() == timedelta(minutes=10)
    ran = local(2026, 5, 3, 8, 0, 5)
    assert due_slot("0 8 * * *", now=local(2026, 5, 4, 8, 9)) == local(2026, 5, 3, 8, 0)
    assert due_slot("0 8 * * *", now=local(2026, 5, 4, 8, 11)) == local(2026, 5, 4, 8, 0)
    assert not is_overdue("0 8 * * *", ran, now=local(2026, 5, 4, 8, 9))
    assert is_overdue("0 8 * * *", ran, now=local(2026, 5, 4, 8, 11))
    del settings.RUNS_OVERDUE_GRACE_S
    assert overdue_grace() == timedelta(hours=4)


def test_the_last_slot_is_the_previous_one_until_the_slot_itself():
    slot = local(2026, 5, 4, 8, 0)
    assert last_expected_slot("0 8 * * *", now=slot - timedelta(microseconds=1)) == local(2026, 5, 3, 8, 0)
    assert last_expected_slot("0 8 * * *", now=slot) == slot
    assert last_expected_slot("0 8 * * *", now=slot + timedelta(microseconds=1)) == slot
