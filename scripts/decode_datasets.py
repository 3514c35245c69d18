"""Decode every image of ../shared/datasets with twinshot's decoder and count refusals
(the content and aspect checks must pass every real picture). From the repository root:

    python scripts/decode_datasets.py [DATASETS_DIR]
"""

from __future__ import annotations

import collections
import sys
import time
import zipfile
from pathlib import Path

from twinshot.errors import DataError
from twinshot.preprocessing import Preprocessing, decode_image_array


def main(root: Path) -> int:
    p = Preprocessing(size=(28, 28), invert=True)
    counts: collections.Counter = collections.Counter()
    refused: list[str] = []
    start = time.perf_counter()
    for archive in sorted((root / "omniglot").glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name.endswith(".png"):
                    try:
                        decode_image_array(zf.read(name), p, name=f"{archive}:{name}")
                        counts[f"omniglot/{archive.name}"] += 1
                    except DataError as exc:
                        refused.append(str(exc))
    for pattern in ("orl_faces/*/*.pgm", "signatures/*/*.png", "lfw/*/*.jpg", "cedar/*/*.png"):
        for path in sorted(root.glob(pattern)):
            try:
                decode_image_array(path, p)
                counts[pattern.split("/")[0]] += 1
            except DataError as exc:
                refused.append(str(exc))
    for k, v in counts.items():
        print(f"{k}: {v} decoded")
    print(f"total {sum(counts.values())} decoded, {len(refused)} refused, {time.perf_counter() - start:.0f} s")
    for line in refused[:20]:
        print("refused:", line)
    return 1 if refused else 0


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
