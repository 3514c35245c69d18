"""How the ``twinshot`` command looks, in one place: plain help like its peers' (``-h``,
upper-case metavars, no ``<bool>`` type labels, not hard-wrapped when piped) and one-line
``error: ...`` messages for usage errors.

:func:`shape` walks the click command that Typer builds from the app once, so no option
needs its own metavar.
"""

from __future__ import annotations

import typing
from typing import Any, Optional

from pathlib import Path

from typer import core as _typer_core

try:  # Typer >= 0.22 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on top of click
    from click.exceptions import UsageError

# Type labels shown after an option that takes a value (click's own vocabulary).
_TYPE_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}
WIDE = 10_000  # help width when stdout is not a terminal: one line per paragraph, no hard wrap


def _value_metavar(param: Any) -> str:
    """``TEXT``, ``INTEGER``, ``PATH``, ``[max|mean]``; ``...`` appended for repeatable values."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:  # pragma: no cover - older Typer: click's ParamType names it
        return str(getattr(param.type, "name", "value")).upper()
    annotation = desc.annotation
    if typing.get_origin(annotation) in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        annotation = args[0] if args else str
    if desc.is_choice and desc.choices:
        label = "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices) + "]"
    elif desc.is_path or annotation is Path:
        label = "PATH"
    else:
        label = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())
    return label


class _Argument(_typer_core.TyperArgument):
    """An argument shown as ``GALLERY`` (upper case, no type label) in help and usage."""

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.nargs != 1:
            name += "..."
        return name if self.required else f"[{name}]"


def _shape_params(command: Any) -> None:
    for param in command.params:
        if isinstance(param, _typer_core.TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "ARG").upper()
            param.__class__ = _Argument
        elif isinstance(param, _typer_core.TyperOption) and param.metavar is None:
            if not (param.is_flag or param.count):
                param.metavar = _value_metavar(param)


def shape(command: Any, *, piped: bool) -> Any:
    """Make ``command`` (and every sub-command) plain-help, ``-h``-aware, upper-case-metavar.

    ``piped``: stdout is not a terminal, so help is not wrapped at 80 columns.
    """
    settings = dict(command.context_settings or {})
    settings["help_option_names"] = ["-h", "--help"]
    if piped:
        settings["terminal_width"] = WIDE
        settings["max_content_width"] = WIDE
    command.context_settings = settings
    stack = [command]
    while stack:
        cmd = stack.pop()
        if hasattr(cmd, "rich_markup_mode"):
            cmd.rich_markup_mode = None
        _shape_params(cmd)
        stack.extend(getattr(cmd, "commands", {}).values())
    return command


def usage_error_line(exc: Exception) -> str:
    """A click usage error as one line: ``error: <message> (see 'twinshot train --help')``."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(str(message).split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{message}{hint}"


__all__ = ["UsageError", "shape", "usage_error_line"]
