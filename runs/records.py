"""The record page's registry panel: what the club app knows about one identifier.

`runs` never imports `pipelines`; the club app registers a function that,
given an identifier, returns a `RecordInfo` (or None when it knows nothing):

    from runs.records import Panel, RecordInfo, register_record_panel

    @register_record_panel
    def club_record(identifier: str) -> RecordInfo | None:
        ...

The function must run a fixed number of queries whatever the data (the record
page's query count is asserted). Values are shown escaped; links are
(text, url) pairs the function builds itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("runs.records")


@dataclass
class Panel:
    """A titled list of (label, value) rows, e.g. "Registry" or "Laposta"."""

    title: str
    rows: list[tuple[str, Any]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    empty: str = ""


@dataclass
class RecordInfo:
    """What the record page shows above the history."""

    title: str
    kind: str = ""
    panels: list[Panel] = field(default_factory=list)
    #: Pipelines that sync this record: the page's "Sync again" buttons.
    pipelines: list[str] = field(default_factory=list)
    #: E.g. "former member": shown next to the title.
    note: str = ""


_panels: list[Callable[[str], RecordInfo | None]] = []


def register_record_panel(func: Callable[[str], RecordInfo | None]) -> Callable[[str], RecordInfo | None]:
    """Register a function that describes an identifier for the record page."""
    if func not in _panels:
        _panels.append(func)
    return func


def describe_record(identifier: str) -> RecordInfo | None:
    """The first registered function's description of `identifier`, or None.

    A panel that raises is logged and skipped: the page still shows the
    record's history.
    """
    for func in _panels:
        try:
            info = func(identifier)
        except Exception:
            logger.exception("record panel %s failed for %r", getattr(func, "__name__", func), identifier)
            continue
        if info is not None:
            return info
    return None
