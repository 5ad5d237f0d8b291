"""Multi-row statements for the run writer's batches (RunErrors, problem upserts).

A batch of thousands of rows goes to the database in as few statements as the
parameter limit allows (SQLite's is read from the connection: 32,766 or more
since 3.32; Django assumes 999), on the raw DB-API connection:

* not `executemany`: that releases and retakes the GIL once per row, and
  against a CPU-bound pipeline thread each retake waits out the switch
  interval (a 2,000-row batch took over a second);
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

from django.db import connection


def execute_rows(sql: Callable[[int, str], str], rows: Sequence[tuple], *, width: int, most: int = 1000) -> None:
    """Execute `sql(n, placeholder)` for each chunk of `rows` (n rows of `width` values each)."""
    if not rows:
        return
    sqlite = connection.vendor == "sqlite"
    connection.ensure_connection()
    limit = (connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if sqlite
             else connection.features.max_query_params) or 999
    per_statement = max(1, min(most, limit // width))
    placeholder = "?" if sqlite else "%s"
    with connection.cursor() as cursor, connection.wrap_database_errors:
        execute = connection.connection.execute if sqlite else cursor.cursor.execute
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            execute(sql(len(chunk), placeholder), [value for row in chunk for value in row])
