"""rundemo: serve the dashboard and run the scheduler side by side (for `make demo`)."""

import contextlib
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and a django-q2 cluster together until Ctrl-C or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, host: str, port: str, **options):
        manage = [sys.executable, "manage.py"]
        received: list[int] = []

        def remember(signum, frame):
            received.append(signum)
            raise KeyboardInterrupt

        # Each child runs in its own process group, so a Ctrl-C or a SIGTERM to
        # this process's group reaches only this process: it forwards one
        # SIGTERM to each child, waits for the cluster's clean stop, and kills
        # a child's whole group if it overstays. Nothing is left orphaned.
        signal.signal(signal.SIGTERM, remember)
        signal.signal(signal.SIGINT, remember)
        children: list[subprocess.Popen] = []
        try:
            cluster = subprocess.Popen([*manage, "qcluster"], start_new_session=True)
            children.append(cluster)
            self.stdout.write(f"Dashboard: http://{host}:{port}/  (scheduler running as pid {cluster.pid})")
            server = subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"],
                                      start_new_session=True)
            children.append(server)
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            # Further signals must not interrupt the clean-up below.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=settings.Q_STOP_GRACE_S + 5)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)  # leftovers of its group
                child.wait()
