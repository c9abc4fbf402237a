"""The ``grounded-sam`` command: ``predict`` (segment images by text), ``label`` (a folder into a dataset),
``review`` (an HTML page of a dataset), ``track`` (a video by text), ``app`` (the local web app), ``eval`` and
``compare`` (label quality against hand-labeled images), ``models`` (what is cached, download, tiny models).

One module per command; nothing heavy is imported until a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from grounded_sam import __version__
from grounded_sam.apps.cli.app import app as app_command
from grounded_sam.apps.cli.compare import compare
from grounded_sam.apps.cli.eval import evaluate
from grounded_sam.apps.cli.label import label
from grounded_sam.apps.cli.models import models_app
from grounded_sam.apps.cli.predict import predict
from grounded_sam.apps.cli.review import review
from grounded_sam.apps.cli.track import track

# rich_markup_mode=None: plain help, which keeps "[...]" in help texts and reads well when piped.
app = typer.Typer(
    help="Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
app.command()(predict)
app.command()(label)
app.command()(review)
app.command()(track)
app.command(name="eval")(evaluate)
app.command()(compare)
app.command("app")(app_command)
app.add_typer(models_app, name="models")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"grounded-sam {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2."""
    if not sys.stderr.isatty():  # transformers' and the hub's bars, read when they are first imported (after this)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    app()
