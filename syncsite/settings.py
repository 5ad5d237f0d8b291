"""syncsite settings, read from the environment with safe local defaults.

Every variable is documented in `.env.example`. Malformed values fail loudly at
start-up instead of being silently replaced by a default.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no), not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    value = default if raw is None or raw.strip() == "" else raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
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
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_q",
    "django_tables2",
    "django_filters",
    "runs",
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


def _databases() -> dict:
    url = env_str("DATABASE_URL")
    if url:
        import dj_database_url

        db = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {
        "runs": {"level": env_str("LOG_LEVEL", "INFO"), "propagate": True},
        "pipelines": {"level": env_str("LOG_LEVEL", "INFO"), "propagate": True},
    },
}


# --- run tracking --------------------------------------------------------------

# A running run whose heartbeat is older than this is marked abandoned.
RUNS_STALE_AFTER_S = env_int("RUNS_STALE_AFTER", 300, minimum=10)
# How often the tracker's writer thread flushes counters and the heartbeat.
RUNS_FLUSH_INTERVAL_S = float(env_str("RUNS_FLUSH_INTERVAL", "1.0"))
# Extra modules that register pipelines (tests use this for sample pipelines).
RUNS_EXTRA_PIPELINE_MODULES = env_list("RUNS_EXTRA_PIPELINE_MODULES")
# A pipeline counts as overdue when no run started this long after a slot.
RUNS_OVERDUE_GRACE_S = env_int("RUNS_OVERDUE_GRACE", 4 * 3600, minimum=0)
RUNS_KEEP_DAYS = env_int("RUNS_KEEP_DAYS", 90, minimum=1)
RUN_ERRORS_KEEP_DAYS = env_int("RUN_ERRORS_KEEP_DAYS", 30, minimum=1)


# --- sources and destinations --------------------------------------------------

SPORTLINK_EXPORT_DIR = env_str("SPORTLINK_EXPORT_DIR")
NIKKI_EXPORT_DIR = env_str("NIKKI_EXPORT_DIR")
LAPOSTA_API_KEY = env_str("LAPOSTA_API_KEY")
LAPOSTA_BASE_URL = env_str("LAPOSTA_BASE_URL", "https://api.laposta.nl/v2").rstrip("/")
LAPOSTA_MEMBERS_LIST_ID = env_str("LAPOSTA_MEMBERS_LIST_ID")
LAPOSTA_PARENTS_LIST_ID = env_str("LAPOSTA_PARENTS_LIST_ID")
FREESCOUT_API_KEY = env_str("FREESCOUT_API_KEY")
FREESCOUT_BASE_URL = env_str("FREESCOUT_BASE_URL").rstrip("/")
HTTP_TIMEOUT_S = float(env_str("HTTP_TIMEOUT", "20"))
HTTP_MAX_RETRIES = env_int("HTTP_MAX_RETRIES", 4, minimum=0)

# Values that must never reach the database, logs or error messages.
SECRET_SETTINGS = ("SECRET_KEY", "LAPOSTA_API_KEY", "FREESCOUT_API_KEY", "ALERT_WEBHOOK_URL")


# --- web sources: Sportlink Club and Nikki fetched by a headless browser ---------

# `files` (the default: exports in SPORTLINK_EXPORT_DIR / NIKKI_EXPORT_DIR, or
# the bundled demo) or `web` (log in and download, see docs/web-source.md).
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
    "timeout": env_int("Q_TIMEOUT", 3 * 3600, minimum=60),
    "retry": env_int("Q_TIMEOUT", 3 * 3600, minimum=60) + 600,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": env_int("Q_SAVE_LIMIT", 1000, minimum=0),
    "ack_failures": True,
    "poll": 0.2,
    "label": "Scheduler",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"


# --- alerts --------------------------------------------------------------------

ALERT_EMAILS = env_list("ALERT_EMAILS")
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
# A run still going after this many times its pipeline's median duration is
# reported as long-running (never before ALERT_LONG_RUNNING_MIN seconds).
ALERT_LONG_RUNNING_FACTOR = float(env_str("ALERT_LONG_RUNNING_FACTOR", "3"))
if ALERT_LONG_RUNNING_FACTOR < 1:
    raise ImproperlyConfigured("ALERT_LONG_RUNNING_FACTOR must be at least 1")
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
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
