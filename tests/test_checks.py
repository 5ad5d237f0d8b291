"""syncsite's deployment checks (syncsite/checks.py): each mistake gives one
warning with a stable id and a hint; a correct production configuration none."""

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from syncsite import checks

SMTP = "django.core.mail.backends.smtp.EmailBackend"
# A correct production configuration, as far as these checks look.
GOOD = {
    "DEBUG": False,
    "SITE_URL": "https://sync.example.org",
    "ALLOWED_HOSTS": ["sync.example.org"],
    "ALERT_EMAILS": ["ops@example.org"],
    "ALERT_WEBHOOK_URL": "",
    "EMAIL_BACKEND": SMTP,
    "DEFAULT_FROM_EMAIL": "syncsite@example.org",
    "EMAIL_HOST": "smtp.example.org",
    "EMAIL_PORT": 587,
    "EMAIL_HOST_USER": "syncsite@example.org",
    "EMAIL_HOST_PASSWORD": "m4il-pass-w0rd",
    "EMAIL_USE_TLS": True,
}


def syncsite_ids(**changes):
    with override_settings(**{**GOOD, **changes}):
        return [m.id for m in run_checks(tags=["syncsite"], include_deployment_checks=True)]


def test_a_correct_production_configuration_has_no_warnings():
    assert syncsite_ids() == []


def test_checks_only_run_with_deploy():
    with override_settings(**{**GOOD, "SITE_URL": "http://127.0.0.1:8000"}):
        assert run_checks(tags=["syncsite"]) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost", "https://[::1]:8443",
                                 "http://127.0.1.1", "http://app.localhost"])
def test_site_url_on_the_loopback_address_breaks_alert_links(url):
    assert syncsite_ids(SITE_URL=url) == ["syncsite.W001"]
    with override_settings(**{**GOOD, "SITE_URL": url}):
        (message,) = checks.check_site_url()
    assert "SITE_URL" in message.msg and url in message.msg and "alert" in message.msg
    assert "Set SITE_URL" in message.hint


def test_in_development_a_local_site_url_and_empty_settings_are_fine():
    assert syncsite_ids(DEBUG=True, SITE_URL="http://127.0.0.1:8000", ALLOWED_HOSTS=[], ALERT_EMAILS=[]) == []


def test_empty_allowed_hosts_answers_every_request_with_400():
    assert syncsite_ids(ALLOWED_HOSTS=[]) == ["syncsite.W002"]
    with override_settings(**{**GOOD, "ALLOWED_HOSTS": []}):
        (message,) = checks.check_allowed_hosts()
    assert "ALLOWED_HOSTS" in message.hint


@pytest.mark.parametrize(("hosts", "warned"), [
    (["127.0.0.1", "localhost"], True),  # the default when DEBUG is off and ALLOWED_HOSTS is not set
    (["other.example.org"], True),
    ([".example.org"], False),
    (["*"], False),
    (["SYNC.example.org"], False),
])
def test_site_url_host_must_be_allowed(hosts, warned):
    assert syncsite_ids(ALLOWED_HOSTS=hosts) == (["syncsite.W003"] if warned else [])
    if warned:
        with override_settings(**{**GOOD, "ALLOWED_HOSTS": hosts}):
            (message,) = checks.check_site_url()
        assert "'sync.example.org'" in message.msg and "Add sync.example.org to ALLOWED_HOSTS" in message.hint


@pytest.mark.parametrize("backend", ["django.core.mail.backends.console.EmailBackend",
                                     "django.core.mail.backends.locmem.EmailBackend"])
def test_alert_mails_with_a_backend_that_never_delivers(backend):
    assert syncsite_ids(EMAIL_BACKEND=backend) == ["syncsite.W004"]


@pytest.mark.parametrize("sender", ["", "syncsite@localhost", "webmaster@localhost", "root", "Sync <sync@box>",
                                    "sync@127.0.0.1"])
def test_alert_mails_from_a_sender_without_a_real_domain(sender):
    assert syncsite_ids(DEFAULT_FROM_EMAIL=sender) == ["syncsite.W005"]
    with override_settings(**{**GOOD, "DEFAULT_FROM_EMAIL": sender}):
        (message,) = checks.check_alert_mail()
    assert "DEFAULT_FROM_EMAIL" in message.msg and "DEFAULT_FROM_EMAIL=" in message.hint


def test_a_display_name_sender_and_no_alert_mails_are_fine():
    assert syncsite_ids(DEFAULT_FROM_EMAIL="Syncsite <sync@club.example.org>") == []
    # Alerts by webhook only: the mail settings do not matter.
    assert syncsite_ids(ALERT_EMAILS=[], ALERT_WEBHOOK_URL="https://hooks.example.org/x",
                        DEFAULT_FROM_EMAIL="syncsite@localhost") == []


def test_an_smtp_password_without_tls_is_warned_unless_the_server_is_local():
    assert syncsite_ids(EMAIL_USE_TLS=False) == ["syncsite.W006"]
    assert syncsite_ids(EMAIL_USE_TLS=False, EMAIL_USE_SSL=True) == []
    assert syncsite_ids(EMAIL_USE_TLS=False, EMAIL_HOST="localhost") == []
    assert syncsite_ids(EMAIL_USE_TLS=False, EMAIL_HOST_PASSWORD="") == []
    with override_settings(**{**GOOD, "EMAIL_USE_TLS": False}):
        (message,) = checks.check_smtp_password_over_tls()
    assert "smtp.example.org" in message.msg and "m4il-pass-w0rd" not in message.msg + message.hint
    assert "EMAIL_USE_TLS=1" in message.hint


def test_no_alert_channel_at_all():
    assert syncsite_ids(ALERT_EMAILS=[]) == ["syncsite.W007"]


def test_several_mistakes_are_all_reported_by_check_deploy():
    mistakes = {"SITE_URL": "http://localhost:8000", "DEFAULT_FROM_EMAIL": "webmaster@localhost"}
    with override_settings(**{**GOOD, **mistakes}):
        call_command("check", "--deploy", "--tag", "syncsite")  # warnings only: exit 0
        with pytest.raises(SystemCheckError) as caught:
            call_command("check", "--deploy", "--tag", "syncsite", "--fail-level", "WARNING")
    text = str(caught.value)
    assert "(syncsite.W001)" in text and "(syncsite.W005)" in text
    assert "HINT: Set SITE_URL" in text
