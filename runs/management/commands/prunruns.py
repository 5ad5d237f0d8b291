"""prunruns: the old name of `pruneruns`, kept so installed cron jobs keep working.

Deprecated: it says so on stderr, in one line, then does exactly what
`pruneruns` does with the same options and output.
"""

from runs.management.commands.pruneruns import Command as PruneRuns

DEPRECATION = "prunruns is deprecated and will be removed; run `manage.py pruneruns` instead (same options)."


class Command(PruneRuns):
    help = f"Deprecated name of pruneruns. {PruneRuns.help}"

    def handle(self, *args, **options):
        self.stderr.write(DEPRECATION)
        super().handle(*args, **options)
