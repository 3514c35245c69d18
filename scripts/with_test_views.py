"""Copy a trained ``signet`` or ``compact`` model (a run's ``best/``, a model directory or a
shipped name) (or an ``ensemble`` of them: every member) to a new model directory whose
encoder embeds test-time views (``model.encoder_params.test_views``,
:func:`twinshot.models.views.parse_views`): the same weights; ``model.json``'s spec and
``config.toml``'s ``[model]`` get the views (a ``compact`` encoder's ``test_shifts`` is
dropped: ``test_shifts = true`` is ``shift:1``, so keep ``shift:1`` among the views to keep
its shifts). The head's
logistic is left as it was (fitted on one view; EERs do not depend on it) unless
``--calibrate`` re-fits it on the embeddings with the views, as the trainer's last step does
(``calibrate_head`` on the run's held-out classes, ``validation.calibration_pairs`` pairs,
``validation.seed``), and records that in ``model.json``'s ``extra.test_views``.

    PYTHONPATH=src python scripts/with_test_views.py signatures-cedar runs/tta_shift3 shift:3 stroke:0.5
    PYTHONPATH=src python scripts/with_test_views.py omniglot runs/omni_views shift:1 stroke:0.5
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from twinshot.models import load_model, resolve_model_dir, save_model
from twinshot.models.views import parse_views
from twinshot.training import toml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("views", nargs="*", help="test_views entries, e.g. shift:3 stroke:0.5 scale:0.05 (none: one view)")
    ap.add_argument("--calibrate", action="store_true", help="re-fit the head's logistic with the views on the held-out classes")
    ap.add_argument("--note", default="", help="with --calibrate: what to record in extra.test_views (default: the views and the fit)")
    args = ap.parse_args()
    parse_views(args.views)
    src = resolve_model_dir(args.model)
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"error: {out} exists")
    shutil.copytree(src, out)
    meta = json.loads((out / "model.json").read_text())
    params = meta["spec"]["encoder_params"]
    viewed = ("signet", "compact")
    if meta["spec"]["encoder"] == "ensemble":  # every member gets the views
        targets = [m["params"] for m in params["members"]]
        if any(m["encoder"] not in viewed for m in params["members"]):
            raise SystemExit(f"error: {args.model}: test_views need {' or '.join(viewed)} members")
    elif meta["spec"]["encoder"] in viewed:
        targets = [params]
    else:
        raise SystemExit(f"error: {args.model}: test_views need the {' or '.join(viewed)} encoder, not {meta['spec']['encoder']}")
    for t in targets:
        t.pop("test_views", None)
        t.pop("test_shifts", None)
        if args.views:
            t["test_views"] = list(args.views)
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    if (out / "config.toml").exists():
        cfg = toml.loads((out / "config.toml").read_text())
        cfg["model"]["encoder_params"] = params
        (out / "config.toml").write_text(toml.dumps(cfg))
    model = load_model(out)  # builds and loads: the views are valid for this input size
    result: dict = {"out": str(out), "test_views": args.views}
    if args.calibrate:
        import dataclasses

        from twinshot.training.calibrate import calibrate_head
        from twinshot.training.heldout import heldout_dataset

        _, val, cfg = heldout_dataset(out)
        v = cfg.validation
        cal = calibrate_head(model, val, pairs=v.calibration_pairs, seed=v.seed)
        meta["extra"]["test_views"] = {
            "views": list(args.views),
            "note": args.note or "the same weights with model.encoder_params.test_views; the head's logistic re-fitted on the "
                                 "embeddings with the views, as the trainer does (same held-out classes, pairs and seed)",
            "calibration": dataclasses.asdict(cal),
            "command": "PYTHONPATH=src python scripts/with_test_views.py " + " ".join([args.model, args.out, *args.views]) + " --calibrate",
        }
        save_model(model, out, extra=meta["extra"])
        result["calibration"] = dataclasses.asdict(cal)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
