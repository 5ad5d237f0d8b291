"""Deployment checks for syncsite's own settings (`manage.py check --deploy`).

Django's security checks cover DEBUG, SECRET_KEY, cookies and TLS; these cover
the mistakes that break syncsite's alerts and links in production. Each has a
stable id (syncsite.W001 ...) and a hint naming the variable to set in the
environment (.env). They are registered by runs.apps.RunsConfig.ready and run
only with --deploy (`check --deploy --tag syncsite` runs just these), never on a
development machine's plain `check`.
"""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.http.request import validate_host

# Mail backends that never deliver: fine in development, silent in production.
_NON_DELIVERING_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
}
_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _site_host() -> str:
    return urlsplit(settings.SITE_URL).hostname or ""


@register("syncsite", deploy=True)
def check_site_url(app_configs=None, **kwargs) -> list[CheckMessage]:
    """SITE_URL is what alert mails, webhooks and the API put in front of every link."""
    if settings.DEBUG or not settings.SITE_URL:
        return []
    host = _site_host()
    if _is_loopback(host):
        return [Warning(
            f"SITE_URL is {settings.SITE_URL!r}: the links in alert mails, webhook messages and the API "
            f"point to this machine's own loopback address and open nothing for the people who get them.",
            hint="Set SITE_URL to the address volunteers open in their browser, e.g. https://sync.example.org.",
            id="syncsite.W001",
        )]
    if settings.ALLOWED_HOSTS and not validate_host(host, settings.ALLOWED_HOSTS):
        return [Warning(
            f"SITE_URL's host {host!r} is not in ALLOWED_HOSTS ({', '.join(settings.ALLOWED_HOSTS)}): "
            f"every link in an alert would answer 400 Bad Request.",
            hint=f"Add {host} to ALLOWED_HOSTS (comma-separated), or correct SITE_URL.",
            id="syncsite.W003",
        )]
    return []


@register("syncsite", deploy=True)
def check_allowed_hosts(app_configs=None, **kwargs) -> list[CheckMessage]:
    if settings.DEBUG or settings.ALLOWED_HOSTS:
        return []
    return [Warning(
        "ALLOWED_HOSTS is empty while DEBUG is off: Django answers every request with 400 Bad Request.",
        hint="Set ALLOWED_HOSTS to the site's host name, e.g. ALLOWED_HOSTS=sync.example.org "
             "(leave the variable out entirely to get 127.0.0.1,localhost).",
        id="syncsite.W002",
    )]


def _sender_domain(address: str) -> str:
    _, email = parseaddr(address)
    return email.rpartition("@")[2].lower() if "@" in email else ""


@register("syncsite", deploy=True)
def check_alert_mail(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Alert mails need a backend that delivers and a sender a mail server accepts."""
    if settings.DEBUG or not settings.ALERT_EMAILS:
        return []
    messages: list[CheckMessage] = []
    if settings.EMAIL_BACKEND in _NON_DELIVERING_BACKENDS:
        messages.append(Warning(
            f"ALERT_EMAILS is set but EMAIL_BACKEND is {settings.EMAIL_BACKEND}, which never delivers mail: "
            f"nobody hears of failed runs.",
            hint=f"Leave EMAIL_BACKEND out (production uses {_SMTP_BACKEND}) and set EMAIL_HOST, EMAIL_PORT, "
                 f"EMAIL_HOST_USER and EMAIL_HOST_PASSWORD for your mail provider.",
            id="syncsite.W004",
        ))
    elif settings.EMAIL_BACKEND == _SMTP_BACKEND:
        domain = _sender_domain(settings.DEFAULT_FROM_EMAIL)
        if not domain or "." not in domain or _is_loopback(domain):
            messages.append(Warning(
                f"Alert mails are sent from DEFAULT_FROM_EMAIL={settings.DEFAULT_FROM_EMAIL!r}, which has no "
                f"real domain: mail servers reject or spam-file mail from it, so alerts go missing.",
                hint="Set DEFAULT_FROM_EMAIL to an address at the club's domain that your mail server may "
                     "send from, e.g. DEFAULT_FROM_EMAIL=syncsite@example.org.",
                id="syncsite.W005",
            ))
    return messages


@register("syncsite", Tags.security, deploy=True)
def check_smtp_password_over_tls(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The SMTP password crosses the network in the clear without TLS."""
    if (settings.EMAIL_BACKEND != _SMTP_BACKEND or not settings.EMAIL_HOST_PASSWORD
            or settings.EMAIL_USE_TLS or getattr(settings, "EMAIL_USE_SSL", False)
            or _is_loopback(settings.EMAIL_HOST)):
        return []
    return [Warning(
        f"EMAIL_HOST_PASSWORD is sent to {settings.EMAIL_HOST} without TLS: anyone on the network path can "
        f"read the mail password.",
        hint="Set EMAIL_USE_TLS=1 (usually with EMAIL_PORT=587), as your mail provider documents.",
        id="syncsite.W006",
    )]


@register("syncsite", deploy=True)
def check_alert_channel(app_configs=None, **kwargs) -> list[CheckMessage]:
    if settings.DEBUG or settings.ALERT_EMAILS or settings.ALERT_WEBHOOK_URL:
        return []
    return [Warning(
        "Neither ALERT_EMAILS nor ALERT_WEBHOOK_URL is set: failed, overdue and long-running runs are only "
        "written to the log, where nobody sees them.",
        hint="Set ALERT_EMAILS to the volunteers who fix syncsite (comma-separated) and/or ALERT_WEBHOOK_URL "
             "to a chat webhook.",
        id="syncsite.W007",
    )]
