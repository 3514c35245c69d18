"""Copy a trained ``signet`` model (a run's ``best/``, a model directory or a shipped name)
(or an ``ensemble`` of them: every member) to a new model directory whose encoder embeds test-time views
(``model.encoder_params.test_views``, :func:`twinshot.models.signet.parse_views`): the same
weights; ``model.json``'s spec and ``config.toml``'s ``[model]`` get the views. The head's
logistic is left as it was (fitted on one view); EERs do not depend on it.

    PYTHONPATH=src python scripts/with_test_views.py signatures-cedar runs/tta_shift3 shift:3 stroke:0.5
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from twinshot.models import load_model, resolve_model_dir
from twinshot.models.signet import parse_views
from twinshot.training import toml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("views", nargs="*", help="test_views entries, e.g. shift:3 stroke:0.5 scale:0.05 (none: one view)")
    args = ap.parse_args()
    parse_views(args.views)
    src = resolve_model_dir(args.model)
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"error: {out} exists")
    shutil.copytree(src, out)
    meta = json.loads((out / "model.json").read_text())
    params = meta["spec"]["encoder_params"]
    if meta["spec"]["encoder"] == "ensemble":  # every member gets the views
        targets = [m["params"] for m in params["members"]]
        if any(m["encoder"] != "signet" for m in params["members"]):
            raise SystemExit(f"error: {args.model}: test_views need signet members")
    elif meta["spec"]["encoder"] == "signet":
        targets = [params]
    else:
        raise SystemExit(f"error: {args.model}: test_views need the signet encoder, not {meta['spec']['encoder']}")
    for t in targets:
        t.pop("test_views", None)
        if args.views:
            t["test_views"] = list(args.views)
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    if (out / "config.toml").exists():
        cfg = toml.loads((out / "config.toml").read_text())
        cfg["model"]["encoder_params"] = params
        (out / "config.toml").write_text(toml.dumps(cfg))
    load_model(out)  # builds and loads: the views are valid for this input size
    print(json.dumps({"out": str(out), "test_views": args.views}))


if __name__ == "__main__":
    main()
