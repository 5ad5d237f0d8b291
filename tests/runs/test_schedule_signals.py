"""Schedule edits keep next_run and the overdue counting start in step (runs.scheduling signals).

Overdue counts slots from `PipelineSettings.schedule_since`: the moment a pipeline's
Schedule row was created, enabled again or given a new cron or type. The same
signal recomputes next_run when the cron or type changes (the admin saving the row),
and leaves both alone for any other save.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db.models.signals import post_save, pre_save
from django_q.models import Schedule

from runs.models import PipelineSettings
from runs.scheduling import PIPELINE_PREFIX, connect_schedule_signals

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 2, 5, 0, tzinfo=UTC)  # 07:00 in Amsterdam
NAME = "signal-test"


def since(pipeline=NAME):
    return PipelineSettings.objects.filter(pipeline=pipeline).values_list("schedule_since", flat=True).first()


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def cron_schedule(cron="0 8 * * *", name=PIPELINE_PREFIX + NAME, **fields):
    return Schedule.objects.create(name=name, func="runs.tasks.run_scheduled", schedule_type=Schedule.CRON,
                                   cron=cron, **fields)


def minutes_schedule(minutes=30, **fields):
    return Schedule.objects.create(name=PIPELINE_PREFIX + NAME, func="runs.tasks.run_scheduled",
                                   schedule_type=Schedule.MINUTES, minutes=minutes, next_run=T0, **fields)


def test_creating_a_pipeline_schedule_starts_its_counting_now(clock):
    schedule = cron_schedule()
    assert since() == T0
    assert schedule.next_run == datetime(2025, 6, 2, 6, 0, tzinfo=UTC)  # 08:00 local


def test_a_schedule_that_is_not_a_pipelines_records_nothing(clock):
    before = set(PipelineSettings.objects.values_list("pipeline", "schedule_since"))
    cron_schedule(name="maintenance:prune")
    Schedule.objects.create(name="", func="runs.tasks.prune", schedule_type=Schedule.CRON, cron="0 3 * * *")
    assert set(PipelineSettings.objects.values_list("pipeline", "schedule_since")) == before


def test_a_long_pipeline_name_is_recorded_cut_to_the_settings_column():
    name = "p" * 70
    cron_schedule(name=PIPELINE_PREFIX + name)
    assert PipelineSettings.objects.filter(pipeline=name[:64]).exists()


def test_a_new_cron_moves_the_counting_start_and_next_run(clock):
    schedule = cron_schedule()
    clock.shift(timedelta(hours=3))  # 10:00 local
    schedule.cron = "30 18 * * *"
    schedule.save()
    assert since() == T0 + timedelta(hours=3)
    assert Schedule.objects.get(pk=schedule.pk).next_run == datetime(2025, 6, 2, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize("change", ["nothing", "spaces around the cron", "another field"])
def test_a_save_that_changes_no_timing_keeps_the_counting_start_and_next_run(clock, change):
    schedule = cron_schedule()
    clock.shift(timedelta(hours=3))  # past the 08:00 slot: a recomputed next_run would be tomorrow's
    if change == "spaces around the cron":
        schedule.cron = "  0 8 * * *  "
    elif change == "another field":
        schedule.func = "runs.tasks.other"
    schedule.save()
    assert since() == T0
    assert Schedule.objects.get(pk=schedule.pk).next_run == datetime(2025, 6, 2, 6, 0, tzinfo=UTC)


def test_a_minutes_schedule_saved_unchanged_keeps_its_next_run(clock):
    schedule = minutes_schedule()
    clock.shift(timedelta(hours=1))
    schedule.save()
    assert since() == T0
    assert Schedule.objects.get(pk=schedule.pk).next_run == T0


def test_new_minutes_count_from_now(clock):
    schedule = minutes_schedule()
    clock.shift(timedelta(hours=1))
    schedule.minutes = 45
    schedule.save()
    assert since() == T0 + timedelta(hours=1)
    assert Schedule.objects.get(pk=schedule.pk).next_run == T0 + timedelta(hours=1, minutes=45)


def test_switching_a_cron_schedule_to_minutes_counts_the_minutes_not_the_old_cron(clock):
    schedule = cron_schedule()
    clock.shift(timedelta(hours=1))
    schedule.schedule_type, schedule.minutes = Schedule.MINUTES, 20  # the cron text stays in the row
    schedule.save()
    assert since() == T0 + timedelta(hours=1)
    assert Schedule.objects.get(pk=schedule.pk).next_run == T0 + timedelta(hours=1, minutes=20)


def test_switching_to_once_keeps_the_next_run_the_admin_set(clock):
    schedule = cron_schedule()
    clock.shift(timedelta(hours=1))
    once = T0 + timedelta(days=2)
    schedule.schedule_type, schedule.next_run = Schedule.ONCE, once
    schedule.save()
    assert Schedule.objects.get(pk=schedule.pk).next_run == once
    assert since() == T0 + timedelta(hours=1)


@pytest.mark.parametrize("repeats", [-1, 1])
def test_enabling_again_moves_the_counting_start_and_disabling_does_not(clock, repeats):
    schedule = cron_schedule()
    clock.shift(timedelta(days=1))
    schedule.repeats = 0
    schedule.save()
    assert since() == T0
    clock.shift(timedelta(days=1))
    schedule.repeats = repeats
    schedule.save()
    assert since() == T0 + timedelta(days=2)


def test_a_fixture_load_records_nothing(clock):
    schedule = Schedule(name=PIPELINE_PREFIX + NAME, func="runs.tasks.run_scheduled", schedule_type=Schedule.CRON,
                        cron="0 8 * * *", next_run=T0)
    schedule.save_base(raw=True)
    assert since() is None


def test_the_signals_are_connected_once_for_schedules_only(clock):
    receivers = (pre_save, "runs.scheduling.schedule_pre_save"), (post_save, "runs.scheduling.schedule_post_save")
    for signal, uid in receivers:
        assert signal.disconnect(sender=Schedule, dispatch_uid=uid)
    try:
        cron_schedule(name=PIPELINE_PREFIX + "unwatched")
        assert since("unwatched") is None
        connect_schedule_signals()
        connect_schedule_signals()  # connecting twice (ready() runs again) changes nothing
        cron_schedule()
        assert since() == T0
        # Other models' saves are not theirs.
        PipelineSettings.objects.create(pipeline="other")
        for signal, uid in receivers:
            assert signal.disconnect(sender=Schedule, dispatch_uid=uid), uid
            assert not signal.disconnect(sender=Schedule, dispatch_uid=uid), uid
    finally:
        connect_schedule_signals()
