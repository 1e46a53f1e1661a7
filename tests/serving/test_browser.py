"""The web page in a real headless Chromium: draw an image, click it, ask about it.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them; ``make
test`` runs it first). Without them the test skips and says why. Set
``LIQUIDGEN_SERVE_SCREENSHOT=docs/images/serve.png`` (and ``LIQUIDGEN_SERVE_MODEL`` to a
checkpoint, e.g. models/liquidgen-tiny) to refresh the README's screenshot.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.inference.pipeline import Pipeline

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (serve extra) missing")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
)
WAIT = 180  # seconds: the machine may be busy


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
        pytest.skip(
            f"no headless browser: {', '.join(missing)} not installed (`make browser` installs "
            "Debian's chromium + chromium-driver; it needs root and the Debian mirror)"
        )
    return chromium, driver


def wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def browser(tmp_path: Path):
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page_server(model_dir: Path):
    from serving.conftest import LiveServer, make_app

    model = Path(os.environ.get("LIQUIDGEN_SERVE_MODEL") or model_dir)
    with LiveServer(make_app(model, max_n=4)) as server:
        yield server


def test_page_draws_an_image_and_answers_about_it(browser, page_server, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    pipe: Pipeline = page_server.state.pipe
    sizes = [f"{w}x{h}" for w, h in pipe.defaults.buckets] or [
        f"{pipe.defaults.width}x{pipe.defaults.height}"
    ]
    size = sizes[-1]
    width, height = (int(v) for v in size.split("x"))
    browser.get(page_server.url + "/")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#size option")), "the sizes")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("a red circle on the left")
    Select(browser.find_element(By.ID, "size")).select_by_visible_text(size)
    browser.find_element(By.ID, "seed").send_keys("5")
    browser.find_element(By.ID, "generate").click()

    img = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#images img"), "an image")[0]
    src = img.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert picture.size == (width, height)
    expected = pipe("a red circle on the left", width=width, height=height, seed=5)[0]
    assert np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(expected))
    progress = browser.find_element(By.ID, "progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") != "1"
    assert browser.find_element(By.ID, "gen-error").text == ""

    img.click()  # ask about this image
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#chat-image img"), "the thumbnail")
    question = browser.find_element(By.ID, "chat-input")
    question.clear()
    question.send_keys("What colour is the circle?")
    browser.find_element(By.ID, "send").click()

    def answered() -> str:
        if browser.find_elements(By.CSS_SELECTOR, ".msg.error"):
            raise AssertionError(browser.find_element(By.CSS_SELECTOR, ".msg.error").text)
        replies = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")
        send_ready = browser.find_element(By.ID, "send").is_enabled()
        return send_ready and replies and replies[-1].text.strip()

    answer = wait_for(answered, "an answer")
    assert answer and browser.find_elements(By.CSS_SELECTOR, ".msg.user")
    shot = Path(os.environ.get("LIQUIDGEN_SERVE_SCREENSHOT") or tmp_path / "serve.png")
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 0
