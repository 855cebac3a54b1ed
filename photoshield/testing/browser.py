"""Drive the web app in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) with Selenium.

For the browser test and the screenshot script; nothing is downloaded (no Selenium Manager, no browser
fetch). The browser can reach 127.0.0.1 only, so a page that loaded anything from the internet would show
it::

    reason = browser_missing()            # None, or why no browser test can run here
    driver = chromium(profile_dir)        # headless, 1400x1000
    driver.get(url); open_tab(driver, "Watermark"); upload(driver, "wm-photo", "face.png")
    click(driver, "wm-embed"); text = wait_for_text(driver, "wm-embed-result", "PSNR")
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["CHROMIUM", "CHROMEDRIVER", "browser_missing", "choose", "chromium", "click", "open_tab", "requested_urls",
           "set_value", "textbox", "upload", "wait_for_label", "wait_for_text"]

CHROMIUM = os.environ.get("PHOTOSHIELD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PHOTOSHIELD_CHROMEDRIVER", "/usr/bin/chromedriver")
#: Flags that run Chromium headless in a container and keep it from calling home.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def browser_missing() -> str | None:
    """Why no browser test can run here (selenium, chromium or chromedriver missing), or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def chromium(profile: str | os.PathLike, width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium WebDriver with a fresh profile in ``profile`` and a ``width`` x ``height`` window,
    recording its network requests (see :func:`requested_urls`)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM) or CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which(CHROMEDRIVER) or CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver


def requested_urls(driver: Any) -> set[str]:
    """Every URL the page requested since the last call (from Chromium's performance log)."""
    import json

    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def _wait(driver: Any, condition, timeout: float, what: str) -> Any:
    """Poll ``condition(driver)`` until it returns something true; on timeout say what was awaited and any
    error message the page shows."""
    end = time.monotonic() + timeout
    while True:
        value = condition(driver)
        if value:
            return value
        if time.monotonic() > end:
            errors = driver.execute_script(
                "return Array.from(document.querySelectorAll('.toast-body, .error')).map(e => e.innerText).join(' | ')")
            raise TimeoutError(f"waited {timeout:g} s for {what}" + (f"; the page says: {errors}" if errors else ""))
        time.sleep(0.2)


def _element(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By

    return _wait(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, css)), None), timeout, css)


def open_tab(driver: Any, name: str) -> None:
    """Click the tab whose button reads ``name``."""
    from selenium.webdriver.common.by import By

    button = _wait(driver, lambda d: next((b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                           if b.text.strip() == name), None), 30, f"the {name!r} tab")
    button.click()


def upload(driver: Any, elem_id: str, paths: str | os.PathLike | Sequence[str | os.PathLike], timeout: float = 30) -> None:
    """Upload files into the component ``elem_id`` and wait until it shows them."""
    from selenium.webdriver.common.by import By

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    field = _element(driver, f"#{elem_id} input[type=file]")
    field.send_keys("\n".join(str(Path(p).resolve()) for p in paths))

    def shown(d: Any) -> bool:  # an image component shows the picture; a file list, each name
        root = d.find_element(By.CSS_SELECTOR, f"#{elem_id}")
        names = root.text.replace("\n", "")
        return bool(root.find_elements(By.CSS_SELECTOR, "img")) or all(Path(p).name in names for p in paths)

    _wait(driver, shown, timeout, f"the upload into #{elem_id}")


def click(driver: Any, elem_id: str) -> None:
    """Click the button (or checkbox, or label) ``elem_id``."""
    element = _element(driver, f"#{elem_id}")
    targets = element.find_elements("css selector", "input[type=checkbox]") if element.tag_name != "button" else []
    (targets[0] if targets else element).click()


def set_value(driver: Any, elem_id: str, text: str) -> None:
    """Replace the text of the input or textarea inside ``elem_id`` and leave the field (so the page sees it)."""
    from selenium.webdriver.common.keys import Keys

    field = _element(driver, f"#{elem_id} input:not([type=file]):not([type=checkbox]), #{elem_id} textarea")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(str(text))
    field.send_keys(Keys.TAB)


def textbox(driver: Any, elem_id: str) -> str:
    """The text in the textbox ``elem_id``."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.value : '';", f"#{elem_id} textarea") or ""


def wait_for_text(driver: Any, elem_id: str, needle: str, timeout: float = 120) -> str:
    """Wait until the textbox ``elem_id`` contains ``needle``; its whole text."""
    return _wait(driver, lambda d: (lambda text: text if needle in text else None)(textbox(d, elem_id)), timeout,
                 f"{needle!r} in #{elem_id}")


def choose(driver: Any, elem_id: str, option: str, timeout: float = 30) -> None:
    """Pick ``option`` (its text) in the dropdown ``elem_id``."""
    from selenium.webdriver.common.by import By

    _element(driver, f"#{elem_id} input").click()
    item = _wait(driver, lambda d: next((li for li in d.find_elements(By.CSS_SELECTOR, "li[role=option]")
                                         if li.get_attribute("aria-label") == option), None), timeout,
                 f"{option!r} in #{elem_id}")
    item.click()


def wait_for_label(driver: Any, elem_id: str, needle: str, timeout: float = 60) -> str:
    """Wait until the text shown in component ``elem_id`` (its label, for an image) contains ``needle``."""
    from selenium.webdriver.common.by import By

    return _wait(driver, lambda d: (lambda text: text if needle in text else None)(
        d.find_element(By.CSS_SELECTOR, f"#{elem_id}").text), timeout, f"{needle!r} in #{elem_id}")
