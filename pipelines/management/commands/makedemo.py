from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from pipelines.demodata import write_demo
from pipelines.sources import DEMO_DIR


class Command(BaseCommand):
    help = (
        "Write deterministic synthetic Sportlink and Nikki exports (members, teams, functions, discipline "
        "cases, contributions, photos) into a directory. Without --out it rewrites the bundled demo."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=500, help="number of members (default 500)")
        parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
        parser.add_argument("--year", type=int, default=2026, help="the current season year (default 2026)")
        parser.add_argument("--photos", type=int, default=8, help="members with a photo (default 8)")
        parser.add_argument("--out", default=str(DEMO_DIR), help=f"output directory (default {DEMO_DIR})")

    def handle(self, *args, members, seed, year, photos, out, **options):
        if members < 1:
            raise CommandError("--members must be at least 1")
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a directory")
        counts = write_demo(out, members=members, seed=seed, year=year, photos=photos)
        summary = ", ".join(f"{kind} {count}" for kind, count in counts.items())
        self.stdout.write(f"Wrote demo exports to {out}: {summary} rows.")
