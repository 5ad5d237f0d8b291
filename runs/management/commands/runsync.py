"""runsync: run pipelines by hand (or from cron) and print what they did."""

from __future__ import annotations

import sys
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import Run, RunStatus, RunStep, StepStatus
from runs.pipeline import UnknownPipeline, all_pipelines, get_pipeline
from runs.runner import run_pipeline
from runs.selectors import latest_runs
from runs.templatetags.runs_extras import format_duration

EXIT_SUCCESS, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_SKIPPED = 0, 1, 2, 3, 4

# For several pipelines, the exit code of the worst outcome wins.
_EXIT_FOR_STATUS: dict[str, int] = {
    RunStatus.SUCCESS: EXIT_SUCCESS,
    RunStatus.PARTIAL: EXIT_PARTIAL,
    RunStatus.SKIPPED: EXIT_SKIPPED,
    RunStatus.FAILED: EXIT_FAILED,
    RunStatus.CANCELLED: EXIT_FAILED,
    RunStatus.ABANDONED: EXIT_FAILED,
}
_SEVERITY = [EXIT_SUCCESS, EXIT_SKIPPED, EXIT_PARTIAL, EXIT_FAILED]

EPILOG = """exit codes:
  0  success
  1  failed (or cancelled)
  2  usage error (unknown pipeline: the known ones are listed)
  3  partial: finished, but some items or a non-critical step failed
  4  skipped: the pipeline was already running, or nothing is configured
"""


class Command(BaseCommand):
    help = "Run one or more sync pipelines in order, or list them with --list."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        import argparse

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pipelines", nargs="*", metavar="NAME", help="pipelines to run, in order")
        parser.add_argument("--list", action="store_true", help="list the pipelines with schedule and last status")
        parser.add_argument("--scheduled", action="store_true",
                            help="record the runs as scheduled (unattended: no prompts, no live progress)")
        parser.add_argument("--dry-run", action="store_true",
                            help="read and compare everything, write nothing")
        parser.add_argument("--only", metavar="ID[,ID...]",
                            help="sync only these records (relatiecodes, emails, team or commissie names, "
                                 "dossier ids); nothing else is retired, ended or deleted")
        parser.add_argument("--allow-removals", action="store_true",
                            help="apply removals a pipeline would hold back as a likely mistake "
                                 "(members marked former, memberships ended, list deletions)")

    def handle(self, *args: Any, **options: Any) -> None:
        from rich.console import Console

        out = cast(IO[str], self.stdout._out)  # the wrapped stream: rich writes to it directly
        # Not a terminal (cron, logs, tests): a fixed wide layout, no colours.
        width = None if getattr(out, "isatty", lambda: False)() else 120
        console = Console(file=out, highlight=False, soft_wrap=True, width=width)
        if options["list"]:
            self._list(console)
            return
        names = options["pipelines"]
        if not names:
            raise CommandError("Name at least one pipeline, or use --list.", returncode=EXIT_USAGE)
        for name in names:
            try:
                get_pipeline(name)
            except UnknownPipeline as exc:
                raise CommandError(str(exc), returncode=EXIT_USAGE) from None

        only = None
        if options["only"] is not None:
            from runs.services import check_only

            try:
                only = check_only([part for part in options["only"].split(",") if part.strip()] or [""])
            except ValueError as exc:
                raise CommandError(f"--only: {exc} Separate several with commas: --only ABC1234,DEF5678.",
                                   returncode=EXIT_USAGE) from None

        mode = "scheduled" if options["scheduled"] else "manual"
        live = console.is_terminal and not options["scheduled"]
        worst = EXIT_SUCCESS
        for name in names:
            run = self._run_one(console, name, mode=mode, dry_run=options["dry_run"], live=live, only=only,
                                allow_removals=options["allow_removals"])
            self._summary(console, run)
            code = _EXIT_FOR_STATUS.get(run.status, EXIT_FAILED)
            if _SEVERITY.index(code) > _SEVERITY.index(worst):
                worst = code
        if worst != EXIT_SUCCESS:
            sys.exit(worst)

    def _run_one(self, console: Any, name: str, *, mode: str, dry_run: bool, live: bool,
                 only: list[str] | None = None, allow_removals: bool = False) -> Run:
        if not live:
            return run_pipeline(name, mode=mode, dry_run=dry_run, only=only, allow_removals=allow_removals)
        from rich.live import Live

        holder: dict[str, Any] = {}

        def on_start(tracker: Any) -> None:
            holder["tracker"] = tracker
            holder["live"] = Live(_Progress(tracker, name), console=console, refresh_per_second=4, transient=True)
            holder["live"].start()

        try:
            return run_pipeline(name, mode=mode, dry_run=dry_run, on_start=on_start, only=only,
                                allow_removals=allow_removals)
        finally:
            if "live" in holder:
                holder["live"].stop()

    def _list(self, console: Any) -> None:
        from django.utils import timezone

        from runs.scheduling import pipeline_schedule_states

        pipelines = all_pipelines()
        last = latest_runs([p.name for p in pipelines])
        schedules = pipeline_schedule_states()
        width = max((len(p.name) for p in pipelines), default=4)
        for p in pipelines:
            run = last.get(p.name)
            state = f"{run.status} ({timezone.localtime(run.started_at):%Y-%m-%d %H:%M})" if run else "never run"
            sched = schedules[p.name]
            # The schedule in force: the admin's edit, if any, else the default.
            cron = sched.cron or p.schedule or "-"
            if sched.cron and not sched.enabled:
                upcoming = "disabled"
            elif sched.next_run:
                upcoming = f"next {timezone.localtime(sched.next_run):%Y-%m-%d %H:%M}"
            else:
                upcoming = ""
            if sched.overdue:
                upcoming += f"  OVERDUE (no run since the {timezone.localtime(sched.due_slot):%Y-%m-%d %H:%M} slot)"
            console.print(f"{p.name:<{width}}  {cron:<20}  {state:<29}  {upcoming}".rstrip(), markup=False)

    def _summary(self, console: Any, run: Run) -> None:
        from rich.table import Table

        title = f"{run.pipeline}: {run.status}"
        if run.dry_run:
            title += " (dry run)"
        if run.only:
            title += f" (only {', '.join(run.only)})"
        table = Table(title=title, title_justify="left")
        for column in ("step", "status", "read", "created", "updated", "skipped", "failed", "duration"):
            table.add_column(column, justify="left" if column in ("step", "status") else "right",
                             overflow="fold", min_width=len(column))
        steps = getattr(run, "untracked_steps", None)
        if steps is None:  # the record was written: show what is stored
            steps = list(RunStep.objects.filter(run_id=run.pk).order_by("position")) if run.pk else []
        for s in steps:
            table.add_row(s.name, s.status, str(s.read), str(s.created), str(s.updated), str(s.skipped),
                          str(s.failed), format_duration(s.duration_ms))
        table.add_row("total", run.status, "", str(run.created), str(run.updated), str(run.skipped),
                      str(run.failed), format_duration(run.duration_ms), style="bold")
        console.print(table)
        if run.message:
            console.print(run.message, markup=False)
        # Every failed or held step says why (a non-critical failure leaves no run message),
        # the child runs' steps included (`all`).
        children = list(RunStep.objects.filter(run__parent_id=run.pk).select_related("run")
                        .order_by("run_id", "position")) if run.pk else []
        for s in steps + children:
            if s.reason and (s.status == StepStatus.FAILED or s.held_removals) and s.reason != run.message:
                label = "held removals" if s.held_removals and s.status != StepStatus.FAILED else s.status
                # Untracked steps (StepState) have no run: they are this run's own.
                child_run_id = getattr(s, "run_id", run.pk)
                where = f"{s.run.pipeline}/" if child_run_id != run.pk else ""
                console.print(f"{where}{s.name} {label}: {s.reason}", markup=False)
        if run.error_count:
            console.print(f"{run.error_count} error(s) recorded.", markup=False)
        if getattr(run, "tracking_problem", None):
            console.print("This run's record could not be written; it is recorded as soon as the database "
                          "accepts writes again.", markup=False)
        elif run.pk:
            console.print(f"Details: {run.get_absolute_url()}", markup=False)


class _Progress:
    """Rich renderable showing the live step counters of a tracker."""

    def __init__(self, tracker: Any, name: str) -> None:
        self.tracker = tracker
        self.name = name

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.name}: running", title_justify="left")
        for column in ("step", "status", "progress"):
            table.add_column(column)
        for state in list(self.tracker.steps.values()):
            done = state.created + state.updated + state.skipped + state.failed
            progress = f"{done}/{state.total}" if state.total else (f"{done or state.read}")
            table.add_row(state.name, state.status, progress)
        return table
