"""A headless Chromium for the browser tests: Debian's ``chromium`` driven through its
``chromium-driver`` (Selenium is given both paths, so Selenium Manager never downloads anything),
offline, and a camera that saves each page a person would look at."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [
    package
    for package, found in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
    if not found
]
# The pages render client-side on a slow, shared machine.
PATIENCE = 60.0


def body_text(driver: WebDriver) -> str:
    """What a person reads on the page now (rendered, visible text only)."""
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)
    except WebDriverException:
        return ""


@dataclass
class Browser:
    """The driver and where its screenshots go."""

    driver: WebDriver
    shots: Path

    def shoot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def until(self, condition: Callable[[WebDriver], object], timeout: float = PATIENCE) -> bool:
        """Wait for ``condition``; False (not an exception) when it never held, so the caller can
        still take its screenshot and then say precisely what was missing."""
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(condition)
        except TimeoutException:
            return False
        return True

    def scroll_to(self, xpath: str) -> None:
        """Bring the first element at ``xpath`` (if any) to the top, so the screenshot shows it."""
        for element in self.driver.find_elements(By.XPATH, xpath)[:1]:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)

    def see(
        self,
        url: str,
        texts: list[str],
        shot: str,
        *,
        focus: str | None = None,
        dismiss: str | None = None,
        timeout: float = PATIENCE,
    ) -> str:
        """Open ``url``, wait until every one of ``texts`` is visible, save a screenshot named
        ``shot`` (scrolled to the element at the XPath ``focus``, if given; the first button that
        the CSS selector ``dismiss`` finds clicked first); the page's text,
        after asserting that nothing expected was missing."""
        self.driver.get(url)
        self.until(lambda d: all(t in body_text(d) for t in texts), timeout)
        if (
            dismiss
        ):  # a side panel that opens by itself (MLflow's assistant): closed, as a person would
            for button in self.driver.find_elements(By.CSS_SELECTOR, dismiss)[:1]:
                if button.is_displayed():
                    button.click()
                    time.sleep(0.5)
        if focus:
            self.scroll_to(focus)
        self.shoot(shot)
        text = body_text(self.driver)
        missing = [t for t in texts if t not in text]
        assert not missing, (
            f"{url} (now {self.driver.current_url}) does not show {missing}; "
            f"a person sees:\n{text[:3000]}"
        )
        return text


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``MLOPS_SCREENSHOT_DIR`` when set (the README's docs/screenshots/), else a temporary folder."""
    chosen = os.environ.get("MLOPS_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(screenshots: Path) -> Iterator[Browser]:
    assert CHROMIUM and CHROMEDRIVER, f"install {' and '.join(MISSING)}"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        # Offline, as the product must work: every request except to 127.0.0.1 and file:// goes to
        # a proxy that refuses it (loopback always bypasses a proxy), so no CDN can rescue a page.
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(90)
    try:
        yield Browser(driver, screenshots)
    finally:
        driver.quit()
