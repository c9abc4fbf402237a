"""The on-disk state of a labeled dataset, written and read here only: where it lives, and each image's record.

A record is ``.grounded-sam/records/NAME.json``: a header line (the image's source, name, split, size, whether it
was kept, its COCO ids, its detection count, and the schema ``version``), then one line with its detections in the
JSON form of :func:`grounded_sam.detections.detections_to_json` (plus COCO polygons when a dataset writes them).

Schema versions: 1 gave the COCO ids as the image was written. 2 writes the record without ids and gives them at
the end of the run (:func:`give_ids`, in source-path order), so that the ids do not depend on the order in which
images were finished (several workers finish in any order). Version 1 records are read as they are: they have ids.

Version 2 also adds ``corrected_at`` to the header of an image a person corrected (``grounded-sam app``): the time
of the last correction, ISO 8601. Version 1 records have none and read the same (not corrected). Each correction is
also appended to ``.grounded-sam/corrections.jsonl`` (one JSON object a line: time, image, what changed).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from grounded_sam.labeling.files import atomic_write_text, stays_inside
from grounded_sam.labeling.folders import SPLIT_NAMES

STATE_DIR = ".grounded-sam"
RECORDS_DIR = f"{STATE_DIR}/records"
PENDING_DIR = f"{STATE_DIR}/pending"
SETTINGS_FILE = f"{STATE_DIR}/settings.json"
OWNER_FILE = f"{STATE_DIR}/owner"  # the token of the run that owns the folder now (files.WriterGate)
WRITERS_FILE = f"{STATE_DIR}/writers"  # locked shared while an image is written, exclusive while cleaning up
REVIEW_DIR = "review"  # the HTML review page (apps/review.py): it shows this dataset, so it goes with it
REVIEW_MANIFEST = f"{STATE_DIR}/review.json"  # the review page's files, as apps/review.py wrote them
CORRECTIONS_LOG = f"{STATE_DIR}/corrections.jsonl"  # what the app's corrections changed, one line each
RECORD_VERSION = 2


def record_path(root: Path, name: str) -> Path:
    """Where the record of the image named ``name`` in the dataset at ``root`` lives."""
    return root / RECORDS_DIR / f"{name}.json"


def record_files(root: Path) -> list[Path]:
    """Every record of the dataset at ``root``, sorted by image name."""
    return sorted((root / RECORDS_DIR).glob("*.json"))


def image_files(split: str, name: str) -> list[str]:
    """The files an image may have in a dataset, relative to its folder (which of them exist depends on options)."""
    stem = PurePosixPath(name).stem
    return [f"{split}/images/{name}", f"{split}/labels/{stem}.txt", f"{split}/confidences/{stem}.txt"]


def make_header(
    source: PurePosixPath,
    name: str,
    split: str,
    width: int,
    height: int,
    kept: bool,
    count: int,
    image_id: int | None = None,
    annotation_id: int | None = None,
) -> dict:
    """A record's header: ``annotation_id`` is the COCO id of its first detection (the others follow in order).
    Without ids (an image just written) the two keys are left out; :func:`give_ids` adds them."""
    header = {
        "version": RECORD_VERSION,
        "source": str(source),
        "name": name,
        "split": split,
        "width": width,
        "height": height,
        "kept": kept,
        "image_id": image_id,
        "annotation_id": annotation_id,
        "count": count,
    }
    if image_id is None:
        del header["image_id"], header["annotation_id"]
    return header


def is_corrected(header: dict) -> bool:
    """Whether a person corrected this image's labels (its record has ``corrected_at``; version 1 records never)."""
    return bool(header.get("corrected_at"))


def corrected_images(root: Path) -> list[str]:
    """The names of the images of the dataset at ``root`` whose labels a person corrected."""
    headers = (whole_record_header(path) for path in record_files(root))
    return [header["name"] for header in headers if header is not None and is_corrected(header)]


def now_text() -> str:
    """The local time as ISO 8601 with its UTC offset, to the second (``2026-12-01T14:05:09+01:00``)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def record_text(header: dict, entries_json: str) -> str:
    """The record file's text: the header line, then the entries (already JSON) on one line."""
    return json.dumps(header, ensure_ascii=False) + "\n" + entries_json + "\n"


def read_header(path: Path) -> dict:
    """The header of one image's record, without its detections."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline())


def read_record(path: Path) -> tuple[dict, list[dict]]:
    """(header, detection entries) of one image's record file."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline()), json.loads(file.readline())


def whole_record_header(path: Path) -> dict | None:
    """The record's header if the file is whole (a header line, then a detections line ending in ``]``) and names
    files inside the dataset, else None: a power cut can leave an unflushed, empty or cut file behind even though it
    was renamed into place."""
    try:
        with open(path, "rb") as file:
            header = json.loads(file.readline())
            file.seek(-2, os.SEEK_END)
            whole = file.read() == b"]\n" and "source" in header
    except (OSError, ValueError):
        return None
    return header if whole and _names_its_own_files(header) else None


def _names_its_own_files(header: dict) -> bool:
    """Whether the header's split and name make paths inside the dataset (a record edited to name ``../x`` or a
    split outside train/valid/test reads as broken, so nothing is ever written or served through it)."""
    name = header.get("name")
    plain = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\x00" not in name
    return plain and header.get("split") in SPLIT_NAMES


def next_ids(root: Path) -> tuple[int, int]:
    """The image id and the annotation id that come after every id the records of the dataset at ``root`` hold."""
    next_image, next_annotation = 1, 1
    for path in record_files(root):
        header = read_header(path)
        if "image_id" in header:
            next_image = max(next_image, header["image_id"] + 1)
            next_annotation = max(next_annotation, header["annotation_id"] + header["count"])
    return next_image, next_annotation


def give_ids(root: Path) -> int:
    """Gives COCO ids to the records of the dataset at ``root`` that have none, and returns how many it numbered.

    They are numbered in source-path order (the order ``find_images`` lists and a single process labels them in),
    after the largest ids already given, each record rewritten whole in its turn. So the ids are the same whatever
    order the images were finished in; ids once given never change (images added later get the next ones); and a
    pass stopped partway has numbered the first records of that order, so the next pass gives the rest the same ids
    the whole pass would have.
    """
    next_image, next_annotation = next_ids(root)
    unnumbered = []
    for path in record_files(root):
        header = read_header(path)
        if "image_id" not in header:
            unnumbered.append((PurePosixPath(header["source"]), path))
    for _, path in sorted(unnumbered):
        with open(path, encoding="utf-8") as file:
            header, entries = json.loads(file.readline()), file.readline()
        fields = {key: header[key] for key in ("source", "name", "split", "width", "height", "kept", "count")}
        numbered = make_header(**fields, image_id=next_image, annotation_id=next_annotation)
        atomic_write_text(path, json.dumps(numbered, ensure_ascii=False) + "\n" + entries)
        next_image, next_annotation = next_image + 1, next_annotation + header["count"]
    return len(unnumbered)


def listed_files(manifest: Path) -> list[str]:
    """The relative paths a manifest file (``{"files": [...]}``) lists; none when it is missing or unreadable."""
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in files if isinstance(name, str) and stays_inside(name)]
