"""Auto-labeling a folder: find images, run the model batch by batch, write each image as soon as it is done.

A rerun of the same call resumes: images with a record in the output folder are skipped. An image that cannot be
read, or that the model fails on alone, is skipped and reported; the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .dataset_writer import DatasetOptions, DatasetWriter
from .engine import Engine
from .errors import UserInputError
from .folders import (
    assign_split,
    check_folder_path,
    check_not_nested,
    check_split_ratios,
    find_images,
    normalize_extensions,
    output_names,
    without_undecodable_names,
)
from .images import DEFAULT_MAX_PIXELS

@dataclass
class LabelReport:
    """What a labeling run did. Counts of labeled, empty and per-class detections cover the whole output dataset
    (earlier runs included); ``labeled_this_run`` and the timings cover this run only."""

    input_folder: str
    output_folder: str
    images_found: int = 0
    already_done: int = 0
    labeled_this_run: int = 0
    images_labeled: int = 0
    images_empty: int = 0
    skipped: list[dict] = field(default_factory=list)
    detections_per_class: dict[str, int] = field(default_factory=dict)
    images_per_split: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    images_per_second: float = 0.0

    @property
    def images_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict:
        return {**asdict(self), "images_skipped": self.images_skipped}

    def summary(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        detections = ", ".join(f"{name} {count}" for name, count in self.detections_per_class.items())
        lines = [
            f"Labeled {self.labeled_this_run} images into {self.output_folder} ({self.already_done} done before; "
            f"dataset: {self.images_labeled} images, {splits}; {self.images_empty} without detections)",
            f"Detections: {detections}",
            f"Skipped {self.images_skipped} of {self.images_found} found"
            + "".join(f"\n  {item['path']}: {item['reason']}" for item in self.skipped),
            f"{self.elapsed_seconds:.1f} s, {self.images_per_second:.2f} images/s. "
            f"Report: {Path(self.output_folder) / 'report.json'}",
        ]
        if self.images_per_split.get("valid", 1) == 0:
            lines.append("Note: the valid split is empty; YOLO trainers need validation images (add images or "
                         "change split/seed)")
        return "\n".join(lines)


def label_folder(
    model,
    input_folder: str | os.PathLike,
    extension: str | Iterable[str] | None = None,
    output_folder: str | os.PathLike | None = None,
    *,
    recursive: bool = False,
    split: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    formats: Sequence[str] | str = ("yolo", "coco"),
    yolo_boxes_only: bool = False,
    coco_segmentation: str = "rle",
    polygon_approximation: float = 0.0,
    keep_empty: bool = True,
    record_confidence: bool = False,
    overwrite: bool = False,
    link: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    batch_size: int = 8,
    workers: int = 4,
    progress: bool = True,
    verbose: bool = True,
) -> LabelReport:
    """Labels every image of ``input_folder`` with ``model`` into a YOLO-seg + COCO dataset in ``output_folder``.

    ``model`` needs ``ontology`` (a CaptionOntology), ``settings()`` (what its outputs depend on) and
    ``predict_arrays(list of (H, W, 3) uint8 RGB arrays) -> list[sv.Detections]``, as ``GroundedSAM2`` has.
    The options are described in README "Auto-label a folder"; ``output_folder`` defaults to
    ``<input_folder>_labeled`` as in autodistill. Images are decoded on ``workers`` threads ahead of the model, their
    masks converted on ``workers`` threads behind it and the files written in order on one background thread
    (:class:`grounded_sam.engine.Engine`); ``workers=0`` runs the plain loop in this thread. The dataset written is
    the same either way.

    Raises:
        FileNotFoundError: the input folder is missing or holds no image with the wanted extensions.
        OutputFolderError: the output folder holds other files, a dataset labeled with other settings, or a link;
            or the input folder lies inside it.
        OutputWriteError: the output disk failed; what was written is kept and a rerun continues.
    """
    check_run_options(batch_size, workers)
    formats = formats.replace(" ", "").split(",") if isinstance(formats, str) else formats
    options = DatasetOptions(
        classes=tuple(model.ontology.classes()), split=check_split_ratios(split), seed=int(seed),
        formats=tuple(formats), yolo_boxes_only=yolo_boxes_only, coco_segmentation=coco_segmentation,
        polygon_approximation=polygon_approximation, keep_empty=keep_empty, record_confidence=record_confidence,
    )
    with LabelingJob(input_folder, output_folder, model.ontology, model.settings(), options, extension=extension,
                     recursive=recursive, overwrite=overwrite, link=link, max_pixels=max_pixels) as job:
        report = job.run(model, batch_size=batch_size, workers=workers, progress=progress)
    if verbose:
        print(report.summary())
    return report


def check_run_options(batch_size: int, workers: int) -> None:
    if batch_size < 1 or workers < 0:
        raise UserInputError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")


def default_output_folder(input_root: Path) -> Path:
    """``<input_folder>_labeled`` next to the input folder, as autodistill names it."""
    resolved = input_root.resolve()  # "photos/" and "." name a folder too: take its real name
    return resolved.with_name(f"{resolved.name}_labeled")


class LabelingJob:
    """A labeling run checked and ready to go: images found, output folder checked and locked, settings compared
    with the dataset already there. No model is needed for this, so the command line does it before loading models;
    :meth:`run` then labels what is left. Use it as a context manager (the lock is held until it closes).

    Args:
        input_folder, output_folder: as for :func:`label_folder` (``output_folder`` None: ``<input>_labeled``).
        ontology: the ``CaptionOntology`` the model labels with.
        model_settings: what the model's outputs depend on (``GroundedSAM2.settings()``, or the same computed from
            its spec before it is built).
        options: how the dataset is written.
        extension, recursive, overwrite, link, max_pixels: as for :func:`label_folder`.
    """

    def __init__(self, input_folder, output_folder, ontology, model_settings: dict, options: DatasetOptions, *,
                 extension=None, recursive: bool = False, overwrite: bool = False, link: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.started = time.perf_counter()
        if max_pixels is not None and max_pixels < 1:
            raise UserInputError(f"max_pixels must be >= 1 or None, got {max_pixels}")
        self.input_root = Path(input_folder)
        output_root = Path(output_folder) if output_folder is not None else default_output_folder(self.input_root)
        check_folder_path(self.input_root, "input folder", "input_folder")
        check_folder_path(output_root, "output folder", "output_folder")
        check_not_nested(self.input_root, output_root, "input_folder, output_folder")
        self.options, self.max_pixels, self.skipped = options, max_pixels, []
        found = find_images(self.input_root, extension, recursive, exclude=[output_root], errors=self.skipped)
        if not found:
            raise FileNotFoundError(
                f"No images found in {self.input_root} (extensions {', '.join(normalize_extensions(extension))}"
                f"{'' if recursive else ', top level only: recursive=True walks sub-folders'})"
            )
        self.found = len(found)
        self.sources = without_undecodable_names(found, self.skipped)
        settings = {"input_folder": str(self.input_root.resolve()), "extension": list(normalize_extensions(extension)),
                    "recursive": recursive, "ontology": ontology.to_dict(), "model": model_settings,
                    "dataset": asdict(options)}
        self.writer = DatasetWriter(output_root, options, settings, overwrite=overwrite, link=link)

    def __enter__(self) -> LabelingJob:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.writer.close()

    @property
    def todo(self) -> list[PurePosixPath]:
        """The images still to label, in path order."""
        return [source for source in self.sources if source not in self.writer.done]

    def run(self, model, batch_size: int = 8, workers: int = 4, progress: bool = True) -> LabelReport:
        """Labels the images still to do with ``model``, assembles the dataset's COCO files and data.yaml, writes
        report.json and returns the report."""
        check_run_options(batch_size, workers)
        if tuple(model.ontology.classes()) != self.options.classes:
            raise UserInputError(f"The model labels {model.ontology.classes()}, the dataset {list(self.options.classes)}")
        writer, names, todo = self.writer, output_names(self.sources, self.writer.done), self.todo
        report = LabelReport(str(self.input_root), str(writer.root), already_done=len(self.sources) - len(todo),
                             skipped=self.skipped, images_found=self.found)
        options = self.options

        def convert(source, image, detections):  # on the engine's conversion threads, in any order
            return writer.convert(detections, image.shape)

        def write(source, image, labels):  # on the engine's background thread, one image at a time, in order
            split_name = assign_split(source, options.split, options.seed)
            writer.write(source, self.input_root / source, names[source], split_name, image.shape, labels)
            report.labeled_this_run += 1

        with tqdm(total=len(self.sources), initial=report.already_done, unit="img",
                  disable=None if progress else True, desc="Labeling") as bar:
            Engine(model, batch_size, workers, max_pixels=self.max_pixels).run(
                self.input_root, todo, write, report.skipped, on_batch=bar.update, prepare=convert)
        _fill_totals(report, writer.finish(), options, time.perf_counter() - self.started)
        writer.write_report(report.to_dict())
        return report


def _fill_totals(report: LabelReport, counts: dict, options: DatasetOptions, elapsed: float) -> None:
    report.images_labeled, report.images_empty = counts["labeled"], counts["empty"]
    report.detections_per_class = {name: counts["per_class"].get(name, 0) for name in options.classes}
    report.images_per_split = {name: counts["per_split"].get(name, 0) for name in options.splits}
    report.elapsed_seconds = round(elapsed, 3)
    report.images_per_second = round(report.labeled_this_run / elapsed, 3) if elapsed > 0 else 0.0
