"""Named training presets: TOML files shipped in ``twinshot/configs/``.

``twinshot train --preset omniglot`` starts from ``configs/omniglot.toml``; a ``--config``
file and flags override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinshot.errors import ConfigError
from twinshot.training import toml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(preset_names()) or '(none)'}")
    return path


def preset_dict(name: str) -> dict[str, Any]:
    """The preset's TOML as nested dicts."""
    return toml.load(preset_path(name))
