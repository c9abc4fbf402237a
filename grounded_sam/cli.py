"""The ``grounded-sam`` command: ``predict`` (segment images by text), ``label`` (a folder into a dataset),
``review`` (an HTML page of a dataset), ``models`` (what is cached, download)."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .images import DEFAULT_MAX_PIXELS

app = typer.Typer(help="Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
models_app = typer.Typer(help="List the model presets, show which are cached, download them for offline use.",
                         invoke_without_command=True)
app.add_typer(models_app, name="models")

Florence = Annotated[Optional[str], typer.Option(help="Florence-2 hub id or local folder [default: the preset's].")]
Sam = Annotated[Optional[str], typer.Option(help="SAM 2 hub id, local folder or Meta .pt file [default: the preset's].")]
Preset = Annotated[str, typer.Option(help="fast, default or accurate (see `grounded-sam models`).")]
Device = Annotated[str, typer.Option(help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1...")]
Dtype = Annotated[str, typer.Option(help="auto (bf16 on CUDA), float32, bfloat16, float16.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per model batch.")]
MinConfidence = Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop boxes below this confidence.")]
Nms = Annotated[float, typer.Option(min=0.0, max=1.0, help="IoU above which overlapping boxes of a class are suppressed; 0 turns NMS off.")]
Compile = Annotated[
    bool, typer.Option(help="torch.compile the image encoders and Florence-2's decoding (long runs on a GPU).")
]
MaxPixels = Annotated[int, typer.Option(min=0, help="Skip images with more pixels than this (read from the header, "
                                         "before decoding); 0: no limit. Bounds memory.")]


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, no traceback."""


def _user_errors(command):
    """Turns the errors a user can fix (missing file, bad ontology, unknown preset, model not available offline)
    into one line on stderr and exit code 2; anything else keeps its traceback."""
    from .errors import ModelNotAvailableError, OutputWriteError

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        # ValueError covers bad options and files: InvalidImageError, OutputFolderError, ontology and preset errors
        except (UserError, FileNotFoundError, ModelNotAvailableError, OutputWriteError, ValueError) as error:
            typer.secho(f"Error: {' '.join(str(error).split())}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"grounded-sam {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Text-grounded segmentation and auto-labeling with Florence-2 and SAM 2."""
    if not sys.stderr.isatty():  # transformers' and the hub's bars, read when they are first imported (after this)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@_user_errors
def predict(
    source: Annotated[Path, typer.Argument(help="An image file or a folder of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for annotated images and JSON results.")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="What to find; repeat for more.")] = None,
    ontology: Annotated[Optional[Path], typer.Option(help="YAML/JSON ontology file {prompt: class}.")] = None,
    recursive: Annotated[bool, typer.Option(help="Also images in sub-folders.")] = False,
    florence: Florence = None, sam: Sam = None, preset: Preset = "default", device: Device = "auto",
    dtype: Dtype = "auto", batch_size: BatchSize = 8, min_confidence: MinConfidence = 0.0, nms: Nms = 0.7,
    compile: Compile = False, max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Segment images by text: writes NAME.jpg (masks, boxes, "class 0.87") and NAME.json per image.

    Example: grounded-sam predict photos/ -p "a dog" -p "a person" -o results/
    """
    from .pipeline import pipeline_settings
    from .predict_files import plan_predict_files, predict_files

    # Everything that can be checked is checked before the models load, which takes a while.
    chosen = _ontology(prompt, ontology)
    plan_predict_files(source, output, recursive)
    options = _model_options(florence, sam, preset, device, dtype, min_confidence, nms)
    pipeline_settings(**options)
    model = _model(chosen, options, compile)
    summary = predict_files(model, source, output, recursive=recursive, batch_size=batch_size,
                            max_pixels=max_pixels or None)
    _print_summary(summary)
    if summary["written"] == 0:
        raise typer.Exit(1)


@app.command()
@_user_errors
def label(
    folder: Annotated[Path, typer.Argument(help="Folder of images to label.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Dataset folder [default: FOLDER_labeled].")] = None,
    ontology: Annotated[Optional[Path], typer.Option(help="YAML/JSON ontology file {prompt: class}.")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="A prompt that is its own class; repeatable.")] = None,
    recursive: Annotated[bool, typer.Option(help="Also images in sub-folders.")] = False,
    extension: Annotated[Optional[list[str]], typer.Option(help="Only these extensions (.jpg); repeatable [default: all common ones].")] = None,
    split: Annotated[str, typer.Option(help="train,valid[,test] fractions, e.g. 0.8,0.2 or 0.7,0.2,0.1.")] = "0.8,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    format: Annotated[str, typer.Option("--format", help="yolo, coco or yolo,coco.")] = "yolo,coco",
    coco_segmentation: Annotated[str, typer.Option(help="rle (exact) or polygon.")] = "rle",
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset labeled with other settings in --output.")] = False,
    review: Annotated[bool, typer.Option(help="Also write the HTML review page (review/index.html).")] = False,
    florence: Florence = None, sam: Sam = None, preset: Preset = "default", device: Device = "auto",
    dtype: Dtype = "auto", batch_size: BatchSize = 8, min_confidence: MinConfidence = 0.0, nms: Nms = 0.7,
    compile: Compile = False,
    workers: Annotated[int, typer.Option(min=0, help="Threads decoding images ahead of the model (and as many converting masks behind it); 0: none.")] = 4,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Auto-label a folder into a YOLO-seg + COCO dataset (train/valid, data.yaml); rerun the same command to resume.

    Example: grounded-sam label photos/ --ontology ontologies/pets.yaml -o pets_dataset --review
    """
    from .dataset_writer import DatasetOptions
    from .folders import check_split_ratios
    from .labeling import LabelingJob
    from .pipeline import pipeline_settings

    # Everything that can be checked is checked before the models load, which takes a while: the images are found,
    # the output folder is checked and locked, and the settings are compared with a dataset already there.
    if not folder.is_dir():
        raise UserError(f"Not a folder: {folder} (give the folder of images to label)")
    fractions = check_split_ratios(_fractions(split))
    chosen = _ontology(prompt, ontology)
    formats = tuple(format.replace(" ", "").split(","))
    try:
        dataset = DatasetOptions(classes=tuple(chosen.classes()), split=fractions, seed=seed, formats=formats,
                                 coco_segmentation=coco_segmentation)
    except ValueError as error:  # name the flags, not the Python arguments
        raise UserError(str(error).replace("formats", "--format").replace("coco_segmentation", "--coco-segmentation")) from None
    options = _model_options(florence, sam, preset, device, dtype, min_confidence, nms)
    with LabelingJob(folder, output, chosen, pipeline_settings(**options), dataset, extension=extension or None,
                     recursive=recursive, overwrite=overwrite, max_pixels=max_pixels or None) as job:
        report = job.run(_model(chosen, options, compile), batch_size=batch_size, workers=workers)
    _print_label_summary(report)
    if review:
        _write_review(Path(report.output_folder))
    if report.images_labeled == 0:
        raise typer.Exit(1)


@app.command("review")
@_user_errors
def review_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `grounded-sam label`.")],
    max_images: Annotated[int, typer.Option(min=0, help="Thumbnails drawn at most (counts cover every image).")] = 1000,
) -> None:
    """Write a static HTML review page of a labeled dataset: thumbnails with masks, per-class counts, a class filter,
    the skipped images and why.

    Example: grounded-sam review pets_dataset && xdg-open pets_dataset/review/index.html
    """
    _write_review(dataset, max_images)


def _write_review(dataset: Path, max_images: int = 1000) -> None:
    from .review import write_review

    page = write_review(dataset, max_images=max_images)
    typer.echo(f"Review page: {page}")


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--split takes comma-separated fractions like 0.8,0.2, got {text!r}") from None


def _ontology(prompts: list[str] | None, path: Path | None):
    from .ontology import CaptionOntology

    if not prompts and path is None:
        raise UserError("Say what to look for: --prompt 'a dog' (repeatable) or --ontology FILE")
    mapping = dict(CaptionOntology.from_file(path).to_dict()) if path is not None else {}
    mapping.update({text: text for text in prompts or []})
    return CaptionOntology(mapping)


def _model_options(florence, sam, preset, device, dtype, min_confidence, nms) -> dict:
    return dict(florence=florence, sam=sam, preset=preset, device=device, dtype=dtype, min_confidence=min_confidence,
                nms_threshold=nms or None)


def _model(ontology, options: dict, compile: bool = False):
    from .pipeline import GroundedSAM2

    return GroundedSAM2(ontology, compile=compile, **options)


def _class_table(per_class: dict, title: str | None = None):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    table.add_column("detections", justify="right")
    for name, count in per_class.items():
        table.add_row(name, str(count))
    return table


def _print_summary(summary: dict) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    console.print(_class_table(summary["per_class"],
                               f"{summary['written']} of {summary['found']} images written to {summary['output']}"))
    for item in summary["skipped"]:
        console.print(f"skipped {item['path']}: {item['reason']}", markup=False)


def _print_label_summary(report) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"{report.images_labeled} images ({report.labeled_this_run} labeled now, {report.already_done} "
                  "before)", markup=False, soft_wrap=True)
    console.print(_class_table(report.detections_per_class))
    splits = ", ".join(f"{name} {count}" for name, count in report.images_per_split.items())
    console.print(f"dataset: {report.output_folder}", markup=False, soft_wrap=True)
    console.print(f"splits: {splits}; without detections: {report.images_empty}; "
                  f"{report.images_per_second:.2f} images/s", markup=False, soft_wrap=True)
    for item in report.skipped:
        console.print(f"skipped {item['path']}: {item['reason']}", markup=False, soft_wrap=True)
    if report.images_per_split.get("valid", 1) == 0:
        console.print("note: the valid split is empty; YOLO trainers need validation images", markup=False)


@models_app.callback()
@_user_errors
def models(context: typer.Context) -> None:
    """List presets and hub ids, and which are already in the local Hugging Face cache.

    Example: grounded-sam models
    """
    if context.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from .models import PRESETS, is_cached

    table = Table(title="Model presets (cached = in the local Hugging Face cache, usable offline)")
    for column in ("preset", "Florence-2", "cached", "SAM 2", "cached"):
        table.add_column(column, overflow="fold")
    for name, preset in PRESETS.items():
        table.add_row(name, preset.florence, _mark(is_cached(preset.florence)), preset.sam, _mark(is_cached(preset.sam)))
    console = Console()
    console.print(table)
    console.print("Download a preset for offline use: grounded-sam models download PRESET "
                  "(then set HF_HUB_OFFLINE=1). Meta's SAM 2 .pt files: checkpoints/download_ckpts.sh")


def _mark(cached: bool) -> str:
    return "yes" if cached else "no"


@models_app.command("download")
@_user_errors
def download(preset: Annotated[str, typer.Argument(help="fast, default or accurate.")]) -> None:
    """Download a preset's Florence-2 and SAM 2 into the Hugging Face cache.

    Example: grounded-sam models download fast
    """
    from .models import download_preset

    for repo_id, path in download_preset(preset):
        typer.echo(f"{repo_id} -> {path}")


def main() -> None:
    app()
