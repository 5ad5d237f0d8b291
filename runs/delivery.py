"""Alert delivery: send queued notifications by mail and webhook (phase 2 of runs.alerts).

`deliver_pending()` sends due notifications by mail (ALERT_EMAILS) and webhook
(ALERT_WEBHOOK_URL, JSON). A failing channel is recorded on the notification
and retried by a later check (ALERT_RETRY_S times the attempt, at most
ALERT_MAX_ATTEMPTS attempts); it never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from runs.models import Notification
from runs.redact import redact

# The alerts' logger name, as before the move (log filters rely on it).
logger = logging.getLogger("runs.alerts")


@dataclass
class DeliveryResult:
    sent: int = 0
    retrying: int = 0
    gave_up: int = 0


def deliver_pending(*, now: datetime | None = None, limit: int = 50) -> DeliveryResult:
    """Send due notifications; never raises for a failing channel."""
    now = now or timezone.now()
    result = DeliveryResult()
    due = list(
        Notification.objects.filter(status=Notification.Status.PENDING, next_attempt_at__lte=now)
        .order_by("id")[:limit]
    )
    for notification in due:
        attempt = notification.attempts + 1
        # Claim it (a conditional UPDATE): a second deliverer running at the
        # same time finds the attempt count changed and leaves it alone.
        claimed = Notification.objects.filter(pk=notification.pk, attempts=notification.attempts).update(
            attempts=F("attempts") + 1,
            next_attempt_at=now + timedelta(seconds=settings.ALERT_RETRY_S * attempt),
        )
        if not claimed:
            continue
        errors = _send(notification)
        if not errors:
            status = Notification.Status.SENT
            result.sent += 1
        elif attempt >= settings.ALERT_MAX_ATTEMPTS:
            status = Notification.Status.FAILED
            result.gave_up += 1
            logger.error("giving up on alert #%s after %d attempts: %s", notification.pk, attempt, errors)
        else:
            status = Notification.Status.PENDING
            result.retrying += 1
            logger.warning("alert #%s not delivered (attempt %d), will retry: %s",
                           notification.pk, attempt, errors)
        Notification.objects.filter(pk=notification.pk).update(
            status=status,
            email_sent_at=notification.email_sent_at,
            webhook_sent_at=notification.webhook_sent_at,
            last_error="; ".join(errors),
        )
    return result


def _send(notification: Notification) -> list[str]:
    """Send on every configured channel not yet done; return what failed."""
    errors: list[str] = []
    if not settings.ALERT_EMAILS and not settings.ALERT_WEBHOOK_URL:
        logger.warning("alert (no ALERT_EMAILS or ALERT_WEBHOOK_URL configured): %s", notification.subject)
        return errors
    if settings.ALERT_EMAILS and notification.email_sent_at is None:
        try:
            send_mail(notification.subject, notification.body, None, settings.ALERT_EMAILS)
            notification.email_sent_at = timezone.now()
        except Exception as exc:  # noqa: BLE001 - recorded and retried, never raised
            errors.append(f"mail: {redact(f'{type(exc).__name__}: {exc}')[:500]}")
    if settings.ALERT_WEBHOOK_URL and notification.webhook_sent_at is None:
        try:
            response = httpx.post(
                settings.ALERT_WEBHOOK_URL,
                json=notification.payload,
                timeout=settings.HTTP_TIMEOUT_S,
                headers={"User-Agent": "syncsite-alerts"},
            )
            if response.status_code >= 300:
                # The URL is a secret (it often carries a token): never record it.
                errors.append(f"webhook: HTTP {response.status_code}")
            else:
                notification.webhook_sent_at = timezone.now()
        except httpx.HTTPError as exc:
            errors.append(f"webhook: {type(exc).__name__}")
    return errors
