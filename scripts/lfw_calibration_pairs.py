"""The calibration pairs of the shipped ``faces`` model: LFW people outside a pairs file (no
person of the evaluated folds), every same pair of those with two or more photos and
``--different`` random different pairs among them (seeded). Writes ``path1,path2,same``.

    python scripts/lfw_calibration_pairs.py --out runs/calib_pairs.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import random
from pathlib import Path

from twinshot.evaluation.lfw import read_lfw_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="../shared/datasets/lfw/pairs_dev.txt")
    ap.add_argument("--different", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/calib_pairs.csv"))
    args = ap.parse_args()
    root = Path(args.pairs).parent
    used = {os.path.basename(os.path.dirname(os.fspath(q))) for f in read_lfw_pairs(args.pairs) for p in f for q in (p.path1, p.path2)}
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir() and d.name not in used}
    multi = {n: ps for n, ps in people.items() if len(ps) >= 2}
    rows = [(a, b, 1) for ps in multi.values() for a, b in itertools.combinations(ps, 2)]
    rng = random.Random(args.seed)
    names = sorted(multi)
    seen = set()
    while len(seen) < args.different:
        a, b = rng.sample(names, 2)
        pa, pb = rng.choice(multi[a]), rng.choice(multi[b])
        seen.add((pa, pb))
    rows += [(a, b, 0) for a, b in sorted(seen)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path1", "path2", "same"])
        base = args.out.resolve().parent  # the CSV's relative paths resolve against its folder
        w.writerows((os.path.relpath(a.resolve(), base), os.path.relpath(b.resolve(), base), s) for a, b, s in rows)
    print(f"{len(multi)} people, {sum(r[2] for r in rows)} same and {args.different} different pairs -> {args.out}")


if __name__ == "__main__":
    main()
