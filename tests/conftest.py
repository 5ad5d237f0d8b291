"""Shared fixtures. Tracker writes happen on a separate thread with its own
connection, so tests that run pipelines use `transactional_db` (a test wrapped
in one transaction would hold SQLite's write lock the writer needs)."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _sample_pipelines(django_db_setup):
    import tests.sample_pipelines  # noqa: F401  (registers the sample pipelines)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """`make mutate` runs each mutant's tests in a forked process, two at a time:
    each gets its own SQLite test file (created and removed by that process)."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        from django.conf import settings

        for db in settings.DATABASES.values():
            test = db.setdefault("TEST", {})
            if db["ENGINE"].endswith("sqlite3") and test.get("NAME"):
                test["NAME"] = f"{test['NAME']}.{os.getpid()}"


@pytest.fixture(autouse=True)
def _fast_flush(settings):
    # The writer flushes often in tests so a live value is visible quickly.
    settings.RUNS_FLUSH_INTERVAL_S = 0.02


@pytest.fixture(autouse=True)
def _spool_dir(settings, tmp_path):
    # Outcomes that could not be recorded are spooled per test, never in var/.
    settings.RUNS_SPOOL_DIR = tmp_path / "spool"


@pytest.fixture(autouse=True)
def _private_run_files(settings, tmp_path_factory):
    # Pruning in a test must never reach a developer's real var/runs/<id>/ folders.
    settings.RUNS_FILES_DIR = tmp_path_factory.mktemp("run-files")


@pytest.fixture
def subprocess_env(transactional_db, tmp_path):
    """Environment for a `manage.py` subprocess that uses the test database."""
    db = connection.settings_dict
    env = dict(os.environ)
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user, password, host, port = db["USER"], db["PASSWORD"], db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{user}:{password}@{host}:{port}/{db['NAME']}"
    env["RUNS_EXTRA_PIPELINE_MODULES"] = "tests.sample_pipelines"
    env["RUNS_FILES_DIR"] = str(settings.RUNS_FILES_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "syncsite.settings"
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("LOG_LEVEL", "WARNING")
    env["RUNS_SPOOL_DIR"] = str(tmp_path / "spool")
    return env


def closing_connection(fn):
    """Wrap a thread's target so its database connection is closed when it ends
    (Django opens one per thread and never closes it by itself; an open one
    keeps PostgreSQL from dropping the test database)."""

    def target(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return target


def manage(*args, env, **kwargs):
    """Run manage.py in a subprocess with the test database."""
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, **kwargs)


def runsync(*args, out=None):
    """Run `manage.py runsync` in this process; returns (exit code, what it printed)."""
    from django.core.management import call_command

    out = io.StringIO() if out is None else out
    code = 0
    try:
        call_command("runsync", *args, stdout=out)
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """The path of a system binary a test needs; skip loudly outside CI, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (CI installs it via .ci/run)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_module(name: str):
    """Import a module a test needs; skip loudly outside CI, fail in CI (like require_binary)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} cannot be imported ({exc}); `make setup` installs it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
