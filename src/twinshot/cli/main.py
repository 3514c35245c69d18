"""Entry point of the ``twinshot`` command: assembles the sub-commands and turns every
:class:`twinshot.errors.TwinshotError` into one line on stderr and exit status 2."""

from __future__ import annotations

import sys

import typer

from twinshot.cli import demo, evaluate, export, gallery, models, pairs, report, serve, train, verify

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
app.command("report", help=report.report.__doc__)(report.report)
app.command("serve", help=serve.serve.__doc__)(serve.serve)
app.add_typer(serve.keys_app, name="keys")
app.add_typer(models.app, name="models")
app.add_typer(pairs.app, name="pairs")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from twinshot import __version__

        typer.echo(__version__)
        raise typer.Exit()


def cli(args: list[str] | None = None) -> int:
    """Run the command line with ``args`` and return the exit status (for tests)."""
    from twinshot.errors import TwinshotError

    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="twinshot", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except TwinshotError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return 0


def main() -> None:
    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
