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

Several ensembles of the same members in one go, each member embedded once (``--cache``
keeps the embeddings between calls): ``--combo 0+1 --combo 0+2 --combo 0+1+2`` (member
indices, optional weights after ``:``, e.g. ``0+1+2:2,1,1``), every row also paired against
``--reference`` (a member or a combo); ``--select 0+1+2`` adds that combo with the weights
that score best on ``--select-episodes`` episodes of ``--select-seed`` (a grid of integer
ratios 1..4 per member), i.e. weights tuned on the held-out classes' episodes:

    PYTHONPATH=src python scripts/omniglot_ensemble_eval.py omniglot runs/omniglot-s42 runs/omniglot-s42-seed1 \
        --combo 0+1 --combo 0+2 --combo 0+1+2 --reference 0+1 --select 0+1+2 --cache runs/emb

``--data DATA`` replaces every member's held-out classes by one labelled folder or zip (the
same classes for all), less ``--exclude-groups`` (comma-separated), with within-alphabet
20-way 1-shot episodes (``--n-way``), e.g. the background alphabets that no minimal model
saw (docs/experiments.md, section 8, "All 8 minimal alphabets").
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from twinshot.data import load_dataset
from twinshot.data.groups import parse_group_list, select_groups
from twinshot.evaluation.episodes import embed_dataset, evaluate_episodes
from twinshot.evaluation.metrics import mean_ci95
from twinshot.evaluation.openset import evaluate_open_set_embeddings
from twinshot.gallery.embedding import as_embedder
from twinshot.models import load_model
from twinshot.training.heldout import heldout_dataset


def _summary(result) -> dict:
    d = result.to_dict()
    return {
        "rank1": d["rank1"], "rank5": d["rank5"], "best_accuracy": d["best_accuracy"],
        "dir_at_fpir": d["dir_at_fpir"], "accuracy_at_fpir": d["accuracy_at_fpir"],
    }


def parse_combo(spec: str, n_members: int) -> tuple[list[int], list[float]]:
    """``"0+2"`` or ``"0+1+2:2,1,1"`` -> (member indices, weights summing to 1)."""
    members, _, weights = spec.partition(":")
    idx = [int(i) for i in members.split("+")]
    if not idx or any(i < 0 or i >= n_members for i in idx) or len(set(idx)) != len(idx):
        raise SystemExit(f"error: --combo {spec}: member indices must be distinct, 0..{n_members - 1}")
    w = [float(x) for x in weights.split(",")] if weights else [1.0] * len(idx)
    if len(w) != len(idx) or any(x <= 0 for x in w):
        raise SystemExit(f"error: --combo {spec}: one positive weight per member")
    return idx, [x / sum(w) for x in w]


def combine(embeddings: list[torch.Tensor], idx: list[int], weights: list[float]) -> torch.Tensor:
    """``(N, sum of the members' D)``: member m's L2-normalised embedding scaled by sqrt(w_m)."""
    return torch.cat([math.sqrt(w) * embeddings[i] for i, w in zip(idx, weights)], 1)


def weight_grid(n: int) -> list[tuple[float, ...]]:
    """Distinct weight vectors (summing to 1) from integer ratios 1..4 per member."""
    seen: dict[tuple[float, ...], None] = {}
    for ratio in itertools.product(range(1, 5), repeat=n):
        seen.setdefault(tuple(round(r / sum(ratio), 6) for r in ratio), None)
    return list(seen)


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
    ap.add_argument("--combo", action="append", default=[], help="an ensemble row: member indices (0+1+2), weights after ':'")
    ap.add_argument("--reference", default="", help="a row (member index or combo) every row is also paired against")
    ap.add_argument("--select", action="append", default=[], help="a combo whose weights are chosen on --select-seed's episodes")
    ap.add_argument("--select-seed", type=int, default=0, help="episode seed of the weight selection (the runs' validation seed)")
    ap.add_argument("--select-episodes", type=int, default=2000)
    ap.add_argument("--data", default="", help="a labelled folder or zip replacing the members' held-out classes")
    ap.add_argument("--exclude-groups", default="", help="with --data: comma-separated groups (alphabets) left out")
    ap.add_argument("--n-way", type=int, default=20, help="with --data: classes per within-group episode (1 shot, 1 query)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(args.models)
    weights = [w / sum(weights) for w in weights]

    members = []
    for ref in args.models:
        t = time.time()
        if args.data:
            model = load_model(ref)
            val = select_groups(load_dataset(args.data, model.preprocessing), drop=parse_group_list(args.exclude_groups),
                                what="--exclude-groups")
            config = SimpleNamespace(validation=SimpleNamespace(n_way=args.n_way, n_shot=1, n_query=1, within_group=True))
        else:
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

    embs = [m[4] for m in members]
    rows: dict[str, torch.Tensor] = {ref: emb for ref, _, _, _, emb in members}
    specs = args.combo or ["+".join(str(i) for i in range(len(members))) + ":" + ",".join(str(w) for w in weights)]
    for spec in specs:
        idx, w = parse_combo(spec, len(members))
        rows[spec if args.combo else "ensemble"] = combine(embs, idx, w)
    out: dict = {"weights": weights, "models": args.models, "selection": {}}
    for spec in args.select:
        idx, _ = parse_combo(spec, len(members))
        t = time.time()
        scores = {}
        for w in weight_grid(len(idx)):
            ep = evaluate_episodes(
                base_model, base_val, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=args.select_episodes,
                seed=args.select_seed, within_group=v.within_group, skip_small=True, embeddings=combine(embs, idx, list(w)),
            )
            scores[w] = ep.accuracy
        best = max(scores, key=lambda k: (scores[k], -max(k)))  # ties: the most even weights
        name = "+".join(map(str, idx)) + ":" + ",".join(f"{x:.4g}" for x in best)
        rows[name] = combine(embs, idx, list(best))
        out["selection"][spec] = {"seed": args.select_seed, "episodes": args.select_episodes, "chosen": list(best),
                                  "scores": {",".join(f"{x:.4g}" for x in k): a for k, a in scores.items()}}
        even = tuple(round(1 / len(idx), 6) for _ in idx)
        print(f"select {spec}: {len(scores)} weightings on {args.select_episodes} episodes of seed {args.select_seed} in "
              f"{time.time() - t:.0f}s: best {best} {100 * scores[best]:.2f}% (equal weights {100 * scores.get(even, float('nan')):.2f}%)",
              flush=True)

    def row_of(key: str) -> str:
        if key.isdigit():
            return args.models[int(key)]
        return key
    reference = row_of(args.reference) if args.reference else ""
    if reference and reference not in rows:
        raise SystemExit(f"error: --reference {args.reference}: not a member or a --combo")
    base_acc = None
    base_draws = None

    def draw_values(result) -> dict:
        return {
            "rank1": np.array([d["rank1"] for d in result.per_seed]),
            "dir1": np.array([d["dir_at_fpir"]["0.01"] for d in result.per_seed]),
            "dir10": np.array([d["dir_at_fpir"]["0.1"] for d in result.per_seed]),
            "best_accuracy": np.array([d["best_accuracy"] for d in result.per_seed]),
        }
    results = {}
    order = [reference] + [k for k in rows if k != reference] if reference else list(rows)
    for name in order:
        emb = rows[name]
        t = time.time()
        ep = episodes(emb)
        acc = np.asarray(ep.accuracies)
        os_result = open_set(emb)
        results[name] = (ep, acc, os_result, draw_values(os_result), time.time() - t)
    fmt = lambda s: f"{100 * s['mean']:.1f} ± {100 * (s['ci95'] or 0):.1f}"  # noqa: E731
    base_acc, base_draws = results[args.models[0]][1], results[args.models[0]][3]
    for name in rows:
        ep, acc, os_result, draws, seconds = results[name]
        os_ = _summary(os_result)
        diff, diff_ci = mean_ci95(acc - base_acc)
        paired_open = {k: mean_ci95(draws[k] - base_draws[k]) for k in draws}
        out[name] = {"dim": int(rows[name].shape[1]), "heldout": ep.accuracy, "heldout_ci95": ep.ci95,
                     "paired_vs_first": diff, "paired_ci95": diff_ci,
                     "better": int((acc > base_acc).sum()), "worse": int((acc < base_acc).sum()), "open_set": os_,
                     "open_set_paired_vs_first": {k: {"mean": m, "ci95": c} for k, (m, c) in paired_open.items()},
                     "accuracies": acc.tolist(), "draws": {k: x.tolist() for k, x in draws.items()}}
        line = (
            f"{name} ({rows[name].shape[1]}-d): heldout {100 * ep.accuracy:.2f} ± {100 * ep.ci95:.2f}  paired {100 * diff:+.2f} ± {100 * diff_ci:.2f} "
            f"(better {out[name]['better']}, worse {out[name]['worse']})  rank-1 {fmt(os_['rank1'])}  rank-5 {fmt(os_['rank5'])}  "
            f"DIR@1% {fmt(os_['dir_at_fpir']['0.01'])}  DIR@10% {fmt(os_['dir_at_fpir']['0.1'])}  "
            f"acc@10% {fmt(os_['accuracy_at_fpir']['0.1'])}  best acc {fmt(os_['best_accuracy'])}  paired over draws: "
            + "  ".join(f"{k} {100 * m:+.1f} ± {100 * c:.1f}" for k, (m, c) in paired_open.items())
        )
        if reference and name != reference:
            r_acc, r_draws = results[reference][1], results[reference][3]
            rd, rc = mean_ci95(acc - r_acc)
            ro = {k: mean_ci95(draws[k] - r_draws[k]) for k in draws}
            out[name]["paired_vs_reference"] = {"reference": reference, "heldout": {"mean": rd, "ci95": rc},
                                                "better": int((acc > r_acc).sum()), "worse": int((acc < r_acc).sum()),
                                                **{k: {"mean": m, "ci95": c} for k, (m, c) in ro.items()}}
            line += (f"\n    vs {reference}: heldout {100 * rd:+.2f} ± {100 * rc:.2f} (better {out[name]['paired_vs_reference']['better']}, "
                     f"worse {out[name]['paired_vs_reference']['worse']})  " + "  ".join(f"{k} {100 * m:+.1f} ± {100 * c:.1f}" for k, (m, c) in ro.items()))
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
