"""Entry point of the ``twinshot`` command: assembles the sub-commands and turns every
:class:`twinshot.errors.TwinshotError` and usage error into one line on stderr and exit
status 2 (under ``--json``, also one JSON object ``{"error": ..., "message": ...}`` on stdout).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from twinshot.cli import demo, embed, evaluate, export, gallery, models, pairs, report, serve, train, verify

app = typer.Typer(
    name="twinshot",
    help="Siamese networks and one-shot learning: train, evaluate, calibrate, enroll, recognise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("demo", help=demo.demo.__doc__)(demo.demo)
app.command("train", help=train.train.__doc__)(train.train)
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(gallery.app, name="gallery")
app.command("verify", help=verify.verify.__doc__)(verify.verify)
app.command("export", help=export.export.__doc__)(export.export)
app.command("embed", help=embed.embed.__doc__)(embed.embed)
app.command("report", help=report.report.__doc__)(report.report)
app.command("serve", help=serve.serve.__doc__)(serve.serve)
app.add_typer(serve.keys_app, name="keys")
app.add_typer(models.app, name="models")
app.add_typer(pairs.app, name="pairs")


def _print_version(value: bool) -> None:
    if value:
        from twinshot import __version__

        typer.echo(f"twinshot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, expose_value=False, callback=_print_version
    ),
) -> None:
    """Siamese networks and one-shot learning: train, evaluate, calibrate, enroll, recognise."""


def build_command(piped: Optional[bool] = None) -> Any:
    """The click command behind ``twinshot``, shaped by :func:`twinshot.cli.shape.shape`."""
    from twinshot.cli.shape import shape

    if piped is None:
        piped = not sys.stdout.isatty()
    return shape(typer.main.get_command(app), piped=piped)


def _fail(args: list[str], code: str, message: str, status: int = 2) -> int:
    """Report an error: one line on stderr; under ``--json`` also one JSON object on stdout."""
    typer.echo(f"error: {message}", err=True)
    if "--json" in args[: args.index("--") if "--" in args else len(args)]:
        typer.echo(json.dumps({"error": code, "message": message}))
    return status


def cli(args: list[str] | None = None) -> int:
    """Run the command line with ``args`` and return the exit status (for tests)."""
    from twinshot.cli.shape import UsageError, usage_error_line
    from twinshot.errors import TwinshotError

    args = list(sys.argv[1:] if args is None else args)
    command = build_command()
    try:
        code = command.main(args=args, prog_name="twinshot", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `twinshot gallery`: the help, as --help would
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            return 0
        return _fail(args, "usage", usage_error_line(exc))
    except TwinshotError as exc:
        return _fail(args, "invalid_input", " ".join(str(exc).split()))
    except OSError as exc:  # the environment refused: permissions, a full disk, /proc...
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(args, "os_error", f"{where}{exc.strerror or exc}")
    except (KeyboardInterrupt, typer.Abort):
        return _fail(args, "interrupted", "interrupted", 130)
    except Exception as exc:  # other click errors (e.g. a file that cannot be opened)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            return _fail(args, "usage", " ".join(exc.format_message().split()))
        raise
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
