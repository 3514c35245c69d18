"""Reading TOML (``tomllib``, or ``tomli`` before Python 3.11) and writing the small
subset of it that configs use: tables of strings, numbers, booleans, lists and inline
tables. Enough to save a resolved config and read it back unchanged."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from twinshot.errors import ConfigError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

__all__ = ["loads", "load", "dumps", "parse_value", "tomllib"]


def loads(text: str, *, name: str = "<string>") -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line :class:`ConfigError` naming ``name``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML ({exc})") from None


def load(path: str | Path) -> dict[str, Any]:
    """Read and parse a TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    return loads(text, name=str(path))


def parse_value(text: str) -> Any:
    """A command-line value as TOML (``3``, ``1e-3``, ``true``, ``[64, 64]``, ``"x"``);
    anything that is not a TOML value is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise ConfigError("TOML has no null value; use a default instead of None")
    raise ConfigError(f"cannot write a {type(v).__name__} to TOML")


def dumps(data: dict[str, Any]) -> str:
    """Write a dict as TOML: top-level dicts become ``[tables]`` (one level), deeper
    dicts inline tables. ``loads(dumps(d)) == d`` for the types configs use (tuples
    come back as lists)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    for name, table in tables:
        if lines:
            lines.append("")
        lines.append(f"[{_key(name)}]")
        for k, v in table.items():
            lines.append(f"{_key(str(k))} = {_value(v)}")
    return "\n".join(lines) + "\n"
