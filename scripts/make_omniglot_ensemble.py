"""Build the shipped ``omniglot-ensemble`` model (docs/experiments.md, section 8,
"Ensembles"), or ``signatures-cedar-ensemble`` (docs/applications.md, "Runs 42-"), from
trained models, without training: an ``ensemble`` encoder
(:mod:`twinshot.models.ensemble`) holding each member's encoder weights unchanged, the
preprocessing at ``--size`` (default: the largest member's; every member whose input is
smaller resizes inside the encoder, PIL's bilinear in float), a Euclidean
head whose logistic is fitted on the held-out classes exactly as the trainer's last step
does (``calibrate_head`` on ``validation.calibration_pairs`` pairs, ``validation.seed``),
and the first member's run ``config.toml`` with its ``[model]`` replaced, so that
``twinshot evaluate heldout`` knows the held-out classes. Every member must come from a run
with the same ``[data]`` split.

    PYTHONPATH=src python scripts/make_omniglot_ensemble.py omniglot runs/omniglot-s42 runs/omniglot-s42-seed1 \
        --size 105 --out src/twinshot/pretrained/omniglot-ensemble --force

(the shipped model since session 8: three members, each member's training command in its
``model.json``; session 7's two-member model omitted ``runs/omniglot-s42-seed1``).

Signatures (``signet`` members at 150x220, validation by ``group_verification``):

    PYTHONPATH=src python scripts/make_omniglot_ensemble.py signatures-cedar runs/seed1_s0 --out runs/ens_s0

(``--size HxW`` for a rectangle; the default is the largest member's height and width; the
selection figure is then the trainer's, 1 - the within-writer verification EER).

``--size 105`` (Omniglot's own resolution): each member then sees PIL's resize straight
from the drawing to its size, as in its own pipeline (in float, without rounding to 8
bits); preprocessing at the 42 px member's size made the 28 px member see 105 -> 42 -> 28,
blurrier, and cost it 0.6 points on its own (scripts/ensemble_member_check.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import shutil
from pathlib import Path

import torch

from twinshot.evaluation.episodes import evaluate_episodes
from twinshot.evaluation.group_verification import group_verification_eer
from twinshot.models import ModelSpec, build_model, fingerprint, load_model, resolve_model_dir, save_model
from twinshot.models.encoders import single_view
from twinshot.training import toml
from twinshot.training.config import TrainConfig
from twinshot.training.calibrate import calibrate_head
from twinshot.training.data import prepare_data
from twinshot.training.heldout import heldout_dataset


@dataclasses.dataclass
class GroupSelection:
    """The trainer's ``group_verification`` validation figure, shaped like an episodes result."""

    accuracy: float
    ci95: float = 0.0


def description(refs: list[str], models: list) -> str:
    """What ``twinshot models list`` shows for the ensemble."""
    names = " + ".join(f"{Path(r).name} ({'x'.join(str(v) for v in dict.fromkeys(m.preprocessing.size))} px)" for r, m in zip(refs, models))
    return (f"A score-level ensemble of {names}: one embedding whose distances are the mean of the members'. "
            "No training: the members' weights unchanged.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="+", help="member model references (runs or shipped names)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", default="", help="comma-separated member weights (default: equal)")
    ap.add_argument("--size", default="", help="the preprocessing's side S or HxW (default: the largest member's height and width)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--force", action="store_true", help="replace --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SystemExit(f"error: {out} exists (--force replaces it)")

    models = [load_model(ref) for ref in args.models]
    dirs = [resolve_model_dir(ref) for ref in args.models]
    configs = [toml.loads((d / "config.toml").read_text()) for d in dirs]
    splits = [TrainConfig.from_dict(cfg).data for cfg in configs]  # defaults filled in: older runs lack newer fields
    for ref, split in zip(args.models[1:], splits[1:]):
        if split != splits[0]:
            raise SystemExit(f"error: {ref}: its run's [data] (the split) differs from {args.models[0]}'s")
    pre = [m.preprocessing for m in models]
    for ref, p in zip(args.models[1:], pre[1:]):
        if dataclasses.replace(p, size=pre[0].size) != pre[0]:
            raise SystemExit(f"error: {ref}: its preprocessing differs from {args.models[0]}'s by more than the size")
    try:
        hw = [int(v) for v in args.size.lower().split("x")] if args.size else []
    except ValueError:
        raise SystemExit(f"error: --size {args.size!r}: expected S or HxW") from None
    if len(hw) == 1:
        hw = hw * 2
    height, width = hw if hw else (max(p.size[0] for p in pre), max(p.size[1] for p in pre))
    if height < max(p.size[0] for p in pre) or width < max(p.size[1] for p in pre):
        raise SystemExit(f"error: --size {height}x{width} is smaller than a member's input")
    members = []
    for m in models:
        params = dict(m.spec.encoder_params)
        if m.preprocessing.size[1] != m.preprocessing.size[0]:
            params.setdefault("input_width", m.preprocessing.size[1])
        members.append({"encoder": m.spec.encoder, "input_size": m.preprocessing.size[0], "params": params})
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(models)
    encoder_params: dict = {"members": members, "weights": weights}
    if width != height:
        encoder_params["input_width"] = width
    spec = ModelSpec(
        encoder="ensemble", encoder_params=encoder_params, head="euclidean", head_params={},
        preprocessing=dataclasses.replace(pre[0], size=(height, width)),
    )
    model = build_model(spec)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    for i, m in enumerate(models):
        state.update({f"encoder.members.{i}.encoder.{k}": v for k, v in m.encoder.state_dict().items()})
    model.load_state_dict(state, strict=True)
    model.eval()

    config = dict(configs[0])
    config["model"] = {"encoder": spec.encoder, "encoder_params": spec.encoder_params, "head": spec.head,
                       "head_params": {}, "preprocessing": spec.preprocessing.to_dict()}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    (tmp / "config.toml").write_text(toml.dumps(config))
    if splits[0].val > 0:
        _, val, cfg = heldout_dataset(tmp)
        v = cfg.validation
        cal = calibrate_head(model, val, pairs=v.calibration_pairs, seed=v.seed)
        with single_view(model):  # as the trainer validates, so `models list` compares like with like
            if v.metric == "group_verification":  # signatures: 1 - the within-writer verification EER
                pattern = cfg.sampler.negative_only
                mask = torch.tensor([bool(pattern) and fnmatch.fnmatchcase(c, pattern) for c in val.class_names], dtype=torch.bool)
                selection = GroupSelection(1.0 - group_verification_eer(model, val, mask)[0])
            else:
                selection = evaluate_episodes(model, val, n_way=v.n_way, n_shot=v.n_shot, n_query=v.n_query, episodes=v.episodes,
                                              seed=v.seed, within_group=v.within_group, skip_small=True)
    else:  # members trained on everything (data.val = 0): calibrate as their trainer did, on training pairs
        cfg = TrainConfig.from_dict(config)
        v = cfg.validation
        train = prepare_data(cfg.data, model.preprocessing).train
        cal = calibrate_head(model, train, pairs=v.calibration_pairs, seed=v.seed)
        selection = None
    extra = {
        "description": description(args.models, models),
        "trained_with": "scripts/make_omniglot_ensemble.py (no training)",
        "command": "PYTHONPATH=src python scripts/make_omniglot_ensemble.py " + " ".join(args.models) + f" --out {args.out}"
                   + (f" --weights {args.weights}" if args.weights else "") + (f" --size {args.size}" if args.size else ""),
        "members": [
            {"source": ref, "fingerprint": fingerprint(m), "input_size": m.preprocessing.size[0],
             "embedding_dim": m.embedding_dim, "command": json.loads((d / "model.json").read_text())["extra"].get("command")}
            for ref, m, d in zip(args.models, models, dirs)
        ],
        "weights": weights,
        "calibration": dataclasses.asdict(cal),
        "selection_episodes": None if selection is None else {
            "protocol": "1 - the EER of within-group verification (genuine vs the group's negative-only classes), one view "
                        "(as the trainer validates)" if v.metric == "group_verification" else
                        f"{v.episodes} within-alphabet {v.n_way}-way episodes, seed {v.seed}, one view (as the trainer validates)",
            "accuracy": selection.accuracy, "ci95": selection.ci95},
    }
    if selection is None:
        extra["calibration_data"] = "the members' training part (data.val = 0: no held-out classes), as their trainer calibrated"
    save_model(model, tmp, extra=extra)
    (tmp / "summary.json").write_text(json.dumps({
        "best_accuracy": None if selection is None else selection.accuracy,
        "best_ci95": None if selection is None else selection.ci95, "calibration": dataclasses.asdict(cal),
        "note": "no training: the validation episodes of the members' runs, measured once on the ensemble"
                if selection is not None else "no training and no held-out classes (data.val = 0): calibrated on training pairs",
    }, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps({"out": str(out), "fingerprint": fingerprint(load_model(out)), "embedding_dim": model.embedding_dim,
                      "calibration": dataclasses.asdict(cal), "selection_accuracy": None if selection is None else selection.accuracy}, indent=1))


if __name__ == "__main__":
    main()
