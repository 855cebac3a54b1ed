"""The web app end to end in a real headless Chromium: every tab uploads a photo, runs, and says the right thing.

The app is served from this process on a free 127.0.0.1 port; the browser can reach nothing else, so the
page must work offline. Skips with the reason when gradio, selenium, chromium or chromedriver is missing.
"""

from __future__ import annotations

import socket

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

from photoshield import data  # noqa: E402
from photoshield.testing import browser  # noqa: E402

if browser.browser_missing():
    pytest.skip(browser.browser_missing(), allow_module_level=True)

# Gradio's queue calls a pandas option that pandas 3 deprecates; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> str:
    """A bundled portrait at 192 px (small: the test runs every model on one CPU thread)."""
    image = Image.open(data.sample_path("obama")).convert("RGB")
    image.thumbnail((192, 192))
    path = tmp_path_factory.mktemp("photos") / "portrait.png"
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(URL, work folder) of the app served in the background."""
    from photoshield.app import serve

    workdir = tmp_path_factory.mktemp("app")
    server, url = serve("127.0.0.1", _free_port(), workdir)
    yield url, workdir
    server.close()


@pytest.fixture(scope="module")
def page(app, tmp_path_factory):
    url, _ = app
    driver = browser.chromium(tmp_path_factory.mktemp("profile"))
    try:
        driver.get(url)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> str:
    """A bundled photo without a face, small."""
    image = Image.open(data.sample_path("chelsea")).convert("RGB")
    image.thumbnail((128, 128))
    path = tmp_path_factory.mktemp("scenes") / "scene.png"
    image.save(path)
    return str(path)


def test_protect_tab_shows_verdicts_previews_and_a_download(page, app, face, scene):
    browser.upload(page, "protect-files", [face, scene])
    page.find_element("xpath", "//*[@id='protect-preset']//label[contains(., 'light')]").click()
    page.find_element("xpath", "//button[contains(., 'Advanced')] | //*[contains(@class,'label-wrap')][contains(., 'Advanced')]").click()
    browser.set_value(page, "protect-steps", "1")
    browser.click(page, "protect-run")
    text = browser.wait_for_text(page, "protect-verdicts", "quality: PSNR")
    assert "computed against: dlib ResNet, FaceRes, FaceRes-deep" in text
    assert "SFace, never seen by the protection: " in text
    assert "(cosine " in text and "same person at or above 0.36" in text
    assert "dlib ResNet: " in text and "same person at or above 0.93" in text
    assert "1 step" in text and "preset light" in text
    assert text.startswith("portrait.png\nprotected (facial") and "\n\nscene.png\nunchanged (facial" in text
    downloads = page.find_elements("css selector", "#protect-download a")
    assert any("protected-photos.zip" in (link.get_attribute("href") or "") for link in downloads)
    for elem_id in ("protect-face", "protect-difference"):
        assert page.find_elements("css selector", f"#{elem_id} img"), f"no image in #{elem_id}"
    assert "amplified x1 " not in page.find_element("css selector", "#protect-difference").text
    browser.choose(page, "protect-choice", "2. scene.png")  # the photo without a face: nothing changed
    browser.wait_for_label(page, "protect-difference", "amplified x1 ")
    _, workdir = app
    assert len(list(workdir.glob("protect/*/portrait.protected.png"))) == 1


def test_watermark_tab_embeds_then_verifies(page, app, face):
    browser.open_tab(page, "Watermark")
    browser.upload(page, "wm-photo", face)
    browser.set_value(page, "wm-message", "ID42")
    browser.set_value(page, "wm-key", "family")
    browser.click(page, "wm-embed")
    text = browser.wait_for_text(page, "wm-embed-result", "PSNR")
    assert "Marked with message 'ID42' under your key" in text
    psnr = float(text.split("PSNR ")[1].split(" dB")[0])
    assert 30 < psnr < 60
    _, workdir = app
    (marked,) = workdir.glob("watermark/*/portrait.marked.png")
    assert f"Saved as {marked}" in text

    browser.upload(page, "wm-copy", marked)
    browser.set_value(page, "wm-verify-message", "ID42")
    browser.set_value(page, "wm-verify-key", "family")
    browser.click(page, "wm-verify")
    decision = browser.wait_for_text(page, "wm-decision", "Watermark found")
    assert "message 'ID42'" in decision and "An unmarked photo would match this well about 1 in" in decision

    browser.set_value(page, "wm-verify-key", "another key")
    browser.click(page, "wm-verify")
    assert "No watermark found" in browser.wait_for_text(page, "wm-decision", "No watermark found")


def test_check_tab_compares_with_a_reference_and_reads_the_mark(page, app, face):
    _, workdir = app
    (marked,) = workdir.glob("watermark/*/portrait.marked.png")
    browser.open_tab(page, "Check a photo")
    browser.upload(page, "check-photo", marked)
    browser.upload(page, "check-reference", face)
    browser.click(page, "check-watermark")
    browser.set_value(page, "check-key", "family")
    browser.click(page, "check-run")
    text = browser.wait_for_text(page, "check-verdicts", "Watermark found")
    assert text.startswith("1 face found")
    assert "Same person as the reference" in text
    assert "SFace, independent judge: still recognised" in text  # a watermark leaves the identity alone
    assert "message 'ID42'" in text
    assert page.find_elements("css selector", "#check-faces img")


def test_the_page_requested_nothing_from_outside_this_computer(page):
    urls = browser.requested_urls(page)
    assert any(url.startswith("http://127.0.0.1:") for url in urls)
    outside = sorted(url for url in urls if not url.startswith(("http://127.0.0.1:", "data:", "blob:", "chrome:")))
    assert outside == []
