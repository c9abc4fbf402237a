"""``grounded-sam models``: the presets and what is cached; download a preset; write tiny models to try things."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import UserError, user_errors

models_app = typer.Typer(
    help="List the model presets, show which are cached, download them for offline use.",
    invoke_without_command=True,
    rich_markup_mode=None,
)


@models_app.callback()
@user_errors
def models(context: typer.Context) -> None:
    """List presets and hub ids, and which are already in the local Hugging Face cache.

    Example: grounded-sam models
    """
    if context.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from grounded_sam.models import PRESETS, is_cached

    table = Table(title="Model presets (cached = in the local Hugging Face cache, usable offline)")
    for column in ("preset", "Florence-2", "cached", "SAM 2", "cached"):
        table.add_column(column, overflow="fold")
    for name, preset in PRESETS.items():
        table.add_row(
            name, preset.florence, _mark(is_cached(preset.florence)), preset.sam, _mark(is_cached(preset.sam))
        )
    console = Console()
    console.print(table)
    console.print(
        "Download a preset for offline use: grounded-sam models download PRESET "
        "(then set HF_HUB_OFFLINE=1). Meta's SAM 2 .pt files: checkpoints/download_ckpts.sh. "
        "Tiny random models to try everything without downloads: grounded-sam models tiny DIR"
    )


def _mark(cached: bool) -> str:
    return "yes" if cached else "no"


@models_app.command("download")
@user_errors
def download(preset: Annotated[str, typer.Argument(help="fast, default or accurate.")]) -> None:
    """Download a preset's Florence-2 and SAM 2 into the Hugging Face cache.

    Example: grounded-sam models download fast
    """
    from grounded_sam.models import download_preset

    for repo_id, path in download_preset(preset):
        typer.echo(f"{repo_id} -> {path}")


@models_app.command("tiny")
@user_errors
def tiny(folder: Annotated[Path, typer.Argument(help="Where to write florence/ and sam/.")]) -> None:
    """Write tiny Florence-2 and SAM 2 models with random weights (no download): their masks mean nothing, but
    every command runs on them in seconds. Florence-2 is scripted to find "a dog" and "a person".

    Example: grounded-sam models tiny tiny_models && grounded-sam label samples/ -p "a dog" -p "a person"
    --florence tiny_models/florence --sam tiny_models/sam
    """
    from grounded_sam.testing import DEMO_SCRIPT, build_tiny_florence2, build_tiny_sam2

    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file; give a folder for the tiny models")
    for name in ("florence", "sam"):  # save_pretrained would replace, delete and write through links there
        if (folder / name).is_symlink() or (os.path.lexists(folder / name) and not (folder / name).is_dir()):
            raise UserError(f"{folder / name} is not a folder grounded-sam may write; choose a new folder")
        if (folder / name).is_dir() and any((folder / name).iterdir()):
            raise UserError(f"{folder / name} is not empty; write the tiny models into a new folder")
    typer.echo(f"Florence-2: {build_tiny_florence2(folder / 'florence', script=DEMO_SCRIPT)}")
    typer.echo(f"SAM 2: {build_tiny_sam2(folder / 'sam')}")
