"""Experiment helper (docs/experiments.md, section 8, "Fine-tuning with within-alphabet
batches"): paired per-episode differences between `twinshot evaluate heldout ... --json`
outputs of several models on the same episodes (same --episodes and --seed).

    twinshot evaluate heldout omniglot --episodes 2000 --seed 1 --json > base.json
    twinshot evaluate heldout runs/ft --episodes 2000 --seed 1 --json > ft.json
    python scripts/paired_heldout_diff.py base.json ft.json [more.json ...]

Prints, for every file after the first, its accuracy and the mean per-episode difference
from the first file's ± one standard error (and the episodes better / worse).
"""
from __future__ import annotations

import argparse
import json
import math


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", help="JSON of the reference model")
    ap.add_argument("others", nargs="+", help="JSON of the models compared with it")
    args = ap.parse_args()
    ref = json.load(open(args.reference))
    base = ref["accuracies"]
    for path in args.others:
        other = json.load(open(path))
        if (other["episodes"], other["seed"]) != (ref["episodes"], ref["seed"]) or len(other["accuracies"]) != len(base):
            raise SystemExit(f"error: {path}: not the episodes of {args.reference} (episodes, seed differ)")
        d = [a - b for a, b in zip(other["accuracies"], base)]
        mean = sum(d) / len(d)
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
        print(
            f"{other.get('model', path)}: {100 * other['accuracy']:.2f}% ; vs {ref.get('model', args.reference)}: "
            f"{100 * mean:+.2f} ± {100 * se:.2f} (SE; {mean / se if se else float('inf'):+.1f} SE), "
            f"better in {sum(x > 0 for x in d)}, worse in {sum(x < 0 for x in d)} episodes"
        )


if __name__ == "__main__":
    main()
