"""Driving the web UI in a real browser: Debian's chromium (never a downloaded build)
under Playwright, and the app served by uvicorn on a free loopback port in a thread.

Without chromium or Playwright the browser tests skip, saying what to install; under
LIVINGAI_REQUIRE_SERVICES=1 (CI) they fail instead, as the store tests do.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.services import free_port, skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}  # small PNGs, the size the README shows

# Every Content-Security-Policy violation a page meets is reported to the test through an
# exposed function, so that no navigation can lose one (Chromium logs most of them to the
# console too, but not all: a blocked style attribute, say).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
    window.__livingaiReport(
        `CSP ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
        + ` at ${event.sourceFile}:${event.lineNumber}`
    );
});
"""


def chromium_path() -> str:
    """Debian's chromium (`apt-get install chromium`); skips, or fails in CI, without it
    or without Playwright, so a missing browser is never a silent pass."""
    path = shutil.which("chromium")
    if path is None:
        skip_or_fail("chromium is not installed; run: apt-get install -y chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail('playwright is not installed; run: pip install "livingai[test]"')
    return path


@contextmanager
def launched_browser() -> Iterator[Browser]:
    """Headless chromium from the system, driven by Playwright; closed on the way out."""
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright passes --no-sandbox itself (chromium_sandbox=False), which running
        # as root in a container needs.
        browser = playwright.chromium.launch(executable_path=path, headless=True, timeout=20_000)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page with what went wrong on it: console errors, uncaught exceptions, CSP
    violations (from the page's own origin or anywhere)."""

    page: Page
    problems: list[str] = field(default_factory=list)


@contextmanager
def watched_page(browser: Browser, **context_options: Any) -> Iterator[Watched]:
    """A fresh page (own cookies) at 1280x800 whose console errors, page errors and CSP
    violations are collected in `problems`."""
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    context.set_default_timeout(15_000)
    watched = Watched(context.new_page())
    try:
        context.expose_function("__livingaiReport", lambda text: watched.problems.append(text))
        context.add_init_script(REPORT_VIOLATIONS)
        watched.page.on("console", lambda message: _console(watched, message))
        watched.page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
        yield watched
    finally:
        context.close()


def _console(watched: Watched, message: ConsoleMessage) -> None:
    """Console errors are problems, but for the favicon the browser asks for by itself:
    that is no resource of the app's."""
    url = str(message.location.get("url", ""))
    if message.type == "error" and not url.endswith("/favicon.ico"):
        watched.problems.append(f"console error at {url or '?'}: {message.text}")


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread, for as long as the
    `with` block lasts; start and stop are bounded."""

    def __init__(self, app: Any, *, start_seconds: float = 10.0) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,  # live event streams would hold shutdown up
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="livingai-ui", daemon=True)
        self.start_seconds = start_seconds

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + self.start_seconds
        while not self.server.started:  # uvicorn offers no event to wait on: poll, bounded
            if not self.thread.is_alive():
                raise AssertionError("the web UI's server thread died while starting")
            if time.monotonic() > deadline:
                raise AssertionError(f"the web UI did not start in {self.start_seconds}s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the web UI's server did not stop in 10 s"
