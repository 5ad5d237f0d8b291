"""The dashboard in a real browser: Playwright driving Debian's headless Chromium.

Skipped (loudly) when Chromium or Playwright is missing outside CI, failed in CI;
`make browser-deps` installs Chromium, `make setup` Playwright. The docs' screenshots come from the real
demo (`make screenshots`), not from this test; its own screenshots go to a temporary directory.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from runs.models import Run, RunError, RunStatus, RunStep, StepStatus
from runs.permissions import ensure_volunteers_group
from runs.pipeline import all_pipelines
from runs.runner import run_pipeline
from tests.conftest import require_binary, require_module

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "browser-test-pass-123"


@pytest.fixture
def browser_page(tmp_path, monkeypatch):
    path = require_binary("chromium")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = require_module("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"), executable_path=path, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.problems = problems
        try:
            yield page
        finally:
            context.close()
            # Inside sync_playwright() the test's ORM calls run in Playwright's
            # greenlet, whose context variables give Django a connection of its
            # own; nothing else closes it, and an open PostgreSQL session keeps
            # the test database from being dropped.
            connection.close()


def _history():
    """Some history so the cards, sparklines and charts have something to draw."""
    patterns = ["SSPSSSSPSSSSSSPS", "SSSSSSSSSSSSSSSS", "SSSFSSSSPSSSSSSS", "PPPPSPPPPPPSPPPP", "SSSSSSSSSSSSSSSF",
                "SSSSSSSSSSSSSSSS"]
    names = [p.name for p in all_pipelines() if p.name not in {"sample", "all"}][:len(patterns)]
    for pipeline, pattern in [*zip(names, patterns, strict=False), ("clean", "SSSSSSSSSS"), ("boom", "FFSFF")]:
        for i, code in enumerate(pattern):
            status = {"S": RunStatus.SUCCESS, "P": RunStatus.PARTIAL, "F": RunStatus.FAILED}[code]
            began = timezone.now() - timedelta(hours=3 * (len(pattern) - i), minutes=20)
            run = Run.objects.create(pipeline=pipeline, status=status, mode="scheduled", started_at=began,
                                     finished_at=began + timedelta(seconds=60 + 17 * i),
                                     duration_ms=(60 + 17 * i) * 1000 + (i % 3) * 9000, created=i, updated=40 + i)
            RunStep.objects.create(run=run, position=1, name=f"{pipeline}-sync", status=StepStatus.SUCCESS,
                                   started_at=began, finished_at=run.finished_at, duration_ms=run.duration_ms)


def test_a_volunteer_walks_through_the_dashboard(live_server, browser_page):
    page = browser_page
    user = User.objects.create_user("volunteer", password=PASSWORD, is_staff=True)
    user.groups.add(ensure_volunteers_group())  # view runs and errors, run now, cancel
    _history()
    run = run_pipeline("sample")
    assert run.status == RunStatus.PARTIAL
    RunError.objects.create(run=run, step_name="sample-sync", identifier=XSS, identifier_kind="knvb_id",
                            message=f"member {XSS} has no email", traceback=f"Traceback: {XSS}")

    # Every page needs a login: the admin login page, then back where we wanted to go.
    page.goto(f"{live_server.url}/runs/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "volunteer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/$"))
    assert page.locator("table.table tbody tr").count() >= 20

    # Overview
    page.click("nav >> text=Overview")
    assert page.locator('section[data-pipeline="sample"]').is_visible()
    card = page.locator('section[data-pipeline="clean"]')
    assert card.locator("svg.sparkline").count() == 1
    assert "100% successful" in card.inner_text()
    _screenshot(page, "overview.png")

    # Runs list -> run detail
    page.click("nav >> text=Runs")
    page.select_option("select[name=pipeline]", "sample")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r".*pipeline=sample.*"))
    page.click(f'a[href="/runs/{run.pk}/"]')
    page.wait_for_url(re.compile(rf".*/runs/{run.pk}/$"))
    assert page.locator(".timeline .tl-row").count() == 3

    # Expand a traceback
    details = page.locator("table.errors details").filter(has_text="division by zero").first
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert details.locator("pre").is_visible()
    assert "ZeroDivisionError" in details.locator("pre").inner_text()

    # The XSS name is text, not markup (and no dialog opened)
    assert page.get_by_text(f"member {XSS} has no email").count() == 1
    _screenshot(page, "run_detail.png", full_page=True)

    # Errors explorer: filter by identifier
    page.click("nav >> text=Errors")
    page.fill("input[name=identifier]", "c@example")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r".*identifier=c%40example.*"))
    rows = page.locator("table.errors tbody tr")
    assert rows.count() == 1 and "c@example.org" in rows.first.inner_text()
    page.click("text=Grouped by identifier and message")
    assert "c@example.org" in page.locator("table.groups").inner_text()

    # Run now (queued on the django-q2 broker; no cluster runs in this test)
    page.click("nav >> text=Overview")
    page.locator('section[data-pipeline="clean"] button:has-text("Run now")').click()
    assert page.locator(".messages").inner_text().startswith("clean queued")

    assert page.problems == []


def _screenshot(page, name: str, full_page: bool = False) -> None:
    target_dir = Path(os.environ.get("PYTEST_TMPDIR", "/tmp"))
    target_dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target_dir / name), full_page=full_page)
