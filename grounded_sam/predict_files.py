"""Segmenting image files into a folder of pictures and JSON results (what ``grounded-sam predict`` does)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import supervision as sv
from PIL import Image
from tqdm.auto import tqdm

from .annotate import annotate
from .dataset_files import atomic_write_text
from .engine import Engine
from .folders import find_images, output_names
from .formats import mask_to_rle


def detections_to_json(detections: sv.Detections, source: str, height: int, width: int) -> dict:
    """One image's results as JSON-ready data: per detection class, prompt, confidence, xyxy box, SAM's mask score
    and the mask as COCO RLE."""
    rows = []
    for index in range(len(detections)):
        row = {
            "class_id": int(detections.class_id[index]),
            "class_name": str(detections.data["class_name"][index]),
            "prompt": str(detections.data["prompt"][index]) if "prompt" in detections.data else None,
            "confidence": round(float(detections.confidence[index]), 4),
            "xyxy": [round(float(value), 2) for value in detections.xyxy[index]],
        }
        if "mask_score" in detections.data:
            row["mask_score"] = round(float(detections.data["mask_score"][index]), 4)
        if detections.mask is not None:
            row["mask"] = mask_to_rle(detections.mask[index])
        rows.append(row)
    return {"image": source, "width": width, "height": height, "detections": rows}


def predict_files(model, source: str | Path, output: str | Path, recursive: bool = False, batch_size: int = 8,
                  progress: bool = True, workers: int = 4) -> dict:
    """Runs ``model`` (a ``GroundedSAM2``) on an image file or every image of a folder.

    Writes ``output/NAME.jpg`` (the image with masks, boxes and "class 0.87" labels) and ``output/NAME.json``
    (:func:`detections_to_json`) per image; names are the folder's relative paths flattened as in labeling.
    Unreadable images, and images the model fails on alone, are skipped and listed. Images are decoded on ``workers``
    threads ahead of the model, pictures drawn on ``workers`` threads behind it and written on one
    (:class:`grounded_sam.engine.Engine`).
    Returns counts: found, written, skipped, per_class, output.
    """
    source, output = Path(source), Path(output)
    if output.resolve() == (source.parent if source.is_file() else source).resolve():
        raise ValueError(f"The output folder {output} is where the images are: the pictures would overwrite them; "
                         "pick another folder")
    if source.is_file():
        root, relative = source.parent, [PurePosixPath(source.name)]
    else:
        root, relative = source, find_images(source, recursive=recursive, exclude=[output])
        if not relative:
            raise FileNotFoundError(f"No images found in {source}{'' if recursive else ' (recursive: also sub-folders)'}")
    output.mkdir(parents=True, exist_ok=True)
    names = output_names(relative)
    summary = {"found": len(relative), "written": 0, "skipped": [], "per_class": Counter(), "output": str(output)}

    def render(item, image, detections):  # on the engine's conversion threads, in any order
        return _render(str(root / item), image, detections)

    def write(item, image, rendered):  # on the engine's background thread, in order
        picture, content, class_names = rendered
        stem = PurePosixPath(names[item]).stem
        (output / f"{stem}.jpg").write_bytes(picture)
        atomic_write_text(output / f"{stem}.json", content)
        summary["written"] += 1
        summary["per_class"].update(class_names)

    with tqdm(total=len(relative), unit="img", disable=None if progress else True, desc="Segmenting") as bar:
        Engine(model, batch_size, workers).run(root, relative, write, summary["skipped"], on_batch=bar.update,
                                               prepare=render)
    summary["per_class"] = {name: summary["per_class"].get(name, 0) for name in model.ontology.classes()}
    return summary


def _render(source: str, image: np.ndarray, detections: sv.Detections) -> tuple[bytes, str, list[str]]:
    """The annotated picture as JPEG bytes, the JSON text (:func:`detections_to_json`) and the class names."""
    picture = io.BytesIO()
    Image.fromarray(annotate(image, detections)).save(picture, format="JPEG", quality=92)
    content = json.dumps(detections_to_json(detections, source, *image.shape[:2]), ensure_ascii=False)
    return picture.getvalue(), content, detections.data["class_name"].tolist()
