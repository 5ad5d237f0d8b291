"""Small pipelines for the tests, registered via RUNS_EXTRA_PIPELINE_MODULES or
imported by tests/conftest.py. They exercise the pipeline API, not the club."""

import os
import time

from django.db import transaction

from runs.models import Run
from runs.pipeline import register


@register("sample", schedule="0 8 * * *")
def sample(run):
    """Reads three items, creates two, one fails."""
    with run.step("sample-download") as step:
        rows = [{"knvb_id": "AAA1111", "n": 1}, {"knvb_id": "BBB2222", "n": 2}, {"email": "c@example.org", "n": 0}]
        step.read(len(rows))
    with run.step("sample-sync", total=len(rows)) as step:
        for row in rows:
            with step.item(row):
                1 / row["n"]
                step.created()
    run.skip_step("sample-submit", "SAMPLE_API_KEY is not set")


@register("clean")
def clean(run):
    """Everything succeeds."""
    with run.step("clean-sync") as step:
        for _ in range(5):
            with step.item():
                step.updated()


@register("boom")
def boom(run):
    """A critical step raises."""
    with run.step("boom-download") as step:
        step.read(1)
    with run.step("boom-sync"):
        raise RuntimeError("the export is unreadable")
    with run.step("never-reached"):
        pass


@register("soft")
def soft(run):
    """A non-critical step raises; the run goes on and ends partial."""
    with run.step("soft-photos", critical=False):
        raise OSError("photo server down")
    with run.step("soft-sync") as step:
        step.created(2)


@register("rollback")
def rollback(run):
    """Items fail inside an atomic block that rolls back."""
    with run.step("rollback-sync") as step:
        try:
            with transaction.atomic():
                for i in range(3):
                    with step.item({"knvb_id": f"RB{i:05d}"}):
                        raise ValueError(f"bad row {i}")
                raise RuntimeError("roll it all back")
        except RuntimeError:
            pass


@register("interrupt")
def interrupt(run):
    with run.step("interrupt-sync"):
        raise KeyboardInterrupt


@register("selfcancel")
def selfcancel(run):
    """Asks for its own cancellation in step 1; step 2 must not run."""
    with run.step("first") as step:
        Run.objects.get(pk=run.run_id).request_cancel()
        step.updated()
    with run.step("second") as step:
        step.updated()


@register("slow")
def slow(run):
    """Runs until cancelled or until SLOW_SECONDS passed (subprocess tests)."""
    limit = float(os.environ.get("SLOW_SECONDS", "30"))
    deadline = time.monotonic() + limit
    with run.step("slow-sync") as step:
        while time.monotonic() < deadline:
            with step.item():
                run.tracker.cancel_event.wait(0.05)
                step.skipped()


@register("stuck")
def stuck(run):
    """Blocks inside one item for SLOW_SECONDS, deaf to cancellation (subprocess tests)."""
    import threading

    with run.step("stuck-sync") as step, step.item():
        step.read()  # tests wait for this count: the item has begun
        threading.Event().wait(float(os.environ.get("SLOW_SECONDS", "30")))


@register("family")
def family(run):
    """Runs children like `all` does."""
    for name in ("sample", "clean", "boom"):
        run.run_child(name)
