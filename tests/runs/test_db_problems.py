"""The cause a volunteer reads when the database refuses a write (runs.tracker.describe_db_problem).

The messages are the ones SQLite and PostgreSQL give (and spelling variants); the raw text is never
shown (it can carry host names or SQL), only the cause.
"""

import sqlite3

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError

from runs.tracker import describe_db_problem

READ_ONLY = "the database is read-only"
DISK_FULL = "the disk is full"
LOCKED = "the database stayed locked by another writer"
MISSING = "the run tables are missing (run `manage.py migrate`)"


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (OperationalError("attempt to write a readonly database"), READ_ONLY),
        (OperationalError("cannot execute INSERT in a read-only transaction"), READ_ONLY),
        (OperationalError("the database is read only"), READ_ONLY),  # spelled without a hyphen
        (OperationalError("database or disk is full"), DISK_FULL),
        (OperationalError('could not extend file "base/16384/2619": No space left on device'), DISK_FULL),
        (OperationalError("DiskFull: could not write block 1 of temporary file"), DISK_FULL),
        (sqlite3.OperationalError("database is locked"), LOCKED),
        (OperationalError("database table is busy"), LOCKED),
        (OperationalError("no such table: runs_run"), MISSING),
        (OperationalError('relation "runs_run" does not exist'), MISSING),
    ],
)
def test_each_known_database_problem_gets_its_cause(exc, cause):
    assert describe_db_problem(exc) == cause


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        # "disk" without "full" (an I/O error) and "full" without "disk" are no full disk.
        (OperationalError("disk I/O error"), "the database did not accept a write (OperationalError)"),
        (OperationalError("the connection pool is full"), "the database did not accept a write (OperationalError)"),
        (IntegrityError("UNIQUE constraint failed: runs_run.id"),
         "the database did not accept a write (IntegrityError)"),
        (DatabaseError("server closed the connection unexpectedly"),
         "the database did not accept a write (DatabaseError)"),
    ],
)
def test_any_other_problem_names_only_the_kind_of_error_never_its_text(exc, cause):
    assert describe_db_problem(exc) == cause
