"""The API keeps its published contract (runs/openapi.yaml).

schemathesis, the OpenAPI fuzzer, runs against a live test server with all its
checks and every phase: the spec's examples, the coverage phase (boundary and
malformed values: oversized integers, NaN, NUL bytes, wrong formats, undeclared
methods), random fuzzing and the stateful phase that follows the spec's links
(pipelines -> trigger, runs, problems; runs -> run -> its errors; problems -> their
last run -> its errors). The trigger is fuzzed with and without a body (its
`{"only": [...]}` scope, JSON or form fields). Bounded by a fixed seed and a
small number of examples so it stays within a minute or so in `make test`.
"""

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User

from runs.api import OPENAPI_FILE
from runs.models import ApiToken, RecordProblem, Run, RunError, RunStep

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SEED = 20250310
ST = Path(sys.executable).parent / "st"

# /health/pipelines/ answers a documented 503 while a pipeline is overdue or
# failing (it is in the seeded history): that is its job, not a server error.
CONFIG = """
[[operations]]
include-operation-id = "healthPipelines"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


def make_token(username: str, *codenames: str) -> str:
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))
    raw = ApiToken.generate()
    token = ApiToken(user=user, name=username)
    token.set_token(raw)
    token.save()
    return raw


def seed_history() -> None:
    """Enough history for two pages of runs, errors on some, a parent with children, a scoped
    run, and open and resolved problems (two pages of open ones, equal last-seen times in pairs,
    one identifier no URL can carry)."""
    parent = Run.objects.create(pipeline="all", status="partial", started_at=T0 - timedelta(hours=1),
                                finished_at=T0, duration_ms=3_600_000)
    for i in range(12):
        status = ("success", "partial", "failed")[i % 3]
        started = T0 + timedelta(minutes=i // 2)  # equal start times in pairs
        run = Run.objects.create(pipeline=("clean", "sample", "boom")[i % 3], status=status, started_at=started,
                                 finished_at=started + timedelta(seconds=5), duration_ms=5000,
                                 error_count=3 if i % 3 else 0, parent=parent if i < 3 else None)
        step = RunStep.objects.create(run=run, position=0, name="sync", status=status, created=2, total=5)
        if i % 3:
            RunError.objects.bulk_create(
                RunError(run=run, step=step, step_name="sync", identifier=f"AB{i:03d}{n}", identifier_kind="knvb_id",
                         message=f"row {n}: <b>bad</b> date", traceback="Traceback ...") for n in range(3)
            )
            RecordProblem.objects.bulk_create(
                RecordProblem(pipeline=run.pipeline, identifier=f"AB{i:03d}{n}", identifier_kind="knvb_id",
                              step_name="sync", message=f"row {n}: <b>bad</b> date", first_seen_at=started,
                              last_seen_at=started, failing_runs=1 + n, first_run=run, last_run=run,
                              resolved_at=started + timedelta(hours=1) if n == 2 else None,
                              resolution="fixed" if n == 2 else "", resolved_run=run if n == 2 else None)
                for n in range(3)
            )
    Run.objects.create(pipeline="sample", status="success", started_at=T0 + timedelta(hours=1),
                       finished_at=T0 + timedelta(hours=1, seconds=2), duration_ms=2000, only=["AB0010", "AB0011"])
    RecordProblem.objects.create(pipeline="sample", identifier="two\nlines", message="quoted CSV cell",
                                 first_seen_at=T0, last_seen_at=T0)


def schemathesis(live_server, tmp_path, token: str, *args: str, examples: int = 20) -> subprocess.CompletedProcess:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(ST), "--config-file", str(config), "run", str(OPENAPI_FILE), "--url", live_server.url,
        "--header", f"Authorization: Bearer {token}", "--checks", "all",
        "--seed", str(SEED), "--max-examples", str(examples), "--generation-database", "none",
        "--workers", "1", "--no-color", "--output-truncate", "false",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    print(result.stdout)  # shown with -s, or by pytest when the test fails
    return result


def report(result: subprocess.CompletedProcess) -> str:
    return f"schemathesis exited {result.returncode}\n{result.stdout[-30000:]}\n{result.stderr[-3000:]}"


def test_every_operation_keeps_the_contract_for_a_token_that_may_do_everything(live_server, tmp_path):
    seed_history()
    token = make_token("operator", "view_run", "view_runerror", "trigger_run")
    result = schemathesis(live_server, tmp_path, token)
    assert result.returncode == 0, report(result)
    # It really ran: every operation in the spec, and the stateful phase over the declared links.
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", result.stdout)
    assert selected and selected.group(1) == selected.group(2) and int(selected.group(1)) >= 8, report(result)
    assert re.search(r"Stateful \(in .*\n\n\s+Scenarios:\s+[1-9]", result.stdout), report(result)
    # The trigger was exercised for real: a pipeline got queued once, then 409 while queued.
    from django_q.models import OrmQ

    assert OrmQ.objects.exists(), report(result)
    # ... and with a body: a scoped run (record history's {"only": [...]}) was queued too.
    assert any(q.task["kwargs"].get("only") for q in OrmQ.objects.all()), report(result)


def test_the_trigger_keeps_the_contract_for_a_token_that_may_not_start_runs(live_server, tmp_path):
    seed_history()
    token = make_token("reader", "view_run", "view_runerror")
    result = schemathesis(live_server, tmp_path, token, "--include-operation-id", "triggerRun",
                          "--include-operation-id", "listPipelines", examples=10)
    assert result.returncode == 0, report(result)
    # Every trigger was refused with the documented 403 (schemathesis notices and says so).
    assert "403 Forbidden (1 operation)" in result.stdout, report(result)
    from django_q.models import OrmQ

    assert not OrmQ.objects.exists()
