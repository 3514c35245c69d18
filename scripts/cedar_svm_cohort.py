"""SVM claims (R=5) with the training-writer cohort vs the gallery default cohort (other
enrolled writers' references); the EER threshold and the rates at threshold 0."""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from cedar_exp import SPLITS, claim_split, load_all, rates
from twinshot.models.io import load_model
from twinshot.writer_dependent import Standardiser, WriterClassifier, image_features
from twinshot.evaluation import metrics

torch.set_num_threads(1)
model_ref = sys.argv[1] if len(sys.argv) > 1 else "signatures-cedar"
split = int(sys.argv[2]) if len(sys.argv) > 2 else 0
R = 5
images, xu, writer, genuine = load_all()
val = SPLITS[split]
model = load_model(model_ref).eval()
paths = [im.path for im in images]
feats = image_features(model, paths, "grid")
refs, quest, forged = claim_split(writer, genuine, val)
order = sorted(refs)
pool_paths = [paths[i] for w in order for i in refs[w]]
aug = image_features(model, pool_paths, "grid", copies=10, seed=0).reshape(10, len(pool_paths), -1)
copies = {w: aug[:, k * 12:(k + 1) * 12] for k, w in enumerate(order)}
train_cohort = feats[np.isin(writer, [w for w in range(1, 46) if w not in val]) & genuine]
for name in ("training writers", "other enrolled"):
    out = {"genuine": [], "skilled": [], "random": []}
    for w in order:
        if name == "training writers":
            neg = train_cohort
        else:
            neg = feats[[i for o in order if o != w for i in refs[o][:R]]]
        clf = WriterClassifier(None, Standardiser.fit(neg)).fit(feats[refs[w][:R]], neg, copies[w][:, :R].reshape(-1, feats.shape[1]))
        others = [i for o in order if o != w for i in quest[o]]
        for kind, idx in (("genuine", quest[w]), ("skilled", forged[w]), ("random", others)):
            out[kind].append(clf.decision_function(feats[idx]))
    g = np.concatenate(out["genuine"])
    res = {"cohort": name, "split": split}
    for k in ("skilled", "random"):
        imp = np.concatenate(out[k])
        s = np.r_[g, imp]; same = np.r_[np.ones(len(g), bool), np.zeros(len(imp), bool)]
        eer, thr = metrics.equal_error_rate(s, same)
        res[k] = {"eer": eer, "frr_far1": rates(g, imp)[1], "eer_threshold": thr, "far_at_0": float((imp >= 0).mean()), "frr_at_0": float((g < 0).mean())}
    print(json.dumps(res), flush=True)
