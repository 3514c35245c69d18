"""Experiment (docs/applications.md, "Pair models and the dichotomy transform"): writer-dependent
SVM claims (R = 5, no distorted copies, the 35 training writers' genuine signatures as the
cohort: the protocol of `twinshot evaluate cedar-claims --scoring svm --augment 0`) on features
that need no CEDAR training, so every writer split is measured with the same features: the
handcrafted multi-scale HOG + LBP + ink density of scripts/cedar_dichotomy.py (cached there),
the cross-media `signatures` model's embedding, and both side by side.

    PYTHONPATH=src:scripts python scripts/cedar_dichotomy.py --clf logreg   # caches the handcrafted features
    PYTHONPATH=src:scripts python scripts/cedar_svm_features.py
"""
from __future__ import annotations

import json

import numpy as np
import torch

from cedar_exp import SPLITS, claim_split, load_all, rates
from twinshot.models.io import load_model
from twinshot.writer_dependent import Standardiser, WriterClassifier, image_features

torch.set_num_threads(1)
R = 5
images, _, writer, genuine = load_all()
hand = np.load("runs/exp/feat_hog-lbp-den_150x220.npy")
cross = image_features(load_model("signatures").eval(), [im.path for im in images], "embedding")
sets = {"handcrafted": hand, "signatures embedding": cross, "handcrafted + signatures embedding": np.concatenate([hand, cross * np.sqrt(hand.shape[1] / cross.shape[1])], 1)}
for name, feats in sets.items():
    for split, val in SPLITS.items():
        refs, quest, forged = claim_split(writer, genuine, val)
        cohort = feats[np.isin(writer, [w for w in range(1, 46) if w not in val]) & genuine]
        std = Standardiser.fit(cohort)
        out = {"genuine": [], "skilled": [], "random": []}
        for w in sorted(refs):
            clf = WriterClassifier(None, std).fit(feats[refs[w][:R]], cohort)
            others = [i for o in sorted(refs) if o != w for i in quest[o]]
            for kind, idx in (("genuine", quest[w]), ("skilled", forged[w]), ("random", others)):
                out[kind].append(clf.decision_function(feats[idx]))
        g = np.concatenate(out["genuine"])
        res = {k: rates(g, np.concatenate(out[k])) for k in ("skilled", "random")}
        print(json.dumps({"features": name, "split": split, "R": R, **res}), flush=True)
