"""Correcting a labeled dataset by hand, one image at a time (what ``grounded-sam app`` saves).

:func:`correct_image` replaces one image's labels through the dataset's own :class:`DatasetWriter`, opened with the
settings the dataset was labeled with: under the folder's lock (while a labeling run writes the folder, a correction
is refused, and the other way round), its record first and then its label files under a pending entry, then the COCO
files and data.yaml rebuilt from the records. Opening the writer also does what a rerun would: it removes the
temporary files of a killed run and finishes its interrupted images.

Each correction is marked in the image's record (``corrected_at``) and appended to ``.grounded-sam/corrections.jsonl``
(time, image, detection count, what changed). Corrected images are kept when labeling resumes, and ``overwrite``
refuses to replace them unless ``discard_corrections=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import supervision as sv

from grounded_sam.errors import UserInputError
from grounded_sam.labeling.options import LabelOptions
from grounded_sam.labeling.records import CORRECTIONS_LOG, SETTINGS_FILE, read_header, record_path
from grounded_sam.labeling.writer import DatasetWriter


def reopen_writer(folder: str | os.PathLike) -> DatasetWriter:
    """The writer of an existing dataset, with the options, classes and settings it was labeled with (so it is never
    an overwrite). Close it when done: it holds the folder's lock.

    Raises:
        FileNotFoundError: ``folder`` is not a dataset written by grounded-sam.
        OutputFolderError: a labeling run is writing to it.
    """
    root = Path(folder)
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise FileNotFoundError(f"{root} is not a dataset written by grounded-sam label (no {settings_path})")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    stored = dict(settings["dataset"])
    classes = stored.pop("classes")
    return DatasetWriter(root, LabelOptions(**stored, progress=False, verbose=False), classes, settings)


def correct_image(folder: str | os.PathLike, name: str, detections: sv.Detections, changes: list | None = None) -> dict:
    """Replaces the labels of the image ``name`` of a labeled dataset with ``detections`` and rebuilds its COCO files.

    Args:
        folder: the dataset (the output folder of ``label``).
        name: the image's file name in the dataset (``{split}/images/NAME``).
        detections: all its detections after the correction: xyxy pixels, mask (n, H, W) bool at the image's size
            (or None for boxes), class_id into the dataset's classes, confidence (or None).
        changes: what changed, JSON-ready, for the corrections log.

    Returns:
        the image's new record header (``corrected_at`` set).

    Raises:
        UserInputError: no image of the dataset has that name, or the detections do not fit it.
    """
    writer = reopen_writer(folder)
    try:
        header = read_header(record_path(writer.root, name)) if _is_record_name(writer.root, name) else None
        if header is None:
            raise UserInputError(f"{name!r} is not an image of the dataset at {writer.root}")
        _check_fits(detections, header, writer.classes)
        labels = writer.convert(detections, (header["height"], header["width"], 3))
        header = writer.rewrite_labels(name, labels, changes)
        writer.finish()
    finally:
        writer.close()
    return header


def read_corrections(folder: str | os.PathLike) -> list[dict]:
    """The corrections log of a dataset, oldest first (a line a crash cut short is skipped)."""
    path = Path(folder) / CORRECTIONS_LOG
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _is_record_name(root: Path, name: str) -> bool:
    return isinstance(name, str) and Path(name).name == name and record_path(root, name).is_file()


def _check_fits(detections: sv.Detections, header: dict, classes) -> None:
    size = (header["height"], header["width"])
    if detections.mask is not None and detections.mask.shape[1:] != size:
        shape = detections.mask.shape
        raise UserInputError(f"masks must be (n, {size[0]}, {size[1]}) for {header['name']}, got {shape}")
    ids = detections.class_id
    if len(detections) and (ids is None or ids.min() < 0 or ids.max() >= len(classes)):
        raise UserInputError(f"class_id must index the dataset's classes {list(classes)}, got {ids}")
    if ids is not None and not np.issubdtype(np.asarray(ids).dtype, np.integer):
        raise UserInputError(f"class_id must be integers, got {ids}")
    height, width = size
    boxes = np.asarray(detections.xyxy, dtype=np.float64)
    inside = np.isfinite(boxes).all() and (boxes >= -0.5).all()
    if not inside or (boxes[:, [0, 2]] > width + 0.5).any() or (boxes[:, [1, 3]] > height + 0.5).any():
        raise UserInputError(
            f"boxes must lie within the {width} x {height} image {header['name']}, got {boxes.tolist()}"
        )
    scores = detections.confidence
    if scores is not None and not ((scores >= 0) & (scores <= 1)).all():  # NaN fails both
        raise UserInputError(f"confidence must be in [0, 1], got {scores}")
