"""The labeled folder as a ``supervision.DetectionDataset`` that reads each image's annotations when asked."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import supervision as sv

from grounded_sam.detections import detections_from_json
from grounded_sam.labeling.records import SETTINGS_FILE, read_header, read_record, record_files


class LabeledDataset(sv.DetectionDataset):
    """A ``sv.DetectionDataset`` over a folder written by ``GroundedSAM2.label``, every split together.

    Image paths point into ``{split}/images/``; images load lazily as in supervision. Annotations are decoded from
    the folder's records (exact RLE masks, confidences) one image at a time when accessed, so the object stays small
    however many images were labeled. Everything supervision offers works (``as_yolo``, ``as_coco``, ``split``...);
    operations that copy the dataset, like ``split``, hold the masks they copy in memory.

    Attributes:
        splits: image path -> "train", "valid" or "test".
        report: the run's ``LabelReport`` when the dataset comes from ``label``, else None.
    """

    def __init__(self, folder: str | os.PathLike, report=None):
        root = Path(folder).absolute()
        settings_path = root / SETTINGS_FILE
        if not settings_path.is_file():
            raise FileNotFoundError(f"{root} is not a dataset written by grounded-sam (no {settings_path})")
        classes = json.loads(settings_path.read_text(encoding="utf-8"))["dataset"]["classes"]
        records, self.splits = {}, {}
        for record in record_files(root):
            header = read_header(record)
            if header["kept"]:
                image_path = str(root / header["split"] / "images" / header["name"])
                records[image_path], self.splits[image_path] = record, header["split"]
        # supervision's constructor decodes and deep-copies every annotation up front (all masks of the dataset in
        # memory); its attributes are set here instead, with annotations decoded from the records when accessed.
        super().__init__(classes=list(classes), images=[], annotations={})
        self.image_paths = list(records)
        self.annotations = _RecordAnnotations(records, list(classes))
        self.report = report

    def class_names(self, image_path: str) -> list[str]:
        """The class of each detection of one image, read from its record without decoding the masks."""
        _, entries = read_record(self.annotations.records[image_path])
        return [self.classes[entry["class_id"]] for entry in entries]


class _RecordAnnotations(Mapping):
    """image path -> sv.Detections, decoded from the image's record file on each access."""

    def __init__(self, records: dict[str, Path], classes: list[str]):
        self.records, self._classes = records, classes

    def __getitem__(self, image_path: str) -> sv.Detections:
        header, entries = read_record(self.records[image_path])
        return detections_from_json(entries, header["height"], header["width"], self._classes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
