"""pruneruns: delete run history past retention (runs.retention; also a daily django-q2 schedule)."""

import argparse

from django.core.management.base import BaseCommand

from runs.retention import prune_runs

MAX_DAYS = 36500  # a century; more would overflow the date arithmetic


def _bounded(maximum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be between 1 and {maximum}, got {text!r}")
        return value

    return parse


class Command(BaseCommand):
    help = (
        "Delete run history past retention: runs older than RUNS_KEEP_DAYS (default 90), per-item "
        "errors older than RUN_ERRORS_KEEP_DAYS (default 30), old django-q2 task results and alert "
        "notifications, record changes and resolved problems older than RECORD_CHANGES_KEEP_DAYS "
        "(default 365). Never deletes a running run or the latest run of a pipeline."
    )

    def add_arguments(self, parser):
        # Out-of-range values are usage errors (exit code 2), not tracebacks.
        parser.add_argument("--keep-days", type=_bounded(MAX_DAYS), help="Override RUNS_KEEP_DAYS.")
        parser.add_argument("--errors-keep-days", type=_bounded(MAX_DAYS), help="Override RUN_ERRORS_KEEP_DAYS.")
        parser.add_argument("--changes-keep-days", type=_bounded(MAX_DAYS), help="Override RECORD_CHANGES_KEEP_DAYS.")
        parser.add_argument("--batch-size", type=_bounded(100_000), default=500,
                            help="Runs per transaction (default 500).")

    def handle(self, *args, keep_days, errors_keep_days, batch_size, changes_keep_days=None, **options):
        result = prune_runs(keep_days=keep_days, errors_keep_days=errors_keep_days, batch_size=batch_size,
                            changes_keep_days=changes_keep_days)
        self.stdout.write(str(result))
