"""Debian's Chromium, headless, driven by Playwright (its own browser downloads are not used)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"  # the `chromium` Debian package; scripts/install installs it
# Without the background-networking switches Chromium's own update and sync connections are
# refused on a machine without internet, and page loads stall behind them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # /dev/shm is small in containers; Chromium crashes at start when it fills.
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session", autouse=True)
def _patient_expectations() -> None:
    """The page polls every 2 s on a busy machine: wait up to 30 s for what it should show."""
    expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-browser as root (apt-get install chromium)"
        )
    return CHROMIUM


@pytest.fixture
async def page(chromium: str, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh tab in a browser with a new, empty profile; what it logs shows when a test fails."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=chromium,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        try:
            tab = context.pages[0] if context.pages else await context.new_page()
            tab.on("console", lambda message: print(f"browser console: {message.text}"))
            tab.on("pageerror", lambda error: print(f"browser error: {error}"))
            tab.set_default_timeout(30_000)
            yield tab
        finally:
            await context.close()
