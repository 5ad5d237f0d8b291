"""One headless Chromium per run, driven by Playwright in a thread of its own.

Playwright's sync API keeps an asyncio event loop in the thread that starts
it, and Django refuses ORM calls from a thread with a running loop. So the
browser lives in a single worker thread and every browser action is sent
there (`Browser.call`); the pipeline's thread only ever gets plain data back
(bytes, dicts), and goes on using the database as usual.

The launch is the one Debian's chromium needs on a server: headless, a fresh
profile in a temporary directory, no background traffic (updates, sync,
first-run pages) and, as root, no sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings

from pipelines.readers import ExportError

logger = logging.getLogger("pipelines.web")

T = TypeVar("T")

# The user agent of the tool syncsite replaces (a desktop Chrome).
USER_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/143.0.0.0 Safari/537.36")
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]


class WebSourceError(ExportError):
    """A web download that cannot go on; the message tells a maintainer what to check."""


def chromium_args() -> list[str]:
    # Chromium refuses to run as root with its sandbox on (containers, CI).
    return ["--no-sandbox", *CHROMIUM_ARGS] if os.geteuid() == 0 else list(CHROMIUM_ARGS)


class Browser:
    """A lazily started Chromium; `call(fn)` runs `fn(context)` in the browser's thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-source")
        self._playwright: Any = None
        self._context: Any = None
        self._profile: Path | None = None
        self.closed = False

    def call(self, fn: Callable[[Any], T]) -> T:
        if self.closed:
            raise WebSourceError("the browser of this run was already closed")
        return self._executor.submit(self._in_thread, fn).result()

    def _in_thread(self, fn: Callable[[Any], T]) -> T:
        if self._context is None:
            self._start()
        return fn(self._context)

    def _start(self) -> None:
        executable = settings.WEB_SOURCE_CHROMIUM
        if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
            raise WebSourceError(f"Chromium was not found at {executable}: install Debian's chromium package "
                                 "(`make browser-deps`) or set WEB_SOURCE_CHROMIUM")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise WebSourceError("Playwright for Python is not installed: run `make setup` "
                                 "(it is in requirements.txt)") from None
        self._profile = Path(tempfile.mkdtemp(prefix="syncsite-chromium-"))
        self._playwright = sync_playwright().start()
        try:
            self._context = self._playwright.chromium.launch_persistent_context(
                user_data_dir=str(self._profile), executable_path=executable, headless=True, args=chromium_args(),
                user_agent=USER_AGENT, accept_downloads=True,
            )
        except Exception as exc:
            self._stop()
            raise WebSourceError(f"Chromium at {executable} did not start: {str(exc).splitlines()[0][:300]}") \
                from None
        logger.info("started Chromium (%s)", executable)

    def _stop(self) -> None:
        try:
            if self._context is not None:
                self._context.close()
        except Exception:
            logger.exception("could not close Chromium")
        finally:
            self._context = None
            if self._playwright is not None:
                try:
                    self._playwright.stop()
                except Exception:
                    logger.exception("could not stop Playwright")
                self._playwright = None
            if self._profile is not None:
                shutil.rmtree(self._profile, ignore_errors=True)
                self._profile = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._executor.submit(self._stop).result()
        finally:
            self._executor.shutdown(wait=True)
