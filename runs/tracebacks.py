"""Fast traceback formatting for per-item errors.

`traceback.format_exception` costs ~180 µs on Python 3.11 because it re-reads
and compiles each frame's source line to draw the `^^^` markers. A sync that
fails 10,000 members fails them from the same few stacks, so the frame part of
a traceback is formatted (and redacted) once per distinct stack and reused;
only the final "ExcType: message" line is built per exception. The output has
the familiar shape of Python's own tracebacks, minus the caret markers.

A failed item's traceback comes in two parts (`format_parts`): the frames,
redacted, and the exception line, which the run's writer thread redacts with a
batch's other lines in one check (runs.errorrows) instead of one by one on the
pipeline's thread. `format_exception` joins them.
"""

from __future__ import annotations

import linecache
import os
import sysconfig
import traceback
from functools import lru_cache
from types import CodeType, TracebackType

from runs.redact import redact


class RedactedText(str):
    """A string already scrubbed of secrets (runs.redact); the writer skips it."""

    __slots__ = ()


# (id of each frame's code object, its instruction offset, ...) -> (the code objects, the
# frames formatted and redacted). The entry holds the code objects: while it is cached, their ids
# cannot be reused.
_STACK_CACHE: dict[tuple[int, ...], tuple[list[CodeType], str]] = {}
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
    """The traceback's heading and frames, redacted, formatted once per distinct stack.

    Keyed by each frame's code object's id and instruction offset: hashing a
    code object hashes its constants, names and bytecode (~0.3 µs a frame), and
    `tb_lineno` walks the code's line table (~0.4 µs a frame), every error."""
    key = []
    current: TracebackType | None = tb
    while current is not None:
        key.append(id(current.tb_frame.f_code))
        key.append(current.tb_lasti)
        current = current.tb_next
    cached = _STACK_CACHE.get(tuple(key))
    if cached is not None:
        return cached[1]
    codes, parts = [], []
    current = tb
    while current is not None:
        code, lineno = current.tb_frame.f_code, current.tb_lineno
        codes.append(code)
        line = linecache.getline(code.co_filename, lineno).strip() if lineno is not None else ""
        parts.append(f'  File "{display_path(code.co_filename)}", line {lineno}, in {code.co_name}\n')
        if line:
            parts.append(f"    {line}\n")
        current = current.tb_next
    # Redacted once per distinct stack, not once per error.
    text = "Traceback (most recent call last):\n" + redact("".join(parts))
    if len(_STACK_CACHE) >= _STACK_CACHE_MAX:
        _STACK_CACHE.clear()
    _STACK_CACHE[tuple(key)] = (codes, text)
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


def _exception_line(exc: BaseException, text: str | None = None) -> tuple[str, bool]:
    """The exception's line, and whether it is redacted already. `text`: `exception_text(exc)`.

    traceback.format_exception_only builds a TracebackException (~17 µs); the
    common case is one line, built here and left for the caller to redact.
    SyntaxError and notes take the slow path. (Notes live in the instance's
    __dict__: a getattr with a default would raise and catch an AttributeError
    per error.)
    """
    cls = type(exc)
    name = _class_name(cls)
    if name is None or "__notes__" in exc.__dict__:
        return redact("".join(traceback.format_exception_only(cls, exc))), True
    if text is None:
        text = exception_text(exc)
    return (f"{name}: {text}\n" if text else f"{name}\n"), False


def _one(exc: BaseException) -> str:
    line, redacted = _exception_line(exc)
    line = line if redacted else redact(line)
    tb = exc.__traceback__
    return line if tb is None else _frames(tb) + line


def format_parts(exc: BaseException, text: str | None = None) -> tuple[str, str]:
    """`format_exception(exc)` in two parts: the text up to the last exception line,
    redacted, and that line, which the caller must redact (runs.errorrows does, for a
    batch of errors at once). `text`: `exception_text(exc)`, when the caller has it."""
    if exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__):
        line, redacted = _exception_line(exc, text)
        tb = exc.__traceback__
        head = "" if tb is None else _frames(tb)
        return (head + line, "") if redacted else (head, line)
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
    return "".join(reversed(chain)), ""


def format_exception(exc: BaseException) -> RedactedText:
    """Format `exc` with its cause/context chain, like `traceback.format_exception`.

    The result is already redacted (runs.redact): frames once per stack, the
    exception lines each time.
    """
    head, line = format_parts(exc)
    return RedactedText(head + redact(line) if line else head)


def exception_text(exc: BaseException) -> str:
    """`str(exc)`, which cannot fail: formatting an error must not raise one of its own."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def exception_message(exc: BaseException) -> str:
    """The text a person reads: the exception's message, or its type if empty."""
    text = exception_text(exc)
    return text if text else type(exc).__name__
