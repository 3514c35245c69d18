"""Experiment (docs/applications.md, run 24): the writer SVM (`--scoring svm`, 10 distorted
copies per reference, cohort: the training writers) on the signet model's `grid` features
alone vs on `grid` and the handcrafted descriptor
(`twinshot.writer_dependent.handcrafted.signature_descriptor`, 3,130 numbers) side by side,
each standardised by the cohort; "balanced": each block also divided by the square root of
its width so both weigh the same in the RBF kernel; with and without the copies. Same claims
as cedar-claims.

    PYTHONPATH=src:scripts python scripts/cedar_svm_concat.py S MODEL   # S = 0 (signatures-cedar), 20, 23 (runs/foldS)
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from cedar_exp import SPLITS, claim_split, load_all, rates
from twinshot.models.io import load_model
from twinshot.writer_dependent import Standardiser, WriterClassifier, image_features
from twinshot.writer_dependent.features import REFERENCE_AUGMENTATION
from twinshot.writer_dependent.handcrafted import signature_descriptor

torch.set_num_threads(1)
split = int(sys.argv[1])
model = load_model(sys.argv[2]).eval()
images, xu, writer, genuine = load_all()
paths = [im.path for im in images]
val = SPLITS[split]
desc = np.load("runs/exp/desc_150x220.npy")
grid = image_features(model, paths, "grid")
refs, quest, forged = claim_split(writer, genuine, val)
order = sorted(refs)
pool = [i for w in order for i in refs[w]]
aug_grid = image_features(model, [paths[i] for i in pool], "grid", copies=10, seed=0)
g = torch.Generator().manual_seed(0)
every = xu[pool].float() / 255.0
aug_desc = np.concatenate([signature_descriptor(REFERENCE_AUGMENTATION(every, g)) for _ in range(10)])
cohort = np.isin(writer, [w for w in range(1, 46) if w not in val]) & genuine
out = {"split": split}
for name in ("grid", "grid+desc", "grid+desc balanced", "grid no copies", "grid+desc no copies", "grid+desc balanced no copies"):
    copies = "no copies" not in name
    if not name.startswith("grid+desc"):
        x, xa = grid, aug_grid
    else:
        sg, sd = Standardiser.fit(grid[cohort]), Standardiser.fit(desc[cohort])
        k = (1 / np.sqrt(grid.shape[1]), 1 / np.sqrt(desc.shape[1])) if "balanced" in name else (1.0, 1.0)
        x = np.c_[sg(grid) * k[0], sd(desc) * k[1]]
        xa = np.c_[sg(aug_grid) * k[0], sd(aug_desc) * k[1]]
    xa = xa.reshape(10, len(pool), -1)
    # the blocks are already standardised by the cohort; balanced keeps their weights
    std = Standardiser(np.zeros(x.shape[1]), np.ones(x.shape[1])) if "balanced" in name else Standardiser.fit(x[cohort])
    for r in (1, 5, 12):
        sc = {"genuine": [], "skilled": [], "random": []}
        for j, w in enumerate(order):
            extra = xa[:, j * 12: j * 12 + r].reshape(-1, x.shape[1]) if copies else None
            clf = WriterClassifier(None, std).fit(x[refs[w][:r]], x[cohort], extra)
            others = [i for o in order if o != w for i in quest[o]]
            for kind, idx in (("genuine", quest[w]), ("skilled", forged[w]), ("random", others)):
                sc[kind].append(clf.decision_function(x[idx]))
        gen = np.concatenate(sc["genuine"])
        out[f"{name} R{r}"] = {k: [round(100 * v, 2) for v in rates(gen, np.concatenate(sc[k]))] for k in ("skilled", "random")}
        print(json.dumps({f"{name} R{r}": out[f"{name} R{r}"]}), flush=True)
