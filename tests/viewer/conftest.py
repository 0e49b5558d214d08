"""Fixtures of the viewer tests: a headless browser and where README screenshots go."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.viewer.helpers import chromium


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (skips when chromium, chromedriver or selenium is missing)."""
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def screenshot_dir(request) -> Path | None:
    """`--screenshot-dir DIR`: where the browser tests also save their PNGs (None: nowhere)."""
    value = request.config.getoption("--screenshot-dir", default=None)
    if value is None:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path
