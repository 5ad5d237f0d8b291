"""rundemo: serve the dashboard and run the scheduler side by side (for `make demo`)."""

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
        cluster = subprocess.Popen([*manage, "qcluster"])
        self.stdout.write(f"Dashboard: http://{host}:{port}/  (scheduler running as pid {cluster.pid})")
        try:
            subprocess.call([*manage, "runserver", "--noreload", f"{host}:{port}"])
        except KeyboardInterrupt:
            pass
        finally:
            cluster.terminate()
            try:
                cluster.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cluster.kill()
