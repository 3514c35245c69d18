"""End to end in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed by ``scripts/setup_browser.sh``), driven by Selenium: enroll through the admin
page, identify through the door page, see the name, see "Unknown" for someone else, remove
the person. Screenshots go to the test's tmp dir (and to ``$TWINSHOT_SCREENSHOTS`` if set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import glyph, png


def test_enroll_on_admin_page_identify_on_door_page(start, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(1000, 900)
    live = start()
    photos = {}
    for name, cls in (("alice", 0), ("stranger", 2)):
        photos[name] = tmp_path / f"{name}.png"
        photos[name].write_bytes(png(glyph(cls, size=96)))
    wait = WebDriverWait(browser, 20)
    find = browser.find_element

    def text_in(selector: str, text: str) -> None:
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text))

    def type_key(key: str) -> None:
        field = find(By.ID, "key")
        field.clear()
        field.send_keys(key)

    def save(name: str) -> None:
        path = tmp_path / name
        browser.save_screenshot(str(path))
        if os.environ.get("TWINSHOT_SCREENSHOTS"):
            Path(os.environ["TWINSHOT_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(os.environ["TWINSHOT_SCREENSHOTS"]) / name)

    # enroll alice on the admin page
    browser.get(live.url + "/admin")
    type_key(live.admin)
    find(By.ID, "connect").click()
    text_in("#login-status", "Connected")
    find(By.ID, "name").send_keys("alice")
    find(By.ID, "photos").send_keys(str(photos["alice"]))
    find(By.ID, "enroll-button").click()
    text_in("#enroll-status", "Enrolled alice with 1 photo(s)")
    text_in("#people tbody", "alice")
    save("admin.png")

    # identify at the door: alice is recognised, the stranger is not
    browser.get(live.url + "/door")
    type_key(live.read)
    find(By.ID, "photo").send_keys(str(photos["alice"]))
    text_in("#result", "Recognised as alice")
    assert "(score 5.00)" in find(By.ID, "result").text
    save("door.png")
    find(By.ID, "photo").send_keys(str(photos["stranger"]))
    text_in("#result", "Unknown")
    assert "alice" not in find(By.ID, "result").text
    save("door-unknown.png")

    # remove alice on the admin page; the door no longer knows her
    browser.get(live.url + "/admin")
    type_key(live.admin)
    find(By.ID, "connect").click()
    text_in("#people tbody", "alice")
    # the page lists the people twice (on load, the key being remembered, and on connect):
    # a second listing may replace the row between two clicks, so retry the pair
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException

    for attempt in range(5):
        try:
            find(By.CSS_SELECTOR, 'tr[data-identity="alice"] button').click()
            WebDriverWait(browser, 5).until(
                ec.text_to_be_present_in_element((By.CSS_SELECTOR, 'tr[data-identity="alice"] button'), "Confirm removal")
            )
            find(By.CSS_SELECTOR, 'tr[data-identity="alice"] button').click()
            break
        except (StaleElementReferenceException, TimeoutException):
            assert attempt < 4, "the remove button kept being replaced"
    text_in("#list-status", "Removed alice")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-identity="alice"]'))
    browser.get(live.url + "/door")
    type_key(live.read)
    find(By.ID, "photo").send_keys(str(photos["alice"]))
    text_in("#result", "Unknown")
    assert (tmp_path / "door.png").stat().st_size > 1000
