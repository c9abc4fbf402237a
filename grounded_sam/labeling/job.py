"""Auto-labeling a folder: find images, run the model batch by batch, write each image as soon as it is done.

A rerun of the same call resumes: images with a record in the output folder are skipped. An image that cannot be
read, or that the model fails on alone, is skipped and reported; the run goes on. With ``ray=True`` the same job is
spread over Ray workers (``grounded_sam.integrations.ray``) and writes the same dataset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from grounded_sam.errors import UserInputError
from grounded_sam.labeling.folders import (
    assign_split,
    check_folder_path,
    check_not_nested,
    find_images,
    normalize_extensions,
    output_names,
    without_undecodable_names,
)
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.writer import DatasetWriter
from grounded_sam.pipeline.engine import Engine
from grounded_sam.progress import progress_bar


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

    def speed(self) -> str:
        """``"12.3 s, 0.49 images/s"``, or that nothing was left to label."""
        if self.labeled_this_run == 0:
            return f"nothing left to label ({self.elapsed_seconds:.1f} s)"
        return f"{self.elapsed_seconds:.1f} s, {self.images_per_second:.2f} images/s"

    def summary(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        detections = ", ".join(f"{name} {count}" for name, count in self.detections_per_class.items())
        lines = [
            f"Labeled {self.labeled_this_run} images into {self.output_folder} ({self.already_done} done before; "
            f"dataset: {self.images_labeled} images, {splits}; {self.images_empty} without detections)",
            f"Detections: {detections}",
            f"Skipped {self.images_skipped} of {self.images_found} found"
            + "".join(f"\n  {item['path']}: {item['reason']}" for item in self.skipped),
            f"{self.speed()}. Report: {Path(self.output_folder) / 'report.json'}",
        ]
        if self.images_per_split.get("valid", 1) == 0:
            lines.append(
                "Note: the valid split is empty; YOLO trainers need validation images (add images or change split/seed)"
            )
        return "\n".join(lines)


def label_folder(
    model,
    input_folder: str | os.PathLike,
    extension: str | Iterable[str] | None = None,
    output_folder: str | os.PathLike | None = None,
    options: LabelOptions | None = None,
    **keywords,
) -> LabelReport:
    """Labels every image of ``input_folder`` with ``model`` into a YOLO-seg + COCO dataset in ``output_folder``.

    ``model`` needs ``ontology`` (a CaptionOntology), ``settings()`` (what its outputs depend on) and
    ``predict_arrays(list of (H, W, 3) uint8 RGB arrays) -> list[sv.Detections]``, as ``GroundedSAM2`` has; or it
    is a :class:`~grounded_sam.pipeline.spec.PipelineSpec` (built here, or on each Ray worker with ``ray=True``,
    so that this process loads no model). With ``ray=True`` a ``GroundedSAM2`` sends its ``spec`` to the workers.
    ``output_folder`` defaults to ``<input_folder>_labeled`` as in autodistill. The options are a
    :class:`LabelOptions`, or its fields as keywords (README "Auto-label a folder"). Images are decoded on
    ``workers`` threads ahead of the model, their masks converted on ``workers`` threads behind it and the files
    written in order on one background thread (:class:`grounded_sam.pipeline.engine.Engine`); ``workers=0`` runs
    the plain loop in this thread. The dataset written is the same either way.

    Raises:
        FileNotFoundError: the input folder is missing or holds no image with the wanted extensions.
        OutputFolderError: the output folder holds other files, a dataset labeled with other settings, or a link;
            or the input folder lies inside it.
        OutputWriteError: the output disk failed; what was written is kept and a rerun continues.
    """
    if extension is not None:
        keywords["extension"] = extension
    if options is None:
        options = LabelOptions.from_keywords(keywords)
    elif keywords:
        raise UserInputError(
            f"Give the options as options=LabelOptions(...) or as keywords, not both: {sorted(keywords)}"
        )
    if options.ray:
        from grounded_sam.integrations.ray import label_on_ray

        report = label_on_ray(pipeline_spec_of(model), input_folder, output_folder, options)
    else:
        if callable(getattr(model, "build", None)):  # a spec
            model = model.build()
        with LabelingJob(input_folder, output_folder, model.ontology, model.settings(), options) as job:
            report = job.run(model)
    if options.verbose:
        print(report.summary())
    return report


def pipeline_spec_of(model):
    """What rebuilds ``model`` in another process: a spec as it is (anything with ``ontology``, ``settings()`` and
    ``build()``, like :class:`~grounded_sam.pipeline.spec.PipelineSpec`), or a ``GroundedSAM2``'s ``spec``.

    Raises:
        UserInputError: the model cannot be rebuilt from a spec (a ``GroundedSAM2`` made of built parts).
    """
    if callable(getattr(model, "build", None)):
        return model
    spec = getattr(model, "spec", None)
    if spec is None:
        raise UserInputError(
            f"ray=True builds the pipeline again on every Ray worker from its spec, and this {type(model).__name__} "
            "has none (it was made of built parts, detector=... or segmenter=...): build it from florence=... and "
            "sam=... (or pass a grounded_sam.PipelineSpec to label_folder)"
        )
    return spec


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
            its spec before it is built: ``PipelineSpec.settings()``).
        options: how the folder is labeled.
    """

    def __init__(self, input_folder, output_folder, ontology, model_settings: dict, options: LabelOptions):
        self.started = time.perf_counter()
        self.input_root = Path(input_folder)
        output_root = Path(output_folder) if output_folder is not None else default_output_folder(self.input_root)
        check_folder_path(self.input_root, "input folder", "input_folder")
        check_folder_path(output_root, "output folder", "output_folder")
        check_not_nested(self.input_root, output_root, "input_folder, output_folder")
        self.options, self.ontology, self.model_settings, self.skipped = options, ontology, model_settings, []
        found = find_images(
            self.input_root, options.extension, options.recursive, exclude=[output_root], errors=self.skipped
        )
        if not found:
            raise FileNotFoundError(
                f"No images found in {self.input_root} (extensions {', '.join(normalize_extensions(options.extension))}"
                f"{'' if options.recursive else ', top level only: recursive=True walks sub-folders'})"
            )
        self.found = len(found)
        self.sources = without_undecodable_names(found, self.skipped)
        self.writer = DatasetWriter(output_root, options, ontology.classes(), self.settings())

    def settings(self) -> dict:
        """Everything the dataset depends on, as stored in it and compared when a run resumes."""
        return {
            "input_folder": str(self.input_root.resolve()),
            "extension": list(normalize_extensions(self.options.extension)),
            "recursive": self.options.recursive,
            "ontology": self.ontology.to_dict(),
            "model": self.model_settings,
            "dataset": self.options.dataset_settings(self.ontology.classes()),
        }

    def __enter__(self) -> LabelingJob:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.writer.close()

    @property
    def output_folder(self) -> Path:
        return self.writer.root

    @property
    def todo(self) -> list[PurePosixPath]:
        """The images still to label, in path order."""
        return [source for source in self.sources if source not in self.writer.done]

    def names(self) -> dict[PurePosixPath, str]:
        """Each image's file name in the dataset (earlier runs' names kept)."""
        return output_names(self.sources, self.writer.done)

    def new_report(self) -> LabelReport:
        return LabelReport(
            str(self.input_root),
            str(self.writer.root),
            images_found=self.found,
            already_done=len(self.sources) - len(self.todo),
            skipped=list(self.skipped),
        )

    def run(self, model) -> LabelReport:
        """Labels the images still to do with ``model``, assembles the dataset's COCO files and data.yaml, writes
        report.json and returns the report."""
        if model.settings() != self.model_settings:
            raise UserInputError(
                "The model's settings differ from the ones this run was checked against: build the "
                "model from the same options"
            )
        if self.options.ray:
            raise UserInputError("This job was opened for a run on Ray: label it with label_folder(..., ray=True)")
        writer, names, options, report = self.writer, self.names(), self.options, self.new_report()
        skipped: list[dict] = []

        def convert(source, image, detections):  # on the engine's conversion threads, in any order
            return writer.convert(detections, image.shape)

        def write(source, image, labels):  # on the engine's background thread, one image at a time, in order
            split_name = assign_split(source, options.split, options.seed)
            writer.write(source, self.input_root / source, names[source], split_name, image.shape, labels)
            report.labeled_this_run += 1

        with progress_bar(len(self.sources), "Labeling", initial=report.already_done, enabled=options.progress) as bar:
            Engine(model, options.batch_size, options.workers, max_pixels=options.max_pixels).run(
                self.input_root, self.todo, write, skipped, on_batch=bar.update, prepare=convert
            )
        return self.finish(report, skipped)

    def finish(self, report: LabelReport, skipped: list[dict] = ()) -> LabelReport:
        """Assembles the dataset's COCO files and data.yaml from its records, fills the report's totals and writes
        report.json. ``skipped``: the images skipped while labeling, in any order; the report lists them after
        those the scan skipped, in path order (the same list whatever order workers finished in)."""
        report.skipped += sorted(skipped, key=lambda item: PurePosixPath(item["path"]))
        counts = self.writer.finish()
        report.images_labeled, report.images_empty = counts["labeled"], counts["empty"]
        report.detections_per_class = {name: counts["per_class"].get(name, 0) for name in self.ontology.classes()}
        report.images_per_split = {name: counts["per_split"].get(name, 0) for name in self.options.splits}
        elapsed = time.perf_counter() - self.started
        report.elapsed_seconds = round(elapsed, 3)
        report.images_per_second = round(report.labeled_this_run / elapsed, 3) if elapsed > 0 else 0.0
        self.writer.write_report(report.to_dict())
        return report
