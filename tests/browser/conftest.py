"""Headless Chromium for the console tests: Debian's ``chromium`` package driven by Playwright for Python.

Playwright's own browser download cannot run here; ``make test`` installs the Debian package
(``.ci/ensure-chromium``) and the tests point Playwright at it. Under ``CI=true`` a missing browser is
a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

# the flags a headless browser needs on this machine: no sandbox as root, and no calls to Google's hosts
# (the network is closed; without them Chromium retries refused connections at every start)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "Chromium is not installed (make test installs Debian's chromium: .ci/ensure-chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:  # each launch gets a new, empty profile
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()
