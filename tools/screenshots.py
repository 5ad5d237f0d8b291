"""Screenshots of the real demo for the docs (`make screenshots`).

Builds the demo in a private, temporary SYNCSITE_VAR_DIR (migrate, makedemouser,
syncschedules, `runsync all` on the bundled demo exports), serves it on a free
loopback port, logs in as the demo user with Debian's headless Chromium through
Playwright and saves the pages to docs/screenshots/. Nothing outside the
temporary directory and docs/screenshots/ is written.

    .venv/bin/python tools/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
# The files this script writes; any other PNG in the output directory is removed.
SHOTS = ["overview", "runs", "run_detail", "errors", "problems", "record", "corrections", "pipeline"]


def manage(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode not in ok:
        sys.exit(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http://127.0.0.1 URL)
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"the server did not answer {url} within {timeout:.0f} s")


def demo_facts(env: dict[str, str]) -> dict[str, str]:
    """Ids to visit, read with the ORM of the demo database (before the browser starts)."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from pipelines.models import Member
    from runs.models import RecordProblem, Run, RunError

    run = Run.objects.filter(parent__isnull=False, error_count__gt=0).order_by("-error_count").first()
    member = Member.objects.filter(is_former=False).exclude(email="").order_by("knvb_id").first()
    if run is None or member is None or not RecordProblem.objects.filter(resolved_at__isnull=True).exists():
        sys.exit("the demo run left no failed child run, open problem or member to show")
    # The product should show tracebacks relative to the project; say so when it does not.
    for error in RunError.objects.filter(traceback__contains=str(ROOT)).select_related("run"):
        line = next(line for line in error.traceback.splitlines() if str(ROOT) in line)
        print(f"  WARNING: run #{error.run_id} ({error.run.pipeline}), step {error.step_name}: the traceback shows "
              f"an absolute path: {line.strip()}", file=sys.stderr)
    return {"run": str(run.pk), "record": member.knvb_id, "member": str(member.pk), "email": member.email}


def shoot(base: str, out: Path, chromium: str, password: str, facts: dict[str, str], profile: Path) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", *CHROMIUM_ARGS] if os.geteuid() == 0 else CHROMIUM_ARGS
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(profile), executable_path=chromium, args=args, headless=True, viewport=VIEWPORT)
        page = context.new_page()
        page.goto(f"{base}/admin/login/?next=/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/")

        def save(name: str, path: str | None = None, full_page: bool = False) -> None:
            if path is not None:
                page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)
            print(f"  {name}.png  {page.url.removeprefix(base)}")

        # A contact correction made the way a volunteer makes it: in the admin.
        page.goto(f"{base}/admin/pipelines/member/{facts['member']}/change/")
        local, _, domain = facts["email"].partition("@")
        page.fill("#id_email", f"{local}.nieuw@{domain}")
        page.click("input[name=_save]")
        page.wait_for_load_state("networkidle")

        save("overview", "/")
        save("runs", "/runs/")
        page.goto(f"{base}/runs/{facts['run']}/")
        tracebacks = page.locator("details:has(pre)")
        if tracebacks.count():
            tracebacks.first.locator("summary").click()
        save("run_detail", full_page=True)
        text = page.locator("body").inner_text()
        if str(ROOT) in text:
            print(f"  WARNING: the run page shows the absolute path {ROOT}", file=sys.stderr)
        save("errors", "/errors/")
        save("problems", "/problems/")
        save("record", f"/records/{facts['record']}/")  # the member corrected above
        save("corrections", "/corrections/")
        save("pipeline", "/pipelines/people/")
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--chromium", default=os.environ.get("WEB_SOURCE_CHROMIUM", "/usr/bin/chromium"))
    options = parser.parse_args()
    if not os.access(options.chromium, os.X_OK):
        sys.exit(f"Chromium was not found at {options.chromium}: run `make browser-deps`")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    var = Path(tempfile.mkdtemp(prefix="syncsite-screenshots-"))
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(SYNCSITE_VAR_DIR=str(var / "var"), DJANGO_ALLOW_ASYNC_UNSAFE="true")
    server = None
    try:
        print(f"demo in {var}")
        manage(env, "migrate", "--no-input")
        login = manage(env, "makedemouser")
        password = re.search(r"password: (\S+)", login).group(1)
        manage(env, "syncschedules")
        manage(env, "runsync", "all", ok=(0, 3))  # the demo exports hold bad rows on purpose: partial
        facts = demo_facts(env)
        port = free_port()
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                  cwd=ROOT, env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health/", server)
        for stale in out.glob("*.png"):
            if stale.stem not in SHOTS:
                stale.unlink()
        shoot(base, out, options.chromium, password, facts, var / "profile")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        shutil.rmtree(var, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
