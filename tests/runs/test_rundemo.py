"""rundemo: the web server and a real qcluster; a signal stops both, no orphans."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.runs.test_qcluster import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent reaps it).
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_and_the_cluster(subprocess_env, tmp_path, signum):
    log_path = tmp_path / "rundemo.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "rundemo", "--port", str(_free_port())],
            env={**subprocess_env, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            found = wait_for(lambda: re.search(r"scheduler running as pid (\d+)", log_path.read_text()), 30,
                             "rundemo to start the cluster")
            cluster_pid = int(found.group(1))
            wait_for(lambda: log_path.read_text().count("ready for work") >= 2, 30, "the cluster's workers")
            # As systemd or a terminal would: the signal goes to rundemo's whole group.
            os.killpg(proc.pid, signum)
            assert proc.wait(timeout=40) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # The cluster (its own process group) stopped with rundemo, workers included.
    assert not _alive(cluster_pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(cluster_pid, 0)
    assert "Traceback" not in log_path.read_text()
