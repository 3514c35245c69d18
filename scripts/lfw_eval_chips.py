"""Score a face model on LFW pairs of cached chips (``scripts/lfw_chip_folders.py``) with the
LFW protocol (threshold from the other folds), without re-detecting faces: the chips are
loaded with the model's preprocessing minus its aligner (they are the aligner's output).

    python scripts/lfw_eval_chips.py runs/faces-lfw/best runs/lfw-chips/eval_pairs.csv --json
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import numpy as np
import torch

from twinshot.data.images import load_image
from twinshot.evaluation.episodes import embed_dataset
from twinshot.evaluation.lfw import lfw_protocol, read_lfw_pairs
from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("pairs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    pre = replace(model.preprocessing, align="")
    folds = read_lfw_pairs(args.pairs)
    pairs = [p for f in folds for p in f]
    index: dict[str, int] = {}
    for p in pairs:
        for q in (p.path1, p.path2):
            index.setdefault(os.fspath(q), len(index))
    with torch.no_grad():
        images = torch.stack([load_image(p, pre) for p in index])
        emb = embed_dataset(model, images, batch_size=64)
        i1 = torch.tensor([index[os.fspath(p.path1)] for p in pairs])
        i2 = torch.tensor([index[os.fspath(p.path2)] for p in pairs])
        scores = model.head(emb[i1], emb[i2]).double().numpy()
    same = np.array([p.same for p in pairs])
    fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(folds)])
    r = lfw_protocol(scores, same, fold_of)
    out = {"model": args.model, "pairs": args.pairs, "accuracy": r.accuracy, "standard_error": r.standard_error,
           "eer": r.pooled.eer, "auc": r.pooled.auc, "tar_at_far": r.pooled.tar_at_far, "folds": [f.accuracy for f in r.folds]}
    print(json.dumps(out) if args.json else f"{args.model}: {100 * r.accuracy:.2f}% +- {100 * r.standard_error:.2f} "
          f"(EER {100 * r.pooled.eer:.2f}%, TAR@1e-3 {100 * r.pooled.tar_at_far['1e-3']:.1f}%)")


if __name__ == "__main__":
    main()
