import logging
from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate

logger = logging.getLogger("runs")


def _sync_schedules_after_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    # Keeps the django-q2 Schedules in step with the registered pipelines on
    # every deploy (`migrate`). Never fails the migration: a problem here is
    # logged and `syncschedules` shows it again.
    if using != DEFAULT_DB_ALIAS:
        return
    from runs.scheduling import sync_schedules

    try:
        sync_schedules()
    except Exception:
        logger.exception("could not sync the schedules after migrate; run `manage.py syncschedules`")


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Sync runs"

    def ready(self) -> None:
        # Pipelines register themselves when their modules are imported; the
        # club's come from the `pipelines` app, extra ones (tests) from settings.
        for module in settings.RUNS_EXTRA_PIPELINE_MODULES:
            import_module(module)
        # syncsite's deployment checks (`manage.py check --deploy`).
        import_module("syncsite.checks")
        # Connects the django-q2 signal that tells a task its own id.
        import_module("runs.tasks")
        # Schedule edits recompute next_run and restart overdue counting.
        from runs.scheduling import connect_schedule_signals

        connect_schedule_signals()
        # Sent once per app after `migrate` (and `flush`) has applied every
        # app's migrations, so django_q's Schedule table exists by then.
        post_migrate.connect(_sync_schedules_after_migrate, sender=self,
                             dispatch_uid="runs.sync_schedules_after_migrate")
