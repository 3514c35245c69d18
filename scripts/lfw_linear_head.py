"""Experiment (docs/applications.md, faces): a linear projection on top of the frozen `faces` encoder, learned with the
project's batch-hard triplet loss on the people of LFW folds 1-4, judged on folds 5-8 (their
people are disjoint from folds 1-4) against the frozen encoder. Uses the cached embeddings.

    twinshot evaluate lfw faces ../shared/datasets/lfw/pairs_dev.txt --cache runs/cache
    python scripts/lfw_linear_head.py runs/cache/embeddings-*.npz
"""
import json, os, sys
import numpy as np, torch
torch.manual_seed(0); torch.set_num_threads(1)
from twinshot.evaluation.lfw import read_lfw_pairs, lfw_protocol
from twinshot.losses.triplet import TripletLoss

cache = sys.argv[1]  # an embeddings-*.npz written by `twinshot evaluate lfw faces PAIRS --cache DIR`
folds = read_lfw_pairs('../shared/datasets/lfw/pairs_dev.txt')
index = {}
for f in folds:
    for p in f:
        for q in (p.path1, p.path2):
            index.setdefault(os.fspath(q), len(index))
emb = torch.from_numpy(np.load(cache)["embeddings"]).float()
person = lambda path: os.path.basename(os.path.dirname(path))
train_paths = {os.fspath(q) for f in folds[:4] for p in f for q in (p.path1, p.path2)}
names = sorted({person(p) for p in train_paths})
lab = {n: i for i, n in enumerate(names)}
tp = sorted(train_paths)
X = emb[[index[p] for p in tp]]
y = torch.tensor([lab[person(p)] for p in tp])
counts = torch.bincount(y)
multi = counts[y] >= 2
print("train images", len(tp), "people", len(names), "with 2+ images:", int((counts >= 2).sum()))
test_pairs = [p for f in folds[4:] for p in f]
fold_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(folds[4:])])
same = np.array([p.same for p in test_pairs])
i1 = torch.tensor([index[os.fspath(p.path1)] for p in test_pairs]); i2 = torch.tensor([index[os.fspath(p.path2)] for p in test_pairs])

def score(W):
    with torch.no_grad():
        e = emb @ W
        return (-(e[i1] - e[i2]).norm(dim=1)).double().numpy()

def report(name, W):
    r = lfw_protocol(score(W), same, fold_of)
    out = {"run": name, "accuracy": r.accuracy, "se": r.standard_error, "eer": r.pooled.eer, "auc": r.pooled.auc, "tar": r.pooled.tar_at_far}
    print(json.dumps(out)); return out

res = [report("frozen (identity)", torch.eye(128))]
for margin, steps, lr, wd in ((0.2, 300, 1e-3, 1e-4), (0.1, 300, 1e-3, 1e-4)):
    W = torch.eye(128, requires_grad=True)
    opt = torch.optim.Adam([W], lr=lr, weight_decay=0)
    loss_fn = TripletLoss(margin=margin, mining="batch_hard")
    g = torch.Generator().manual_seed(0)
    people_multi = torch.nonzero(counts >= 2).flatten()
    for step in range(steps):
        pick = people_multi[torch.randperm(len(people_multi), generator=g)[:64]]
        idx = torch.cat([torch.nonzero(y == c).flatten()[:4] for c in pick.tolist()])
        loss = loss_fn(X[idx] @ W, y[idx]) + wd * (W - torch.eye(128)).pow(2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    res.append(report(f"linear, batch-hard triplet margin {margin}, {steps} steps", W.detach()))
print(json.dumps(res, indent=1))
