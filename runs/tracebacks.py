"""Fast traceback formatting for per-item errors.

`traceback.format_exception` costs ~180 µs on Python 3.11 because it re-reads
and compiles each frame's source line to draw the `^^^` markers. A sync that
fails 10,000 members fails them from the same few stacks, so the frame part of
a traceback is formatted once per distinct stack and reused; only the final
"ExcType: message" line is built per exception. The output has the familiar
shape of Python's own tracebacks, minus the caret markers.
"""

from __future__ import annotations

import linecache
import os
import sysconfig
import traceback
from functools import lru_cache
from types import TracebackType

from runs.redact import redact

_STACK_CACHE: dict[tuple, str] = {}


class RedactedText(str):
    """A string already scrubbed of secrets (runs.redact); the writer skips it."""

    __slots__ = ()

_STACK_CACHE_MAX = 2048
_CHAIN_LIMIT = 5

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _roots() -> list[tuple[str, str]]:
    """Where code lives, longest first, with the name a traceback shows instead of the path.

    A traceback on the run page should say ``pipelines/people.py``, not where the
    machine that ran it keeps its checkout or virtualenv.
    """
    from django.conf import settings

    roots = {str(settings.BASE_DIR): ""}
    for key in ("purelib", "platlib"):
        roots[sysconfig.get_paths()[key]] = "site-packages/"
    roots[sysconfig.get_paths()["stdlib"]] = "python/"
    pairs = [(os.path.join(os.path.normpath(r), ""), label) for r, label in roots.items() if r]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


@lru_cache(maxsize=1024)
def display_path(filename: str) -> str:
    """``filename`` relative to the project, site-packages or the standard library."""
    try:
        roots = _roots()
    except Exception:  # settings not configured: show the path as Python would
        return filename
    for root, label in roots:
        if filename.startswith(root):
            return label + filename[len(root):]
    return filename


def _frames(tb: TracebackType) -> str:
    """The traceback's heading and frames, redacted, formatted once per distinct stack."""
    entries = []
    current: TracebackType | None = tb
    while current is not None:
        entries.append((current.tb_frame.f_code, current.tb_lineno))
        current = current.tb_next
    key = tuple(entries)
    text = _STACK_CACHE.get(key)
    if text is None:
        parts = []
        for code, lineno in entries:
            line = linecache.getline(code.co_filename, lineno).strip()
            parts.append(f'  File "{display_path(code.co_filename)}", line {lineno}, in {code.co_name}\n')
            if line:
                parts.append(f"    {line}\n")
        # Redacted once per distinct stack, not once per error.
        text = "Traceback (most recent call last):\n" + redact("".join(parts))
        if len(_STACK_CACHE) >= _STACK_CACHE_MAX:
            _STACK_CACHE.clear()
        _STACK_CACHE[key] = text
    return text


_CLASS_NAMES: dict[type, str | None] = {}


def _class_name(cls: type) -> str | None:
    """How the exception line names `cls`, or None when the class needs
    `traceback.format_exception_only` (a SyntaxError, or notes on the class)."""
    try:
        return _CLASS_NAMES[cls]
    except KeyError:
        pass
    name: str | None = None
    if not (issubclass(cls, SyntaxError) or hasattr(cls, "__notes__")):
        name = cls.__qualname__
        if cls.__module__ not in ("builtins", "__main__"):
            name = f"{cls.__module__}.{name}"
    if len(_CLASS_NAMES) < _STACK_CACHE_MAX:
        _CLASS_NAMES[cls] = name
    return name


def _exception_line(exc: BaseException) -> str:
    # traceback.format_exception_only builds a TracebackException (~17 µs);
    # the common case is one line. SyntaxError and notes take the slow path.
    # (Notes live in the instance's __dict__: a getattr with a default would
    # raise and catch an AttributeError per error.)
    cls = type(exc)
    name = _class_name(cls)
    if name is None or "__notes__" in exc.__dict__:
        return redact("".join(traceback.format_exception_only(cls, exc)))
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    return redact(f"{name}: {text}\n" if text else f"{name}\n")


def _one(exc: BaseException) -> str:
    tb = exc.__traceback__
    return _exception_line(exc) if tb is None else _frames(tb) + _exception_line(exc)


def format_exception(exc: BaseException) -> RedactedText:
    """Format `exc` with its cause/context chain, like `traceback.format_exception`.

    The result is already redacted (runs.redact): frames once per stack, the
    exception lines each time.
    """
    if exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__):
        return RedactedText(_one(exc))
    chain: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < _CHAIN_LIMIT * 2:
        seen.add(id(current))
        chain.append(_one(current))
        if current.__cause__ is not None:
            chain.append(_CAUSE)
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append(_CONTEXT)
            current = current.__context__
        else:
            current = None
    if chain and chain[-1] in (_CAUSE, _CONTEXT):
        chain.pop()
    return RedactedText("".join(reversed(chain)))


def exception_message(exc: BaseException) -> str:
    """The text a person reads: the exception's message, or its type if empty."""
    text = str(exc)
    return text if text else type(exc).__name__
