"""Check (docs/experiments.md, section 8, "Ensembles"): how closely a member of an
``ensemble`` model, fed through the ensemble's preprocessing (the largest member's size,
then resized inside the encoder), embeds like the same weights through their own model's
pipeline (PIL's resize straight from the file to their size), on the held-out classes;
and what the difference does to the within-alphabet episodes of `twinshot evaluate heldout`.

    PYTHONPATH=src python scripts/ensemble_member_check.py omniglot-ensemble 0 omniglot
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from twinshot.evaluation.episodes import embed_dataset, evaluate_episodes
from twinshot.evaluation.metrics import mean_ci95
from twinshot.training.heldout import heldout_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("ensemble")
    ap.add_argument("member", type=int)
    ap.add_argument("own", help="the model the member's weights came from")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ens, ens_val, cfg = heldout_dataset(args.ensemble)
    own, own_val, _ = heldout_dataset(args.own)
    assert ens_val.class_names == own_val.class_names and torch.equal(ens_val.labels, own_val.labels)
    member = ens.encoder.members[args.member]
    with torch.no_grad():
        via = torch.cat([member(ens.preprocessing.to_float(ens_val.images[i : i + 256])) for i in range(0, len(ens_val), 256)])
    direct = embed_dataset(own, own_val.images)
    cos = (via * direct).sum(1).numpy()
    print(f"cosine of the member's embedding via the ensemble and via its own pipeline, {len(cos)} images: "
          f"mean {cos.mean():.4f}, 1st percentile {np.percentile(cos, 1):.4f}, min {cos.min():.4f}")
    v = cfg.validation
    accs = []
    for emb in (direct, via):
        r = evaluate_episodes(own, own_val, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=args.episodes,
                              seed=args.seed, within_group=v.within_group, skip_small=True, embeddings=emb)
        accs.append(np.asarray(r.accuracies))
        print(f"{'own pipeline' if len(accs) == 1 else 'via the ensemble'}: heldout {100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}")
    d, c = mean_ci95(accs[1] - accs[0])
    print(f"paired difference (via the ensemble - own): {100 * d:+.2f} ± {100 * c:.2f}")


if __name__ == "__main__":
    main()
