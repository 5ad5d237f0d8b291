"""Settings from the environment: a bad value stops manage.py and the WSGI entry
with one clear line; the documented production settings pass `check --deploy`."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PRODUCTION = {
    # As in docs/deploy.md.
    "DEBUG": "0",
    "SECRET_KEY": "x7Kp2vQ9mZr4Tn8Ws1Yb6Lc3Hd5Fg0Jq-Uv_Ea9Rt2Oi7Pl4Mk1Nj8Bh3Gc6Dx",
    "ALLOWED_HOSTS": "sync.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://sync.example.org",
    "SITE_URL": "https://sync.example.org",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    # Alerts by mail through the club's provider (syncsite/checks.py warns otherwise).
    "ALERT_EMAILS": "ops@example.org",
    "DEFAULT_FROM_EMAIL": "syncsite@example.org",
    "EMAIL_HOST": "smtp.example.org",
    "EMAIL_PORT": "587",
    "EMAIL_HOST_USER": "syncsite@example.org",
    "EMAIL_HOST_PASSWORD": "m4il-pass-w0rd",
    "EMAIL_USE_TLS": "1",
}


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DATABASE_URL"}
    env.update({"DJANGO_SETTINGS_MODULE": "syncsite.settings", "PYTHONPATH": str(ROOT),
                "SYNCSITE_VAR_DIR": str(tmp_path)})
    env.update(extra)
    return env


def manage(env, *args):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RUNS_FLUSH_INTERVAL", "abc", "RUNS_FLUSH_INTERVAL must be a number of seconds, got 'abc'"),
    ("RUNS_FLUSH_INTERVAL", "inf", "RUNS_FLUSH_INTERVAL must be a number of seconds, got 'inf'"),
    ("HTTP_TIMEOUT", "-1", "HTTP_TIMEOUT must be more than 0 seconds, got '-1'"),
    ("HTTP_TIMEOUT", "NaN", "HTTP_TIMEOUT must be a number of seconds, got 'NaN'"),
    ("ALERT_LONG_RUNNING_FACTOR", "0.5", "ALERT_LONG_RUNNING_FACTOR must be at least 1, got '0.5'"),
    ("DATABASE_URL", "garbage", "DATABASE_URL must look like postgres://USER:PASSWORD@HOST:5432/NAME"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ("RUNS_KEEP_DAYS", "99999999999", "RUNS_KEEP_DAYS must be at most 36500, got '99999999999'"),
    ("Q_WORKERS", "two", "Q_WORKERS must be a whole number, got 'two'"),
    ("DEBUG", "maybe", "DEBUG must be a boolean"),
    ("SITE_URL", "sync.example.org", "SITE_URL must be a URL starting with http:// or https://"),
    ("SECURE_PROXY_SSL_HEADER", "https", "SECURE_PROXY_SSL_HEADER must look like 'X-Forwarded-Proto: https'"),
])
def test_a_bad_setting_fails_in_one_line_naming_the_variable(tmp_path, name, value, message):
    result = manage(clean_env(tmp_path, **{name: value}), "check")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_secrets_in_a_bad_url_are_not_shown(tmp_path):
    result = manage(clean_env(tmp_path, DATABASE_URL="mysql://sync:hunter2secret@db/sync",
                              ALERT_WEBHOOK_URL="hooks.example.org/T0K3N-very-secret"), "check")
    assert result.returncode != 0
    assert "hunter2secret" not in result.stderr and "mysql://sync:***@db/sync" in result.stderr
    result = manage(clean_env(tmp_path, ALERT_WEBHOOK_URL="hooks.example.org/T0K3N-very-secret"), "check")
    assert result.returncode != 0 and "T0K3N" not in result.stderr
    assert "ALERT_WEBHOOK_URL must be a URL" in result.stderr


def test_the_wsgi_entry_fails_in_one_line_too(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import syncsite.wsgi"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(tmp_path, RUNS_FLUSH_INTERVAL="abc"), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "syncsite: configuration error: RUNS_FLUSH_INTERVAL must be a number of seconds, got 'abc'")


def test_good_values_are_accepted(tmp_path):
    env = clean_env(tmp_path, RUNS_FLUSH_INTERVAL="0.5", HTTP_TIMEOUT="7.5", LOG_LEVEL="debug",
                    DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    result = manage(env, "shell", "-v", "0", "-c", "from django.conf import settings as s; "
                    "print(s.RUNS_FLUSH_INTERVAL_S, s.HTTP_TIMEOUT_S, s.LOG_LEVEL, s.SECURE_PROXY_SSL_HEADER)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.5", "7.5", "DEBUG", "None"]


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    env = clean_env(tmp_path, **PRODUCTION)
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    result = manage(env, "shell", "-v", "0", "-c",
                    "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER)")
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_without_the_tls_settings_check_deploy_warns(tmp_path):
    env = clean_env(tmp_path, **{k: v for k, v in PRODUCTION.items() if not k.startswith("SECURE_")})
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def test_check_deploy_names_syncsite_mistakes_with_a_hint(tmp_path):
    env = clean_env(tmp_path, **{**PRODUCTION, "SITE_URL": "http://127.0.0.1:8000", "ALERT_EMAILS": ""})
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "(syncsite.W001) SITE_URL is 'http://127.0.0.1:8000'" in result.stderr
    assert "(syncsite.W007) Neither ALERT_EMAILS nor ALERT_WEBHOOK_URL is set" in result.stderr
    assert "HINT: Set SITE_URL to the address volunteers open" in result.stderr
    assert "m4il-pass-w0rd" not in result.stdout + result.stderr
