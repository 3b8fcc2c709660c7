"""Headless Chromium for the e2e tests, driven through Selenium and Debian's chromedriver.

Chromium and chromedriver come from Debian's packages (``scripts/ensure_chromium.sh``, which
``make test`` runs); Selenium is told their paths, so it never downloads a browser or a driver.
Screenshots go to ``tests/e2e/screenshots/`` (git-ignored; CI keeps it as an artifact).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.deployment import wait_for

__all__ = ["chromium", "chromium_paths", "screenshot", "wait_for"]

SCREENSHOTS = Path(__file__).parent / "screenshots"


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium session (a fresh profile: no cookies)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are missing: run scripts/ensure_chromium.sh")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not go looking for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-proxy-server",
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
