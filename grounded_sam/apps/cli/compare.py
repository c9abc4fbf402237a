"""``grounded-sam compare``: label hand-labeled images with several configurations and set their AP side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import (
    Device,
    Dtype,
    Florence,
    KeepLargestPart,
    MaxHoleArea,
    MaxSprinkleArea,
    MinConfidence,
    Nms,
    Preset,
    Sam,
    UserError,
    console,
    user_errors,
)
from grounded_sam.apps.cli.eval import GroundTruthPath, JsonFile, PlotFile, check_outputs, number, write_outputs


@user_errors
def compare(
    images: Annotated[Path, typer.Argument(help="The folder of hand-labeled images.")],
    ground_truth: GroundTruthPath,
    ontology: Annotated[
        list[Path], typer.Option("--ontology", help="An ontology file to compare; repeat for each one.")
    ],
    detector: Annotated[
        list[str] | None,
        typer.Option("--detector", help="A detector to compare; repeatable (each with every ontology)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where each configuration's dataset goes (default: IMAGES_compare)."),
    ] = None,
    json_file: JsonFile = None,
    plot: PlotFile = None,
    iou_type: Annotated[str, typer.Option(help="segm (mask AP) or bbox (box AP).")] = "segm",
    florence: Florence = None,
    sam: Sam = None,
    preset: Preset = "default",
    device: Device = "auto",
    dtype: Dtype = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model batch.")] = 8,
    min_confidence: MinConfidence = 0.0,
    nms: Nms = 0.7,
    max_hole_area: MaxHoleArea = 0,
    max_sprinkle_area: MaxSprinkleArea = 0,
    keep_largest_part: KeepLargestPart = False,
) -> None:
    """Label the hand-labeled images with each ontology (and detector) and compare their AP per class.

    Each configuration's dataset goes to its own folder under --output; rerunning resumes them. Ends with one table
    of AP per class per configuration and the best configuration, with its prompts, for each class.

    Example: grounded-sam compare gold/images --ground-truth gold/instances.json --ontology a.yaml --ontology b.yaml
    """
    from grounded_sam.evaluation import compare as run_compare
    from grounded_sam.evaluation.compare import dataset_folders

    check_outputs(json_file, plot)
    shared = {
        "florence": florence,
        "sam": sam,
        "preset": preset,
        "device": device,
        "dtype": dtype,
        "min_confidence": min_confidence,
        "nms_threshold": nms or None,
        "max_hole_area": max_hole_area,
        "max_sprinkle_area": max_sprinkle_area,
        "keep_largest_part": keep_largest_part,
    }
    configurations = _configurations(ontology, detector or [])
    _check_outside_datasets([json_file, plot], dataset_folders(images, configurations, output))
    report = run_compare(images, ground_truth, configurations, output, shared, batch_size=batch_size, iou_type=iou_type)
    _print_comparison(report)
    write_outputs(report, json_file, plot, "comparison")


def _check_outside_datasets(reports: list[Path | None], folders: list[Path]) -> None:
    """Refuses a --json or --plot path inside a configuration's dataset folder, which labeling is about to fill."""
    for report in filter(None, reports):
        where = Path(os.path.realpath(report))
        for folder in folders:
            if Path(os.path.realpath(folder)) in where.parents:
                raise UserError(f"{report} lies in {folder}, which compare labels into; write the report elsewhere")


def _configurations(ontology_files: list[Path], detectors: list[str]):
    """One configuration per ontology file and detector, named after the file's stem (and the detector)."""
    from grounded_sam.evaluation import Configuration
    from grounded_sam.ontology import CaptionOntology

    configurations, names = [], set()
    for path in ontology_files:
        ontology = CaptionOntology.from_file(path)
        for detector in detectors or [None]:
            name = path.stem if detector is None else f"{path.stem}+{detector}"
            if len(ontology_files) == 1 and detector is not None:
                name = detector
            while name in names:
                name += "'"
            names.add(name)
            options = {} if detector is None else {"detector": detector}
            configurations.append(Configuration(name, ontology, options))
    return configurations


def _print_comparison(report: dict) -> None:
    from rich.table import Table

    out = console()
    kind = "mask" if report["iou_type"] == "segm" else "box"
    names = [row["name"] for row in report["configurations"]]
    table = Table(title=f"{kind} AP@[.5:.95] per class ('–': the ontology has no such class)")
    table.add_column("class")
    for name in names:
        table.add_column(name, justify="right")
    for label, values in report["per_class"].items():
        table.add_row(label, *(number(values[name]) for name in names))
    table.add_row("all", *(number(report["overall"][name]) for name in names))
    out.print(table)
    for label, best in report["best"].items():
        prompts = ", ".join(repr(prompt) for prompt in best["prompts"])
        tied = f"; tied with {', '.join(best['tied'])}" if best["tied"] else ""
        line = f"best for {label}: {best['configuration']} (AP {number(best['AP'])}; prompts {prompts}{tied})"
        out.print(line, markup=False)
    for row in report["configurations"]:
        out.print(f"{row['name']}: dataset {row['dataset']}", markup=False)
