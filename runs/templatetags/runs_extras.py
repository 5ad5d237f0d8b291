"""Formatting for people: durations, status badges, times, and the SVG charts.

The charts are drawn here, server-side, from numbers only; every text that
reaches the markup goes through format_html / escaping.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from runs.models import RunStatus, StepStatus

register = template.Library()

_STATUS_LABELS = dict(RunStatus.choices) | dict(StepStatus.choices) | {"never": "Never run",
                                                                       "not_configured": "Not configured",
                                                                       "waiting": "Waiting for its first run"}
#: Chart colours; the same as the badge colours in syncsite.css.
STATUS_COLOURS = {
    "success": "#15803d", "partial": "#b45309", "failed": "#b91c1c", "running": "#1d4ed8",
    "cancelled": "#6b7280", "abandoned": "#7c2d12", "skipped": "#9ca3af", "never": "#9ca3af",
    "not_configured": "#9ca3af",
}


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


@register.filter
def duration(ms: int | None) -> str:
    return format_duration(ms)


@register.filter
def number(value) -> str:
    return "—" if value is None else intcomma(value)


@register.filter
def status_badge(status: str) -> SafeString:
    return format_html('<span class="badge badge-{}">{}</span>', status, _STATUS_LABELS.get(status, status))


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """'3 hours ago', with the absolute local time on hover."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    now = timezone.now()
    if abs((now - value).total_seconds()) < 60:
        relative = "just now" if value <= now else "in a minute"
    else:
        relative = f"{timesince(value, now, depth=1)} ago" if value <= now else f"in {timesince(now, value, depth=1)}"
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(),
                       local.strftime("%Y-%m-%d %H:%M:%S %Z"), relative.replace("\xa0", " "))


@register.filter
def record_link(identifier: str | None) -> SafeString | str:
    """An identifier as a link to its record page (/records/<identifier>/), escaped."""
    if not identifier:
        return ""
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("runs:record", args=[identifier])
    except NoReverseMatch:  # e.g. a line break from a quoted CSV cell: no URL can carry it
        return identifier
    return format_html('<a href="{}" class="record-link">{}</a>', url, identifier)


@register.filter
def localstamp(value: datetime | None) -> str:
    """Absolute local time, e.g. 2026-03-03 14:05:09."""
    if value is None:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")


@register.filter
def percent_of(part: int, whole: int | None) -> int:
    if not whole:
        return 0
    return max(0, min(100, round(100 * part / whole)))


@register.simple_tag
def sparkline(runs, width: int = 160, height: int = 32) -> SafeString:
    """Duration of the given runs (newest first) as a polyline, oldest on the left."""
    points = [r for r in reversed(runs) if r.duration_ms is not None]
    if len(points) < 2:
        return format_html('<span class="muted">{}</span>', "not enough runs yet")
    top = max(r.duration_ms for r in points) or 1
    step = width / (len(points) - 1)
    coords = [(round(i * step, 1), round(height - 2 - (height - 4) * r.duration_ms / top, 1))
              for i, r in enumerate(points)]
    line = " ".join(f"{x},{y}" for x, y in coords)
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="2" fill="{}"><title>{}: {}</title></circle>',
        ((x, y, STATUS_COLOURS.get(r.status, "#6b7280"), localstamp(r.started_at), format_duration(r.duration_ms))
         for (x, y), r in zip(coords, points, strict=True)),
    )
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="duration of the last {} runs"><polyline points="{}" fill="none" stroke="#64748b" '
        'stroke-width="1.5"/>{}</svg>',
        width, height, width, height, len(points), line, dots,
    )


@register.simple_tag
def outcome_chart(runs, width: int = 800, height: int = 160) -> SafeString:
    """Bars: height = duration, colour = outcome; runs oldest first."""
    if not runs:
        return format_html('<p class="muted">{}</p>', "No runs yet.")
    top = max((r.duration_ms or 0) for r in runs) or 1
    slot = width / max(len(runs), 1)
    bar = max(1.0, slot * 0.8)
    bars = []
    for i, r in enumerate(runs):
        h = max(2.0, (height - 20) * (r.duration_ms or 0) / top)
        bars.append((round(i * slot, 1), round(height - 14 - h, 1), round(bar, 1), round(h, 1),
                     STATUS_COLOURS.get(r.status, "#6b7280"), r.pk, localstamp(r.started_at), r.status,
                     format_duration(r.duration_ms)))
    body = format_html_join(
        "", '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" data-run="{}">'
            "<title>{} · {} · {}</title></rect>", bars)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" '
        'aria-label="duration and outcome of the last {} runs">{}'
        '<text x="0" y="{}" class="axis">max {}</text></svg>',
        width, height, len(runs), body, height - 2, format_duration(top),
    )


@register.simple_tag
def step_timeline(steps, total_ms: int | None = None) -> SafeString:
    """One bar per step, its width proportional to its duration, placed where it started."""
    timed = [s for s in steps if s.started_at is not None]
    if not timed:
        return format_html('<p class="muted">{}</p>', "No steps recorded.")
    start = min(s.started_at for s in timed)
    now = timezone.now()

    def end(s):
        return s.finished_at or (s.started_at if s.status == StepStatus.SKIPPED else now)

    finish = max(end(s) for s in timed)
    span = max((finish - start).total_seconds(), 0.001)
    rows = []
    for s in timed:
        left = 100 * (s.started_at - start).total_seconds() / span
        width = max(0.5, 100 * (end(s) - s.started_at).total_seconds() / span)
        rows.append((s.name, f"{left:.2f}", f"{min(width, 100 - left):.2f}", s.status,
                     format_duration(s.duration_ms) if s.duration_ms is not None else s.get_status_display()))
    return format_html(
        '<div class="timeline">{}</div>',
        format_html_join("", '<div class="tl-row"><span class="tl-name">{0}</span><span class="tl-track">'
                             '<span class="tl-bar bar-{3}" style="margin-left:{1}%;width:{2}%"></span></span>'
                             '<span class="tl-dur">{4}</span></div>', rows),
    )


@register.filter
def dictget(mapping, key):
    return mapping.get(key) if mapping else None
