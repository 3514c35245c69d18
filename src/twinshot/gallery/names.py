"""What an identity's name and metadata may be: one rule for the library, the CLI and the
HTTP service.

* A **name** is normalised to Unicode NFC (so "é" typed as one code point or as "e" plus a
  combining accent is one identity), must not be empty or only spaces, must hold no
  control character (category ``Cc``, and the line/paragraph separators) and at most
  :data:`MAX_IDENTITY_CHARS` characters.
* **Metadata** is a JSON object, at most :data:`MAX_METADATA_DEPTH` levels deep (a deeper
  one cannot be listed or answered without running out of stack).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from twinshot.errors import DataError

#: Longest identity name, in characters (after NFC normalisation).
MAX_IDENTITY_CHARS = 128
#: Deepest nesting of an identity's metadata (``{"a": 1}`` is depth 1).
MAX_METADATA_DEPTH = 16


class InvalidIdentityName(DataError):
    """An identity name that breaks the rule of :mod:`twinshot.gallery.names`."""


class InvalidMetadata(DataError):
    """Metadata that is not a JSON object of bounded depth."""


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:40] + "...")


def normalize_identity(name: Any, *, max_chars: int = MAX_IDENTITY_CHARS) -> str:
    """``name`` in NFC, after checking it against the rule (see the module's docstring).

    Raises:
        InvalidIdentityName: not a string, empty, control characters, or too long.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidIdentityName(f"identity must be a non-empty name, got {_shown(name) if isinstance(name, str) else name!r}")
    name = unicodedata.normalize("NFC", name)
    if len(name) > max_chars:
        raise InvalidIdentityName(f"identity name is {len(name)} characters long; the limit is {max_chars}")
    bad = next((c for c in name if unicodedata.category(c) == "Cc" or c in "\u2028\u2029"), None)
    if bad is not None:
        raise InvalidIdentityName(f"identity {_shown(name)} contains a control character (U+{ord(bad):04X})")
    return name


def lookup_name(name: str) -> str:
    """The form under which ``name`` is stored (NFC), without enforcing the rule: used to
    find (and remove) identities enrolled before the rule existed."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def metadata_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``{}``/``[]`` is 1), computed without
    recursion, so any input is safe."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v)
    return deepest


def check_metadata(metadata: Any, *, name: str = "", max_depth: int = MAX_METADATA_DEPTH) -> dict[str, Any] | None:
    """``metadata`` if it is None or a JSON-serialisable dict at most ``max_depth`` deep.

    Raises:
        InvalidMetadata: naming the identity and the limit.
    """
    if metadata is None:
        return None
    who = f"identity {_shown(name)}: " if name else ""
    if not isinstance(metadata, dict):
        raise InvalidMetadata(f"{who}metadata must be a JSON object (a dict)")
    depth = metadata_depth(metadata)
    if depth > max_depth:
        raise InvalidMetadata(f"{who}metadata is nested {depth} levels deep; the limit is {max_depth}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMetadata(f"{who}metadata is not JSON-serialisable ({exc})") from None
    return metadata


def parse_metadata(text: str, *, what: str = "metadata", max_depth: int = MAX_METADATA_DEPTH) -> dict[str, Any]:
    """Parse metadata given as JSON text (the CLI's ``--metadata``, the service's form
    field); ``what`` names it in messages.

    Raises:
        InvalidMetadata: not JSON, not an object, or too deep.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidMetadata(f"{what} is nested too deeply; the limit is {max_depth} levels") from None
    except ValueError as exc:
        raise InvalidMetadata(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidMetadata(f"{what} must be a JSON object")
    depth = metadata_depth(value)
    if depth > max_depth:
        raise InvalidMetadata(f"{what} is nested {depth} levels deep; the limit is {max_depth}")
    return check_metadata(value, max_depth=max_depth)  # type: ignore[return-value]


def load_stored_metadata(text: str) -> tuple[dict[str, Any], str | None]:
    """Metadata read back from a gallery file: ``(metadata, None)``, or ``({}, reason)`` when
    the stored text cannot be used, so one damaged record never breaks a listing."""
    try:
        value = json.loads(text)
    except RecursionError:
        return {}, "metadata nested too deeply"
    except (TypeError, ValueError):
        return {}, "metadata is not valid JSON"
    if not isinstance(value, dict):
        return {}, "metadata is not a JSON object"
    if metadata_depth(value) > MAX_METADATA_DEPTH:
        return {}, f"metadata nested deeper than {MAX_METADATA_DEPTH} levels"
    return value, None
