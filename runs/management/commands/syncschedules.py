"""syncschedules: create or update the django-q2 Schedules of the pipelines."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from runs.scheduling import sync_schedules


class Command(BaseCommand):
    help = (
        "Create or update a cron Schedule (django-q2) for every pipeline's default schedule and every "
        "maintenance task. Idempotent. Schedules changed in the admin (another cron, another type, or "
        "disabled with repeats = 0) are kept as they are; --reset restores the defaults."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", action="store_true",
                            help="restore the default of every schedule, including those edited in the admin")

    def handle(self, *args: Any, reset: bool = False, **options: Any) -> None:
        report = sync_schedules(reset=reset)
        if options["verbosity"] >= 1:
            for label, names in (("created", report.created), ("updated", report.updated),
                                 ("reset", report.reset), ("removed", report.removed)):
                for name in names:
                    self.stdout.write(f"{label}: {name}")
            for name, why in report.kept:
                self.stdout.write(f"kept: {name} ({why}; --reset restores the default)")
        self.stdout.write(f"Schedules: {report.summary()}.")
