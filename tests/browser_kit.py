"""Headless Chromium for the tests that look at a page as a person would (the report, the
dashboard): selenium and Debian's chromium + chromium-driver; the test skips without them."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def require_chromium() -> Any:
    """selenium's webdriver module; skips the test without it, chromium or chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    return webdriver


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """A selenium Chrome driver on headless Chromium (1400×1000), quit on exit."""
    webdriver = require_chromium()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
