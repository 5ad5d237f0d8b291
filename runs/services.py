"""Selectors and small services over run history, shared by views, commands and tasks."""

from __future__ import annotations

from collections.abc import Iterable

from runs.models import Run


def latest_runs(pipelines: Iterable[str]) -> dict[str, Run]:
    """The most recent top-level run of each pipeline.

    One indexed LIMIT-1 query per pipeline (run_pipeline_started): with seven
    pipelines that is cheaper and simpler than a grouped query over history.
    """
    result = {}
    for name in pipelines:
        run = Run.objects.filter(pipeline=name).order_by("-started_at", "-id").first()
        if run is not None:
            result[name] = run
    return result


def format_duration(ms: int | None) -> str:
    """A duration for people: `850 ms`, `12.3 s`, `2 m 05 s`, `1 h 02 m`."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"
