"""Playwright on the system Chromium for the web application's end-to-end tests: a browser
per test, a fresh context in it (or more: a share link is opened in another),
every request each context makes recorded (none may leave the server's origin), and
screenshots kept as test artefacts in test-artefacts/ui/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import IN_CI

ARTEFACTS = Path(__file__).parents[2] / "test-artefacts" / "ui"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium driven by Playwright, for one test: its sync API keeps an event loop
    running in this thread while it lives, which other tests' asyncio.run() cannot bear."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true and playwright is not installed (the test extra has it)")
        pytest.skip("playwright is not installed")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("CI=true and chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Visit:
    """A browser context on the server at `origin`, and what it asked for."""

    context: Any
    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Answers of 400 and above: (status, method, URL without its query).
    refused: list[tuple[int, str, str]] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTEFACTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target

    def elsewhere(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """The requests that went to another origin than the server's (and `allowed`)."""
        origins = {self.origin, *allowed}
        found = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):
                continue
            if f"{parts.scheme}://{parts.netloc}" not in origins:
                found.append(url)
        return found


def visit(browser: Any, origin: str, width: int = 1366, height: int = 900) -> Visit:
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    page = context.new_page()
    seen = Visit(context, page, origin)
    context.on("request", lambda request: seen.requests.append(request.url))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on(
        "console",
        lambda message: seen.errors.append(message.text) if message.type == "error" else None,
    )
    context.on(
        "response",
        lambda r: (
            seen.refused.append((r.status, r.request.method, r.url.split("?")[0]))
            if r.status >= 400
            else None
        ),
    )
    page.set_default_timeout(15000)
    return seen
