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

Every file is written under a temporary name and renamed into place, and an image's record is written last, so an
image counts as done only when all its files are whole. The files that span all images (COCO, data.yaml) are
assembled from the records at the end, streaming, so memory does not grow with the number of images.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
import yaml

from .folders import SPLIT_NAMES
from .formats import coco_annotation, coco_categories, data_yaml, detections_to_record, yolo_lines

STATE_DIR = ".grounded-sam"
OUTPUTS = (*SPLIT_NAMES, "annotations", "data.yaml", "report.json", STATE_DIR)
FORMATS = ("yolo", "coco")
COCO_SEGMENTATIONS = ("rle", "polygon")


class OutputFolderError(ValueError):
    """The output folder holds something a run must not write over; the message says what and what to do."""


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
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats!r}")
        if self.coco_segmentation not in COCO_SEGMENTATIONS:
            raise ValueError(f"coco_segmentation must be one of {COCO_SEGMENTATIONS}, got {self.coco_segmentation!r}")
        if not 0.0 <= self.polygon_approximation < 1.0:
            raise ValueError(f"polygon_approximation must be in [0, 1), got {self.polygon_approximation}")

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLIT_NAMES[: len(self.split)]


class DatasetWriter:
    """Writes images, labels and records into ``output``; checks that a rerun uses the same settings.

    Args:
        output: the output folder; created if missing.
        options: how to write the dataset.
        settings: everything the labels depend on (ontology, models, options), JSON-ready; stored on the first run
            and compared on every later one.
        overwrite: replace a dataset labeled with other settings instead of refusing.
        link: hard-link images into the dataset when source and output share a disk (copy otherwise).
    """

    def __init__(self, output: str | os.PathLike, options: DatasetOptions, settings: dict, overwrite=False, link=True):
        self.root, self.options, self.link = Path(output).absolute(), options, link
        self._guard(_to_json(settings), overwrite)
        self._records = self.root / STATE_DIR / "records"
        folders = ["images", "labels"] if "yolo" in options.formats else ["images"]
        for directory in [self._records, *(self.root / split / sub for split in options.splits for sub in folders)]:
            self._io(directory.mkdir, parents=True, exist_ok=True)
        self._remove_partial_files()

    def _guard(self, settings: dict, overwrite: bool) -> None:
        state = self.root / STATE_DIR / "settings.json"
        if self.root.is_file():
            raise OutputFolderError(f"Output folder {self.root} is a file; pass a folder path")
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
                self._io(_remove, self.root / name)
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise OutputFolderError(
                f"Output folder {self.root} is not empty and was not written by grounded-sam; "
                "choose a new or empty folder (nothing in it was changed)"
            )
        self._io(state.parent.mkdir, parents=True, exist_ok=True)
        self._io(_atomic_write_text, state, json.dumps(settings, indent=2, sort_keys=True))

    def _remove_partial_files(self) -> None:
        for pattern in (".*.tmp", "*/.*.tmp", "*/*/.*.tmp"):  # left by a run that was killed mid-write
            for leftover in self.root.glob(pattern):
                self._io(leftover.unlink)

    def completed(self) -> dict[PurePosixPath, str]:
        """Source path -> output name of every image finished by this or an earlier run."""
        done = {}
        for header in self._headers():
            done[PurePosixPath(header["source"])] = header["name"]
        return done

    def write(self, source: PurePosixPath, file: Path, name: str, split: str, image_shape, detections: sv.Detections):
        """Writes one finished image: its copy, label files and record (last).

        Args:
            source: path relative to the input folder (recorded, and the key for resuming).
            file: the source file to copy or link.
            name: its file name in the dataset (see ``folders.output_names``).
            split: "train", "valid" or "test".
            image_shape: (H, W, C) of the image as labeled (after EXIF rotation).
            detections: its detections; class_id indexes ``options.classes``.
        """
        height, width = image_shape[:2]
        kept = len(detections) > 0 or self.options.keep_empty
        if kept:
            self._io(_place_image, file, self.root / split / "images" / name, self.link)
            if "yolo" in self.options.formats:
                self._write_yolo(name, split, image_shape, detections)
        header = {"source": str(source), "name": name, "split": split, "width": width, "height": height, "kept": kept}
        entries = detections_to_record(detections, self.options.coco_segmentation, self.options.polygon_approximation)
        text = json.dumps(header, ensure_ascii=False) + "\n" + json.dumps(entries) + "\n"
        self._io(_atomic_write_text, self._records / f"{name}.json", text)

    def _write_yolo(self, name: str, split: str, image_shape, detections: sv.Detections) -> None:
        options = self.options
        lines, sources = yolo_lines(detections, image_shape, options.yolo_boxes_only, options.polygon_approximation)
        stem = PurePosixPath(name).stem
        self._io(_atomic_write_text, self.root / split / "labels" / f"{stem}.txt", _text(lines))
        if options.record_confidence:
            confidence = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            values = [f"{confidence[index]:.4f}" for index in sources]
            self._io(_atomic_write_text, self.root / split / "confidences" / f"{stem}.txt", _text(values))

    def finish(self) -> dict:
        """Assembles the COCO files and data.yaml from the records on disk, in one streaming pass over the records;
        returns counts over the whole dataset."""
        return self._io(self._assemble)

    def _assemble(self) -> dict:
        counts = {"labeled": 0, "empty": 0, "per_class": Counter(), "per_split": Counter()}
        coco = _CocoAssembler(self.root / "annotations", self.options) if "coco" in self.options.formats else None
        try:
            for image_id, (header, entries) in enumerate(self._records_with_entries(), start=1):
                counts["labeled"] += 1
                counts["empty"] += not entries
                counts["per_split"][header["split"]] += header["kept"]
                counts["per_class"].update(self.options.classes[entry["class_id"]] for entry in entries)
                if coco is not None:
                    coco.add(image_id, header, entries)
            if coco is not None:
                coco.write()
        finally:
            if coco is not None:
                coco.close()
        if "yolo" in self.options.formats:
            content = data_yaml(str(self.root), self.options.classes, self.options.splits)
            _atomic_write_text(self.root / "data.yaml", yaml.safe_dump(content, sort_keys=False))
        return counts

    def write_report(self, report: dict) -> None:
        self._io(_atomic_write_text, self.root / "report.json", json.dumps(report, indent=2, ensure_ascii=False))

    def record_files(self) -> list[Path]:
        """Every finished image's record, sorted by output name (the order image and annotation ids follow)."""
        return sorted(self._records.glob("*.json"))

    def _headers(self) -> Iterator[dict]:
        for path in self.record_files():
            yield read_header(path)

    def _records_with_entries(self) -> Iterator[tuple[dict, list[dict]]]:
        for path in self.record_files():
            yield read_record(path)

    def _io(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as error:
            where = error.filename or (args[0] if args and isinstance(args[0], Path) else self.root)
            raise OutputWriteError(
                error.errno, f"Cannot write the dataset at {where}: {error.strerror or error}. Everything finished "
                "before is kept; fix the cause (free space, permissions) and rerun the same command to continue",
            ) from error


class _CocoAssembler:
    """Builds ``instances_{split}.json`` for every split in one pass over the records: image and annotation entries
    go to temporary files as they come, and are joined into each COCO file at the end, so memory stays flat."""

    def __init__(self, folder: Path, options: DatasetOptions):
        self.folder, self.options, self.annotation_id = folder, options, 0
        folder.mkdir(parents=True, exist_ok=True)
        self.parts = {split: (tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder),
                              tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)) for split in options.splits}

    def add(self, image_id: int, header: dict, entries: list[dict]) -> None:
        # ids count every record, kept or not and in every split, so an image's ids never depend on the options
        images, annotations = self.parts[header["split"]]
        if header["kept"]:
            image = {"id": image_id, "file_name": header["name"], "width": header["width"], "height": header["height"]}
            images.write(("," if images.tell() else "") + json.dumps(image, ensure_ascii=False))
        for entry in entries:
            self.annotation_id += 1
            annotation = coco_annotation(entry, self.annotation_id, image_id, self.options.coco_segmentation,
                                         self.options.record_confidence)
            annotations.write(("," if annotations.tell() else "") + json.dumps(annotation))

    def write(self) -> None:
        head = {"info": {"description": "grounded-sam"}, "licenses": [],
                "categories": coco_categories(self.options.classes)}
        for split, (images, annotations) in self.parts.items():
            path = self.folder / f"instances_{split}.json"
            temporary = _temporary(path)
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(json.dumps(head)[:-1] + ', "images": [')
                _copy_from_start(images, file)
                file.write('], "annotations": [')
                _copy_from_start(annotations, file)
                file.write("]}\n")
            os.replace(temporary, path)

    def close(self) -> None:
        for images, annotations in self.parts.values():
            images.close()
            annotations.close()


def _copy_from_start(source, destination) -> None:
    source.seek(0)
    shutil.copyfileobj(source, destination)


def read_header(path: Path) -> dict:
    """The header of one image's record (source, name, split, width, height, kept), without its detections."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline())


def read_record(path: Path) -> tuple[dict, list[dict]]:
    """(header, detection entries) of one image's record file."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline()), json.loads(file.readline())


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _place_image(source: Path, destination: Path, link: bool) -> None:
    if link and destination.exists() and os.path.samefile(source, destination):
        return  # linked by an earlier, interrupted run (and renaming a link onto itself would leave the temporary)
    temporary = _temporary(destination)
    temporary.unlink(missing_ok=True)
    try:
        if not link:
            raise OSError("copy requested")
        os.link(source.resolve(), temporary)
    except OSError:  # another disk, a file system without hard links, or link=False: copy the bytes as they are
        shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _to_json(settings: dict) -> dict:
    return json.loads(json.dumps(settings))  # tuples -> lists, as they will read back from settings.json
