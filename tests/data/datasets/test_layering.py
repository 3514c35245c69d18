"""Data never imports evaluation or training: the dataset modules, the pairs files and the
relabellings load (and a relabelling runs) without either package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_data_imports_neither_evaluation_nor_training() -> None:
    code = (
        "import sys, torch\n"
        "import twinshot.data, twinshot.data.pairs, twinshot.data.relabel\n"
        "import twinshot.data.datasets.cedar, twinshot.data.datasets.crossmedia\n"
        "from twinshot.data.dataset import LabelledImages\n"
        "from twinshot.data.relabel import RELABELS\n"
        "ds = LabelledImages(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0]), ['1'],\n"
        "    torch.tensor([0]), [''], ['x/1/3.png', 'x/1/13.png'])\n"
        "assert RELABELS.get('signatures_writer_name')(ds).class_names == ['1/name03']\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('twinshot.evaluation', 'twinshot.training')))\n"
        "assert not bad, bad\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_evaluation_keeps_the_old_names() -> None:
    from twinshot.data.pairs import read_pairs_csv
    from twinshot.evaluation import pairs, signatures

    assert pairs.read_pairs_csv is read_pairs_csv
    assert callable(signatures.writer_verification_pairs) and callable(signatures.writer_name_run_data)
