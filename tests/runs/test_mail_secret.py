"""EMAIL_HOST_PASSWORD is one of the masked secrets: a mail server that echoes
it in its refusal does not get it into the notification's error or the log."""

import logging
import socket
import threading
from base64 import b64decode

import pytest

from runs.delivery import deliver_pending
from runs.models import AlertEvent, Notification
from runs.redact import MASK, clear_secret_cache, redact

pytestmark = pytest.mark.django_db

PASSWORD = "Zq7-mailbox-Hunter"  # nothing around it looks like `password=`: only the secret list masks it


class EchoingSmtpServer:
    """A loopback SMTP server that offers AUTH PLAIN and refuses the login,
    quoting the credentials back as some misconfigured servers do."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb") as stream:
            def reply(line):
                stream.write(line.encode() + b"\r\n")
                stream.flush()

            reply("220 mail.test ESMTP")
            for raw in stream:
                command = raw.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    reply("250-mail.test")
                    reply("250 AUTH PLAIN")
                elif verb == "AUTH":
                    _, user, password = b64decode(command.split()[-1]).decode().split("\0")
                    reply(f"535 5.7.8 login refused for {user} with {password}")
                elif verb == "QUIT":
                    reply("221 bye")
                    return
                else:
                    reply("250 ok")

    def close(self):
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def mail_password(settings):
    settings.EMAIL_HOST_PASSWORD = PASSWORD
    clear_secret_cache()
    yield PASSWORD
    clear_secret_cache()


def test_the_mail_password_is_among_the_masked_secrets(settings, mail_password):
    assert "EMAIL_HOST_PASSWORD" in settings.SECRET_SETTINGS
    assert redact(f"SMTPAuthenticationError: (535, b'refused {mail_password}')") == (
        f"SMTPAuthenticationError: (535, b'refused {MASK}')")


def test_a_refused_smtp_login_never_records_or_logs_the_password(settings, mail_password, caplog):
    server = EchoingSmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 10
    settings.EMAIL_HOST_USER, settings.EMAIL_USE_TLS = "syncsite@example.org", False
    settings.ALERT_EMAILS, settings.ALERT_WEBHOOK_URL, settings.ALERT_MAX_ATTEMPTS = ["ops@example.org"], "", 3
    Notification.objects.create(event=AlertEvent.FAILED, pipeline="people", subject="people failed", body="x")
    with caplog.at_level(logging.WARNING):
        result = deliver_pending()
    server.close()
    assert result.retrying == 1
    error = Notification.objects.get().last_error
    assert error.startswith("mail: SMTPAuthenticationError") and "login refused for syncsite@example.org" in error
    assert mail_password not in error and MASK in error
    assert "login refused" in caplog.text and mail_password not in caplog.text
