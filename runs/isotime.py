"""The one way syncsite writes a timestamp or date as text: ISO 8601.

Used by the JSON API, alert payloads, spooled outcomes and the Laposta fields, so
a time reads the same wherever it leaves the program.
"""

from __future__ import annotations

from datetime import date


def iso(value: date | None) -> str | None:
    """``value.isoformat()`` (a datetime keeps its offset), or ``None`` for ``None``."""
    return value.isoformat() if value is not None else None
