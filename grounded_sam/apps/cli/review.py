"""``grounded-sam review``: a static HTML page of a labeled dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import user_errors


@user_errors
def review(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `grounded-sam label`.")],
    max_images: Annotated[int, typer.Option(min=0, help="Thumbnails drawn at most (counts cover every image).")] = 1000,
) -> None:
    """Write a static HTML review page of a labeled dataset: thumbnails with masks, per-class counts, a class filter,
    the skipped images and why.

    Example: grounded-sam review pets_dataset && xdg-open pets_dataset/review/index.html
    """
    write_review_page(dataset, max_images)


def write_review_page(dataset: Path, max_images: int = 1000) -> None:
    from grounded_sam.apps.review import write_review

    page = write_review(dataset, max_images=max_images)
    typer.echo(f"Review page: {page}")
