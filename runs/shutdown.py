"""Clean stops of the django-q2 cluster (`manage.py qcluster`, see runs/management/commands/qcluster.py).

django-q2's own SIGTERM handling does not survive systemd: the main process
calls `stop_event.set()` and `join()` inside its signal handler, and when the
whole process group gets SIGTERM its sentinel dies holding that event's lock,
so the main process waits for ever (django-q2 issue #346). Workers die with
the signal too, killing a running pipeline mid-item.

Here only the main process decides. In the cluster's child processes
(sentinel, workers, pusher, monitor) SIGTERM and SIGINT merely set a flag
(`stop_requested()`); a flag is all a signal handler may safely touch: no
lock, no I/O. The sentinel also forwards the signal to its workers, so a
signal to the main process alone reaches them. A running pipeline notices the
flag at its next item (its tracker's writer checks about once a second) or
step boundary and ends `cancelled` with SHUTDOWN_REASON; the worker then
reads django-q2's STOP pill and exits, and the main process waits for the
sentinel outside any signal handler.
"""

from __future__ import annotations

import contextlib
import os
import signal

SHUTDOWN_REASON = "stopped: the scheduler is shutting down"

_stop_requested = False
#: The pid whose handler forwards the signal to the workers (the sentinel).
_forwarder_pid: int | None = None
_forwarder: object = None


def stop_requested() -> bool:
    """Whether this process was told to stop (SIGTERM/SIGINT in a cluster process)."""
    return _stop_requested


def _handle(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True
    if os.getpid() == _forwarder_pid:
        # Forked children inherit this handler; only the sentinel forwards, and
        # only to its own live workers (a dead worker's pid may be reused).
        for process in list(getattr(_forwarder, "pool", ())):
            pid = getattr(process, "pid", None)
            if pid and process.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)


def install_child_handlers(*, forward_to: object = None) -> None:
    """Make SIGTERM/SIGINT set the stop flag in this process and in the
    processes it forks from now on; with `forward_to` (django-q2's sentinel),
    also pass SIGTERM on to the processes in its worker `pool`."""
    global _forwarder_pid, _forwarder
    if forward_to is not None:
        _forwarder_pid = os.getpid()
        _forwarder = forward_to
    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
