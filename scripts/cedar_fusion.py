"""Experiment (docs/applications.md, run 19): the 2-channel pair model (run 16) and the
dichotomy transform (run 17) fused by the sum of their standardised pair scores (each
standardised by the mean and spread of its own scores over all the evaluated pairs, no labels;
weights 1:1, not tuned); claims with R = 5: the mean fused score over the references (each
score standardised with its pair statistics).

    PYTHONPATH=src:scripts python scripts/cedar_twochannel.py --split S --steps 600 --eval-every 300 --out runs/exp/2ch_sS.pt   # S = 0, 20, 23
    PYTHONPATH=src:scripts python scripts/cedar_dichotomy.py --clf logreg
    PYTHONPATH=src:scripts python scripts/cedar_fusion.py
"""
from __future__ import annotations

import json

import numpy as np
import torch
from cedar_dichotomy import fit_logreg
from cedar_exp import SPLITS, claims_eval, load_all, pair_indices, rates
from cedar_twochannel import TwoChannel, score_pairs

torch.set_num_threads(1)
images, xu, writer, genuine = load_all()
x = xu.float() / 255.0
f = np.load("runs/exp/feat_hog-lbp-den_150x220.npy")
for split, val in SPLITS.items():
    train = [w for w in range(1, 46) if w not in val]
    clf, sc = fit_logreg(f, writer, genuine, train)
    model = TwoChannel()
    model.load_state_dict(torch.load(f"runs/exp/2ch_s{split}.pt"))
    gen, skl, rnd = pair_indices(writer, genuine, val)
    pairs = np.concatenate([gen, skl, rnd])
    a = score_pairs(model, x, pairs)
    b = clf.decision_function(sc.transform(np.abs(f[pairs[:, 0]] - f[pairs[:, 1]])))
    fused = (a - a.mean()) / a.std() + (b - b.mean()) / b.std()
    n1, n2 = len(gen), len(gen) + len(skl)
    out = {"split": split}
    for name, s in (("2ch", a), ("dichotomy", b), ("fused", fused)):
        out[name] = {"skilled": rates(s[:n1], s[n1:n2]), "random": rates(s[:n1], s[n2:])}

    def claim(w, refs, q, a_stats=(a.mean(), a.std()), b_stats=(b.mean(), b.std())):
        p = np.array([(r, i) for i in q for r in refs])
        sa = (score_pairs(model, x, p) - a_stats[0]) / a_stats[1]
        sb = (clf.decision_function(sc.transform(np.abs(f[p[:, 0]] - f[p[:, 1]]))) - b_stats[0]) / b_stats[1]
        return (sa + sb).reshape(len(q), len(refs)).mean(1)

    out["fused_claims_R5"] = claims_eval(claim, writer, genuine, val, R=5)
    print(json.dumps(out), flush=True)
