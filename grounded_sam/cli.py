"""The ``grounded-sam`` command. Only ``--version`` for now; the predict, label and models commands come next."""

from __future__ import annotations

import typer

from . import __version__

app = typer.Typer(help="Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"grounded-sam {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    """Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2."""


def main() -> None:
    app()
