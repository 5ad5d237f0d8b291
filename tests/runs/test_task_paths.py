"""Every django-q2 entry point lives in runs.tasks; old Schedule rows are moved there by a migration."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import import_string
from django_q.models import Schedule

from runs.scheduling import MAINTENANCE_TASKS, PIPELINE_TASK

OLD = {"maintenance:alerts": "runs.alerts.run_alert_checks", "maintenance:prune-runs": "runs.retention.run_prune"}
NEW = {"maintenance:alerts": "runs.tasks.run_alert_checks", "maintenance:prune-runs": "runs.tasks.run_prune"}
BEFORE = [("runs", "0008_apitoken_expires_at")]
MIGRATION = [("runs", "0009_schedule_funcs_in_runs_tasks")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_every_scheduled_function_is_a_callable_in_runs_tasks():
    for path in [PIPELINE_TASK] + [task.func for task in MAINTENANCE_TASKS]:
        assert path.startswith("runs.tasks.")
        assert callable(import_string(path))


@pytest.mark.django_db
def test_syncschedules_schedules_the_new_paths():
    Schedule.objects.all().delete()
    call_command("syncschedules", verbosity=0)
    funcs = dict(Schedule.objects.filter(name__in=NEW).values_list("name", "func"))
    assert funcs == NEW


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_old_schedule_rows_to_runs_tasks_and_back():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("runs")
    try:
        migrate(BEFORE)
        Schedule.objects.all().delete()
        for name, func in OLD.items():  # as an installation made before the move has them
            Schedule.objects.create(name=name, func=func, schedule_type=Schedule.CRON, cron="*/3 * * * *")
        Schedule.objects.create(name="someone else's", func="math.floor", args="1.5")
        migrate(MIGRATION)
        assert dict(Schedule.objects.filter(name__in=NEW).values_list("name", "func")) == NEW
        assert Schedule.objects.get(name="someone else's").func == "math.floor"
        migrate(BEFORE)  # backwards: the old code would find its own paths again
        assert dict(Schedule.objects.filter(name__in=OLD).values_list("name", "func")) == OLD
    finally:
        migrate(latest)
    assert dict(Schedule.objects.filter(name__in=NEW).values_list("name", "func")) == NEW
