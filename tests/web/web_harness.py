"""The web UI tests' harness: the API tests' corpus and server, plus headless Debian chromium via Playwright."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # reuse tests/api/api_harness.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))  # and the fake Jira

from api_harness import (
    INVOICE_PY,
    REFUND_PY,
    RETRY_PY,
    ROLLOUT_PY,
    WEB_URL,
    build_corpus,
    git_repo,
    serve,
    token,
)
from fake_jira import FakeJira

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "INVOICE_PY",
    "REFUND_PY",
    "RETRY_PY",
    "ROLLOUT_PY",
    "SCREENSHOTS",
    "WEB_URL",
    "FakeJira",
    "build_corpus",
    "git_repo",
    "serve",
    "shoot",
    "token",
    "watched_page",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@contextlib.contextmanager
def watched_page(browser: Browser, allow: tuple[str, ...] = (), **context_options) -> Iterator[Page]:
    """A page in a fresh context (its own cookies); fails if the page logs a JavaScript or console error
    other than ones containing an `allow` string (e.g. the expected 403 of a page under test)."""
    context = browser.new_context(**context_options)
    leaving: list[str] = []

    def only_local(route: Route) -> None:  # every request is seen here; none may leave the machine
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            leaving.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    try:
        yield page
    finally:
        context.close()
    unexpected = [e for e in errors if not any(a in e for a in allow)]
    assert not unexpected, unexpected
    assert not leaving, f"requests that would have left the machine: {leaving}"


def shoot(page: Page, name: str, widths: tuple[int, ...] = (1280, 390)) -> None:
    """Screenshots of the page at each width into test-output/screenshots/<name>-<width>.png; at every
    width the page itself must not scroll sideways (wide content scrolls inside its own box)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)  # one layout pass
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} at {width} px is {scroll} px wide"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    if before:
        page.set_viewport_size(before)


def sign_in(page: Page, base: str, tok: str, path: str = "/") -> None:
    page.goto(base + path)
    page.wait_for_selector("#token")
    page.fill("#token", tok)
    page.click("#signin-button")
    page.wait_for_url(base + path)
