"""What every command shares for printing: strict JSON (no NaN) on stdout."""

from __future__ import annotations

import json
from typing import Any

import typer

from twinshot.jsonsafe import clean

JSON_HELP = "Print one JSON object instead of a readable summary."


def emit_json(result: Any) -> None:
    """Print ``result`` as one line of strict JSON."""
    typer.echo(json.dumps(clean(result), allow_nan=False))


def decision(score: float, threshold: float, probability: float, p_threshold: float | None) -> str:
    """The numbers behind an accept/reject decision, each beside what it was compared with:
    ``score 0.739 < threshold 0.943; P(same) 0.820 < 0.849 at the threshold``.

    The threshold is set for a false accept rate, not at P(same) = 0.5, so a probability is
    shown with the probability the threshold corresponds to (``p_threshold``), never alone.
    """
    import math

    def fmt(x: float) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"

    op = ">=" if score >= threshold else "<"
    text = f"score {fmt(score)} {op} threshold {fmt(threshold)}; P(same) {probability:.3f}"
    if p_threshold is not None:
        text += f" {op} {p_threshold:.3f} at the threshold"
    return text
