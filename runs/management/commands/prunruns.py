from django.core.management.base import BaseCommand, CommandError

from runs.retention import prune_runs


class Command(BaseCommand):
    help = (
        "Delete run history past retention: runs older than RUNS_KEEP_DAYS (default 90), per-item "
        "errors older than RUN_ERRORS_KEEP_DAYS (default 30), old django-q2 task results and alert "
        "notifications, record changes and resolved problems older than RECORD_CHANGES_KEEP_DAYS "
        "(default 365). Never deletes a running run or the latest run of a pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument("--keep-days", type=int, help="Override RUNS_KEEP_DAYS.")
        parser.add_argument("--errors-keep-days", type=int, help="Override RUN_ERRORS_KEEP_DAYS.")
        parser.add_argument("--changes-keep-days", type=int, help="Override RECORD_CHANGES_KEEP_DAYS.")
        parser.add_argument("--batch-size", type=int, default=500, help="Runs per transaction (default 500).")

    def handle(self, *args, keep_days, errors_keep_days, batch_size, changes_keep_days=None, **options):
        for name, value in (("--keep-days", keep_days), ("--errors-keep-days", errors_keep_days),
                            ("--batch-size", batch_size), ("--changes-keep-days", changes_keep_days)):
            if value is not None and value < 1:
                raise CommandError(f"{name} must be at least 1")
        result = prune_runs(keep_days=keep_days, errors_keep_days=errors_keep_days, batch_size=batch_size,
                            changes_keep_days=changes_keep_days)
        self.stdout.write(str(result))
