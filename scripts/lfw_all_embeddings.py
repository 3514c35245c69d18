"""The shipped ``faces`` descriptors of every LFW photo, as ``twinshot evaluate lfw`` embeds them
(``--face centre``, ``--fallback-crop 0.48``), in one ``.npz``: ``paths``, ``person``,
``embeddings`` (N, 128), ``no_face`` and ``pair_rows`` (the rows of the pairs file's photos).

First the pairs file's photos, in the order (and with the cache file) ``evaluate lfw --cache``
uses, scored by the protocol as a check; then the other photos in cached chunks.

    PYTHONPATH=src python scripts/lfw_all_embeddings.py --cache runs/cache --out runs/lfw_all_faces.npz
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from twinshot.evaluation.lfw import evaluate_lfw, lfw_embeddings, lfw_pair_photos, read_lfw_pairs
from twinshot.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="faces")
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/lfw_all_faces.npz"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    model.eval()
    result = evaluate_lfw(model, args.pairs, cache=args.cache, fallback_crop=0.48, face="centre")
    errors = sum(round(f.n_pairs * (1 - f.accuracy)) for f in result.folds)
    print(json.dumps({"check": "evaluate_lfw", "accuracy": result.accuracy, "se": result.standard_error, "errors": errors, "n_no_face": len(result.no_face)}), flush=True)
    folds = read_lfw_pairs(args.pairs)
    pair_paths = list(lfw_pair_photos(folds))
    root = Path(args.pairs).parent
    everything = sorted(os.fspath(p) for p in root.glob("*/*.jpg"))
    known = set(pair_paths)
    rest = [p for p in everything if p not in known]
    emb, no_face = lfw_embeddings(model, pair_paths, cache=args.cache, fallback_crop=0.48, face="centre")
    chunks, nf = [emb.numpy()], list(no_face)
    for i in range(0, len(rest), args.chunk):
        e, n = lfw_embeddings(model, rest[i : i + args.chunk], cache=args.cache, fallback_crop=0.48, face="centre")
        chunks.append(e.numpy())
        nf += n
        print(json.dumps({"chunk": i // args.chunk, "done": i + len(e), "of": len(rest)}), flush=True)
    paths = pair_paths + rest
    person = [os.path.basename(os.path.dirname(p)) for p in paths]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out, paths=np.array(paths, dtype=str), person=np.array(person, dtype=str), embeddings=np.concatenate(chunks),
        no_face=np.array(nf, dtype=str), pair_rows=np.arange(len(pair_paths)),
    )
    print(json.dumps({"out": str(args.out), "n": len(paths), "n_no_face": len(nf)}), flush=True)


if __name__ == "__main__":
    main()
