"""syncsite settings, read from the environment with safe local defaults.

Every variable is documented in `.env.example`. Malformed values fail loudly at
start-up instead of being silently replaced by a default.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SYNCSITE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


# --- typed environment helpers -------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {raw!r}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None, above: float | None = None,
              maximum: float | None = None, unit: str = "seconds") -> float:
    """A finite decimal number (`1.5`); `above` is an exclusive lower bound (a timeout > 0)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    what = f"a number of {unit}" if unit else "a number"
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be {what}, got {raw!r}")
    suffix = f" {unit}" if unit else ""
    if above is not None and value <= above:
        raise ImproperlyConfigured(f"{name} must be more than {above:g}{suffix}, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}{suffix}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum:g}{suffix}, got {raw!r}")
    return value


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    """One of `choices`, compared case-insensitively; returned as spelled in `choices`."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def env_header(name: str) -> tuple[str, str] | None:
    """A request header and the value that marks HTTPS, `X-Forwarded-Proto: https`,
    as Django's SECURE_PROXY_SSL_HEADER wants it: ("HTTP_X_FORWARDED_PROTO", "https")."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, sep, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not sep or not value or not header or not all(c.isalnum() or c == "-" for c in header):
        raise ImproperlyConfigured(f"{name} must look like 'X-Forwarded-Proto: https', got {raw!r}")
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_url(name: str, default: str = "", *, schemes: Sequence[str] = ("http", "https"), secret: bool = False) -> str:
    """An absolute URL with one of `schemes`. A `secret` URL is never echoed in the error."""
    raw = os.environ.get(name, default).strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme.lower() not in schemes or not parts.netloc:
        got = "a value that is not such a URL" if secret else repr(raw)
        raise ImproperlyConfigured(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                                   f"got {got}")
    return raw


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_percent(name: str, default: float) -> float:
    """A percentage from 0 to 100 (decimals allowed: `2.5`)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return float(default)
    try:
        value = float(raw.strip().rstrip("%"))
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a percentage from 0 to 100, not {raw!r}") from None
    if not 0 <= value <= 100:
        raise ImproperlyConfigured(f"{name} must be a percentage from 0 to 100, not {raw!r}")
    return value


# --- core ----------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        # A production secret never has a default.
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development only: generate a key once and keep it under var/ so sessions
    # survive restarts. var/ is git-ignored.
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if not DEBUG else "*")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # Before django_q: its `qcluster` command replaces django-q2's (clean stops).
    "runs",
    "django_q",
    "django_tables2",
    "django_filters",
    "pipelines",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "syncsite.urls"
WSGI_APPLICATION = "syncsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- database ------------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_S = env_int("SQLITE_BUSY_TIMEOUT", 20, minimum=1)


_DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "sqlite")


def _database_url() -> str:
    """DATABASE_URL, checked; the error never shows its password."""
    url = env_str("DATABASE_URL").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
    if parts.scheme.lower() not in _DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must look like postgres://USER:PASSWORD@HOST:5432/NAME or sqlite:////path/db.sqlite3, "
            f"got {shown!r}")
    return url


def _databases() -> dict:
    url = _database_url()
    if url:
        import dj_database_url

        try:
            db = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
        except ValueError as exc:  # a port that is not a number, ...
            raise ImproperlyConfigured(f"DATABASE_URL cannot be read: {type(exc).__name__}") from None
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "syncsite.sqlite3")}
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Applied whichever way SQLite was configured (dj-database-url gives no
        # OPTIONS). IMMEDIATE makes every atomic() take the write lock up front,
        # so two writers queue on the busy timeout instead of failing with
        # "database is locked" when a read transaction tries to upgrade.
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": SQLITE_BUSY_TIMEOUT_S,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
        # Tests use a file too: the tracker's writer thread needs its own
        # connection, which an in-memory shared-cache database cannot give.
        db.setdefault("TEST", {}).setdefault("NAME", str(VAR_DIR / "test.sqlite3"))
    return {"default": db}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- auth ----------------------------------------------------------------------

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "runs:overview"
LOGOUT_REDIRECT_URL = "admin:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)


# --- TLS behind a proxy (production hardening) ---------------------------------

# The reverse proxy terminates TLS and tells Django with a header which
# requests came in over HTTPS; only set it when the proxy always sets (or
# strips) that header, or a client could claim HTTPS itself.
SECURE_PROXY_SSL_HEADER = env_header("SECURE_PROXY_SSL_HEADER")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Uptime monitors may call the health endpoints over plain HTTP on localhost.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)


# --- i18n / time ---------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True


# --- static and media ----------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise warns about a missing STATIC_ROOT before `collectstatic` has run.
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}


# --- logging -------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL or "WARNING"},
    "loggers": {
        "runs": {"level": LOG_LEVEL or "INFO", "propagate": True},
        "pipelines": {"level": LOG_LEVEL or "INFO", "propagate": True},
    },
}


# --- run tracking --------------------------------------------------------------

# A running run whose heartbeat is older than this is marked abandoned.
RUNS_STALE_AFTER_S = env_int("RUNS_STALE_AFTER", 300, minimum=10, maximum=7 * 24 * 3600)
# How often the tracker's writer thread flushes counters and the heartbeat.
RUNS_FLUSH_INTERVAL_S = env_float("RUNS_FLUSH_INTERVAL", 1.0, above=0, maximum=60)
# Extra modules that register pipelines (tests use this for sample pipelines).
RUNS_EXTRA_PIPELINE_MODULES = env_list("RUNS_EXTRA_PIPELINE_MODULES")
# A pipeline counts as overdue when no run started this long after a slot.
RUNS_OVERDUE_GRACE_S = env_int("RUNS_OVERDUE_GRACE", 4 * 3600, minimum=0, maximum=366 * 24 * 3600)
RUNS_KEEP_DAYS = env_int("RUNS_KEEP_DAYS", 90, minimum=1, maximum=36500)
RUN_ERRORS_KEEP_DAYS = env_int("RUN_ERRORS_KEEP_DAYS", 30, minimum=1, maximum=36500)


# --- record history ------------------------------------------------------------

# Field-level changes per record (RecordChange) are kept this long by pruneruns;
# longer than runs: a pruned run's changes stay.
RECORD_CHANGES_KEEP_DAYS = env_int("RECORD_CHANGES_KEEP_DAYS", 365, minimum=1)


# --- sources and destinations --------------------------------------------------

SPORTLINK_EXPORT_DIR = env_str("SPORTLINK_EXPORT_DIR")
NIKKI_EXPORT_DIR = env_str("NIKKI_EXPORT_DIR")
# Production hardening: a download (or a file in a downloaded zip) larger than
# this fails the download step with a clear error instead of filling memory.
EXPORT_MAX_BYTES = env_int("EXPORT_MAX_BYTES", 200 * 1024 * 1024, minimum=1024, maximum=2**40)
LAPOSTA_API_KEY = env_str("LAPOSTA_API_KEY")
LAPOSTA_BASE_URL = env_url("LAPOSTA_BASE_URL", "https://api.laposta.nl/v2").rstrip("/")
LAPOSTA_MEMBERS_LIST_ID = env_str("LAPOSTA_MEMBERS_LIST_ID")
LAPOSTA_PARENTS_LIST_ID = env_str("LAPOSTA_PARENTS_LIST_ID")
FREESCOUT_API_KEY = env_str("FREESCOUT_API_KEY")
FREESCOUT_BASE_URL = env_url("FREESCOUT_BASE_URL").rstrip("/")
HTTP_TIMEOUT_S = env_float("HTTP_TIMEOUT", 20.0, above=0, maximum=3600)
HTTP_MAX_RETRIES = env_int("HTTP_MAX_RETRIES", 4, minimum=0)

# --- safe sync: removals that look like a mistake are held (docs/volunteers.md, "Held removals")

# A run holds back every removal of one kind (members marked former, team or
# function memberships ended, Laposta deletions) when it would remove more than
# this percentage of the active rows of that kind AND more than SYNC_MAX_REMOVALS_MIN rows.
SYNC_MAX_REMOVALS_PERCENT = env_percent("SYNC_MAX_REMOVALS_PERCENT", 10)
SYNC_MAX_REMOVALS_MIN = env_int("SYNC_MAX_REMOVALS_MIN", 5, minimum=0)

# Values that must never reach the database, logs or error messages.
SECRET_SETTINGS: tuple[str, ...] = ("SECRET_KEY", "LAPOSTA_API_KEY", "FREESCOUT_API_KEY", "ALERT_WEBHOOK_URL")


# --- web sources: Sportlink Club and Nikki fetched by a headless browser ---------

# `files` (the default: exports in SPORTLINK_EXPORT_DIR / NIKKI_EXPORT_DIR, or
# the bundled demo) or `web` (log in and download, see docs/deploy.md).
SPORTLINK_SOURCE = env_choice("SPORTLINK_SOURCE", "files", ("files", "web"))
NIKKI_SOURCE = env_choice("NIKKI_SOURCE", "files", ("files", "web"))
SPORTLINK_URL = env_str("SPORTLINK_URL", "https://club.sportlink.com").rstrip("/")
SPORTLINK_USERNAME = env_str("SPORTLINK_USERNAME")
SPORTLINK_PASSWORD = env_str("SPORTLINK_PASSWORD")
SPORTLINK_OTP_SECRET = env_str("SPORTLINK_OTP_SECRET")
NIKKI_URL = env_str("NIKKI_URL", "https://mijn.nikki-online.nl").rstrip("/")
NIKKI_USERNAME = env_str("NIKKI_USERNAME")
NIKKI_PASSWORD = env_str("NIKKI_PASSWORD")
NIKKI_OTP_SECRET = env_str("NIKKI_OTP_SECRET")
# The Chromium binary Playwright drives (Debian's package by default).
WEB_SOURCE_CHROMIUM = env_str("WEB_SOURCE_CHROMIUM", "/usr/bin/chromium")
# Every bounded wait (45 s login, 20 s page element, 60 s answer ...) is multiplied by this.
WEB_SOURCE_TIMEOUT_SCALE = env_float("WEB_SOURCE_TIMEOUT_SCALE", 1.0, minimum=0.01)
# The small random pauses between pages, as a person would make them (off in tests).
WEB_SOURCE_PAUSES = env_bool("WEB_SOURCE_PAUSES", True)
# Photos are fetched for members whose Sportlink photo date is this recent, or who have none yet.
SPORTLINK_PHOTO_DAYS = env_int("SPORTLINK_PHOTO_DAYS", 7, minimum=0)
# Each run's raw downloads (gzipped) live in RUNS_FILES_DIR/<run id>/ and are pruned with the run.
RUNS_FILES_DIR = Path(env_str("RUNS_FILES_DIR", str(VAR_DIR / "runs")))
SECRET_SETTINGS += ("SPORTLINK_USERNAME", "SPORTLINK_PASSWORD", "SPORTLINK_OTP_SECRET", "NIKKI_USERNAME",
                    "NIKKI_PASSWORD", "NIKKI_OTP_SECRET")


# --- scheduling (django-q2) ----------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    "name": "syncsite",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    # timeout < retry: a long run is never handed to a second worker.
    "timeout": env_int("Q_TIMEOUT", 3 * 3600, minimum=60, maximum=7 * 24 * 3600),
    "retry": env_int("Q_TIMEOUT", 3 * 3600, minimum=60, maximum=7 * 24 * 3600) + 600,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": env_int("Q_SAVE_LIMIT", 1000, minimum=0),
    "ack_failures": True,
    "poll": 0.2,
    "label": "Scheduler",
}
# On SIGTERM/SIGINT `qcluster` waits this long for running pipelines to stop
# at their next item or step boundary, then kills what is left (production
# hardening; keep systemd's TimeoutStopSec above it).
Q_STOP_GRACE_S = env_int("Q_STOP_GRACE", 25, minimum=1)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"


# --- alerts --------------------------------------------------------------------

ALERT_EMAILS = env_list("ALERT_EMAILS")
ALERT_WEBHOOK_URL = env_url("ALERT_WEBHOOK_URL", secret=True)
# A run still going after this many times its pipeline's median duration is
# reported as long-running (never before ALERT_LONG_RUNNING_MIN seconds).
ALERT_LONG_RUNNING_FACTOR = env_float("ALERT_LONG_RUNNING_FACTOR", 3.0, minimum=1, maximum=1000, unit="")
ALERT_LONG_RUNNING_MIN_S = env_int("ALERT_LONG_RUNNING_MIN", 300, minimum=0)
# The overdue message is repeated after this long while the set of overdue
# pipelines stays the same; a change in the set sends at once and restarts it.
ALERT_OVERDUE_COOLDOWN_S = env_int("ALERT_OVERDUE_COOLDOWN", 24 * 3600, minimum=60)
# A failing mail server or webhook is retried on later checks, this often.
ALERT_MAX_ATTEMPTS = env_int("ALERT_MAX_ATTEMPTS", 10, minimum=1)
ALERT_RETRY_S = env_int("ALERT_RETRY", 300, minimum=0)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "syncsite@localhost")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
SECRET_SETTINGS += ("EMAIL_HOST_PASSWORD",)


# --- trustworthy outcomes: spool, reminders, alert threshold -------------------

# Outcomes of runs whose record could not be written (database read-only, disk
# full, ...) wait here as small JSON files until the database accepts writes.
RUNS_SPOOL_DIR = Path(env_str("RUNS_SPOOL_DIR", str(VAR_DIR / "spool")))
# Remind every this many hours while a pipeline is still failing or overdue (0: never).
ALERT_REMIND_HOURS = env_int("ALERT_REMIND_HOURS", 24, minimum=0)
# Alert only after this many failed or partial runs in a row (the admin can
# override it per pipeline under "Pipeline settings").
ALERT_AFTER_FAILURES = env_int("ALERT_AFTER_FAILURES", 1, minimum=1)
