"""Segmenting image files into a folder of pictures and JSON results (what ``grounded-sam predict`` does)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.annotate import annotate, cutout
from grounded_sam.detections import CLASS_NAME, detections_to_json
from grounded_sam.errors import UserInputError
from grounded_sam.images import DEFAULT_MAX_PIXELS
from grounded_sam.labeling.files import atomic_write_bytes, atomic_write_text, check_output_names, real_directory
from grounded_sam.labeling.folders import check_folder_path, find_images, output_names, without_undecodable_names
from grounded_sam.labeling.records import STATE_DIR, listed_files
from grounded_sam.pipeline.engine import Engine
from grounded_sam.progress import progress_bar


def predict_files(
    model,
    source: str | Path,
    output: str | Path,
    recursive: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    workers: int = 4,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    cutouts: bool = False,
) -> dict:
    """Runs ``model`` (a ``GroundedSAM2``) on an image file or every image of a folder.

    Writes ``output/NAME.jpg`` (the image with masks, boxes and "class 0.87" labels) and ``output/NAME.json``
    (``image``, ``width``, ``height`` and ``detections``: :func:`grounded_sam.detections.detections_to_json`) per
    image; names are the folder's relative paths flattened as in labeling. With ``cutouts``, also
    ``output/cutouts/NAME_I.png`` for detection I of the JSON (:func:`grounded_sam.annotate.cutout`: the object on a
    transparent background, cropped to its mask; none for an empty mask). Unreadable images, images over
    ``max_pixels``, images whose name is not valid UTF-8 and images the model fails on alone are skipped and listed.
    Images are decoded on ``workers`` threads ahead of the model, pictures drawn on ``workers`` threads behind it and
    written on one (:class:`grounded_sam.pipeline.engine.Engine`).

    Only files this function wrote may be replaced: the names it writes are listed in
    ``output/.grounded-sam/predict.json`` before the run, and an existing file that no earlier run listed is refused.
    Returns counts: found, written, skipped, per_class, output.
    """
    source, output = Path(source), Path(output)
    plan = plan_predict_files(source, output, recursive, cutouts)
    root, relative, names = plan["root"], plan["sources"], plan["names"]
    summary = {
        "found": plan["found"],
        "written": 0,
        "skipped": plan["skipped"],
        "per_class": Counter(),
        "output": str(output),
    }
    output.mkdir(parents=True, exist_ok=True)
    manifest = real_directory(output, STATE_DIR) / PREDICT_MANIFEST
    earlier = set(listed_files(manifest))
    _write_manifest(manifest, earlier | set(plan["files"]))  # before any is written: a killed run leaves none unlisted
    if cutouts:  # listed above as ours: what is inside it is ours too (its names are not known before the run)
        real_directory(output, CUTOUTS_DIR)
    written: set[str] = {CUTOUTS_DIR} if cutouts else set()

    def render(item, image, detections):  # on the engine's conversion threads, in any order
        return _render(str(root / item), image, detections, cutouts)

    def write(item, image, rendered):  # on the engine's background thread, in order
        picture, content, class_names, pieces = rendered
        stem = PurePosixPath(names[item]).stem
        atomic_write_bytes(output / f"{stem}.jpg", picture)
        atomic_write_text(output / f"{stem}.json", content)
        written.update((f"{stem}.jpg", f"{stem}.json"))
        for index, piece in pieces:
            atomic_write_bytes(output / CUTOUTS_DIR / f"{stem}_{index}.png", piece)
            written.add(f"{CUTOUTS_DIR}/{stem}_{index}.png")
        summary["written"] += 1
        summary["per_class"].update(class_names)

    with progress_bar(len(relative), "Segmenting", enabled=progress) as bar:
        Engine(model, batch_size, workers, max_pixels=max_pixels).run(
            root, relative, write, summary["skipped"], on_batch=bar.update, prepare=render
        )
    _write_manifest(manifest, earlier | written)  # what is there now, not what might have been
    summary["per_class"] = {name: summary["per_class"].get(name, 0) for name in model.ontology.classes()}
    return summary


def _write_manifest(path: Path, files: set[str]) -> None:
    atomic_write_text(path, json.dumps({"files": sorted(files)}, ensure_ascii=False))


PREDICT_MANIFEST = "predict.json"
CUTOUTS_DIR = "cutouts"


def plan_predict_files(source: Path, output: Path, recursive: bool = False, cutouts: bool = False) -> dict:
    """Everything ``predict_files`` checks before a model is needed: the images, their output names, and that the
    output folder takes them without replacing a file grounded-sam did not write.

    Raises:
        FileNotFoundError: the source is missing or holds no image.
        UserInputError: the output folder is where the images are, a path is not valid UTF-8, or the output holds
            a file by a name this run would write that no earlier run wrote.
    """
    if not source.exists():
        raise FileNotFoundError(f"Not found: {source} (give an image file or a folder of images)")
    check_folder_path(source, "input", "the image or folder")
    check_folder_path(output, "output folder", "--output")
    if output.resolve() == (source.parent if source.is_file() else source).resolve():
        raise UserInputError(
            f"The output folder {output} is where the images are: the pictures would overwrite "
            "them; pick another folder"
        )
    if output.is_file():
        raise UserInputError(f"The output folder {output} is a file; pass a folder path")
    skipped: list[dict] = []
    if source.is_file():
        root, found = source.parent, [PurePosixPath(source.name)]
    else:
        root, found = source, find_images(source, recursive=recursive, exclude=[output], errors=skipped)
        if not found:
            raise FileNotFoundError(
                f"No images found in {source}{'' if recursive else ' (recursive: also sub-folders)'}"
            )
    relative = without_undecodable_names(found, skipped)
    names = output_names(relative)
    files = [f"{PurePosixPath(name).stem}{suffix}" for name in names.values() for suffix in (".jpg", ".json")]
    files += [CUTOUTS_DIR] * cutouts
    if output.is_dir():
        real_directory(output, STATE_DIR, create=False)
        real_directory(output, CUTOUTS_DIR, create=False)
        check_output_names(output, files, listed_files(output / STATE_DIR / PREDICT_MANIFEST), [CUTOUTS_DIR])
    return {"root": root, "sources": relative, "names": names, "files": files, "found": len(found), "skipped": skipped}


def _render(source: str, image: np.ndarray, detections: sv.Detections, cutouts: bool = False) -> tuple:
    """The annotated picture as JPEG bytes, the JSON text (:func:`detections_to_json`), the class names, and with
    ``cutouts`` (index, PNG bytes) of each detection's cut-out."""
    picture = io.BytesIO()
    Image.fromarray(annotate(image, detections)).save(picture, format="JPEG", quality=92)
    height, width = image.shape[:2]
    content = {"image": source, "width": width, "height": height, "detections": detections_to_json(detections)}
    pieces = []
    if cutouts and detections.mask is not None:
        pieces = [(i, png_bytes(cutout(image, mask))) for i, mask in enumerate(detections.mask) if mask.any()]
    return picture.getvalue(), json.dumps(content, ensure_ascii=False), detections.data[CLASS_NAME].tolist(), pieces


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, 3) RGB or (H, W, 4) RGBA uint8, or (H, W) uint8 gray -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
