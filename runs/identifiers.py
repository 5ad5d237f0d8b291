"""Which record an item or an error is about: its identifier and the identifier's kind.

A pipeline hands `step.item(...)` a dict (an export row), an object (a
model instance, a record) or a plain identifier; `identify` finds the first
present of the pipeline's identifier keys (`DEFAULT_IDENTIFIER_KEYS` unless
the pipeline names its own). The run tracker uses it for errors, and
runs.history for the items a run processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_IDENTIFIER_KEYS: tuple[str, ...] = ("knvb_id", "email", "dossier_id", "team_name", "commissie_name")

# How the identifier kind is shown for the keys above.
IDENTIFIER_KINDS = {"team_name": "team", "commissie_name": "commissie"}


def identify(obj: Any, keys: Sequence[str]) -> tuple[str, str]:
    """The identifier and its kind for an item: a dict's or object's first present key of `keys`
    (a dict's own "identifier" first), or a str or int itself."""
    if obj is None:
        return "", ""
    if isinstance(obj, dict):
        if obj.get("identifier"):
            return str(obj["identifier"]), str(obj.get("identifier_kind", ""))
        for key in keys:
            value = obj.get(key)
            if value not in (None, ""):
                return str(value), IDENTIFIER_KINDS.get(key, key)
        return "", ""
    if isinstance(obj, (str, int)):
        return str(obj), ""
    for key in keys:
        value = getattr(obj, key, None)
        if value not in (None, ""):
            return str(value), IDENTIFIER_KINDS.get(key, key)
    return "", ""
