"""The report page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed by ``scripts/setup_browser.sh``), driven by Selenium: it loads from file://,
every <img> decodes to a non-empty picture, and a screenshot goes to the test's tmp dir
(and to ``$TWINSHOT_SCREENSHOTS`` if set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
