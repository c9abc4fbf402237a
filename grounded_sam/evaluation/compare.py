"""Which way of labeling suits your images: each configuration (an ontology and pipeline options) labels the same
hand-labeled images into a dataset of its own, each dataset is evaluated against the ground truth, and AP is set
side by side per class, with the best configuration (and its prompts) for each class.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

from grounded_sam.errors import OutputFolderError, UserInputError
from grounded_sam.evaluation.evaluate import evaluate_dataset
from grounded_sam.evaluation.ground_truth import load_ground_truth
from grounded_sam.labeling.files import atomic_write_text, real_directory
from grounded_sam.labeling.job import LabelingJob
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import STATE_DIR, listed_files
from grounded_sam.ontology import CaptionOntology
from grounded_sam.pipeline.spec import PipelineSpec

COMPARE_MANIFEST = "compare.json"


@dataclass(frozen=True)
class Configuration:
    """One way of labeling: an ontology (a ``CaptionOntology`` or ``{prompt: class}``) and options of
    :class:`~grounded_sam.pipeline.PipelineSpec` (``{"min_confidence": 0.3}``, ``{"max_hole_area": 100}``...),
    named for tables and folders. Options given here override those shared by every configuration."""

    name: str
    ontology: CaptionOntology | Mapping[str, str]
    options: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.ontology, CaptionOntology):
            object.__setattr__(self, "ontology", CaptionOntology(self.ontology))
        if not str(self.name).strip():
            raise UserInputError("A configuration needs a name (it names its column and its folder)")

    def spec(self, shared: Mapping | None = None) -> PipelineSpec:
        """The pipeline this configuration labels with (checked, nothing loaded)."""
        options = {**(shared or {}), **self.options}
        known = {option.name for option in fields(PipelineSpec)} - {"ontology"}
        for name in options:
            if name not in known:
                raise UserInputError(
                    f"Unknown pipeline option {name!r} in configuration {self.name!r} "
                    f"(options: {', '.join(sorted(known))})"
                )
        return PipelineSpec(self.ontology.to_dict(), **options)


def compare(
    images: str | os.PathLike,
    ground_truth,
    configurations: Sequence[Configuration],
    output_folder: str | os.PathLike | None = None,
    options: Mapping | None = None,
    batch_size: int = 8,
    progress: bool = True,
    iou_type: str = "segm",
) -> dict:
    """Labels ``images`` with each configuration and compares their AP per class against ``ground_truth``.

    Args:
        images: the folder of hand-labeled images (top level).
        ground_truth: their labels: a COCO instances file, a YOLO dataset folder, a COCO dict or a ``GroundTruth``.
        configurations: what to compare; names must be unique.
        output_folder: where each configuration's dataset goes (``output_folder/NAME``); default
            ``<images>_compare`` beside the images. A rerun resumes each dataset, or relabels it when its
            configuration changed; a folder ``NAME`` that compare did not write (listed in
            ``output_folder/.grounded-sam/compare.json``) is refused, never relabeled.
        options: PipelineSpec options shared by every configuration (models, device...).
        iou_type: ``"segm"`` (mask AP; box AP when the ground truth has no masks) or ``"bbox"``.

    Everything is checked (options, ground truth, images, every output folder) before the first model loads.

    Returns:
        ``configurations`` (each with its ``dataset`` folder and full ``evaluation``), ``per_class`` {class:
        {configuration: AP, None when its ontology lacks the class}}, ``overall`` {configuration: AP},
        ``best`` {class: {configuration, AP, prompts, tied}} (ties go to the first configuration; ``tied`` names the
        others) and the ``iou_type`` used.
    """
    if iou_type not in ("segm", "bbox"):
        raise UserInputError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    folders = _folder_names(configurations)
    specs = [configuration.spec(options) for configuration in configurations]
    truth = load_ground_truth(ground_truth)
    root = Path(output_folder) if output_folder is not None else _default_output(Path(images))
    _claim_folders(root, folders)
    label_options = LabelOptions(
        split=(1.0, 0.0), formats=("coco",), overwrite=True, batch_size=batch_size, progress=progress, verbose=False
    )
    with ExitStack() as stack:
        jobs = [
            stack.enter_context(LabelingJob(images, root / folder, item.ontology, spec.settings(), label_options))
            for folder, item, spec in zip(folders, configurations, specs)
        ]
        for job, spec in zip(jobs, specs):
            job.run(spec.build())  # one configuration's models at a time
    rows = []
    for folder, configuration in zip(folders, configurations):
        evaluation = evaluate_dataset(root / folder, truth)
        rows.append(
            {
                "name": configuration.name,
                "ontology": configuration.ontology.to_dict(),
                "options": dict(configuration.options),
                "dataset": str((root / folder).absolute()),
                "evaluation": evaluation,
            }
        )
    kind = iou_type if all(row["evaluation"][iou_type] is not None for row in rows) else "bbox"
    return {
        "ground_truth": truth.source,
        "images": str(images),
        "iou_type": kind,
        **_tables(rows, kind, configurations),
    }


def _claim_folders(root: Path, folders: list[str]) -> None:
    """Lists the configurations' folders as compare's own before any is written: a rerun may relabel a folder an
    earlier compare wrote, never one with anything else in it (a dataset labeled by hand or by ``label``).

    Raises:
        OutputFolderError: a folder is a link, or holds files and no compare listed it.
    """
    manifest = root / STATE_DIR / COMPARE_MANIFEST
    ours = set(listed_files(manifest)) if root.is_dir() and not manifest.is_symlink() else set()
    for folder in (STATE_DIR, *folders):
        real_directory(root, folder, create=False)
    for folder in folders:
        path = root / folder
        if folder not in ours and path.is_dir() and any(path.iterdir()):
            raise OutputFolderError(
                f"{path} holds files compare did not write; choose another output folder or move them away "
                "(nothing was changed)"
            )
    root.mkdir(parents=True, exist_ok=True)
    real_directory(root, STATE_DIR)
    atomic_write_text(manifest, json.dumps({"files": sorted(ours | set(folders))}))


def _tables(rows: list[dict], kind: str, configurations: Sequence[Configuration]) -> dict:
    classes = rows[0]["evaluation"]["classes"]["objects"]
    per_class, best = {}, {}
    for name in classes:
        per_class[name] = {
            row["name"]: row["evaluation"][kind]["per_class"][name] if name in item.ontology.classes() else None
            for row, item in zip(rows, configurations)
        }
        scored = [(ap, index) for index, ap in enumerate(per_class[name].values()) if ap is not None]
        if scored:
            ap, index = max(scored, key=lambda pair: (pair[0], -pair[1]))  # ties: the first configuration
            ontology = configurations[index].ontology
            prompts = [prompt for prompt in ontology.prompts() if ontology.promptToClass(prompt) == name]
            tied = [configurations[other].name for value, other in scored if value == ap and other != index]
            best[name] = {"configuration": configurations[index].name, "AP": ap, "prompts": prompts, "tied": tied}
    overall = {row["name"]: row["evaluation"][kind]["AP"] for row in rows}
    return {"configurations": rows, "per_class": per_class, "overall": overall, "best": best}


def _folder_names(configurations: Sequence[Configuration]) -> list[str]:
    if not configurations:
        raise UserInputError("Give at least one configuration to compare")
    folders = [
        re.sub(r"[^\w.-]+", "_", configuration.name).strip("._") or "configuration" for configuration in configurations
    ]
    if len(set(folders)) != len(folders):
        names = [configuration.name for configuration in configurations]
        raise UserInputError(f"Configuration names must differ (also as folder names), got {names}")
    return folders


def dataset_folders(
    images: str | os.PathLike, configurations: Sequence[Configuration], output_folder: str | os.PathLike | None = None
) -> list[Path]:
    """The folder each configuration's dataset goes to (what :func:`compare` writes), without writing anything."""
    root = Path(output_folder) if output_folder is not None else _default_output(Path(images))
    return [root / folder for folder in _folder_names(configurations)]


def _default_output(images: Path) -> Path:
    resolved = images.resolve()
    return resolved.with_name(f"{resolved.name}_compare")
