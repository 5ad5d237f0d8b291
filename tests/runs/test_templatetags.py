"""runs_extras: the formatting and the SVG the pages are built from."""

import re
from datetime import timedelta

import time_machine
from django.utils import timezone

from runs.models import Run, RunStep
from runs.templatetags.runs_extras import duration, number, outcome_chart, sparkline, status_badge, step_timeline, when


def test_durations_and_numbers_read_like_people_write_them():
    assert duration(125_000) == "2 m 05 s"
    assert duration(850) == "850 ms"
    assert duration(None) == "—"
    assert number(1234567) == "1,234,567"
    assert number(None) == "—"


def test_status_badge_escapes_unknown_values():
    assert status_badge("failed") == '<span class="badge badge-failed">Failed</span>'
    assert "<script>" not in status_badge("<script>")


@time_machine.travel("2026-03-03 12:00:00+00:00", tick=False)
def test_when_is_relative_with_the_local_time_on_hover():
    html = when(timezone.now() - timedelta(hours=3))
    assert ">3 hours ago</time>" in html
    assert 'title="2026-03-03 10:00:00 CET"' in html  # Europe/Amsterdam
    assert ">just now<" in when(timezone.now() - timedelta(seconds=5))
    assert ">in 2 days<" in when(timezone.now() + timedelta(days=2, minutes=1))
    assert when(None) == "—"


def _runs(durations, status="success"):
    now = timezone.now()
    return [Run(pk=i + 1, pipeline="p", status=status, started_at=now - timedelta(hours=i), duration_ms=d)
            for i, d in enumerate(durations)]


def test_sparkline_draws_one_point_per_finished_run():
    svg = sparkline(_runs([1000, 2000, None, 4000]))
    assert svg.startswith('<svg class="sparkline"')
    assert svg.count("<circle") == 3
    assert "not enough runs" in sparkline(_runs([1000]))


def test_outcome_chart_bar_heights_follow_duration():
    svg = outcome_chart(_runs([1000, 4000], status="failed"))
    heights = [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    assert len(heights) == 2 and heights[1] == 4 * heights[0]
    assert "#b91c1c" in svg  # failed red
    assert "No runs yet" in outcome_chart([])


def test_step_timeline_widths_are_proportional_and_names_escaped():
    start = timezone.now() - timedelta(minutes=10)
    steps = [
        RunStep(name="<b>download</b>", status="success", started_at=start, finished_at=start + timedelta(seconds=30),
                duration_ms=30_000),
        RunStep(name="sync", status="partial", started_at=start + timedelta(seconds=30),
                finished_at=start + timedelta(seconds=120), duration_ms=90_000),
    ]
    html = step_timeline(steps)
    assert "&lt;b&gt;download&lt;/b&gt;" in html
    assert "margin-left:0.00%;width:25.00%" in html
    assert "margin-left:25.00%;width:75.00%" in html
