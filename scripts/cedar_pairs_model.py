"""Experiment and builder (docs/applications.md, runs 20-21): the fused pair scorer of run 19
as one package model (encoder ``pair_input``, head ``twochannel_dichotomy``,
:mod:`twinshot.models.pairs`), built for one writer split from a trained 2-channel checkpoint
(scripts/cedar_twochannel.py) and scored on that split's held-out writers.

Built from the split's **training writers** only: the dichotomy's logistic regression (C 0.1,
balanced, on |f(a) - f(b)| of :func:`twinshot.writer_dependent.handcrafted.signature_descriptor`,
the pairs of scripts/cedar_dichotomy.py) and the fusion's standardisation constants (mean and
spread of each part's scores over a seeded sample of 6,000 of those training pairs). Run 19
standardised with the evaluated pairs' own statistics instead (no labels, but transductive);
both are printed.

    PYTHONPATH=src:scripts python scripts/cedar_twochannel.py --split S --steps 2000 --eval-every 1000 --keep last --out runs/exp/2ch2k_sS.pt
    PYTHONPATH=src:scripts python scripts/cedar_pairs_model.py --split S --checkpoint runs/exp/2ch2k_sS.pt --out runs/exp/pairs_sS
    # the shipped signatures-cedar-pairs is split 0's, copied to src/twinshot/pretrained/signatures-cedar-pairs
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from cedar_dichotomy import fit_logreg, sample_train_pairs
from cedar_exp import SPLITS, claims_eval, load_all, pair_indices, rates
from twinshot.models import ModelSpec, build_model, save_model
from twinshot.preprocessing import Preprocessing
from twinshot.writer_dependent.handcrafted import signature_descriptor


def descriptors(x: torch.Tensor) -> np.ndarray:
    """signature_descriptor of every CEDAR image, cached under runs/exp/."""
    cache = Path("runs/exp/desc_150x220.npy")
    if cache.exists():
        return np.load(cache)
    f = signature_descriptor(x)
    np.save(cache, f)
    return f


def dichotomy(split: int, f: np.ndarray, writer, genuine, train: list[int] | None = None, tag: str = "") -> tuple[np.ndarray, float]:
    """The logistic regression on the training writers' |f(a) - f(b)| (``train``: default the
    split's 35), the scaler folded in (weights and bias in descriptor units); cached under
    runs/exp/ (``tag`` names the cache of another writer set)."""
    cache = Path(f"runs/exp/dichotomy_s{split}{tag}.npz")
    if cache.exists():
        z = np.load(cache)
        return z["w"], float(z["b"])
    train = train or [w for w in range(1, 46) if w not in SPLITS[split]]
    clf, sc = fit_logreg(f, writer, genuine, train)
    w = clf.coef_[0] / sc.scale_
    b = float(clf.intercept_[0] - (clf.coef_[0] * sc.mean_ / sc.scale_).sum())
    np.savez(cache, w=w, b=b)
    return w, b


def build(split: int, checkpoint: str, x: torch.Tensor, writer, genuine, n_fusion: int = 6000, symmetric: bool = False,
          train: list[int] | None = None, tag: str = ""):
    """The pair model of ``split`` (``train``: its training writers, default the split's 35;
    ``tag``: the dichotomy's cache name for another writer set)."""
    val = SPLITS[split]
    train = train or [w for w in range(1, 46) if w not in val]
    spec = ModelSpec(
        encoder="pair_input", encoder_params={"input_width": 220},
        head="twochannel_dichotomy", head_params={"image_shape": [150, 220], **({"symmetric": True} if symmetric else {})},
        preprocessing=Preprocessing(size=(150, 220), channels=1, invert=True, keep_aspect=True),
    )
    model = build_model(spec)
    model.head.net.load_state_dict(torch.load(checkpoint))
    model.eval()
    f = descriptors(x)
    w, b = dichotomy(split, f, writer, genuine, train, tag)
    model.head.set_parts(w, b, [0.0, 1.0, 0.0, 1.0])
    tg, ts, tr = sample_train_pairs(writer, genuine, train, np.random.default_rng(0))
    tp = np.concatenate([tg, ts, tr])
    sample = tp[np.random.default_rng(1).choice(len(tp), min(n_fusion, len(tp)), replace=False)]
    e = torch.cat([x.flatten(1), torch.from_numpy(f)], 1)  # = model.embed(x) (tests/models/test_pairs.py)
    with torch.no_grad():
        a, bb = model.head.parts(e[sample[:, 0]], e[sample[:, 1]])
    fusion = [a.mean().item(), a.std().item(), bb.mean().item(), bb.std().item()]
    model.head.set_parts(w, b, fusion)
    return model, {"split": split, "train_writers": train, "fusion": fusion, "fusion_pairs": len(sample)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="the 2-channel net's state dict (without it: only fit and cache the dichotomy)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--symmetric", action="store_true", help="average the CNN's logit over both channel orders")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    images, xu, writer, genuine = load_all()
    x = xu.float() / 255.0
    if a.checkpoint is None:
        f = descriptors(x)
        for split in SPLITS:
            w, b = dichotomy(split, f, writer, genuine)
            print(json.dumps({"split": split, "dichotomy_bias": b, "nonzero": int((w != 0).sum())}), f"{time.time() - t0:.0f}s", flush=True)
        return
    model, info = build(a.split, a.checkpoint, x, writer, genuine, symmetric=a.symmetric)
    print(json.dumps(info), f"{time.time() - t0:.0f}s", flush=True)
    val = SPLITS[a.split]
    idx = np.nonzero(np.isin(writer, val))[0]
    with torch.no_grad():
        emb = torch.zeros((len(writer), model.embedding_dim))
        emb[idx] = model.embed(x[idx])
    gen, skl, rnd = pair_indices(writer, genuine, val)
    pairs = np.concatenate([gen, skl, rnd])
    with torch.no_grad():
        pa, pb = model.head.parts(emb[pairs[:, 0]], emb[pairs[:, 1]])
        fused = model.head.similarity(emb[pairs[:, 0]], emb[pairs[:, 1]]).numpy()
    pa, pb = pa.numpy(), pb.numpy()
    trans = (pa - pa.mean()) / pa.std() + (pb - pb.mean()) / pb.std()
    n1, n2 = len(gen), len(gen) + len(skl)
    out = {"split": a.split}
    for name, s in (("2ch", pa), ("dichotomy", pb), ("fused", fused), ("fused_transductive", trans)):
        out[name] = {"skilled": rates(s[:n1], s[n1:n2]), "random": rates(s[:n1], s[n2:])}
    print(json.dumps(out), f"{time.time() - t0:.0f}s", flush=True)

    def claim(rule):
        def fn(w, refs, q):
            p = np.array([(r, i) for i in q for r in refs])
            with torch.no_grad():
                s = model.head.similarity(emb[p[:, 0]], emb[p[:, 1]]).numpy().reshape(len(q), len(refs))
            return s.mean(1) if rule == "mean" else s.max(1)
        return fn

    claims = {f"R{R}_{rule}": claims_eval(claim(rule), writer, genuine, val, R=R) for R in (5,) for rule in ("mean", "max")}
    print(json.dumps({"split": a.split, "claims": claims}), f"{time.time() - t0:.0f}s", flush=True)
    if a.out:
        cmd = (f"PYTHONPATH=src:scripts python scripts/cedar_pairs_model.py --split {a.split} "
               f"--checkpoint {a.checkpoint} --out {a.out}" + (" --symmetric" if a.symmetric else ""))
        save_model(model, a.out, extra={
            "trained_with": "scripts/cedar_twochannel.py + scripts/cedar_pairs_model.py", "command": cmd,
            "protocol": f"writer-independent CEDAR: trained on 35 writers, held out {' '.join(map(str, val))} (split {a.split}); last step, no selection",
            "fusion": info["fusion"], "validation_skilled_eer": round(out["fused"]["skilled"][0], 4),
        })


if __name__ == "__main__":
    main()
