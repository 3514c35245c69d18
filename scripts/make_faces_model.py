"""Build the shipped ``faces`` model: face-api's dlib ResNet (``face-resnet``, mirror-averaged)
behind face detection + alignment, with a cosine head whose logistic is fitted (Platt) on
LFW pairs of people outside ``pairs_dev.txt`` (no person of the evaluated folds).

    python scripts/make_faces_model.py --calibration runs/calib_pairs.csv \
        --lfw runs/faces_lfw.json --out src/twinshot/pretrained/faces

The model file holds only the head (2 numbers): the encoder's weights ship once, quantised,
in ``twinshot/faces/face_api/`` and load with the encoder.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from twinshot.data.images import Preprocessing
from twinshot.data.images import load_image
from twinshot.errors import DataError
from twinshot.evaluation import read_pairs_csv
from twinshot.models import ModelSpec, build_model, save_model
from twinshot.training.calibrate import fit_logistic

SPEC = ModelSpec(
    encoder="face-resnet",
    encoder_params={"mirror": True},
    head="cosine",  # LFW pairs_dev: 98.44% vs 98.33% Euclidean (docs/applications.md)
    head_params={},
    preprocessing=Preprocessing(size=(150, 150), channels=3, align="face-api"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, required=True, help="pairs CSV of people outside the evaluated folds")
    parser.add_argument("--lfw", type=Path, help="JSON of `twinshot evaluate lfw ... --json` to record in model.json")
    parser.add_argument("--out", type=Path, default=Path("src/twinshot/pretrained/faces"))
    parser.add_argument("--grey-gain", type=float, nargs=3, help="R G B gains of the grey-to-colour map (scripts/lfw_grey_adapter.py)")
    parser.add_argument("--grey-offset", type=float, nargs=3, help="R G B offsets of that map (0-1 scale)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = SPEC
    if args.grey_gain or args.grey_offset:
        grey = {"grey_gain": list(args.grey_gain or (1.0, 1.0, 1.0)), "grey_offset": list(args.grey_offset or (0.0, 0.0, 0.0))}
        spec = replace(SPEC, encoder_params={**SPEC.encoder_params, **grey})
    model = build_model(spec).eval()
    pairs = read_pairs_csv(args.calibration)
    emb: dict[Path, torch.Tensor] = {}
    for path in dict.fromkeys(p for pair in pairs for p in (pair.path1, pair.path2)):
        try:
            emb[path] = model.embed_images(load_image(path, model.preprocessing)[None])[0]
        except DataError as exc:  # no face found: leave the image's pairs out
            print(f"skipped: {exc}")
    kept = [p for p in pairs if p.path1 in emb and p.path2 in emb]
    scores = torch.stack([model.head.similarity(emb[p.path1][None], emb[p.path2][None])[0] for p in kept])  # cosine
    same = torch.tensor([p.same for p in kept])
    scale, bias = fit_logistic(scores, same)
    model.head.set_logistic(scale, bias)
    extra = {
        "made_with": "scripts/make_faces_model.py (no training: face-api's pretrained dlib ResNet)",
        "command": f"python scripts/make_faces_model.py --calibration {args.calibration} --lfw {args.lfw} --out {args.out}"
        + (f" --grey-gain {' '.join(map(str, args.grey_gain))}" if args.grey_gain else "")
        + (f" --grey-offset {' '.join(map(str, args.grey_offset))}" if args.grey_offset else ""),
        "encoder_weights": "twinshot/faces/face_api/face_recognition.safetensors (@vladmandic/face-api 1.7.15, MIT; see PROVENANCE.json)",
        "calibration": {
            "pairs": len(kept), "same": int(same.sum()), "skipped_no_face": len(pairs) - len(kept), "scale": scale, "bias": bias,
            "cosine_at_p_0.5": -bias / scale,
            "data": "LFW people outside pairs_dev.txt (folds 1-8): every same pair of those with 2+ images, 400 random different pairs",
        },
        "input": "RGB; a grey image is copied to the 3 channels. The largest face is detected, aligned to a 150x150 chip "
        "(landmarks averaged with those of the mirror image).",
    }
    if args.lfw:
        result = json.loads(args.lfw.read_text())
        extra["lfw"] = {k: result[k] for k in ("accuracy", "standard_error", "auc", "eer", "tar_at_far", "n_pairs", "n_folds", "n_no_face") if k in result}
        extra["lfw"]["protocol"] = (
            f"`twinshot evaluate lfw faces pairs_dev.txt --json` (View 2 folds 1-8), threshold from the other 7 folds, "
            f"the face at each photo's centre (--face {result.get('face', 'centre')}), --fallback-crop 0.48"
        )
        extra["lfw"]["folds"] = [round(f["accuracy"], 6) for f in result.get("folds", [])]
    previous = args.out / "model.json"
    if previous.is_file():  # figures measured by their own commands (e.g. ORL's), kept
        for key, value in json.loads(previous.read_text()).get("extra", {}).items():
            extra.setdefault(key, value)
    out = save_model(model, args.out, extra=extra)
    # keep only the head: the encoder's weights come from the package
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("head.")}, str(out / "model.safetensors"))
    (out / "model.safetensors").chmod(0o644)
    print(json.dumps(extra["calibration"], indent=2))


if __name__ == "__main__":
    main()
