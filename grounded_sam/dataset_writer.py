"""Writing a labeled dataset one image at a time, so that a run can stop anywhere and resume.

Layout of an output folder::

    data.yaml                        YOLO: path, train, val (test), nc, names
    {train,valid,test}/images/       copies (or hard links) of the source files, never re-encoded
    {train,valid,test}/labels/       YOLO label files, one line per polygon (or box)
    {train,valid,test}/confidences/  optional: one confidence per label line, same order (YOLO readers ignore it)
    annotations/instances_{split}.json   COCO instance segmentation
    report.json                      what the last run did
    .grounded-sam/settings.json      what the dataset was labeled with; a rerun must match it
    .grounded-sam/records/NAME.json  one per finished image: a header line, then its detections (RLE masks)

An image's record is written last, so an image counts as done only when all its files are whole. The files that
span all images (COCO, data.yaml) are assembled from the records at the end, streaming, so memory does not grow
with the number of images. Image and annotation ids are given when an image is written and kept in its record, so
adding images later never renumbers earlier ones.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
import yaml

from .dataset_files import (
    CocoAssembler,
    FolderLock,
    atomic_write_text,
    place_image,
    read_record,
    remove,
    remove_partial_files,
    whole_record_header,
)
from .folders import SPLIT_NAMES
from .formats import data_yaml, detections_to_record, yolo_lines

STATE_DIR = ".grounded-sam"
REVIEW_DIR = "review"  # the HTML review page (review.py): it shows this dataset, so it goes with it
# Removed in this order by overwrite: records first, so an interrupted removal leaves nothing that looks done; the
# lock file stays (the run holds it).
OUTPUTS = (f"{STATE_DIR}/records", *SPLIT_NAMES, "annotations", "data.yaml", "report.json", REVIEW_DIR,
           f"{STATE_DIR}/settings.json")
FORMATS = ("yolo", "coco")
COCO_SEGMENTATIONS = ("rle", "polygon")


class OutputFolderError(ValueError):
    """The output folder holds something a run must not write over; the message says what and what to do."""


def check_output_folder(root: Path) -> None:
    """Raises OutputFolderError when ``root`` is a file, or a non-empty folder that grounded-sam did not write."""
    if root.is_file():
        raise OutputFolderError(f"Output folder {root} is a file; pass a folder path")
    settings = root / STATE_DIR / "settings.json"
    if not settings.is_file() and root.is_dir() and any(entry.name != STATE_DIR for entry in root.iterdir()):
        raise OutputFolderError(
            f"Output folder {root} is not empty and was not written by grounded-sam; "
            "choose a new or empty folder (nothing in it was changed)"
        )


class OutputWriteError(OSError):
    """Writing to the output folder failed (no space, no permission...). What was written before is kept."""


@dataclass(frozen=True)
class DatasetOptions:
    """How a labeled dataset is written. See README "Auto-label a folder" for each option."""

    classes: tuple[str, ...]
    split: tuple[float, ...] = (0.8, 0.2)
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    yolo_boxes_only: bool = False
    coco_segmentation: str = "rle"
    polygon_approximation: float = 0.0
    keep_empty: bool = True
    record_confidence: bool = False

    def __post_init__(self):
        unknown = set(self.formats) - set(FORMATS)
        if not self.formats or unknown:
            raise ValueError(f"formats must be one or both of {', '.join(FORMATS)}, got {', '.join(self.formats)}")
        if self.coco_segmentation not in COCO_SEGMENTATIONS:
            raise ValueError(f"coco_segmentation must be one of {COCO_SEGMENTATIONS}, got {self.coco_segmentation!r}")
        if not 0.0 <= self.polygon_approximation < 1.0:
            raise ValueError(f"polygon_approximation must be in [0, 1), got {self.polygon_approximation}")

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLIT_NAMES[: len(self.split)]


@dataclass(frozen=True)
class ConvertedLabels:
    """One image's labels as :meth:`DatasetWriter.convert` makes them, ready to write."""

    count: int  # detections
    yolo: str | None  # the YOLO label file's text; None when YOLO is not written
    confidences: str | None  # the confidences file's text (record_confidence), else None
    entries_json: str  # the record's entries (formats.detections_to_record) as JSON


class DatasetWriter:
    """Writes images, labels and records into ``output``; checks that a rerun uses the same settings.

    Args:
        output: the output folder; created if missing.
        options: how to write the dataset.
        settings: everything the labels depend on (input folder, ontology, models, options), JSON-ready; stored on
            the first run and compared on every later one.
        overwrite: replace a dataset labeled with other settings instead of refusing.
        link: hard-link images into the dataset when source and output share a disk (copy otherwise).

    Holds a lock on the folder until :meth:`close`; a second run on the same folder meanwhile is refused.
    """

    def __init__(self, output: str | os.PathLike, options: DatasetOptions, settings: dict, overwrite=False, link=True):
        self.root, self.options, self.link = Path(output).absolute(), options, link
        check_output_folder(self.root)
        self._io((self.root / STATE_DIR).mkdir, parents=True, exist_ok=True)
        try:  # before anything is changed: an overwrite must not pull the folder from under a running job
            self._lock = FolderLock(self.root / STATE_DIR / "lock")
        except BlockingIOError:
            raise OutputFolderError(f"Another run is writing to {self.root}; wait for it or use another folder") from None
        try:
            self._apply_settings(json.loads(json.dumps(settings)), overwrite)  # tuples -> lists, as stored
            self._records = self.root / STATE_DIR / "records"
            folders = ["images", "labels"] if "yolo" in options.formats else ["images"]
            for directory in [self._records, *(self.root / split / sub for split in options.splits for sub in folders)]:
                self._io(directory.mkdir, parents=True, exist_ok=True)
            self._io(remove_partial_files, self.root)
            self.done: dict[PurePosixPath, str] = {}
            self._next_image_id, self._next_annotation_id = 1, 1
            self._scan_records()
        except BaseException:
            self._lock.release()
            raise

    def _apply_settings(self, settings: dict, overwrite: bool) -> None:
        state = self.root / STATE_DIR / "settings.json"
        if state.is_file():
            stored = json.loads(state.read_text(encoding="utf-8"))
            if stored == settings:
                return
            if not overwrite:
                differing = sorted(key for key in settings.keys() | stored.keys() if settings.get(key) != stored.get(key))
                raise OutputFolderError(
                    f"{self.root} holds a dataset labeled with other settings (differing: {', '.join(differing)}). "
                    "Use another output folder, or overwrite=True (--overwrite) to replace that dataset."
                )
            for name in OUTPUTS:
                self._io(remove, self.root / name)
        self._io(atomic_write_text, state, json.dumps(settings, indent=2, sort_keys=True))

    def _scan_records(self) -> None:
        """Finds the images earlier runs finished and the next free ids; removes records a power cut left broken,
        so their images are labeled again."""
        for path in self.record_files():
            header = whole_record_header(path)
            if header is None:
                self._io(path.unlink)
                continue
            self.done[PurePosixPath(header["source"])] = header["name"]
            self._next_image_id = max(self._next_image_id, header["image_id"] + 1)
            self._next_annotation_id = max(self._next_annotation_id, header["annotation_id"] + header["count"])

    def convert(self, detections: sv.Detections, image_shape) -> ConvertedLabels:
        """The label text and record entries of one image: pure (no I/O, no state), so any thread may run it.

        Args:
            detections: its detections; class_id indexes ``options.classes``.
            image_shape: (H, W, C) of the image as labeled (after EXIF rotation).
        """
        options, yolo, confidences = self.options, None, None
        if "yolo" in options.formats:
            lines, sources = yolo_lines(detections, image_shape, options.yolo_boxes_only, options.polygon_approximation)
            yolo = _text(lines)
            if options.record_confidence:
                confidence = detections.confidence if detections.confidence is not None else np.ones(len(detections))
                confidences = _text(f"{confidence[index]:.4f}" for index in sources)
        entries = detections_to_record(detections, options.coco_segmentation, options.polygon_approximation)
        return ConvertedLabels(len(detections), yolo, confidences, json.dumps(entries))

    def write(self, source: PurePosixPath, file: Path, name: str, split: str, image_shape, labels: ConvertedLabels):
        """Writes one finished image: its copy, label files and record (last). Images are written one at a time,
        in order (ids are handed out here).

        Args:
            source: path relative to the input folder (recorded, and the key for resuming).
            file: the source file to copy or link.
            name: its file name in the dataset (see ``folders.output_names``).
            split: "train", "valid" or "test".
            image_shape: (H, W, C) of the image as labeled (after EXIF rotation).
            labels: what :meth:`convert` made of its detections.
        """
        height, width = image_shape[:2]
        kept = labels.count > 0 or self.options.keep_empty
        if kept:
            destination = self.root / split / "images" / name
            self._io(place_image, file, destination, self.link, target=destination)
            stem = PurePosixPath(name).stem
            if labels.yolo is not None:
                self._io(atomic_write_text, self.root / split / "labels" / f"{stem}.txt", labels.yolo)
            if labels.confidences is not None:
                self._io(atomic_write_text, self.root / split / "confidences" / f"{stem}.txt", labels.confidences)
        header = {"source": str(source), "name": name, "split": split, "width": width, "height": height, "kept": kept,
                  "image_id": self._next_image_id, "annotation_id": self._next_annotation_id, "count": labels.count}
        text = json.dumps(header, ensure_ascii=False) + "\n" + labels.entries_json + "\n"
        self._io(atomic_write_text, self._records / f"{name}.json", text)
        self._next_image_id += 1
        self._next_annotation_id += labels.count

    def finish(self) -> dict:
        """Removes files of images that have no record (left by an interrupted run), assembles the COCO files and
        data.yaml from the records in one streaming pass, and returns counts over the whole dataset."""
        return self._io(self._assemble)

    def _assemble(self) -> dict:
        counts = {"labeled": 0, "empty": 0, "per_class": Counter(), "per_split": Counter()}
        kept_names = {split: set() for split in self.options.splits}
        options = self.options
        coco = None
        if "coco" in options.formats:
            coco = CocoAssembler(self.root / "annotations", options.classes, options.splits,
                                 options.coco_segmentation, options.record_confidence)
        try:
            for header, entries in self._records_with_entries():
                counts["labeled"] += 1
                counts["empty"] += not entries
                counts["per_split"][header["split"]] += header["kept"]
                counts["per_class"].update(options.classes[entry["class_id"]] for entry in entries)
                if header["kept"]:
                    kept_names[header["split"]].add(header["name"])
                if coco is not None:
                    coco.add(header, entries)
            if coco is not None:
                coco.write()
        finally:
            if coco is not None:
                coco.close()
        self._remove_orphans(kept_names)
        if "yolo" in options.formats:
            content = data_yaml(str(self.root), options.classes, options.splits)
            atomic_write_text(self.root / "data.yaml", yaml.safe_dump(content, sort_keys=False))
        return counts

    def _remove_orphans(self, kept_names: dict[str, set[str]]) -> None:
        # An image and label written just before a run was killed, whose record never was, and whose name a later
        # run changed (a clashing image was added meanwhile): without this, YOLO would train on it, COCO would not.
        for split, names in kept_names.items():
            stems = {PurePosixPath(name).stem for name in names}
            for path in (self.root / split / "images").iterdir():
                if path.name not in names:
                    path.unlink()
            for folder in ("labels", "confidences"):
                for path in (self.root / split / folder).glob("*.txt"):
                    if path.stem not in stems:
                        path.unlink()

    def write_report(self, report: dict) -> None:
        self._io(atomic_write_text, self.root / "report.json", json.dumps(report, indent=2, ensure_ascii=False))

    def close(self) -> None:
        self._lock.release()

    def record_files(self) -> list[Path]:
        """Every finished image's record, sorted by output name."""
        return sorted(self._records.glob("*.json"))

    def _records_with_entries(self) -> Iterator[tuple[dict, list[dict]]]:
        for path in self.record_files():
            yield read_record(path)

    def _io(self, function, *args, target: Path | None = None, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as error:
            where = target or error.filename or (args[0] if args and isinstance(args[0], Path) else self.root)
            raise OutputWriteError(
                error.errno, f"Cannot write the dataset at {where}: {error.strerror or error}. Everything finished "
                "before is kept; fix the cause (free space, permissions) and rerun the same command to continue",
            ) from error


def _text(lines) -> str:
    return "".join(line + "\n" for line in lines)
