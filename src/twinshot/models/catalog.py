"""What ``twinshot models list`` shows: each shipped model described from its own files
(the preset's header comment, else ``model.json``'s ``extra.description``, ``model.json``, ``config.toml``, ``summary.json``), and the
registered encoders, heads and losses with the first line of their docstrings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from twinshot.models.io import PRETRAINED_DIR, SPEC, shipped_models

#: The presets' TOML files, whose header comments describe the shipped models.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return re.split(r"\.\s+(?=[A-Z`])", text, maxsplit=1)[0].rstrip(".:") if text else ""


def preset_description(name: str) -> str:
    """The first sentence of ``configs/<name>.toml``'s header comment, without its prefix."""
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        return ""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    if text.startswith("twinshot preset") and ":" in text:
        text = text.split(":", 1)[1]
    return _first_sentence(text)


def shipped_model_info(name: str) -> dict[str, Any]:
    """One shipped model: description, encoder, head, loss, input, validation accuracy."""
    directory = PRETRAINED_DIR / name
    meta = json.loads((directory / SPEC).read_text())
    spec = meta["spec"]
    from twinshot.training import toml

    config = toml.loads((directory / "config.toml").read_text()) if (directory / "config.toml").is_file() else {}
    summary = json.loads((directory / "summary.json").read_text()) if (directory / "summary.json").is_file() else {}
    pre = spec.get("preprocessing", {})
    val = config.get("validation", {})
    size = pre.get("size", [0, 0])
    return {
        "name": name,
        "description": preset_description(name)
        or _first_sentence(str(meta.get("extra", {}).get("description", "")))
        or str(meta.get("extra", {}).get("made_with", "")),  # a ported model: how it was made
        "encoder": spec.get("encoder"),
        "embedding_dim": spec.get("encoder_params", {}).get("embedding_dim"),
        "head": spec.get("head"),
        "loss": config.get("loss", {}).get("name"),
        "input": f"{size[0]}x{size[1]}, {pre.get('channels', 1)} channel(s)",
        "validation": {
            "accuracy": summary.get("best_accuracy"),
            "protocol": f"{val.get('n_way', 20)}-way {val.get('n_shot', 1)}-shot on the run's held-out classes",
        },
    }


def registry_info(registry: Any) -> list[dict[str, str]]:
    """``[{"name", "description"}]`` for every entry of a registry (docstring's first sentence)."""
    return [{"name": n, "description": _first_sentence((registry.get(n).__doc__ or "").strip().split("\n\n")[0])}
            for n in registry.names()]


def catalog() -> dict[str, Any]:
    """Everything ``twinshot models list`` prints."""
    from twinshot.losses import LOSSES
    from twinshot.models import ENCODERS, HEADS

    return {
        "shipped": [shipped_model_info(n) for n in shipped_models()],
        "encoders": registry_info(ENCODERS),
        "heads": registry_info(HEADS),
        "losses": registry_info(LOSSES),
    }
