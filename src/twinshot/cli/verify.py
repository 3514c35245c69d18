"""``twinshot verify``: are two images the same identity?"""

from __future__ import annotations

from typing import Optional

import typer

from twinshot.cli.output import emit_json


def verify(
    model: str = typer.Argument(
        ..., help="A shipped model name, a checkpoint or a training run directory, or an ONNX export (.onnx, runs without torch)."
    ),
    image1: str = typer.Argument(..., help="The first image."),
    image2: str = typer.Argument(..., help="The second image."),
    gallery: Optional[str] = typer.Option(
        None, "--gallery", help="Use this gallery's calibrated threshold and probabilities (same model required)."
    ),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Acceptance threshold (a logit); default 0, or the gallery's."),
    inference: str = typer.Option(
        "auto", "--inference",
        help="'auto' (ONNX Runtime when installed, exported once to a cache; else torch), 'torch' or 'onnx'.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Are two images the same class? Prints the probability and the decision."""
    from twinshot.cli.output import decision
    from twinshot.gallery import Calibration, Gallery, verify_images

    calibration = Calibration()  # without a gallery: the model's own sigmoid(logit)
    if gallery is not None:
        with Gallery.open(gallery, model, inference=inference, readonly=True) as g:
            calibration = g.calibration
            result = verify_images(
                g.embedder, image1, image2,
                threshold=g.threshold if threshold is None else threshold, calibration=calibration,
            )
    else:
        result = verify_images(model, image1, image2, threshold=0.0 if threshold is None else threshold, inference=inference)
    if as_json:
        out = {"image1": image1, "image2": image2, **result.to_dict()}
        emit_json(out)
        return
    verdict = "same" if result.same else "different"
    p_at = float(calibration.probability(result.threshold))
    typer.echo(f"{verdict} ({decision(result.score, result.threshold, result.probability, p_at)})")
