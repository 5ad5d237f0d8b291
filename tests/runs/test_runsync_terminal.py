"""runsync on a terminal: live progress for a person at the keyboard, none for
cron (`--scheduled`), and the summary fitted to the terminal's width."""

import io
import re

import pytest

from runs.models import Run
from tests.conftest import runsync

pytestmark = pytest.mark.django_db(transaction=True)

HIDE_CURSOR = "\x1b[?25l"  # what rich's live display writes first
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm")
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)

    return lambda *args: runsync(*args, out=Terminal())


def test_a_manual_run_on_a_terminal_shows_live_progress_on_the_commands_output(terminal):
    code, out = terminal("clean")
    assert code == 0
    assert HIDE_CURSOR in out
    assert "clean: success" in ANSI.sub("", out)
    assert Run.objects.get(pipeline="clean").mode == "manual"


def test_a_scheduled_run_on_a_terminal_shows_no_live_progress(terminal):
    code, out = terminal("clean", "--scheduled")
    assert code == 0
    assert HIDE_CURSOR not in out
    assert "clean: success" in ANSI.sub("", out)
    assert Run.objects.get(pipeline="clean").mode == "scheduled"


def test_on_a_terminal_the_summary_fits_its_width(terminal):
    code, out = terminal("sample", "--scheduled")
    assert code == 3
    lines = ANSI.sub("", out).splitlines()
    assert lines[0] == "sample: partial" and "1 error(s) recorded." in lines
    # 80 columns: the table (86 wide unfolded) folds its cells to fit.
    assert max(len(line) for line in lines) <= 80
