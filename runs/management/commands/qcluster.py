"""qcluster: django-q2's cluster, with stops that work under systemd.

Replaces django-q2's own `qcluster` (the `runs` app comes first in
INSTALLED_APPS). SIGTERM or SIGINT, to the main process or to the whole
process group, stop the cluster within Q_STOP_GRACE seconds: running
pipelines end `cancelled` at their next item or step boundary (see
runs.shutdown for why django-q2's handler is not used).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid

from django.conf import settings
from django_q.cluster import Cluster, Sentinel, get_mp_context
from django_q.management.commands.qcluster import Command as QClusterCommand

from runs import shutdown

logger = logging.getLogger("runs.qcluster")


class StoppableSentinel(Sentinel):
    """django-q2's sentinel, but a signal only asks it to stop (see runs.shutdown)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, start=False, **kwargs)
        # The workers, pusher and monitor are forked after this: they inherit it.
        shutdown.install_child_handlers(forward_to=self)
        self.start()


class StoppableCluster(Cluster):
    def __init__(self) -> None:
        super().__init__()
        self._signal: int | None = None
        # Replaces django-q2's handlers, which stop the cluster inside the handler.
        signal.signal(signal.SIGTERM, self._remember_signal)
        signal.signal(signal.SIGINT, self._remember_signal)

    def _remember_signal(self, signum: int, frame: object) -> None:
        self._signal = signum

    def start(self) -> int:
        self.stop_event = get_mp_context().Event()
        self.start_event = get_mp_context().Event()
        self.sentinel = get_mp_context().Process(
            target=StoppableSentinel, name=f"Process-{uuid.uuid4().hex}",
            args=(self.stop_event, self.start_event, self.cluster_id, self.broker, self.timeout),
        )
        self.sentinel.start()
        logger.info("Q Cluster %s starting.", self.name)
        while not self.start_event.is_set() and self.sentinel.is_alive() and self._signal is None:
            time.sleep(0.1)
        return self.pid

    def serve(self) -> int:
        """Run until a signal arrives or the sentinel dies; stop; return an exit code."""
        self.start()
        while self._signal is None and self.sentinel.is_alive():
            time.sleep(0.2)  # a signal interrupts the sleep
        if self._signal is None:
            logger.error("the cluster's sentinel died (exit code %s)", self.sentinel.exitcode)
            return 1
        return 0 if self.stop_gracefully() else 1

    def stop_gracefully(self) -> bool:
        """Ask every process to stop and wait up to Q_STOP_GRACE seconds; then kill what is left."""
        grace = settings.Q_STOP_GRACE_S
        logger.warning("Q Cluster %s stopping (signal %s); waiting up to %s s for running tasks",
                       self.name, self._signal, grace)
        if self.sentinel.is_alive():
            os.kill(self.sentinel.pid, signal.SIGTERM)  # it forwards to the workers
            self.stop_event.set()
            self.sentinel.join(grace)
        if not self.sentinel.is_alive():
            return True
        leftovers = _descendants(self.sentinel.pid)
        logger.error("Q Cluster %s did not stop within %s s; killing %s", self.name, grace,
                     [self.sentinel.pid, *leftovers])
        for pid in [*leftovers, self.sentinel.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.sentinel.join(5)
        return False


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Command(QClusterCommand):
    help = "Starts the django-q2 cluster; SIGTERM/SIGINT stop it cleanly within Q_STOP_GRACE seconds."

    def handle(self, *args, **options) -> None:
        settings.SECRET_KEY  # noqa: B018 - django-q2 signs tasks with it; fail before starting
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = StoppableCluster()
        if options.get("run_once"):
            cluster.start()
            cluster._signal = signal.SIGTERM
            cluster.stop_gracefully()
            return
        code = cluster.serve()
        if code:
            raise SystemExit(code)
