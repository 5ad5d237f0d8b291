"""Point existing django-q2 Schedules at the maintenance tasks' new home, runs.tasks.

The alerts and retention tasks moved from runs.alerts / runs.retention into
runs.tasks (every django-q2 entry point lives there). Installations made
before have Schedule rows calling the old dotted paths, which no longer
exist: rewrite them (and back, when migrating backwards). Rows an admin made
by hand with the old paths are rewritten too, since they could only fail.
"""

from django.db import migrations

MOVED = {
    "runs.alerts.run_alert_checks": "runs.tasks.run_alert_checks",
    "runs.retention.run_prune": "runs.tasks.run_prune",
}


def _rewrite(apps, mapping: dict[str, str]) -> None:
    schedule = apps.get_model("django_q", "Schedule")
    for old, new in mapping.items():
        schedule.objects.filter(func=old).update(func=new)


def forwards(apps, schema_editor) -> None:
    _rewrite(apps, MOVED)


def backwards(apps, schema_editor) -> None:
    _rewrite(apps, {new: old for old, new in MOVED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0008_apitoken_expires_at"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
