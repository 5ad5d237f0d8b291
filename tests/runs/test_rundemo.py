"""rundemo: the web server and a real qcluster; a signal stops both, no orphans, and so does
the web server's own end (e.g. its port is taken)."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys

import httpx
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


def _start(subprocess_env, log_path, *args):
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the caller's _stop
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rundemo", *args],
        env={**subprocess_env, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc, log


def _stop(proc, log):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()


def test_the_dashboard_answers_at_the_host_and_port_it_names(subprocess_env, tmp_path):
    port = _free_port()
    log_path = tmp_path / "rundemo.log"
    proc, log = _start(subprocess_env, log_path, "--host", "127.0.0.1", "--port", str(port))
    try:
        found = wait_for(lambda: re.search(r"Dashboard: (\S+)  \(scheduler running as pid (\d+)\)",
                                           log_path.read_text()), 30, "rundemo to start")
        url, cluster_pid = found.group(1), int(found.group(2))
        assert url == f"http://127.0.0.1:{port}/"

        def health():
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(url + "health/", timeout=2)
            return None

        response = wait_for(health, 30, "the web server")
        assert response.headers["Content-Type"] == "application/json" and "status" in response.json()
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        _stop(proc, log)
    assert not _alive(cluster_pid)
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "health/", timeout=2)


def test_when_the_web_server_cannot_start_the_cluster_stops_too(subprocess_env, tmp_path):
    log_path = tmp_path / "rundemo.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, log = _start(subprocess_env, log_path, "--port", str(port))
        try:
            # No signal: the server's exit alone ends rundemo.
            proc.wait(timeout=60)
        finally:
            _stop(proc, log)
    text = log_path.read_text()
    assert "already in use" in text
    cluster_pid = int(re.search(r"scheduler running as pid (\d+)", text).group(1))
    assert not _alive(cluster_pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(cluster_pid, 0)  # its workers are gone with it
