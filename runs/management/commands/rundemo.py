"""rundemo: serve the dashboard and run the scheduler side by side (for `make demo`)."""

import signal
import subprocess
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and a django-q2 cluster together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, host: str, port: str, **options):
        manage = [sys.executable, "manage.py"]

        def stop(signum, frame):
            raise KeyboardInterrupt

        # SIGTERM (systemd, `timeout`, `kill`) stops both processes like Ctrl-C,
        # instead of leaving an orphaned qcluster behind.
        signal.signal(signal.SIGTERM, stop)
        cluster = subprocess.Popen([*manage, "qcluster"])
        server = None
        self.stdout.write(f"Dashboard: http://{host}:{port}/  (scheduler running as pid {cluster.pid})")
        try:
            server = subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"])
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for process in (server, cluster):
                if process is not None and process.poll() is None:
                    process.terminate()
            for process in (server, cluster):
                if process is None:
                    continue
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
