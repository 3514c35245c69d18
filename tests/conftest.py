"""Shared fixtures: the real datasets (skipped with a reason where absent) and a small
synthetic image folder made by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# One thread: the tests use tiny tensors, where extra threads cost more than they give.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINSHOT_DATASETS", ROOT.parent / "shared" / "datasets"))
OMNIGLOT = DATASETS / "omniglot"


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (many small operations: faster on a shared CPU), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS} (set TWINSHOT_DATASETS)")
    return DATASETS


@pytest.fixture(scope="session")
def omniglot_dir(datasets_dir: Path) -> Path:
    if not (datasets_dir / "omniglot" / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot zips not found in {datasets_dir / 'omniglot'}")
    return datasets_dir / "omniglot"


def _glyph(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """A synthetic 'character': a few class-specific strokes plus per-image jitter."""
    crng = np.random.default_rng(1000 + cls)
    img = np.full((size, size), 255, np.uint8)
    for _ in range(3):
        r0, c0 = crng.integers(2, size - 6, 2)
        horizontal = crng.random() < 0.5
        length = int(crng.integers(size // 3, size // 2))
        dr, dc = rng.integers(-1, 2, 2)
        for t in range(length):
            r = int(np.clip(r0 + dr + (0 if horizontal else t), 0, size - 1))
            c = int(np.clip(c0 + dc + (t if horizontal else 0), 0, size - 1))
            img[max(0, r - 1) : r + 1, max(0, c - 1) : c + 1] = 0
    return img


def make_image_folder(root: Path, groups: int = 2, classes_per_group: int = 4, per_class: int = 5, size: int = 32, nested: bool = True) -> Path:
    """Write PNGs ``root/<group>/<class>/<i>.png`` (or ``root/<class>/<i>.png`` when not nested)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    cls = 0
    for g in range(groups):
        for c in range(classes_per_group):
            folder = root / f"alphabet{g}" / f"character{c + 1:02d}" if nested else root / f"class{cls:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(_glyph(rng, cls, size)).convert("1").save(folder / f"{cls:04d}_{i + 1:02d}.png")
            cls += 1
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A small nested folder of 1-bit PNGs: 2 groups x 4 classes x 5 images, 32x32."""
    return make_image_folder(tmp_path / "images")


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1200,1600",
]


@pytest.fixture
def browser(tmp_path: Path):
    """A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
    ``scripts/setup_browser.sh``) driven by Selenium, with a fresh profile. Skipped with a
    reason where they are missing, except in CI (``CI`` set), where that is a failure."""
    import tempfile

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "Debian's chromium and chromium-driver are not installed (run scripts/setup_browser.sh as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True, scope="session")
def _search_engine_cache(tmp_path_factory: pytest.TempPathFactory):
    """Measured exact-search engines are cached inside the test session, never in ~/.cache."""
    from twinshot.gallery import search_engine

    before = search_engine.DEFAULT_CACHE
    search_engine.DEFAULT_CACHE = tmp_path_factory.mktemp("search-engines") / "search-engines.json"
    yield
    search_engine.DEFAULT_CACHE = before
