"""A labeled dataset as the app sees it: an index of its images built from its records (so only the dataset's own
images can ever be served, looked up by name), opening one image into a workspace, and saving its corrections.

Saving goes through :func:`grounded_sam.labeling.corrections.correct_image`: the image's record and label files are
rewritten with labeling's crash safety, under the folder's lock, the COCO files rebuilt and the correction logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grounded_sam.detections import mask_to_rle
from grounded_sam.errors import OutputFolderError
from grounded_sam.images import load_image
from grounded_sam.labeling.corrections import correct_image
from grounded_sam.labeling.files import real_directory
from grounded_sam.labeling.records import SETTINGS_FILE, is_corrected, read_record, record_files, whole_record_header
from grounded_sam.ontology import CaptionOntology

from .state import AppError, Workspace

PERSON_CONFIDENCE = 1.0  # what a detection a person added or edited is saved with


@dataclass(frozen=True)
class Entry:
    name: str  # the image's file name in the dataset: its record's name and the key the page uses
    split: str
    record: Path
    image: Path


class DatasetIndex:
    """The images of a dataset written by ``grounded-sam label``, by name.

    Raises:
        FileNotFoundError: ``folder`` is not such a dataset.
    """

    def __init__(self, folder: str | os.PathLike):
        self.root = Path(os.path.realpath(folder))
        settings_path = self.root / SETTINGS_FILE
        if not settings_path.is_file():
            raise FileNotFoundError(f"{folder} is not a dataset written by grounded-sam label (no {settings_path})")
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        self.classes: list[str] = list(settings["dataset"]["classes"])
        self.ontology = CaptionOntology(settings["ontology"])
        self.entries: dict[str, Entry] = {}
        self.rows: dict[str, dict] = {}
        self.reload()

    def reload(self) -> None:
        """Reads every record again: the image index and the listing's rows."""
        entries, rows = {}, {}
        for record in record_files(self.root):
            header = whole_record_header(record)
            image = self._image_path(header) if header is not None and header["kept"] else None
            if image is not None:
                entries[header["name"]] = Entry(header["name"], header["split"], record, image)
                rows[header["name"]] = self._row(record)
        self.entries, self.rows = entries, rows

    def _image_path(self, header: dict) -> Path | None:
        """The image's file, only if it is a real file inside the dataset (a record naming anything else, or an
        images folder that is a link, is left out: never served)."""
        try:
            folder = real_directory(self.root, f"{header['split']}/images", create=False)
        except OutputFolderError:
            return None
        image = folder / header["name"]
        inside = Path(os.path.realpath(image)).parent == Path(os.path.realpath(folder))
        return image if inside and image.is_file() and not image.is_symlink() else None

    def _row(self, record: Path) -> dict:
        """What the listing shows and filters on: name, split, class of each detection, lowest confidence,
        whether a person corrected it."""
        header, entries = read_record(record)
        confidences = [entry["confidence"] for entry in entries if entry.get("confidence") is not None]
        return {
            "name": header["name"],
            "split": header["split"],
            "classes": [self.classes[entry["class_id"]] for entry in entries],
            "min_confidence": min(confidences) if confidences else None,
            "corrected": is_corrected(header),
        }

    def entry(self, name) -> Entry:
        entry = self.entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise AppError("No such image in this dataset", 404)
        return entry

    def listing(self) -> list[dict]:
        return list(self.rows.values())

    def open(self, name) -> Workspace:
        """The image and its detections, as its record holds them (masks as they are: RLE)."""
        entry = self.entry(name)
        header, entries = read_record(entry.record)
        workspace = Workspace(
            image=load_image(entry.image), name=entry.name, dataset_key=entry.name, known_classes=list(self.classes)
        )
        if workspace.size != (header["height"], header["width"]):
            raise AppError(
                f"{entry.name} is {workspace.size} pixels but its record says {header['height'], header['width']}"
            )
        for row in entries:
            workspace.add(
                class_name=self.classes[row["class_id"]],
                confidence=row.get("confidence"),
                box=[float(value) for value in row["xyxy"]],
                rle=row.get("mask") or _empty_rle(workspace.size),
                source=row.get("prompt", "dataset"),
                mask_score=row.get("mask_score"),
            )
        return workspace

    def save(self, workspace: Workspace, changes: list) -> dict:
        """Writes the workspace's detections as its image's labels (see the module docstring)."""
        entry = self.entry(workspace.dataset_key)
        chosen = workspace.chosen()
        unknown = sorted({detection.class_name for detection in chosen} - set(self.classes))
        if unknown:
            raise AppError(
                f"{unknown} are not classes of this dataset; pick one of {self.classes} (a dataset's classes are "
                "fixed when it is labeled)"
            )
        detections = workspace.to_detections()  # class_id indexes self.classes: they come first in class_names()
        detections.confidence[:] = [
            PERSON_CONFIDENCE if detection.edited or detection.confidence is None else detection.confidence
            for detection in chosen
        ]
        try:
            header = correct_image(self.root, entry.name, detections, changes)
        except OutputFolderError as error:  # a labeling run holds the folder
            raise AppError(str(error), 409) from None
        self.rows[entry.name] = self._row(entry.record)
        return {"saved": entry.name, "count": header["count"], "corrected_at": header["corrected_at"]}


def _empty_rle(size: tuple[int, int]) -> dict:
    return mask_to_rle(np.zeros(size, bool))
