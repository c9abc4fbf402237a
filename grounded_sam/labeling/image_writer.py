"""One image's labels into a dataset: converted from its Detections (pure, any thread) and written with its record
(any process: the run's writer thread or a Ray worker). The dataset as a whole is :mod:`grounded_sam.labeling.writer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv

from grounded_sam.errors import OutputWriteError
from grounded_sam.labeling.files import WriterGate, atomic_write_bytes, atomic_write_text, place_image, remove_file
from grounded_sam.labeling.formats import detections_to_record, yolo_lines
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import (
    OWNER_FILE,
    PENDING_DIR,
    WRITERS_FILE,
    make_header,
    record_path,
    record_text,
    whole_record_header,
)


@dataclass(frozen=True)
class ConvertedLabels:
    """One image's labels as :func:`convert_labels` makes them, ready to write."""

    count: int  # detections
    yolo: str | None  # the YOLO label file's text; None when YOLO is not written
    confidences: str | None  # the confidences file's text (record_confidence), else None
    entries_json: str  # the record's entries (formats.detections_to_record) as JSON


def convert_labels(options: LabelOptions, detections: sv.Detections, image_shape) -> ConvertedLabels:
    """The label text and record entries of one image: pure (no I/O, no state), so any thread may run it.

    Args:
        options: the dataset's options (formats, polygons, confidences).
        detections: its detections; class_id indexes the dataset's classes.
        image_shape: (H, W, C) of the image as labeled (after EXIF rotation).
    """
    yolo, confidences = None, None
    if "yolo" in options.formats:
        lines, sources = yolo_lines(detections, image_shape, options.yolo_boxes_only, options.polygon_approximation)
        yolo = _text(lines)
        if options.record_confidence:
            confidence = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            confidences = _text(f"{confidence[index]:.4f}" for index in sources)
    entries = detections_to_record(detections, options.coco_segmentation, options.polygon_approximation)
    return ConvertedLabels(len(detections), yolo, confidences, json.dumps(entries))


def write_label_files(root: Path, split: str, name: str, labels: ConvertedLabels) -> None:
    """The image's YOLO label file and confidences file, as its options made them (None: not written)."""
    stem = PurePosixPath(name).stem
    if labels.yolo is not None:
        atomic_write_text(root / split / "labels" / f"{stem}.txt", labels.yolo)
    if labels.confidences is not None:
        atomic_write_text(root / split / "confidences" / f"{stem}.txt", labels.confidences)


class ImageWriter:
    """Writes one finished image at a time into a dataset: its copy, label files and record (last), with a pending
    entry naming it until the record is there. Depends only on its arguments, so any process may make one: the
    run's background thread, or a Ray worker on a machine that sees the same folder.

    Args:
        root: the dataset's folder (absolute), opened by the run's :class:`DatasetWriter`.
        options: the dataset's options.
        token: the run's owner token (``DatasetWriter.token``); writes stop once another run owns the folder.
    """

    def __init__(self, root: Path, options: LabelOptions, token: str):
        self.root, self.options = Path(root), options
        self.gate = WriterGate(self.root / OWNER_FILE, self.root / WRITERS_FILE, token)

    def write(
        self, source: PurePosixPath, file: Path | bytes, name: str, split: str, image_shape, labels: ConvertedLabels
    ):
        """Writes one image (images are independent: any order, any process). Returns its record's header.

        Args:
            source: path relative to the input folder (recorded, and the key for resuming).
            file: the source file to copy or link, or the image file's bytes (a video frame encoded by the caller).
            name: its file name in the dataset (see ``folders.output_names``).
            split: "train", "valid" or "test".
            image_shape: (H, W, C) of the image as labeled (after EXIF rotation).
            labels: what :func:`convert_labels` made of its detections.
        """
        height, width = image_shape[:2]
        kept = labels.count > 0 or self.options.keep_empty
        header = make_header(source, name, split, width, height, kept, labels.count)
        with self.gate.writing():
            pending = self.root / PENDING_DIR / f"{name}.json"  # the image's files are listed before any is written
            guarded_io(self.root, atomic_write_text, pending, "{}")
            if kept:
                destination = self.root / split / "images" / name
                if isinstance(file, bytes):  # a video frame the caller encoded
                    guarded_io(self.root, atomic_write_bytes, destination, file, target=destination)
                else:
                    guarded_io(self.root, place_image, file, destination, self.options.link, target=destination)
                guarded_io(self.root, write_label_files, self.root, split, name, labels)
            guarded_io(
                self.root, atomic_write_text, record_path(self.root, name), record_text(header, labels.entries_json)
            )
            guarded_io(self.root, remove_file, pending)
        return header

    def finished(self, name: str) -> dict | None:
        """The header of the image's record if it is whole (the image was written before), else None."""
        return whole_record_header(record_path(self.root, name))

    def close(self) -> None:
        self.gate.close()


def guarded_io(root: Path, function, *args, target: Path | None = None, **kwargs):
    """``function(*args, **kwargs)``, with an OSError turned into the OutputWriteError naming the file."""
    try:
        return function(*args, **kwargs)
    except OSError as error:
        where = target or error.filename or (args[0] if args and isinstance(args[0], Path) else root)
        raise write_error(error, where) from error


def write_error(error: OSError, where) -> OutputWriteError:
    return OutputWriteError(
        error.errno,
        f"Cannot write the dataset at {where}: {error.strerror or error}. Everything finished "
        "before is kept; fix the cause (free space, permissions) and rerun the same command to continue",
    )


def _text(lines) -> str:
    return "".join(line + "\n" for line in lines)
