"""Experiment (docs/experiments.md, section 8, "Ensembles"): a score-level ensemble of
several Omniglot models, each embedding the held-out classes through its own pipeline (its
own preprocessing size, its test shifts), on the protocols of `twinshot evaluate heldout`
and `twinshot evaluate open-set --heldout` with the same episodes and galleries.

Every member's embeddings are L2-normalised; the ensemble's embedding is their
concatenation, member m scaled by sqrt(w_m) (weights summing to 1), so that its squared
Euclidean distance is the weighted mean of the members' squared distances and its cosine
the weighted mean of their cosines. Ranking by it (the first member's Euclidean head;
thresholds are per-draw oracles in the open-set protocol) is ranking by the mean cosine.

    PYTHONPATH=src python scripts/omniglot_ensemble_eval.py omniglot /work/main/runs/omniglot-s42 \
        --episodes 2000 --seed 1 --seeds 10 --open-seed 0 --json runs/ensemble.json
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from twinshot.evaluation.episodes import embed_dataset, evaluate_episodes
from twinshot.evaluation.metrics import mean_ci95
from twinshot.evaluation.openset import evaluate_open_set_embeddings
from twinshot.gallery.embedding import as_embedder
from twinshot.training.heldout import heldout_dataset


def _summary(result) -> dict:
    d = result.to_dict()
    return {
        "rank1": d["rank1"], "rank5": d["rank5"], "best_accuracy": d["best_accuracy"],
        "dir_at_fpir": d["dir_at_fpir"], "accuracy_at_fpir": d["accuracy_at_fpir"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="+", help="members (model references); the first is the baseline")
    ap.add_argument("--weights", default="", help="comma-separated member weights (default: equal)")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1, help="episode seed (evaluate heldout's)")
    ap.add_argument("--seeds", type=int, default=10, help="open-set galleries")
    ap.add_argument("--open-seed", type=int, default=0)
    ap.add_argument("--enrolled", type=int, default=159)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    ap.add_argument("--cache", default="", help="folder keeping each member's embeddings (reused when present)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(args.models)
    weights = [w / sum(weights) for w in weights]

    members = []
    for ref in args.models:
        t = time.time()
        model, val, config = heldout_dataset(ref)
        cached = Path(args.cache) / (ref.strip("/").replace("/", "_") + ".pt") if args.cache else None
        if cached is not None and cached.is_file():
            emb = torch.load(cached)
        else:
            emb = embed_dataset(model, val.images)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save(emb, cached)
        members.append((ref, model, val, config, emb))
        print(f"{ref}: {tuple(emb.shape)} embedded in {time.time() - t:.0f}s", flush=True)
    _, base_model, base_val, base_cfg, _ = members[0]
    for ref, _, val, _, _ in members[1:]:
        if val.class_names != base_val.class_names or not torch.equal(val.labels, base_val.labels):
            raise SystemExit(f"{ref}: its held-out classes differ from {args.models[0]}'s")
    v = base_cfg.validation

    def episodes(emb: torch.Tensor):
        return evaluate_episodes(
            base_model, base_val, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=args.episodes,
            seed=args.seed, within_group=v.within_group, skip_small=True, embeddings=emb,
        )

    def open_set(emb: torch.Tensor):
        return evaluate_open_set_embeddings(
            emb.numpy(), base_val.labels.numpy(), base_val.class_groups.numpy(), as_embedder(base_model).pairwise_logits,
            enrolled=args.enrolled, fpirs=(0.01, 0.1), seeds=args.seeds, seed=args.open_seed, groups="same",
        )

    combined = torch.cat([math.sqrt(w) * m[4] for w, m in zip(weights, members)], 1)
    rows = {ref: emb for ref, _, _, _, emb in members}
    rows["ensemble"] = combined
    out: dict = {"weights": weights, "models": args.models}
    base_acc = None
    base_draws = None

    def draw_values(result) -> dict:
        return {
            "rank1": np.array([d["rank1"] for d in result.per_seed]),
            "dir10": np.array([d["dir_at_fpir"]["0.1"] for d in result.per_seed]),
            "best_accuracy": np.array([d["best_accuracy"] for d in result.per_seed]),
        }
    for name, emb in rows.items():
        ep = episodes(emb)
        acc = np.asarray(ep.accuracies)
        if base_acc is None:
            base_acc = acc
        diff, diff_ci = mean_ci95(acc - base_acc)
        os_result = open_set(emb)
        os_ = _summary(os_result)
        draws = draw_values(os_result)
        if base_draws is None:
            base_draws = draws
        paired_open = {k: mean_ci95(draws[k] - base_draws[k]) for k in draws}
        out[name] = {"heldout": ep.accuracy, "heldout_ci95": ep.ci95, "paired_vs_first": diff, "paired_ci95": diff_ci,
                     "better": int((acc > base_acc).sum()), "worse": int((acc < base_acc).sum()), "open_set": os_,
                     "open_set_paired_vs_first": {k: {"mean": m, "ci95": c} for k, (m, c) in paired_open.items()}}
        fmt = lambda s: f"{100 * s['mean']:.1f} ± {100 * (s['ci95'] or 0):.1f}"  # noqa: E731
        print(
            f"{name}: heldout {100 * ep.accuracy:.2f} ± {100 * ep.ci95:.2f}  paired {100 * diff:+.2f} ± {100 * diff_ci:.2f} "
            f"(better {out[name]['better']}, worse {out[name]['worse']})  rank-1 {fmt(os_['rank1'])}  rank-5 {fmt(os_['rank5'])}  "
            f"DIR@1% {fmt(os_['dir_at_fpir']['0.01'])}  DIR@10% {fmt(os_['dir_at_fpir']['0.1'])}  "
            f"acc@10% {fmt(os_['accuracy_at_fpir']['0.1'])}  best acc {fmt(os_['best_accuracy'])}  paired over draws: "
            + "  ".join(f"{k} {100 * m:+.1f} ± {100 * c:.1f}" for k, (m, c) in paired_open.items()),
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
