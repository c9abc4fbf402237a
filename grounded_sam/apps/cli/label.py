"""``grounded-sam label``: a folder of images into a YOLO-seg + COCO dataset, resumable.

Its flags are :class:`~grounded_sam.LabelOptions`' fields: the defaults and help come from there (and
tests/test_cli.py checks that every option has its flag).
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import (
    Backend,
    BoxThreshold,
    Compile,
    DetectorModel,
    DetectorName,
    Device,
    Dtype,
    Florence,
    KeepLargestPart,
    MaxHoleArea,
    MaxSprinkleArea,
    MinConfidence,
    Nms,
    OntologyFile,
    Preset,
    Prompts,
    Sam,
    TextThreshold,
    UserError,
    class_table,
    console,
    ontology_from,
    pipeline_spec,
    user_errors,
)
from grounded_sam.labeling.options import LabelOptions

_DEFAULTS = LabelOptions()
_HELP = {option.name: option.metadata["help"] for option in fields(LabelOptions)}


def _option(name: str, *flags: str, **extra):
    return typer.Option(*flags, help=_HELP[name], **extra)


@user_errors
def label(
    folder: Annotated[Path, typer.Argument(help="Folder of images to label.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Dataset folder (default: FOLDER_labeled).")
    ] = None,
    ontology: OntologyFile = None,
    prompt: Prompts = None,
    recursive: Annotated[bool, _option("recursive")] = _DEFAULTS.recursive,
    extension: Annotated[list[str] | None, _option("extension")] = None,
    split: Annotated[str, _option("split")] = ",".join(map(str, _DEFAULTS.split)),
    seed: Annotated[int, _option("seed")] = _DEFAULTS.seed,
    formats: Annotated[str, _option("formats", "--format")] = ",".join(_DEFAULTS.formats),
    yolo_boxes_only: Annotated[bool, _option("yolo_boxes_only")] = _DEFAULTS.yolo_boxes_only,
    coco_segmentation: Annotated[str, _option("coco_segmentation")] = _DEFAULTS.coco_segmentation,
    polygon_approximation: Annotated[float, _option("polygon_approximation")] = _DEFAULTS.polygon_approximation,
    keep_empty: Annotated[bool, _option("keep_empty")] = _DEFAULTS.keep_empty,
    record_confidence: Annotated[bool, _option("record_confidence")] = _DEFAULTS.record_confidence,
    overwrite: Annotated[bool, _option("overwrite")] = _DEFAULTS.overwrite,
    discard_corrections: Annotated[bool, _option("discard_corrections")] = _DEFAULTS.discard_corrections,
    link: Annotated[bool, _option("link")] = _DEFAULTS.link,
    max_pixels: Annotated[int, _option("max_pixels", min=0)] = _DEFAULTS.max_pixels,
    batch_size: Annotated[int, _option("batch_size", min=1)] = _DEFAULTS.batch_size,
    workers: Annotated[int, _option("workers", min=0)] = _DEFAULTS.workers,
    ray: Annotated[bool, _option("ray")] = _DEFAULTS.ray,
    ray_address: Annotated[str | None, _option("ray_address")] = _DEFAULTS.ray_address,
    actors: Annotated[int | None, _option("actors", min=1)] = _DEFAULTS.actors,
    gpus_per_actor: Annotated[float | None, _option("gpus_per_actor", min=0.0)] = _DEFAULTS.gpus_per_actor,
    review: Annotated[bool, typer.Option(help="Also write the HTML review page (review/index.html).")] = False,
    florence: Florence = None,
    sam: Sam = None,
    preset: Preset = "default",
    device: Device = "auto",
    dtype: Dtype = "auto",
    min_confidence: MinConfidence = 0.0,
    nms: Nms = 0.7,
    compile: Compile = False,
    detector: DetectorName = "florence2",
    detector_model: DetectorModel = None,
    box_threshold: BoxThreshold = None,
    text_threshold: TextThreshold = None,
    backend: Backend = "grounded-sam2",
    max_hole_area: MaxHoleArea = 0,
    max_sprinkle_area: MaxSprinkleArea = 0,
    keep_largest_part: KeepLargestPart = False,
) -> None:
    """Auto-label a folder into a YOLO-seg + COCO dataset (train/valid, data.yaml); rerun the same command to resume.

    Example: grounded-sam label photos/ --ontology ontologies/pets.yaml -o pets_dataset --review
    """
    # Everything that can be checked is checked before the models load, which takes a while: the options, the images
    # found, the output folder (checked and locked) and the settings of a dataset already there.
    if not folder.is_dir():
        raise UserError(f"Not a folder: {folder} (give the folder of images to label)")
    options = LabelOptions(
        extension=extension or None,
        recursive=recursive,
        split=_fractions(split),
        seed=seed,
        formats=formats,
        yolo_boxes_only=yolo_boxes_only,
        coco_segmentation=coco_segmentation,
        polygon_approximation=polygon_approximation,
        keep_empty=keep_empty,
        record_confidence=record_confidence,
        overwrite=overwrite,
        discard_corrections=discard_corrections,
        link=link,
        max_pixels=max_pixels or None,
        batch_size=batch_size,
        workers=workers,
        ray=ray,
        ray_address=ray_address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        verbose=False,
    )
    chosen = ontology_from(prompt, ontology)
    spec = pipeline_spec(
        chosen,
        florence,
        sam,
        preset,
        device,
        dtype,
        min_confidence,
        nms,
        compile,
        detector=detector,
        detector_model=detector_model,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        backend=backend,
        max_hole_area=max_hole_area,
        max_sprinkle_area=max_sprinkle_area,
        keep_largest_part=keep_largest_part,
    )
    spec.check_prompts()  # before the job writes the dataset's settings
    report = _label_on_ray(spec, folder, output, options) if ray else _label_here(spec, chosen, folder, output, options)
    _print_summary(report)
    if review:
        from grounded_sam.apps.cli.review import write_review_page

        write_review_page(Path(report.output_folder))
    if report.images_labeled == 0:
        raise typer.Exit(1)


def _label_here(spec, ontology, folder: Path, output: Path | None, options: LabelOptions):
    from grounded_sam.labeling.job import LabelingJob

    with LabelingJob(folder, output, ontology, spec.settings(), options) as job:
        with _interruptible(job.output_folder):
            return job.run(spec.build())


def _label_on_ray(spec, folder: Path, output: Path | None, options: LabelOptions):
    # The job is opened once Ray is connected, with the settings the workers' pipelines will have; the models load
    # only on the workers.
    from grounded_sam.integrations.ray import label_on_ray
    from grounded_sam.labeling.job import default_output_folder

    with _interruptible(output or default_output_folder(folder)):
        return label_on_ray(spec, folder, output, options)


@contextlib.contextmanager
def _interruptible(output: Path):
    try:
        yield
    except KeyboardInterrupt:
        console().print(
            f"Interrupted. Every image finished so far is kept in {output}; run the same command again to continue.",
            markup=False,
        )
        raise typer.Exit(130) from None


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--split takes comma-separated fractions like 0.8,0.2, got {text!r}") from None


def _print_summary(report) -> None:
    out = console()
    out.print(
        f"{report.images_labeled} images ({report.labeled_this_run} labeled now, {report.already_done} before)",
        markup=False,
    )
    out.print(class_table(report.detections_per_class))
    splits = ", ".join(f"{name} {count}" for name, count in report.images_per_split.items())
    out.print(f"dataset: {report.output_folder}", markup=False)
    out.print(f"splits: {splits}; without detections: {report.images_empty}; {report.speed()}", markup=False)
    for item in report.skipped:
        out.print(f"skipped {item['path']}: {item['reason']}", markup=False)
    if report.images_per_split.get("valid", 1) == 0:
        out.print("note: the valid split is empty; YOLO trainers need validation images", markup=False)
