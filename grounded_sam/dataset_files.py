"""File-level pieces of a labeled dataset: atomic writes, image placement, records, the COCO assembler, a lock.

Every file is written under a temporary name in its folder and renamed into place, so a reader (or a run that was
killed) sees either the whole old file or the whole new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .formats import coco_annotation, coco_categories

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def place_image(source: Path, destination: Path, link: bool) -> None:
    """Hard-links ``source`` to ``destination`` when ``link`` and the disk allow it, else copies its bytes."""
    if link and destination.exists() and os.path.samefile(source, destination):
        return  # linked by an earlier, interrupted run (and renaming a link onto itself would leave the temporary)
    temporary = temporary_path(destination)
    temporary.unlink(missing_ok=True)
    try:
        try:
            if not link:
                raise OSError("copy requested")
            os.link(source.resolve(), temporary)
        except OSError:  # another disk, a file system without hard links, or link=False: copy the bytes as they are
            shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_partial_files(root: Path) -> None:
    """Deletes temporary files a killed run left in ``root`` and two levels below."""
    for pattern in (f".*{TEMPORARY_SUFFIX}", f"*/.*{TEMPORARY_SUFFIX}", f"*/*/.*{TEMPORARY_SUFFIX}"):
        for leftover in root.glob(pattern):
            leftover.unlink(missing_ok=True)


def read_header(path: Path) -> dict:
    """The header of one image's record (source, name, split, size, kept, ids), without its detections."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline())


def read_record(path: Path) -> tuple[dict, list[dict]]:
    """(header, detection entries) of one image's record file."""
    with open(path, encoding="utf-8") as file:
        return json.loads(file.readline()), json.loads(file.readline())


def whole_record_header(path: Path) -> dict | None:
    """The record's header if the file is whole (a header line, then a detections line ending in ``]``), else None:
    a power cut can leave an unflushed, empty or cut file behind even though it was renamed into place."""
    try:
        with open(path, "rb") as file:
            header = json.loads(file.readline())
            file.seek(-2, os.SEEK_END)
            return header if file.read() == b"]\n" and "image_id" in header else None
    except (OSError, ValueError):
        return None


class CocoAssembler:
    """Builds ``instances_{split}.json`` for every split in one pass over the records: image and annotation entries
    go to temporary files as they come and are joined into each COCO file at the end, so memory stays flat."""

    def __init__(self, folder: Path, classes, splits, segmentation: str, score: bool):
        self.folder, self.classes, self.segmentation, self.score = folder, list(classes), segmentation, score
        folder.mkdir(parents=True, exist_ok=True)
        self.parts = {split: (tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder),
                              tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)) for split in splits}

    def add(self, header: dict, entries: list[dict]) -> None:
        images, annotations = self.parts[header["split"]]
        if not header["kept"]:
            return
        image = {"id": header["image_id"], "file_name": header["name"], "width": header["width"],
                 "height": header["height"]}
        images.write(("," if images.tell() else "") + json.dumps(image, ensure_ascii=False))
        for offset, entry in enumerate(entries):
            annotation = coco_annotation(entry, header["annotation_id"] + offset, header["image_id"],
                                         self.segmentation, self.score)
            annotations.write(("," if annotations.tell() else "") + json.dumps(annotation))

    def write(self) -> None:
        head = {"info": {"description": "grounded-sam"}, "licenses": [], "categories": coco_categories(self.classes)}
        for split, (images, entries) in self.parts.items():
            path = self.folder / f"instances_{split}.json"
            temporary = temporary_path(path)
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(json.dumps(head)[:-1] + ', "images": [')
                _copy_from_start(images, file)
                file.write('], "annotations": [')
                _copy_from_start(entries, file)
                file.write("]}\n")
            os.replace(temporary, path)

    def close(self) -> None:
        for images, entries in self.parts.values():
            images.close()
            entries.close()


def _copy_from_start(source, destination) -> None:
    source.seek(0)
    shutil.copyfileobj(source, destination)


class FolderLock:
    """An exclusive lock on an output folder for the length of a run, so two runs cannot interleave their writes.

    Uses ``fcntl.flock`` (released by the OS if the process dies); where fcntl does not exist (Windows) it does
    nothing.
    """

    def __init__(self, path: Path):
        self.file = None
        try:
            import fcntl
        except ImportError:
            return
        self.file = open(path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
