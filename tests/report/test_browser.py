"""The report page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed by ``scripts/setup_browser.sh``), driven by Selenium: it loads from file://,
every <img> decodes to a non-empty picture, and a screenshot goes to the test's tmp dir
(and to ``$TWINSHOT_SCREENSHOTS`` if set)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1200,1600",
]


@pytest.fixture
def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (run scripts/setup_browser.sh as root)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_report_renders_with_every_image(folder_report, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(folder_report.html.resolve().as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
    assert "Verification report" in browser.find_element(By.TAG_NAME, "h1").text
    sizes = browser.execute_script("return Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight, i.alt])")
    n_worst = len(folder_report.summary["worst"]["false_accepts"]) + len(folder_report.summary["worst"]["false_rejects"])
    assert len(sizes) == 4 + 2 * n_worst
    assert all(w > 0 and h > 0 for w, h, _ in sizes), sizes
    tiles = browser.find_elements(By.CSS_SELECTOR, ".tile")
    assert any("EQUAL ERROR RATE" in t.text.upper() for t in tiles)
    assert any("1-SHOT ACCURACY" in t.text.upper() for t in tiles)
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("TWINSHOT_SCREENSHOTS"):
        Path(os.environ["TWINSHOT_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["TWINSHOT_SCREENSHOTS"]) / "report.png")
