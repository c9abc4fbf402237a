"""``grounded-sam predict``: segment images by text into pictures and JSON."""

from __future__ import annotations

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
    class_table,
    console,
    ontology_from,
    pipeline_spec,
    user_errors,
)
from grounded_sam.images import DEFAULT_MAX_PIXELS

MaxPixels = Annotated[
    int,
    typer.Option(
        min=0, help="Skip images with more pixels than this (read from the header, before decoding); 0: no limit."
    ),
]


@user_errors
def predict(
    source: Annotated[Path, typer.Argument(help="An image file or a folder of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for annotated images and JSON results.")],
    prompt: Prompts = None,
    ontology: OntologyFile = None,
    recursive: Annotated[bool, typer.Option(help="Also images in sub-folders.")] = False,
    florence: Florence = None,
    sam: Sam = None,
    preset: Preset = "default",
    device: Device = "auto",
    dtype: Dtype = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model batch.")] = 8,
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
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    cutout: Annotated[
        bool, typer.Option(help="Also cutouts/NAME_I.png: each object on a transparent background.")
    ] = False,
) -> None:
    """Segment images by text: writes NAME.jpg (masks, boxes, "class 0.87") and NAME.json per image.

    Example: grounded-sam predict photos/ -p "a dog" -p "a person" -o results/
    """
    from grounded_sam.apps.predict_files import plan_predict_files, predict_files

    # Everything that can be checked is checked before the models load, which takes a while.
    spec = pipeline_spec(
        ontology_from(prompt, ontology),
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
    plan_predict_files(source, output, recursive, cutout)
    spec.check_prompts()
    spec.settings()  # the device and precision
    summary = predict_files(
        spec.build(),
        source,
        output,
        recursive=recursive,
        batch_size=batch_size,
        max_pixels=max_pixels or None,
        cutouts=cutout,
    )
    out = console()
    out.print(
        class_table(
            summary["per_class"], f"{summary['written']} of {summary['found']} images written to {summary['output']}"
        )
    )
    for item in summary["skipped"]:
        out.print(f"skipped {item['path']}: {item['reason']}", markup=False)
    if summary["written"] == 0:
        raise typer.Exit(1)
