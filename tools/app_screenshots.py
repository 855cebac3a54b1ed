"""Screenshots of the web app's three tabs for docs/app.md: app-protect.png, app-watermark.png, app-check.png.

Serves the app on a free local port and drives it in headless Chromium (``photoshield.testing.browser``,
the same set-up as tests/test_app_browser.py) through one story on bundled portraits: protect a photo,
watermark the protected copy, then check that copy against another photo of the same person. Each tab
is saved after it has run. Needs the app extra, selenium, and Debian's chromium and chromium-driver.

Usage::

    python tools/app_screenshots.py [--out docs/images] [--preset light] [--side 320]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from photoshield import data  # noqa: E402
from photoshield.io.atomic import atomic_write  # noqa: E402
from photoshield.testing import browser  # noqa: E402

WIDTH = 1280


def _portrait(name: str, side: int, folder: Path) -> Path:
    image = Image.open(data.sample_path(name)).convert("RGB")
    image.thumbnail((side, side))
    path = folder / f"{name}.png"
    image.save(path)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _save(driver, target: Path) -> None:
    """The whole page (the window grown to its height) as an optimised PNG, written atomically."""
    driver.execute_script("window.scrollTo(0, 0)")
    for _ in range(3):  # growing the window can move the layout: measure again until it fits
        height = min(max(driver.execute_script("return document.documentElement.scrollHeight"), 800), 3000)
        if driver.execute_script("return window.innerHeight") >= height:
            break
        driver.set_window_size(WIDTH, height + 150)  # the window is taller than its page area
        time.sleep(1.0)  # let images and layout settle
    with Image.open(BytesIO(driver.get_screenshot_as_png())) as image:
        out = BytesIO()
        image.convert("RGB").save(out, format="PNG", optimize=True)
    atomic_write(target, out.getvalue())
    driver.set_window_size(WIDTH, 1000)
    print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the PNGs (default docs/images)")
    parser.add_argument("--preset", default="light", help="protection preset shown (default light)")
    parser.add_argument("--side", type=int, default=320, help="long side of the portraits in pixels (default 320)")
    args = parser.parse_args(argv)
    reason = browser.browser_missing()
    if reason:
        print(f"app_screenshots: {reason}", file=sys.stderr)
        return 2
    from photoshield.app import serve

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        photo, other = _portrait("obama", args.side, scratch), _portrait("obama2", args.side, scratch)
        server, url = serve("127.0.0.1", _free_port(), scratch / "work")
        driver = browser.chromium(scratch / "profile", width=WIDTH, height=1000)
        try:
            driver.get(url)
            browser.upload(driver, "protect-files", photo)
            driver.find_element("xpath", f"//*[@id='protect-preset']//label[contains(., '{args.preset}')]").click()
            browser.click(driver, "protect-run")
            browser.wait_for_text(driver, "protect-verdicts", "quality: PSNR", timeout=900)
            _save(driver, args.out / "app-protect.png")
            (protected,) = (scratch / "work").glob("protect/*/obama.protected.png")

            browser.open_tab(driver, "Watermark")
            browser.upload(driver, "wm-photo", protected)
            browser.set_value(driver, "wm-message", "ID-0042")
            browser.set_value(driver, "wm-key", "my secret")
            browser.click(driver, "wm-embed")
            browser.wait_for_text(driver, "wm-embed-result", "PSNR", timeout=300)
            (marked,) = (scratch / "work").glob("watermark/*/obama.protected.marked.png")
            browser.upload(driver, "wm-copy", marked)
            browser.set_value(driver, "wm-verify-message", "ID-0042")
            browser.set_value(driver, "wm-verify-key", "my secret")
            browser.click(driver, "wm-verify")
            browser.wait_for_text(driver, "wm-decision", "Watermark found", timeout=300)
            _save(driver, args.out / "app-watermark.png")

            browser.open_tab(driver, "Check a photo")
            browser.upload(driver, "check-photo", marked)
            browser.upload(driver, "check-reference", other)
            browser.click(driver, "check-watermark")
            browser.set_value(driver, "check-key", "my secret")
            browser.click(driver, "check-run")
            browser.wait_for_text(driver, "check-verdicts", "Watermark found", timeout=300)
            _save(driver, args.out / "app-check.png")
        finally:
            driver.quit()
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
