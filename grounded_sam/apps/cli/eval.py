"""``grounded-sam eval``: a labeled dataset's box and mask AP against hand-labeled ground truth (pycocotools)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import KeepLargestPart, MaxHoleArea, MaxSprinkleArea, console, user_errors

GroundTruthPath = Annotated[
    Path,
    typer.Option(
        "--ground-truth", help="The hand-labeled truth: a COCO instances .json file or a YOLO dataset folder."
    ),
]
JsonFile = Annotated[Path | None, typer.Option("--json", help="Also write the report to this JSON file.")]
PlotFile = Annotated[Path | None, typer.Option("--plot", help="Also draw the report into this PNG file.")]
_COLUMNS = {"bbox": "box", "segm": "mask", "segm_cleaned": "cleaned mask"}
_SWEPT = ("AP", "precision", "recall")


@user_errors
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="A dataset written by `grounded-sam label`.")],
    ground_truth: GroundTruthPath,
    json_file: JsonFile = None,
    plot: PlotFile = None,
    sweep: Annotated[
        bool, typer.Option(help="Also AP, precision and recall against min_confidence (every 0.05).")
    ] = False,
    max_hole_area: MaxHoleArea = 0,
    max_sprinkle_area: MaxSprinkleArea = 0,
    keep_largest_part: KeepLargestPart = False,
) -> None:
    """Box and mask AP of a labeled dataset against hand-labeled ground truth, per class, with precision and recall.

    Images are matched by file name, classes by name. With clean-up options the masks are also scored as that
    clean-up would have written them, without labeling again.

    Example: grounded-sam eval pets/ --ground-truth gold/instances.json --json eval.json --plot eval.png --sweep
    """
    from grounded_sam.evaluation import evaluate_dataset
    from grounded_sam.segmentation.cleanup import MaskCleanup

    check_outputs(json_file, plot)
    cleanup = MaskCleanup(max_hole_area, max_sprinkle_area, keep_largest_part)
    report = evaluate_dataset(dataset, ground_truth, sweep=sweep, cleanup=cleanup)
    write_outputs(report, json_file, plot, "evaluation")
    print_report(report)


def check_outputs(json_file: Path | None, plot: Path | None) -> None:
    """Refuses, before any work, report paths that are folders, have no folder, or name a file grounded-sam did not
    write (the ground truth, an image, a dataset's state...)."""
    from grounded_sam.evaluation.report_files import check_report_file

    check_report_file(json_file, "--json")
    check_report_file(plot, "--plot")


def write_outputs(report: dict, json_file: Path | None, plot: Path | None, kind: str) -> None:
    """The report as JSON and as a picture, where asked."""
    from grounded_sam.evaluation.report_files import write_report_json

    if json_file is not None:
        write_report_json(json_file, report)
    if plot is not None:
        from grounded_sam.evaluation.plots import plot_comparison, plot_evaluation

        (plot_evaluation if kind == "evaluation" else plot_comparison)(report, plot)


def number(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def print_report(report: dict) -> None:
    from rich.table import Table

    out = console()
    kinds = [kind for kind in _COLUMNS if report.get(kind)]
    images = report["images"]
    out.print(
        f"{images['evaluated']} images evaluated against {report['ground_truth']} "
        f"(AP@[.5:.95] as COCO defines it; AP50 at IoU 0.5)",
        markup=False,
    )
    table = Table()
    for column in ["class", "objects"] + [f"{_COLUMNS[kind]} {what}" for kind in kinds for what in ("AP", "AP50")]:
        table.add_column(column, justify="left" if column == "class" else "right")
    objects = report["classes"]["objects"]
    for name, count in [*objects.items(), ("all", sum(objects.values()))]:
        cells = []
        for kind in kinds:
            if name == "all":
                cells += [number(report[kind]["AP"]), number(report[kind]["AP50"])]
            else:
                cells += [number(report[kind]["per_class"][name]), number(report[kind]["per_class_AP50"][name])]
        table.add_row(name, str(count), *cells)
    out.print(table)
    for kind in kinds:
        result = report[kind]
        out.print(
            f"{_COLUMNS[kind]}: precision {number(result['precision'])}, recall {number(result['recall'])} at IoU 0.5 "
            f"(every detection; the dataset's min_confidence {report['min_confidence']:g})",
            markup=False,
        )
    if any("sweep" in report[kind] for kind in kinds):
        out.print(_sweep_table(report, kinds))
    for note in report["notes"]:
        out.print(f"note: {note}", markup=False)


def _sweep_table(report: dict, kinds: list[str]):
    from rich.table import Table

    table = Table(title="against min_confidence (precision and recall at IoU 0.5)")
    table.add_column("min_confidence", justify="right")
    for kind in kinds:
        for what in _SWEPT:
            table.add_column(f"{_COLUMNS[kind]} {what}", justify="right")
    for index, row in enumerate(report[kinds[0]]["sweep"]):
        cells = []
        for kind in kinds:
            values = report[kind]["sweep"][index]
            cells += [number(values[what]) for what in _SWEPT]
        table.add_row(f"{row['min_confidence']:.2f}", *cells)
    return table
