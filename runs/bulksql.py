"""Multi-row statements for the run writer's batches (RunErrors, problem upserts).

A batch of hundreds of rows goes to the database in a few multi-row
statements, on the raw DB-API connection:

* of fixed sizes on SQLite (`execute_rows`): compiling a multi-row statement
  costs SQLite almost as much as running it, and with a size per batch every
  batch compiled its own; each statement is also one more wait for the GIL
  (the writer waits out the switch interval against a CPU-bound pipeline),
  so the sizes are few and large, the last statement padded;
* not `executemany`: that releases and retakes the GIL once per row
  (a 2,000-row batch took over a second);
* not Django's cursor wrapper: on SQLite it rewrites "%s" with a regex on
  every execute, and with DEBUG on it logs each statement with its
  parameters quoted by the database itself, a query per 999 of them, each
  waiting for the GIL again (a 1,000-row upsert: half a second);
* no model instances (3-4x cheaper than bulk_create, bench/tracker.py).

`wrap_database_errors` turns the driver's exceptions into Django's, which the
writer's retry logic reads (locked vs a missing table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

#: SQLite statement sizes, in rows: a batch takes full statements of the larger and, for
#: the rest, one statement of the larger or up to three of the smaller, the last one padded.
#: 1,024 rows: a 1,000-error batch is one INSERT and one upsert; 64: a batch a little over
#: 1,024 rows pads one or two small statements, not a second large one. Each statement releases
#: the GIL and waits up to a switch interval (5 ms) to take it back from a CPU-bound
#: pipeline, so fewer statements let the writer keep up and leave less for the end of
#: the run (bench/tracker.py: 256 -> 1,024 rows cut the time after the last item by
#: half). Fewer rows where the database allows fewer parameters (`_sizes`).
_SQLITE_SIZES = (1024, 64)


def execute_rows(sql: Callable[[int, str, bool], str], params: Sequence[Any], *, width: int,
                 constants: Sequence[Any] = ()) -> None:
    """Execute the rows of `params` (their values, flat: `width` per row) in multi-row statements.

    `sql(n, placeholder, padded)` is the statement for n rows; with `padded`
    it must skip the rows whose first value is NULL (`select_rows`). Its
    first parameters are `constants`, bound once per statement (before the rows').

    On SQLite every statement has one of two fixed sizes (`_SQLITE_SIZES`),
    the last one padded with NULL rows, so a connection compiles each once,
    whatever the batch sizes. Elsewhere (PostgreSQL, whose parser is cheap and
    whose parameter limit Django takes as 999), as few statements as the limit allows.
    """
    if not params:
        return
    rows = len(params) // width
    connection.ensure_connection()
    with connection.cursor() as cursor, connection.wrap_database_errors:
        if connection.vendor == "sqlite":
            execute = connection.connection.execute
            big, small = _sizes(connection.connection, width, len(constants))
            start = 0
            for size in _chunks(rows, big, small):
                chunk = params[start * width : (start + size) * width]
                if len(chunk) < size * width:
                    execute(sql(size, "?", True), [*constants, *chunk, *([None] * (size * width - len(chunk)))])
                else:
                    execute(sql(size, "?", False), [*constants, *chunk] if constants else chunk)
                start += size
            return
        per_statement = max(1, ((connection.features.max_query_params or 999) - len(constants)) // width)
        for start in range(0, rows, per_statement):
            n = min(per_statement, rows - start)
            cursor.cursor.execute(sql(n, "%s", False), [*constants, *params[start * width : (start + n) * width]])


def _sizes(raw: sqlite3.Connection, width: int, constants: int) -> tuple[int, int]:
    """`_SQLITE_SIZES`, smaller if a statement of them would bind more parameters than the
    SQLite library allows (999 before SQLite 3.32, which Django 5.2 still supports)."""
    big, small = _SQLITE_SIZES
    fits = max(1, (raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - constants) // width)
    return min(big, fits), min(small, fits)


def _chunks(rows: int, big: int, small: int) -> list[int]:
    """Statement sizes for `rows` rows: full `big` ones, then one `big` or up to three `small`
    for the rest (the last one padded)."""
    sizes = [big] * (rows // big)
    rest = rows % big
    if rest > 3 * small:
        sizes.append(big)
    elif rest:
        sizes += [small] * -(-rest // small)
    return sizes


def values(rows: int, width: int, placeholder: str) -> str:
    """`VALUES (...), (...)`: n rows of `width` parameters."""
    one = "(" + ", ".join([placeholder] * width) + ")"
    return "VALUES " + ", ".join([one] * rows)


def select_rows(rows: int, width: int, placeholder: str, *, padded: bool) -> str:
    """`SELECT * FROM (VALUES ...) AS v`: n rows of `width` parameters; with `padded`, the NULL
    padding rows left out (a VALUES list's columns are column1, column2, ... on SQLite and PostgreSQL)."""
    where = " WHERE column1 IS NOT NULL" if padded else ""
    return f"SELECT * FROM ({values(rows, width, placeholder)}) AS v{where}"  # noqa: S608 - placeholders only
